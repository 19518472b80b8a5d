"""Quantization-aware networks: a network as its full-integer export computes it.

``fake_quantized(net)`` is the same network (same weights, same streaming
contract) with TFLite's int8 rounding put where the full-integer export
(``kws_jax.export.micro``) rounds:

* every weighted layer (``WEIGHTED``) becomes ``QuantizedWeights(layer)``:
  its kernels pass through per-channel int8 fake quantization in every form;
* an ``ActivationQuant`` follows the input and every layer whose output
  TFLite keeps as a tensor of its own. None follows layers that only move or
  drop values (``PASSES_VALUES``: reshapes, dropout, max pooling keep their
  input's int8 scale), nor a layer the export fuses with the next one (a
  linear convolution or dense layer before the BatchNorm folded into it,
  anything before a ReLU);
* recurrent layers quantize the state they carry (``quantize_state``).

The ranges of the activations and states are non-trainable params
(``quant_range``), moving averages of the batch ranges that the training
form updates, as BatchNorm's statistics. ``strip_fake_quant`` turns a trained
quantization-aware network back into the float network the export converts,
with its kernels replaced by their int8 values, so the export's per-channel
quantization reproduces them exactly; the export then calibrates the
activation ranges on training clips as for any model.
"""

from __future__ import annotations

import dataclasses
import fractions
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base, fake_quant, tree
from kws_jax.layers.broadcast import SpatialDropout
from kws_jax.layers.conv import Conv2D, DepthwiseConv2D
from kws_jax.layers.core import Activation, Dense, Dropout, ExpandDims, Flatten
from kws_jax.layers.folding import FOLDABLE
from kws_jax.layers.normalization import BatchNorm
from kws_jax.layers.pooling import Pool2D
from kws_jax.layers.recurrent import GRU, LSTM, LastFrames
from kws_jax.layers.reshape import FrameReshape
from kws_jax.layers.sequential import Sequential
from kws_jax.layers.svdf import DepthwiseConv1D, Svdf

Array = jax.Array

WEIGHTED = (Conv2D, DepthwiseConv2D, Dense, GRU, LSTM, DepthwiseConv1D, Svdf)
PASSES_VALUES = (Dropout, SpatialDropout, Flatten, ExpandDims, FrameReshape,
                 LastFrames)
# Activations that TFLite fuses into the op before them.
FUSED_ACTIVATIONS = ('relu', 'relu6')
DEFAULT_MOMENTUM = 0.99


@dataclasses.dataclass(frozen=True)
class ActivationQuant(base.Layer):
  """Frame-wise int8 fake quantization with a range learned in training.

  ``[batch, time, *shape]`` -> the same shape, each value as the int8 tensor
  of range ``params['quant_range'] = [lo, hi]`` stores it
  (``fake_quant.fake_quant_activation``; ``[0, 0]``, before training,
  passes values through). Stateless: a step quantizes its frames. The
  training form first moves the range toward the batch's (``momentum``) and
  returns it as the update.
  """

  name: str
  momentum: float = DEFAULT_MOMENTUM

  def __post_init__(self):
    if not 0.0 <= self.momentum < 1.0:
      raise ValueError(f'{self.name}: momentum is {self.momentum}, expected '
                       'a number in [0, 1).')

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    del rng, in_shape
    return {'quant_range': fake_quant.empty_range()}

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del train, rng
    return fake_quant.fake_quant_activation(x, params['quant_range'])

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    del rng
    value_range = fake_quant.observe_range(params['quant_range'], x,
                                           self.momentum)
    return (fake_quant.fake_quant_activation(x, value_range),
            {'quant_range': value_range})


