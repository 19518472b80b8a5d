"""A streaming network bound to its input: what is trained, streamed and exported."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base
from kws_jax.layers.sequential import Sequential
from kws_jax.micro_frontend import MicroFrontend

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Model(base.Layer):
  """A ``Sequential`` network with a fixed input and label count.

  Inputs are raw audio ``[batch, samples]`` when the network starts with the
  frontend (``preprocess='raw'``; a step then takes ``[batch, block]`` samples:
  320 for the MFCC frontend, 1280 for the speech embedding)
  or features ``[batch, frames, features]`` of the frontend, computed outside
  the model (``preprocess='mfcc'``, or ``'micro'`` for TFLM's micro frontend;
  a step takes ``[batch, 1, features]``). Outputs are logits ``[batch, time_out,
  label_count]``: one clip of ``clip_length`` input frames gives exactly one
  output frame, and a longer input gives the logits of every clip-long window
  (one per input step), which is what streaming computes.

  The model checks itself when built, so a configuration whose kernels do not
  fit the input fails here naming the layer instead of deep inside XLA.

  Attributes:
    name: architecture name, e.g. 'cnn'.
    net: the layers, frontend included for raw audio.
    input_shape: shape of one input frame: ``()`` for audio, ``(features,)``.
    clip_length: input frames (samples for audio) of one training clip.
    label_count: number of output classes.
    frontend: the feature frontend (MFCC, micro or speech embedding,
      without trainable parameters), inside ``net`` for raw audio and
      applied by the data pipeline for precomputed features.
  """

  name: str
  net: Sequential
  input_shape: base.Shape
  clip_length: int
  label_count: int
  frontend: base.Layer

  def __post_init__(self):
    output_shape = self.net.output_shape(self.input_shape)
    if output_shape != (self.label_count,):
      raise ValueError(f'{self.name}: the network outputs frames of shape '
                       f'{output_shape}, expected ({self.label_count},) logits.')
    windows = self.net.output_length(self.clip_length)
    if windows != 1:
      raise ValueError(
          f'{self.name}: a clip of {self.clip_length} input frames gives '
          f'{windows} output frames, expected 1: the receptive field is '
          f'{self.receptive_field} frames.')

  @property
  def preprocess(self) -> str:
    """'raw' when the model takes audio; else the frontend whose features it
    takes: 'micro' (``MicroFrontend``) or 'mfcc'."""
    if self.input_shape == ():
      return 'raw'
    return 'micro' if isinstance(self.frontend, MicroFrontend) else 'mfcc'

  @property
  def body(self) -> Sequential:
    """The layers after the frontend: features ``[batch, frames, F]`` -> logits.

    Training computes ``model.frontend.apply({}, audio)`` (where feature
    augmentation happens) and then ``model.body.apply(params, features)``,
    which equals ``model.apply`` for raw-audio models and takes the same
    params.
    """
    if self.preprocess != 'raw':
      return self.net
    return Sequential(self.name, self.net.layers[1:])

  @functools.cached_property
  def audio_model(self) -> 'Model':
    """This model on raw audio: itself, or the frontend followed by ``net``.

    Same params; what detection and streaming evaluation step on audio
    blocks, whatever the model takes.
    """
    if self.preprocess == 'raw':
      return self
    # The fewest whole strides of audio whose frames make one clip.
    window = self.frontend.window
    samples = (self.clip_length - 1) * window.stride + window.end + 1
    samples = -(-samples // window.stride) * window.stride
    return Model(name=self.name,
                 net=Sequential(self.net.name, (self.frontend,
                                                *self.net.layers)),
                 input_shape=(), clip_length=samples,
                 label_count=self.label_count, frontend=self.frontend)

  def inputs_from_audio(self, audio: Array) -> Array:
    """What ``apply`` takes for clips ``audio [batch, samples]``: the audio
    itself, or its frontend features."""
    if self.preprocess == 'raw':
      return audio
    return self.frontend.apply({}, audio)

  @property
  def step_ms(self) -> float:
    """Milliseconds of audio one streaming step takes (one block)."""
    if self.preprocess == 'raw':
      return 1000.0 * self.block_size / self.frontend.sample_rate
    return self.block_size * self.frontend.window_stride_ms

  @property
  def receptive_field(self) -> int | float:
    """Input frames (samples for audio) that one output frame depends on."""
    return self.net.receptive_field

  @property
  def output_ratio(self):
    return self.net.output_ratio

  @property
  def supports_step(self) -> bool:
    return self.net.supports_step

  def children(self) -> tuple[base.Layer, ...]:
    return (self.net,)

  # -- The contract, delegated to the network ---------------------------------

  @property
  def block_size(self) -> int:
    return self.net.block_size

  @property
  def lookback(self) -> int:
    return self.net.lookback

  def output_length(self, length: int) -> int:
    return self.net.output_length(length)

  def output_shape(self, in_shape: base.Shape | None = None) -> base.Shape:
    self._check_in_shape(in_shape)
    return (self.label_count,)

  def init(self, rng: Array, in_shape: base.Shape | None = None
           ) -> base.Params:
    self._check_in_shape(in_shape)
    return self.net.init(rng, self.input_shape)

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    """``[batch, time, *input_shape]`` -> logits ``[batch, time_out, labels]``."""
    self._check_input(params, x)
    return self.net.apply(params, x, train=train, rng=rng)

  def _check_input(self, params: base.Params, x: Array) -> None:
    self._check_params(params)
    expected = f'[batch, time >= {self.clip_length}, *{self.input_shape}]'
    if x.ndim != 2 + len(self.input_shape) or x.shape[2:] != self.input_shape:
      raise ValueError(f'{self.name}: input has shape {tuple(x.shape)}, '
                       f'expected {expected}.')
    needed = min(self.receptive_field, self.clip_length)
    if x.shape[1] < needed:
      raise ValueError(
          f'{self.name}: input has {x.shape[1]} frames in time, expected at '
          f'least {needed} (one clip, or the receptive field if shorter).')
    base.check_floating(self.name, x)

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    """The training form: ``(logits [batch, time_out, labels], updates)``."""
    self._check_input(params, x)
    return self.net.apply_train(params, x, rng=rng)

  def logits(self, params: base.Params, x: Array, *, train: bool = False,
             rng: Array | None = None) -> Array:
    """Logits ``[batch, labels]`` of the last clip-long window of ``x``."""
    return self.apply(params, x, train=train, rng=rng)[:, -1]

  def init_state(self, batch_size: int, in_shape: base.Shape | None = None,
                 dtype: Any = jnp.float32) -> base.State:
    self._check_in_shape(in_shape)
    return self.net.init_state(batch_size, self.input_shape, dtype)

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    """``n`` blocks ``[batch, n * block_size, *input_shape]`` -> logits ``[batch, n, labels]``.

    Output ``i`` holds the logits of the clip-long window ending with block
    ``i``; a step of ``n`` blocks equals ``n`` steps of one.
    """
    self._check_params(params)
    if not self.supports_step:
      raise ValueError(f'{self.name}: this model cannot stream (a layer '
                       'needs the whole clip); use apply on whole clips.')
    frame_shape = (self.block_size, *self.input_shape)
    if (frame.ndim != 1 + len(frame_shape) or frame.shape[2:] !=
        frame_shape[1:] or not frame.shape[1] or
        frame.shape[1] % self.block_size):
      raise ValueError(
          f'{self.name}: input frame has shape {tuple(frame.shape)}, expected '
          f'[batch, {", ".join(map(str, frame_shape))}] or n blocks [batch, '
          f'n * {self.block_size}{"".join(f", {d}" for d in frame_shape[1:])}]'
          ' (a batch axis first: frame[None] for one stream).')
    batch = frame.shape[0]
    base.check_floating(self.name, frame, 'input frame')
    self.check_state(state, batch, frame.dtype)
    return self.net.step(params, state, frame)

  def check_state(self, state: base.State, batch_size: int,
                  dtype: Any = jnp.float32) -> None:
    """Raises a ValueError listing every state entry of the wrong shape or dtype."""
    expected = jax.eval_shape(
        lambda: self.init_state(batch_size, dtype=dtype))
    expected_specs = _specs(expected)
    try:
      actual_specs = _specs(state)
    except (AttributeError, TypeError):
      actual_specs = None
    if actual_specs == expected_specs:
      return
    if not isinstance(state, dict) or actual_specs is None:
      raise ValueError(
          f'{self.name}: state must be a dict of arrays {expected_specs}, got '
          f'{type(state).__name__}.')
    problems = []
    for key in sorted(set(expected_specs) | set(actual_specs)):
      want, got = expected_specs.get(key), actual_specs.get(key)
      if want != got:
        problems.append(f'{key}: expected {_describe(want)}, got '
                        f'{_describe(got)}')
    raise ValueError(f'{self.name}: streaming state does not match the model '
                     f'(batch {batch_size}): ' + '; '.join(problems) + '.')

  def _check_params(self, params: Any) -> None:
    if not isinstance(params, Mapping):
      raise ValueError(
          f'{self.name}: params is {type(params).__name__}, expected the dict '
          'of arrays that model.init or kws_jax.train.load_run returns.')

  def _check_in_shape(self, in_shape: base.Shape | None) -> None:
    if in_shape is not None and tuple(in_shape) != self.input_shape:
      raise ValueError(f'{self.name}: input frames have shape '
                       f'{tuple(in_shape)}, expected {self.input_shape}.')


def _specs(tree: Any) -> Any:
  return jax.tree.map(lambda a: (tuple(a.shape), str(jnp.dtype(a.dtype))), tree)


def _describe(spec: Any) -> str:
  if spec is None:
    return 'no entry'
  if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str):
    return f'{spec[0]} {spec[1]}'  # (shape, dtype) of one array
  return str(spec)
