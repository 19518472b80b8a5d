"""The streaming contract shared by every layer and model.

A layer maps a sequence ``x: [batch, time, *in_shape]`` to
``y: [batch, time_out, *out_shape]`` in two forms that compute the same thing:

* full-window: ``apply(params, x, train=..., rng=...)`` over the whole sequence;
* streaming: ``init_state(batch_size, in_shape)`` and
  ``step(params, state, x) -> (state, y)``. The argument order fits
  ``jax.lax.scan`` directly (see ``scan_steps``).

Blocks and ratios. A step takes any whole number ``n`` of blocks,
``x: [batch, n * block_size, *in_shape]``, and returns
``n * block_size * output_ratio`` frames; ``output_ratio`` is a ``Fraction``
(``1 / block_size`` by default: one output frame per block, as a frontend
that turns 320 samples into one feature frame, or a convolution with a time
stride of 2 and blocks of 2 frames). A step of ``n`` blocks equals ``n``
steps of one block.

Geometry. The full-window form only emits frames whose receptive field lies
inside ``x`` ("valid"), or pads the past with zeros ("causal"). A stream
started from ``init_state`` first emits ``lookback`` warm-up frames (computed
on the zero state) and from then on output ``lookback + i`` of the stream
equals output ``i`` of the full-window form:

    scan_steps(layer, params, x)[:, lookback:] == apply(params, x)

For ``time`` a multiple of ``block_size`` the full-window output has
``output_length(time) = time * output_ratio - lookback`` frames. Causal
layers have ``lookback == 0``: both forms agree frame for frame.
``receptive_field`` counts the input frames one output frame depends on
(``math.inf`` for a recurrent layer) and is not the same as ``lookback``.
A layer that cannot stream at all (a bidirectional recurrence, global
attention) says so with ``supports_step = False``.

Everything is a pure function of explicit pytrees: params and state go in and
come out; layers themselves are frozen, hashable dataclasses that only hold
configuration, so they can be closed over or passed as static jit arguments.
"""

from __future__ import annotations

import abc
import fractions
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Shape = tuple[int, ...]
Params = Any  # A pytree of arrays (nested dicts), `{}` for layers without weights.
State = Any  # A pytree of arrays, `()` for stateless layers.


