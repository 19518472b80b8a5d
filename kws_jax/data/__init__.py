"""The data stage: Speech Commands, augmentation, batches, synthetic speech.

No TensorFlow and no JAX here: numpy, soxr, tqdm and eSpeak NG (through ctypes).

    dataset = load_speech_commands('data/synth')
    for batch in train_batches(dataset, 100, seed=0, start_step=step):
      ...  # batch['audio'] [100, 16000], batch['label'], batch['weight']

The modules with a command line are imported by name, so that
`python -m kws_jax.data.<module>` runs them cleanly:
  kws_jax.data.synth         synthesize_dataset: eSpeak NG keyword dataset;
  kws_jax.data.synth_stream  synthesize_stream: long stream + ground truth;
  kws_jax.data.render_acoustics  rooms, noise and channels over streams and
                             datasets (evaluation in rooms never heard);
  kws_jax.data.download      download_speech_commands: v0.01 / v0.02.
kws_jax.data.device_augment (the training augmentation as jitted JAX
functions, for the train step) imports JAX and is not imported here.
"""

from kws_jax.data.audio import (
    CLIP_SAMPLES, SAMPLE_RATE, AudioConversionWarning, AudioFileError,
    read_clip, read_wav, write_wav,
)
from kws_jax.data.augment import (
    AudioAugmentation, SpecAugment, augment_batch, spec_augment,
)
from kws_jax.data import acoustics
from kws_jax.data import windows
from kws_jax.data.pipeline import eval_batches, num_eval_batches, train_batches
from kws_jax.data.speech_commands import (
    DEFAULT_WANTED_WORDS, SILENCE_INDEX, SILENCE_LABEL, UNKNOWN_INDEX,
    UNKNOWN_LABEL, SpeechCommands, load_speech_commands, which_set,
)

__all__ = [
    'AudioAugmentation', 'AudioConversionWarning', 'acoustics', 'AudioFileError',
    'CLIP_SAMPLES', 'DEFAULT_WANTED_WORDS', 'SAMPLE_RATE', 'SILENCE_INDEX',
    'SILENCE_LABEL', 'SpecAugment', 'SpeechCommands', 'UNKNOWN_INDEX',
    'UNKNOWN_LABEL', 'augment_batch', 'eval_batches', 'load_speech_commands',
    'num_eval_batches', 'read_clip', 'read_wav', 'spec_augment',
    'train_batches', 'which_set', 'windows', 'write_wav',
]
