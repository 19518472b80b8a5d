"""Walking a network's layer tree: the layers held in a layer's fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from kws_jax.layers import base

# (layer, its params) -> (new layer, its new params)
Transform = Callable[[base.Layer, base.Params],
                     tuple[base.Layer, base.Params]]


def is_layer_tuple(value: Any) -> bool:
  """Whether ``value`` is a non-empty tuple of layers (a stack's layers)."""
  return (isinstance(value, tuple) and bool(value) and
          all(isinstance(v, base.Layer) for v in value))


def field_layers(layer: base.Layer) -> list[base.Layer]:
  """The layers among ``layer``'s dataclass fields (single or in tuples)."""
  if not dataclasses.is_dataclass(layer):
    return []
  children = []
  for field in dataclasses.fields(layer):
    value = getattr(layer, field.name)
    if isinstance(value, base.Layer):
      children.append(value)
    elif is_layer_tuple(value):
      children.extend(value)
  return children


def rebuild(layer: base.Layer, params: base.Params, transform: Transform
            ) -> tuple[base.Layer, base.Params]:
  """``layer`` with ``transform`` applied to each layer among its fields.

  Params stay keyed by child name: a child's new params replace its old
  ones, and a child left without params loses its entry. A layer without
  layers in its fields comes back as it is.
  """
  replaced = {}
  new_params = dict(params) if isinstance(params, dict) else params
  for field in (dataclasses.fields(layer) if dataclasses.is_dataclass(layer)
                else ()):
    value = getattr(layer, field.name)
    if isinstance(value, base.Layer):
      children = (value,)
    elif is_layer_tuple(value):
      children = value
    else:
      continue
    new_children = []
    for child in children:
      new_child, child_params = transform(child, params.get(child.name, {}))
      new_children.append(new_child)
      if child_params:
        new_params[child.name] = child_params
      else:
        new_params.pop(child.name, None)
    replaced[field.name] = (new_children[0] if isinstance(value, base.Layer)
                            else tuple(new_children))
  if not replaced:
    return layer, params
  return dataclasses.replace(layer, **replaced), new_params