class Layer(abc.ABC):
  """Base class of streaming layers; see the module docstring for the contract.

  Subclasses are frozen dataclasses with a ``name`` field. They override
  ``apply`` and, where they have weights, ``init`` and ``output_shape``;
  stateful layers also override ``init_state``, ``step`` and ``lookback``.
  """

  name: str

  # -- Geometry ---------------------------------------------------------------

  @property
  def block_size(self) -> int:
    """Input frames of one block: a step takes a whole number of blocks."""
    return 1

  @property
  def output_ratio(self) -> fractions.Fraction:
    """Output frames per input frame (one per block unless overridden)."""
    return fractions.Fraction(1, self.block_size)

  @property
  def lookback(self) -> int:
    """Warm-up output frames of a stream that have no full-window counterpart."""
    return 0

  @property
  def receptive_field(self) -> int | float:
    """Input frames one output frame depends on (``math.inf``: unbounded)."""
    return (self.lookback + 1) * self.block_size

  @property
  def supports_step(self) -> bool:
    """Whether the streaming form exists."""
    return True

  @property
  def pads_past(self) -> bool:
    """Whether the full-window form reads zeros before its first input frame.

    True for causal and semicausal time padding (and layers holding such a
    layer). Its stream reads whatever came before instead, so a stack
    refuses it after layers that emit warm-up frames (``Sequential``).
    """
    return any(child.pads_past for child in self.children())

  def output_length(self, length: int) -> int:
    """Frames of ``apply``'s output for ``length`` input frames.

    Raises:
      ValueError: if the input is too short to produce one output frame.
    """
    blocks = length // self.block_size
    out = int(blocks * self.block_size * self.output_ratio) - self.lookback
    if out < 1:
      needed = (self.lookback + 1) * self.block_size
      raise ValueError(
          f'{self.name}: needs at least {needed} input frames in time to '
          f'produce one output frame, but only {length} remain.')
    return out

  def output_shape(self, in_shape: Shape) -> Shape:
    """Per-frame output shape for a per-frame input shape (no batch/time)."""
    return tuple(in_shape)

  def step_macs(self, in_shape: Shape) -> int:
    """Multiply-accumulates of one ``step`` at batch 1 for frames of ``in_shape``.

    Counts matmul-like work only (layers with weights override it);
    element-wise ops count 0.
    """
    del in_shape
    return 0

  def children(self) -> tuple[Layer, ...]:
    """The layers this layer is made of (params and state keyed by their names)."""
    return ()

  def keras_weight_names(self) -> tuple[str, ...]:
    """Param keys in the order the equivalent Keras layer lists its weights.

    ``params_from_keras`` maps ``keras_model.weights`` through it; keys the
    layer's params lack are skipped. The default covers Conv2D, Dense,
    DepthwiseConv2D, GRU and BatchNormalization.
    """
    return KERAS_ORDER

  # -- Parameters -------------------------------------------------------------

  def init(self, rng: Array, in_shape: Shape) -> Params:
    """Returns freshly initialized parameters for frames of ``in_shape``."""
    del rng, in_shape
    return {}

  # -- Full-window form -------------------------------------------------------

  @abc.abstractmethod
  def apply(self, params: Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    """Full-window form: ``[batch, time, *in]`` -> ``[batch, time_out, *out]``."""

  def apply_train(self, params: Params, x: Array, *, rng: Array | None = None
                  ) -> tuple[Array, Params]:
    """The training form: ``(apply(params, x, train=True), updates)``.

    ``updates`` holds new values of non-trainable parameters (BatchNorm's
    running statistics), shaped as the part of ``params`` they replace;
    ``{}`` for layers without any. The train step merges them into the
    params after the optimizer's update (``merge_updates``).
    """
    return self.apply(params, x, train=True, rng=rng), {}

  # -- Streaming form ---------------------------------------------------------

  def init_state(self, batch_size: int, in_shape: Shape,
                 dtype: Any = jnp.float32) -> State:
    """Zero streaming state for ``batch_size`` streams of ``in_shape`` frames."""
    del batch_size, in_shape, dtype
    return ()

  def step(self, params: Params, state: State,
           frame: Array) -> tuple[State, Array]:
    """``n`` blocks ``[batch, n * block_size, *in]`` -> ``[batch, n * block_size * output_ratio, *out]``.

    The default suits stateless, frame-wise layers (``lookback == 0``,
    ``block_size == 1``): it applies the full-window form to the frames.
    """
    return state, self.apply(params, frame)


def check_frame(layer_name: str, frame: Array, expected_shape: Sequence[int],
                expected_dtype: Any = None, what: str = 'frame') -> None:
  """Raises a ValueError naming the layer if ``frame`` has the wrong shape or dtype.

  Shapes are static under ``jit``, so this check costs nothing at run time.
  """
  expected_shape = tuple(int(d) for d in expected_shape)
  if tuple(frame.shape) != expected_shape:
    raise ValueError(
        f'{layer_name}: {what} has shape {tuple(frame.shape)}, expected '
        f'{expected_shape}.')
  if expected_dtype is not None and frame.dtype != jnp.dtype(expected_dtype):
    raise ValueError(
        f'{layer_name}: {what} has dtype {frame.dtype}, expected '
        f'{jnp.dtype(expected_dtype)}.')


def check_floating(layer_name: str, x: Array, what: str = 'input') -> None:
  """Raises a ValueError naming the layer unless ``x`` has a floating dtype."""
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
        f'{layer_name}: {what} has dtype {x.dtype}, expected a floating dtype '
        '(for example float32).')


def check_rank(layer_name: str, x: Array, in_rank: int, what: str = 'input'
               ) -> None:
  """Raises unless ``x`` is ``[batch, time, *frame]`` with ``in_rank`` frame axes."""
  if x.ndim != in_rank + 2:
    raise ValueError(
        f'{layer_name}: {what} has shape {tuple(x.shape)} (rank {x.ndim}), '
        f'expected rank {in_rank + 2}: [batch, time] plus {in_rank} feature '
        'axes.')


def check_positive_int(layer_name: str, field: str, value: Any) -> None:
  """Raises a ValueError naming the layer unless ``value`` is an int >= 1."""
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(
        f'{layer_name}: {field} is {value!r}, expected a positive int.')