@dataclasses.dataclass(frozen=True)
class QuantizedWeights(base.Layer):
  """``layer`` with its kernels fake-quantized to int8 per output channel.

  Same name, params, state, geometry and streaming contract as ``layer``;
  every form runs ``layer`` on ``quantized_params(params)``. A kernel's
  output channels are its last axis (a conv ``[kt, kf, in, out]``, a dense
  or recurrent ``[in, out]``), and for a ``DepthwiseConv2D`` its last two
  (``[kt, kf, C, multiplier]``), as TFLite's per-channel int8 stores them.
  """

  layer: base.Layer

  def __post_init__(self):
    if isinstance(self.layer, QuantizedWeights):
      raise ValueError(f'{self.layer.name}: its weights are quantized already.')

  @property
  def name(self) -> str:  # params and state stay keyed by the layer's name
    return self.layer.name

  def quantized_params(self, params: base.Params) -> base.Params:
    """``params`` with every kernel replaced by its int8 values (dequantized)."""
    depthwise = isinstance(self.layer, DepthwiseConv2D)
    quantized = dict(params)
    for key, value in params.items():
      if key.endswith('kernel') and getattr(value, 'ndim', 0) >= 2:
        keep = 2 if depthwise and key == 'depthwise_kernel' else 1
        quantized[key] = fake_quant.fake_quant_weights(
            value, tuple(range(value.ndim - keep)))
    return quantized

  # Geometry and bookkeeping: the layer's own.
  @property
  def block_size(self) -> int:
    return self.layer.block_size

  @property
  def output_ratio(self) -> fractions.Fraction:
    return self.layer.output_ratio

  @property
  def lookback(self) -> int:
    return self.layer.lookback

  @property
  def receptive_field(self) -> int | float:
    return self.layer.receptive_field

  @property
  def supports_step(self) -> bool:
    return self.layer.supports_step

  @property
  def pads_past(self) -> bool:
    return self.layer.pads_past

  def output_length(self, length: int) -> int:
    return self.layer.output_length(length)

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    return self.layer.output_shape(in_shape)

  def step_macs(self, in_shape: base.Shape) -> int:
    return self.layer.step_macs(in_shape)

  def keras_weight_names(self) -> tuple[str, ...]:
    return self.layer.keras_weight_names()

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    return self.layer.init(rng, in_shape)

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    return self.layer.init_state(batch_size, in_shape, dtype)

  # The forms, on quantized weights.
  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    return self.layer.apply(self.quantized_params(params), x, train=train,
                            rng=rng)

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    return self.layer.apply_train(self.quantized_params(params), x, rng=rng)

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    return self.layer.step(self.quantized_params(params), state, frame)


def fake_quantized(net: Sequential,
                   momentum: float = DEFAULT_MOMENTUM) -> Sequential:
  """``net`` as its full-integer export rounds it (see the module docstring).

  The input is quantized first (``input_quant``), as the int8 model's input
  tensor; each added quantizer is named after the layer it follows
  (``<layer>_quant``).
  """
  layers = _quantize_stack(net.layers, momentum)
  return dataclasses.replace(
      net, layers=(ActivationQuant('input_quant', momentum), *layers))


def is_fake_quantized(layer: base.Layer) -> bool:
  """Whether ``layer`` holds any fake quantization."""
  if isinstance(layer, (ActivationQuant, QuantizedWeights)):
    return True
  return any(is_fake_quantized(child) for child in tree.field_layers(layer))


def strip_fake_quant(layer: base.Layer, params: base.Params
                     ) -> tuple[base.Layer, base.Params]:
  """The float ``(layer, params)`` that the export converts.

  Quantizers are removed with their ranges, ``QuantizedWeights`` become
  their layers with the int8 values of their kernels, recurrent layers stop
  quantizing their state. A network without fake quantization comes back
  as it is.
  """
  if isinstance(layer, QuantizedWeights):
    inner, weights = layer.layer, layer.quantized_params(params)
    if getattr(inner, 'quantize_state', False):
      inner = dataclasses.replace(inner, quantize_state=False)
      weights = {k: v for k, v in weights.items() if k != 'state_quant'}
    return inner, weights
  if isinstance(layer, Sequential):
    layers, new_params = [], {}
    for child in layer.layers:
      if isinstance(child, ActivationQuant):
        continue
      child, child_params = strip_fake_quant(child, params.get(child.name, {}))
      layers.append(child)
      if child_params:
        new_params[child.name] = child_params
    return dataclasses.replace(layer, layers=tuple(layers)), new_params
  return tree.rebuild(layer, params, strip_fake_quant)


def _quantize_stack(layers: tuple[base.Layer, ...],
                    momentum: float) -> tuple[base.Layer, ...]:
  result = []
  for index, layer in enumerate(layers):
    following = layers[index + 1] if index + 1 < len(layers) else None
    result.append(_quantize_layer(layer, momentum))
    if not _fused_with(layer, following) and not isinstance(layer,
                                                            PASSES_VALUES):
      if not (isinstance(layer, Pool2D) and layer.kind == 'max'):
        result.append(ActivationQuant(f'{layer.name}_quant', momentum))
  return tuple(result)


def _fused_with(layer: base.Layer, following: base.Layer | None) -> bool:
  """Whether the export computes ``layer`` and ``following`` as one op."""
  if isinstance(following, Activation):
    return following.activation in FUSED_ACTIVATIONS
  return (isinstance(following, BatchNorm) and isinstance(layer, FOLDABLE) and
          layer.activation == 'linear')


def _quantize_layer(layer: base.Layer, momentum: float) -> base.Layer:
  if isinstance(layer, Sequential):
    return dataclasses.replace(layer,
                               layers=_quantize_stack(layer.layers, momentum))
  if isinstance(layer, (GRU, LSTM)):
    layer = dataclasses.replace(layer, quantize_state=True,
                                state_momentum=momentum)
  if isinstance(layer, WEIGHTED):
    return QuantizedWeights(layer)
  return tree.rebuild(layer, {}, lambda child, _: (
      _quantize_layer(child, momentum), {}))[0]
