"""Google's speech embedding as a streaming frontend: audio in, embeddings out.

``SpeechEmbedding`` chains openWakeWord's log-mel spectrogram
(``LogMelSpectrogram``: 10 ms frames of 32 bands) and the embedding network
(``network.embeddings``: 96 values from 76 frames, every 8 frames). It is an
ordinary kws_jax layer, so a model is ``Sequential(SpeechEmbedding(), *head)``
and trains, streams and exports like any other.

Geometry, at 16 kHz:
  * a step takes ``block_size = 1280`` samples (80 ms) and returns one
    embedding ``[batch, 1, 96]``;
  * embedding ``k`` of the full-window form covers mel frames ``[8k, 8k+76)``,
    i.e. samples ``[1280 k + 56, 1280 k + 12456)`` (775 ms);
  * step ``s`` of a stream emits embedding ``s - 9`` (``lookback = 9``: its
    last mel frame ends 264 samples before the step's block does);
  * ``apply`` on ``N`` samples uses the first ``N // 1280`` whole blocks (what
    a stream has consumed) and returns ``N // 1280 - 9`` embeddings.

Streaming state: ``{'audio': [batch, 584], 'mel': [batch, 68, 32]}``: the
samples the next step's first mel frame starts in, and the 68 frames the next
embedding shares with this one. A step computes 8 new mel frames and runs the
network on the 76 buffered frames (42 M multiply-accumulates).

The weights are frozen constants (not params): the layer has no trainable
parameters, like the MFCC frontend, and an export bakes them in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base
from kws_jax.speech_embedding import network
from kws_jax.speech_embedding import weights as weights_lib
from kws_jax.speech_embedding.melspectrogram import (
    HOP, SAMPLE_RATE, WINDOW, WINDOW_OFFSET, LogMelSpectrogram)

Array = jax.Array

BLOCK = network.HOP_FRAMES * HOP  # 1280 samples per embedding step
# Mel frames of the previous window that the next one reuses.
KEPT_FRAMES = network.WINDOW_FRAMES - network.HOP_FRAMES


@dataclasses.dataclass(frozen=True)
class SpeechEmbedding(base.Layer):
  """Audio ``[batch, samples]`` in [-1, 1] -> embeddings ``[batch, E, 96]``.

  Attributes:
    name: layer name; the model's streaming state is stored under it.
    clip_db, dft, max_weight_block, weights_path: of the log-mel
      spectrogram (see ``LogMelSpectrogram``).
    sample_rate: must be 16000 (the network was trained at 16 kHz).
  """

  name: str = 'frontend'
  clip_db: float = 80.0
  dft: str = 'fft'
  max_weight_block: int = 0
  weights_path: str | None = None
  sample_rate: int = SAMPLE_RATE

  def __post_init__(self):
    if self.sample_rate != SAMPLE_RATE:
      raise ValueError(
          f'{self.name}: sample_rate is {self.sample_rate}, expected '
          f'{SAMPLE_RATE}: the speech embedding was trained on 16 kHz audio.')
    _ = self.mel  # building it checks the log-mel settings

  @property
  def mel(self) -> LogMelSpectrogram:
    return LogMelSpectrogram('melspectrogram', self.clip_db, self.dft,
                             self.max_weight_block, self.weights_path)

  @property
  def weights(self) -> dict[str, Any]:
    return weights_lib.load_weights(self.weights_path)

  # -- Geometry ---------------------------------------------------------------

  @property
  def block_size(self) -> int:
    return BLOCK

  @property
  def state_samples(self) -> int:
    """Samples before a block where the first mel frame of its step starts.

    Step ``s`` computes frames ``8 (s - 9) + 68 ... + 75``; the first starts
    at sample ``160 * (8 (s - 9) + 68) + 56 = 1280 s - 584``.
    """
    return BLOCK * self.lookback - HOP * KEPT_FRAMES - WINDOW_OFFSET

  @property
  def lookback(self) -> int:
    # Embedding k ends at sample 1280 k + 12456; step s has read 1280 (s + 1).
    span = HOP * (network.WINDOW_FRAMES - 1) + WINDOW_OFFSET + WINDOW
    return -(-span // BLOCK) - 1

  @property
  def num_features(self) -> int:
    return network.EMBEDDING_SIZE

  @property
  def window_stride_ms(self) -> float:
    return 1000.0 * BLOCK / SAMPLE_RATE

  @property
  def window_size_ms(self) -> float:
    span = HOP * (network.WINDOW_FRAMES - 1) + WINDOW
    return 1000.0 * span / SAMPLE_RATE

  @property
  def float_scopes(self) -> tuple[str, ...]:
    """Scopes a full-int8 export keeps in float: this whole layer.

    The spectrum and log have no int8 kernels, and the embedding network
    does not survive int8 activations: calibrated per-tensor int8 (or even
    int16) activations through its 20 layers leave embeddings with a cosine
    similarity of 0.80 (0.95) to the float ones (RESULTS.md). Its weights
    quantize well (dynamic range: 0.9994), so the dynamic-range export is
    the small form of these models; the int8 export quantizes the head.
    """
    return (self.name,)

  def output_length(self, length: int) -> int:
    out = length // BLOCK - self.lookback
    if out < 1:
      raise ValueError(
          f'{self.name}: audio has {length} samples, expected at least '
          f'{(self.lookback + 1) * BLOCK} (one embedding: '
          f'{self.lookback + 1} blocks of {BLOCK}).')
    return out

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    self.mel.output_shape(in_shape)
    return (network.EMBEDDING_SIZE,)

  def step_macs(self, in_shape: base.Shape = ()) -> int:
    return (network.HOP_FRAMES * self.mel.step_macs(in_shape) +
            network.window_macs(self.weights))

  # -- Forms ------------------------------------------------------------------

  def apply(self, params: base.Params, audio: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    """``audio [batch, N]`` -> ``[batch, N // 1280 - 9, 96]``."""
    del params, train, rng
    base.check_rank(self.name, audio, 0, 'audio')
    base.check_floating(self.name, audio, 'audio')
    embeddings = self.output_length(audio.shape[1])
    frames = network.WINDOW_FRAMES + network.HOP_FRAMES * (embeddings - 1)
    mel = self.mel
    with jax.named_scope(mel.name):
      features = mel.frame_features(mel.frames(audio, frames))
    return network.embeddings(self.weights, features)

  def init_state(self, batch_size: int, in_shape: base.Shape = (),
                 dtype: Any = jnp.float32) -> base.State:
    self.output_shape(in_shape)
    return {'audio': jnp.zeros((batch_size, self.state_samples), dtype),
            'mel': jnp.zeros((batch_size, KEPT_FRAMES, network.MEL_BINS),
                             dtype)}

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    """``frame [batch, n * 1280]`` new samples -> ``n`` embeddings ``[batch, n, 96]``."""
    del params
    audio_state, mel_state = state['audio'], state['mel']
    blocks = base.check_blocks(self.name, frame, BLOCK,
                               'audio block')
    base.check_frame(self.name, frame, (audio_state.shape[0], frame.shape[1]),
                     audio_state.dtype, what='audio block')
    audio = jnp.concatenate([audio_state, frame], axis=1)
    mel = self.mel
    new_frames = network.HOP_FRAMES * blocks
    with jax.named_scope(mel.name):
      new = mel.frame_features(mel.frames(audio, new_frames, offset=0))
    frames = jnp.concatenate([mel_state, new], axis=1)
    embedding = network.embeddings(self.weights, frames)
    return {'audio': audio[:, frame.shape[1]:],
            'mel': frames[:, new_frames:]}, embedding
