"""Activation functions by the names Keras and kws_streaming use."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'linear': lambda x: x,
    'relu': jax.nn.relu,
    'relu6': jax.nn.relu6,
    'elu': jax.nn.elu,
    'selu': jax.nn.selu,
    'gelu': jax.nn.gelu,
    'silu': jax.nn.silu,
    'swish': jax.nn.silu,
    'tanh': jnp.tanh,
    'sigmoid': jax.nn.sigmoid,
    'softmax': jax.nn.softmax,
}


def get_activation(name: str, owner: str | None = None
                   ) -> Callable[[jax.Array], jax.Array]:
  """Returns the activation called ``name`` ('linear' is the identity).

  Raises:
    ValueError: naming the owner (a layer), the unknown activation and the
      known ones.
  """
  try:
    return ACTIVATIONS[name]
  except (KeyError, TypeError):
    prefix = f'{owner}: ' if owner else ''
    raise ValueError(
        f'{prefix}unknown activation {name!r}; expected one of '
        f'{", ".join(sorted(ACTIVATIONS))}.') from None
