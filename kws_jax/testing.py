"""One reusable check of the streaming contract, for every layer and model.

    report = check_streaming_contract(layer, params, x)

runs the full-window form and a ``lax.scan`` over ``step`` from
``init_state`` and raises an ``AssertionError`` that says what broke unless:

* the full-window output has ``output_length(time)`` frames of
  ``output_shape(in_shape)``, and the stream ``time * output_ratio`` frames;
* after the ``lookback`` warm-up frames the stream equals the full-window
  output (max abs diff <= ``atol``), jitted and eagerly;
* steps of several blocks give what steps of one block give, and a stream
  split into two calls (the state carried over) what one call gives;
* a step keeps the state's tree structure, shapes and dtypes;
* NaN frames at the end of the input leave every earlier output of the
  full window untouched (nothing reads the future), and NaN rows of the
  batch leave the other rows untouched (rows do not leak into each other);
* the training form (``apply_train``) gives full-window shapes and updates
  only leaves the params have, with their shapes;
* (``check_grads``) gradients with respect to the params agree between the
  forms (in float64), so a model may be trained through either of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.layers import base


@dataclasses.dataclass(frozen=True)
class ContractReport:
  """Measured agreement between the two forms."""

  output_diff: float  # max |stream[:, lookback:] - full|
  eager_diff: float  # max |eager steps - jitted steps| over the first frames
  grad_diff: float | None  # max |grad_stream - grad_full| / max |grad_full|
  full_shape: tuple[int, ...]
  stream_shape: tuple[int, ...]


def check_streaming_contract(layer: Any, params: base.Params, x: jax.Array, *,
                             atol: float = 1e-5, check_grads: bool = True,
                             eager_steps: int = 1) -> ContractReport:
  """Asserts that ``layer`` streams exactly what its full-window form computes.

  Args:
    layer: a ``kws_jax.layers.Layer`` (or a model following the contract).
    params: its parameters.
    x: ``[batch, time, *in_shape]`` with ``batch >= 2`` and ``time`` a
      multiple of ``layer.block_size``.
    atol: tolerance on outputs and gradients (absolute, float32 by default).
    check_grads: also compare parameter gradients of the two forms.
    eager_steps: steps also run without ``jit`` and compared.

  Returns:
    A ``ContractReport`` with the measured differences.
  """
  batch, time = x.shape[:2]
  in_shape = tuple(x.shape[2:])
  block, lookback = layer.block_size, layer.lookback
  ratio = layer.output_ratio
  assert batch >= 2, f'use batch >= 2 to check batch independence, got {batch}'
  assert time % block == 0, (
      f'time {time} must be a multiple of block_size {block}')
  assert layer.supports_step, f'{layer.name}: supports_step is False'

  def full(p, inputs):
    return layer.apply(p, inputs)

  def stream(p, inputs):
    return base.scan_steps(layer, p, inputs)

  full_jit, stream_jit = jax.jit(full), jax.jit(stream)

  # Shapes of both forms.
  out_shape = tuple(layer.output_shape(in_shape))
  y_full = full_jit(params, x)
  expected_full = (batch, layer.output_length(time), *out_shape)
  assert y_full.shape == expected_full, (
      f'{layer.name}: full-window output {y_full.shape}, expected '
      f'{expected_full}')
  state0 = layer.init_state(batch, in_shape, x.dtype)
  state1, y_stream = stream_jit(params, x)
  stream_frames = time * ratio
  assert stream_frames.denominator == 1, (
      f'{layer.name}: {time} frames at output_ratio {ratio} is not a whole '
      'number of output frames')
  expected_stream = (batch, int(stream_frames), *out_shape)
  assert y_stream.shape == expected_stream, (
      f'{layer.name}: streamed output {y_stream.shape}, expected '
      f'{expected_stream}')
  assert int(stream_frames) - lookback == expected_full[1], (
      f'{layer.name}: {int(stream_frames)} streamed frames minus lookback '
      f'{lookback} != {expected_full[1]} full-window frames')

  # Values.
  output_diff = _max_diff(y_stream[:, lookback:], y_full)
  assert output_diff <= atol, (
      f'{layer.name}: streamed output differs from the full-window output by '
      f'{output_diff:.3g} > {atol:g}')

  # State structure, shapes and dtypes are kept by a step.
  assert _specs(state0) == _specs(state1), (
      f'{layer.name}: a step changed the state from {_specs(state0)} to '
      f'{_specs(state1)}')

  # Eager steps equal the jitted scan.
  state, eager = state0, []
  for i in range(min(eager_steps, time // block)):
    state, out = layer.step(params, state, x[:, i * block:(i + 1) * block])
    eager.append(out)
  eager_diff = _max_diff(jnp.concatenate(eager, axis=1),
                         y_stream[:, :sum(e.shape[1] for e in eager)])
  assert eager_diff <= atol, (
      f'{layer.name}: eager steps differ from jitted steps by {eager_diff:.3g}')

  # Steps of several blocks (three where the input holds a multiple of
  # three, else two), and a stream split into two calls of equal length
  # where it can be (one compiled function for both halves).
  steps = time // block
  blocks = next((n for n in (3, 2) if steps % n == 0), None)
  if blocks is not None:
    _, y_blocks = jax.jit(lambda p, inputs: base.scan_steps(
        layer, p, inputs, blocks_per_step=blocks))(params, x)
    diff = _max_diff(y_blocks, y_stream)
    assert diff <= atol, (
        f'{layer.name}: steps of {blocks} blocks differ from steps of one '
        f'by {diff:.3g}')
  if steps >= 2:
    cut = (steps // 2) * block
    resume = jax.jit(lambda p, inputs, s: base.scan_steps(layer, p, inputs, s))
    state_half, y_first = resume(params, x[:, :cut], state0)
    _, y_second = resume(params, x[:, cut:], state_half)
    diff = _max_diff(jnp.concatenate([y_first, y_second], axis=1), y_stream)
    assert diff <= atol, (
        f'{layer.name}: a stream resumed from its state differs from one '
        f'call by {diff:.3g}')

  # The full window reads nothing of the future: NaN in the last block
  # changes none of the outputs that the frames before it make. (A scan of
  # steps cannot read ahead, so only the full window needs this check.)
  kept = layer.output_length(time - block) if steps >= 2 else 0
  if kept > 0:
    y_tail = full_jit(params, x.at[:, time - block:].set(jnp.nan))
    diff = _max_diff(y_tail[:, :kept], y_full[:, :kept])
  else:  # one block holds the whole receptive field: NaN blocks after it
    x_later = jnp.concatenate(
        [x, jnp.full_like(x[:, :block], jnp.nan)], axis=1)
    diff = _max_diff(full_jit(params, x_later)[:, :y_full.shape[1]], y_full)
  assert diff <= atol, (
      f'{layer.name}: the full-window output depends on later frames '
      f'(differs by {diff:.3g} when NaN frames follow)')

  # Batch rows are independent: garbage (NaN) in row 0 leaves the others
  # unchanged.
  x_other = x.at[0].set(jnp.nan)
  assert _max_diff(full_jit(params, x_other)[1:], y_full[1:]) == 0.0, (
      f'{layer.name}: full-window output of a row depends on another row')
  assert _max_diff(stream_jit(params, x_other)[1][1:],
                   y_stream[1:]) == 0.0, (
                       f'{layer.name}: a streamed row depends on another row')

  # The training form: full-window shapes, and updates only of params.
  y_train, updates = jax.jit(lambda p, inputs: layer.apply_train(
      p, inputs, rng=jax.random.key(0)))(params, x)
  assert y_train.shape == y_full.shape, (
      f'{layer.name}: training form output {y_train.shape}, expected '
      f'{y_full.shape}')
  merged = base.merge_updates(params, updates)
  assert _specs(merged) == _specs(params), (
      f'{layer.name}: training updates change the params from '
      f'{_specs(params)} to {_specs(merged)}')

  grad_diff = None
  if check_grads and jax.tree.leaves(params):
    grad_diff = _gradient_diff(full, stream, params, x, lookback)
    assert grad_diff <= atol, (
        f'{layer.name}: parameter gradients of the two forms differ by '
        f'{grad_diff:.3g} (relative to the largest gradient)')

  return ContractReport(
      output_diff=output_diff, eager_diff=eager_diff, grad_diff=grad_diff,
      full_shape=tuple(y_full.shape), stream_shape=tuple(y_stream.shape))


def _gradient_diff(full, stream, params, x, lookback) -> float:
  """Max difference of parameter gradients, relative to the largest gradient.

  Computed in float64: at float32 rounding a ReLU whose input is within 1e-8
  of zero may switch sides between two mathematically equal computations,
  which changes a gradient entry by a whole unit's contribution.
  """
  with jax.enable_x64(True):
    params64, x64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                                 (params, x))
    out_shape = jax.eval_shape(full, params64, x64).shape
    weights = jax.random.normal(jax.random.key(0), out_shape, jnp.float64)

    @jax.jit
    def both_grads(p):
      grad_full = jax.grad(lambda q: jnp.sum(full(q, x64) * weights))(p)
      grad_stream = jax.grad(
          lambda q: jnp.sum(stream(q, x64)[1][:, lookback:] * weights))(p)
      return grad_full, grad_stream

    grad_full, grad_stream = both_grads(params64)
    scale = max(1.0, max(float(jnp.max(jnp.abs(g)))
                         for g in jax.tree.leaves(grad_full)))
    return max(_max_diff(a, b) for a, b in zip(
        jax.tree.leaves(grad_full), jax.tree.leaves(grad_stream))) / scale


def _max_diff(a: jax.Array, b: jax.Array) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape, f'shapes differ: {a.shape} vs {b.shape}'
  return float(np.max(np.abs(a - b))) if a.size else 0.0


def _specs(tree: Any) -> Any:
  return jax.tree.map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype)), tree)
