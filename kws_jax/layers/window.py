"""The time geometry of a window op (convolution, pooling, flatten) and how it streams.

A window op reads ``span`` consecutive input frames and moves by ``stride``
frames per output frame. ``padding`` places the windows in time:

* ``'valid'``: output ``i`` reads frames ``[i s, i s + span)``; no padding.
* ``'causal'``: ``span - 1`` zero frames on the left; output ``i`` ends on
  frame ``i s``, the first frame of block ``i`` (Keras' causal padding).
* ``'semicausal'``: ``span - stride`` zero frames on the left (or, for a
  window shorter than its stride, ``stride - span`` frames cropped); output
  ``i`` ends on frame ``i s + s - 1``, the last frame of block ``i``.

Output ``i`` ends on input frame ``i s + end`` (``end``: ``span - 1``,
``0`` or ``s - 1``). A stream consumes whole blocks of ``s`` frames and emits
one output per block, as soon as the block has arrived: stream output ``j``
is full-window output ``j - lookback`` with
``lookback = ceil((end + 1) / s) - 1`` (``ceil(span / s) - 1`` for valid,
0 for causal and semicausal). It ends ``delay = end - lookback s`` frames
after the start of its block, so the stream keeps the last
``state_frames = max(0, span - 1 - delay)`` input frames as its state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

PADDINGS = ('valid', 'causal', 'semicausal')


@dataclasses.dataclass(frozen=True)
class TimeWindow:
  """``span`` frames every ``stride`` frames, placed by ``padding``."""

  span: int
  stride: int = 1
  padding: str = 'valid'

  @property
  def end(self) -> int:
    """Output ``i`` of the full-window form ends on input frame ``i s + end``."""
    return {'valid': self.span - 1, 'causal': 0,
            'semicausal': self.stride - 1}[self.padding]

  @property
  def left_pad(self) -> int:
    """Zero frames before the input in the full-window form (< 0: cropped)."""
    return self.span - 1 - self.end

  @property
  def lookback(self) -> int:
    return -(-(self.end + 1) // self.stride) - 1

  @property
  def delay(self) -> int:
    """Where a stream output ends in its block (0 = the block's first frame)."""
    return self.end - self.lookback * self.stride

  @property
  def state_frames(self) -> int:
    return max(0, self.span - 1 - self.delay)

  def output_length(self, length: int) -> int:
    """Outputs of the full-window form on ``length`` frames (may be < 1)."""
    return (length - 1 - self.end) // self.stride + 1

  def full_window(self, x: Array) -> Array:
    """``x [batch, time, ...]`` padded or cropped on the left for a valid op."""
    pad = self.left_pad
    if pad > 0:
      return jnp.pad(x, ((0, 0), (pad, 0)) + ((0, 0),) * (x.ndim - 2))
    return x[:, -pad:]

  def init_state(self, batch_size: int, frame_shape: tuple[int, ...],
                 dtype: Any) -> Array | tuple[()]:
    if not self.state_frames:
      return ()
    return jnp.zeros((batch_size, self.state_frames, *frame_shape), dtype)

  def stream(self, state: Array | tuple[()], x: Array) -> tuple[Any, Array]:
    """The input of a valid op for ``n`` blocks ``x [batch, n s, ...]``.

    Returns ``(new_state, window_input)``: a valid op with stride ``s`` over
    ``window_input`` (``(n - 1) s + span`` frames) gives the ``n`` stream
    outputs of these blocks.
    """
    buffer = x if isinstance(state, tuple) else jnp.concatenate([state, x], 1)
    blocks = x.shape[1] // self.stride
    start = self.state_frames + self.delay - self.span + 1
    window_input = buffer[:, start:start + (blocks - 1) * self.stride +
                          self.span]
    new_state = (() if isinstance(state, tuple) else
                 buffer[:, buffer.shape[1] - self.state_frames:])
    return new_state, window_input
