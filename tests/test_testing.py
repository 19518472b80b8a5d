"""The streaming contract check catches each way a layer can break it."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from kws_jax.layers import base
from kws_jax.testing import check_streaming_contract


@dataclasses.dataclass(frozen=True)
class Identity(base.Layer):
  """A correct stateless layer; the broken ones below change one thing."""
  name: str = 'identity'

  def apply(self, params, x, *, train=False, rng=None):
    return x


@dataclasses.dataclass(frozen=True)
class ReadsTheFuture(Identity):
  """Its full window adds 0 × the next frame: equal values, wrong geometry."""

  def apply(self, params, x, *, train=False, rng=None):
    later = jnp.concatenate([x[:, 1:], jnp.zeros_like(x[:, :1])], axis=1)
    return x + 0.0 * later

  def step(self, params, state, frame):
    return state, frame


@dataclasses.dataclass(frozen=True)
class MixesRows(Identity):
  """Adds 0 × the batch mean: rows leak into each other."""

  def apply(self, params, x, *, train=False, rng=None):
    return x + 0.0 * jnp.mean(x, axis=0, keepdims=True)


@dataclasses.dataclass(frozen=True)
class StepOfManyBlocksDiffers(Identity):
  """Right on one-frame steps, scaled by the frame count on longer ones."""

  def step(self, params, state, frame):
    return state, frame * frame.shape[1]


@dataclasses.dataclass(frozen=True)
class ClaimsNoLookback(Identity):
  """A one-frame delay that declares no warm-up frame."""

  def init_state(self, batch_size, in_shape, dtype=jnp.float32):
    return jnp.zeros((batch_size, *in_shape), dtype)

  def apply(self, params, x, *, train=False, rng=None):
    return x[:, :-1]

  def output_length(self, length):
    return length - 1

  def step(self, params, state, frame):
    return frame[:, -1], jnp.concatenate([state[:, None], frame[:, :-1]], 1)


def test_a_correct_layer_passes_with_zero_differences():
  x = jax.random.normal(jax.random.key(0), (2, 12, 3))
  report = check_streaming_contract(Identity(), {}, x)
  assert report.output_diff == report.eager_diff == 0.0
  assert report.full_shape == report.stream_shape == (2, 12, 3)


@pytest.mark.parametrize('layer, message', [
    (ReadsTheFuture(), 'depends on later frames'),
    (MixesRows(), 'depends on another row'),
    (StepOfManyBlocksDiffers(), 'steps of 3 blocks differ'),
    (ClaimsNoLookback(), 'streamed frames minus lookback 0'),
])
def test_each_broken_layer_fails_with_its_reason(layer, message):
  x = jax.random.normal(jax.random.key(0), (2, 12, 3))
  with pytest.raises(AssertionError, match=message):
    check_streaming_contract(layer, {}, x, check_grads=False)