def check_choice(layer_name: str, field: str, value: Any,
                 choices: Sequence[Any]) -> None:
  """Raises a ValueError naming the layer unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise ValueError(
        f'{layer_name}: {field} is {value!r}, expected one of '
        f'{", ".join(map(repr, choices))}.')


def check_blocks(layer_name: str, x: Array, block_size: int,
                 what: str = 'input') -> int:
  """The number of whole blocks in ``x [batch, time, ...]``; raises naming the layer."""
  time = x.shape[1] if x.ndim >= 2 else 0
  if x.ndim < 2 or time < block_size or time % block_size:
    raise ValueError(
        f'{layer_name}: {what} has shape {tuple(x.shape)}, expected [batch, '
        f'n * {block_size}, ...]: a step takes whole blocks of {block_size} '
        'frames.')
  return time // block_size


def scan_steps(layer: Layer, params: Params, x: Array,
               state: State | None = None, blocks_per_step: int = 1
               ) -> tuple[State, Array]:
  """Streams ``x`` through ``layer.step`` with ``jax.lax.scan``.

  Args:
    layer: any object following the streaming contract.
    params: the layer's parameters.
    x: ``[batch, time, *in_shape]``, ``time`` a multiple of
      ``layer.block_size * blocks_per_step``.
    state: initial state; zeros from ``init_state`` when omitted.
    blocks_per_step: blocks each step takes.

  Returns:
    ``(final_state, y)`` with ``y: [batch, time * output_ratio, *out_shape]``.
  """
  batch, time = x.shape[:2]
  chunk = layer.block_size * blocks_per_step
  if time % chunk:
    raise ValueError(
        f'{layer.name}: stream length {time} is not a multiple of the '
        f'{chunk} frames one step takes ({blocks_per_step} block(s) of '
        f'{layer.block_size}).')
  if state is None:
    state = layer.init_state(batch, tuple(x.shape[2:]), x.dtype)
  chunks = x.reshape(batch, time // chunk, chunk, *x.shape[2:])
  chunks = jnp.moveaxis(chunks, 1, 0)  # [steps, batch, chunk, ...]
  state, ys = jax.lax.scan(lambda s, f: layer.step(params, s, f), state, chunks)
  ys = jnp.moveaxis(ys, 0, 1)  # [batch, steps, outputs per step, ...]
  return state, ys.reshape(batch, ys.shape[1] * ys.shape[2], *ys.shape[3:])


def shift_in(buffer: Array, frame: Array) -> Array:
  """Appends ``frame`` to a time buffer and drops as many of its oldest frames.

  ``buffer: [batch, n, ...]``, ``frame: [batch, k, ...]`` with ``k <= n``.
  Concatenating before slicing lets int8 TFLite exports keep the whole
  buffer shift in float (see ``export.tflite.state_node_names``).
  """
  return jnp.concatenate([buffer, frame], axis=1)[:, frame.shape[1]:]


# The order in which Keras layers list their weights (``layer.weights``).
KERAS_ORDER = ('depthwise_kernel', 'kernel', 'recurrent_kernel', 'bias',
               'gamma', 'beta', 'moving_mean', 'moving_variance')

# Parameters the optimizer and the L2 term leave alone: statistics that the
# training form updates itself (Keras' names for BatchNorm's; the ranges of
# fake quantization, kws_jax.layers.quantize).
NON_TRAINABLE = ('moving_mean', 'moving_variance', 'quant_range')


def trainable_mask(params: Params) -> Any:
  """A pytree of bools like ``params``: False for ``NON_TRAINABLE`` leaves."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) not in NON_TRAINABLE,
      params)


def merge_updates(params: Params, updates: Params) -> Params:
  """``params`` with the leaves in ``updates`` (a sub-tree of dicts) replaced."""
  if not isinstance(updates, dict):
    return updates  # a leaf: its new value
  merged = dict(params)
  for key, value in updates.items():
    if key not in params:
      raise ValueError(f'update of {key!r}, which the params do not have '
                       f'(they have {", ".join(map(repr, params))}).')
    merged[key] = merge_updates(params[key], value)
  return merged


def count_params(params: Params) -> int:
  """Number of scalars in a parameter pytree."""
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
