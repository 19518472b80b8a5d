"""The three inference forms of a trained model as JAX functions of arrays.

* non-streaming: ``input [1, clip]`` -> ``logits [1, labels]`` (one clip);
* streaming, external state: ``(input [1, block], *states)`` ->
  ``(logits [1, labels], *new_states)``: one 20 ms step;
* streaming, internal state: the same step with the states kept in variables
  by the exported module.

``input`` is raw audio (``[1, 16000]`` / ``[1, 320]`` samples) for
``preprocess='raw'`` models and features (``[1, 49, F]`` / ``[1, 1, F]``)
otherwise. States are listed in layer order with stable names (``frontend``,
``conv2d_0``, ...; nested states as ``layer/inner``), which the exported
signatures prefix with ``state_``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.models import Model


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  """Name, shape and dtype of one input, output or state tensor."""

  name: str
  shape: tuple[int, ...]
  dtype: str = 'float32'

  def as_dict(self) -> dict[str, Any]:
    return {'name': self.name, 'shape': list(self.shape), 'dtype': self.dtype}


def input_name(model: Model) -> str:
  return 'audio' if model.preprocess == 'raw' else 'features'


def non_streaming_input(model: Model) -> TensorSpec:
  return TensorSpec(input_name(model), (1, model.clip_length,
                                        *model.input_shape))


def streaming_input(model: Model) -> TensorSpec:
  return TensorSpec(input_name(model), (1, model.block_size,
                                        *model.input_shape))


def state_specs(model: Model) -> list[TensorSpec]:
  """The streaming state tensors of batch 1, in layer order."""
  state = jax.eval_shape(lambda: model.init_state(1))
  specs = []
  for layer in model.net.layers:
    if layer.name not in state:
      continue
    for path, leaf in jax.tree_util.tree_flatten_with_path(state[layer.name])[0]:
      name = '/'.join([layer.name] + [str(getattr(k, 'key', k)) for k in path])
      specs.append(TensorSpec(name, tuple(leaf.shape), str(leaf.dtype)))
  return specs


def _state_tree(model: Model, flat: list[jax.Array]) -> Any:
  """Rebuilds the model's state pytree from tensors in ``state_specs`` order."""
  template = jax.eval_shape(lambda: model.init_state(1))
  by_name = dict(zip((s.name for s in state_specs(model)), flat))
  state = {}
  for layer_name, subtree in template.items():
    paths, treedef = jax.tree_util.tree_flatten_with_path(subtree)
    leaves = [by_name['/'.join([layer_name] +
                               [str(getattr(k, 'key', k)) for k in path])]
              for path, _ in paths]
    state[layer_name] = jax.tree.unflatten(treedef, leaves)
  return state


def _flat_state(model: Model, state: Any) -> list[jax.Array]:
  leaves = {}
  for layer_name, subtree in state.items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(subtree)[0]:
      name = '/'.join([layer_name] + [str(getattr(k, 'key', k)) for k in path])
      leaves[name] = leaf
  return [leaves[spec.name] for spec in state_specs(model)]


def non_streaming_fn(model: Model, params: Any) -> Callable[[jax.Array],
                                                            jax.Array]:
  """``input [1, clip, ...] -> logits [1, labels]`` with ``params`` baked in."""

  def non_streaming(inputs):
    return model.logits(params, inputs)

  return non_streaming


def streaming_fn(model: Model, params: Any) -> Callable[..., tuple]:
  """``(block, *states) -> (logits [1, labels], *new_states)``, one step."""

  def streaming(block, *states):
    state = _state_tree(model, list(states))
    state, logits = model.step(params, state, block)
    return (logits[:, 0], *_flat_state(model, state))

  return streaming


def zero_states(model: Model) -> list[np.ndarray]:
  """Initial states in ``state_specs`` order."""
  return [np.zeros(s.shape, s.dtype) for s in state_specs(model)]


class JaxStream:
  """Streams clips through the jitted step form, from zero state each time."""

  def __init__(self, model: Model, params: Any):
    self.model = model
    self._step = jax.jit(streaming_fn(model, params))

  def run(self, inputs: np.ndarray) -> tuple[list[list[np.ndarray]],
                                             np.ndarray]:
    """Streams one clip ``[1, time, ...]``.

    Returns the states before every step (lists in ``state_specs`` order,
    for calibration) and the logits ``[steps, labels]``.
    """
    states = [jnp.asarray(s) for s in zero_states(self.model)]
    seen, logits = [], []
    block = self.model.block_size
    for start in range(0, inputs.shape[1] - block + 1, block):
      seen.append([np.asarray(s) for s in states])
      out = self._step(jnp.asarray(inputs[:, start:start + block]), *states)
      logits.append(np.asarray(out[0][0]))
      states = list(out[1:])
    return seen, np.stack(logits)
