"""Google's speech embedding (as openWakeWord 0.4.0 packages it) in pure JAX.

    from kws_jax.speech_embedding import SpeechEmbedding
    frontend = SpeechEmbedding()                 # audio -> [batch, E, 96]
    embeddings = frontend.apply({}, audio)       # audio [batch, samples]

See ``frontend`` for the streaming geometry, ``melspectrogram`` for the
log-mel input and what its 80 dB clip means for a stream, and
``third_party/speech_embedding`` for where the weights come from.
"""

from kws_jax.speech_embedding.frontend import BLOCK, SpeechEmbedding
from kws_jax.speech_embedding.melspectrogram import LogMelSpectrogram
from kws_jax.speech_embedding.network import embeddings, window_macs
from kws_jax.speech_embedding.weights import load_weights

__all__ = ['BLOCK', 'LogMelSpectrogram', 'SpeechEmbedding', 'embeddings',
           'load_weights', 'window_macs']
