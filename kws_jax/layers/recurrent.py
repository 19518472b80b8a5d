"""Recurrent layers: the full window scans the cell, a step runs it on new frames."""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.layers import base
from kws_jax.layers import fake_quant

Array = jax.Array

# Longer inputs (hours of stream at once) scan the cell in a loop.
MAX_UNROLLED = 256


class _Recurrent(base.Layer):
  """A cell run over the frames of ``[batch, time, features]``, one output each.

  Output ``t`` is the cell's output after frame ``t``, from a zero state at
  the first frame. Streaming carries the state; a step of ``n`` frames
  returns their ``n`` outputs, so the stream equals the full window frame
  for frame (``lookback == 0``) and the receptive field is unbounded.
  After layers that emit warm-up frames the state also takes those in (as
  kws_streaming's streaming cells do), so the stream equals the full window
  once the state has forgotten them, not exactly. Subclasses define the
  params, the state and the cell.

  ``quantize_state`` (quantization-aware training): the state carried from
  frame to frame is fake-quantized with observed ranges (``params
  ['state_quant']``) and the gates' sigmoid and tanh outputs round to the
  fixed int8 grids of TFLite's LOGISTIC and TANH.
  """

  name: str
  units: int

  def __post_init__(self):
    base.check_positive_int(self.name, 'units', self.units)

  @property
  def receptive_field(self) -> float:
    return math.inf

  @property
  @abc.abstractmethod
  def output_width(self) -> int:
    """Features of one output frame."""

  def output_shape(self, in_shape: base.Shape) -> base.Shape:
    if len(in_shape) != 1:
      raise ValueError(
          f'{self.name}: frames have shape {tuple(in_shape)}, expected a '
          'vector (features,); flatten the feature axes first.')
    return (self.output_width,)

  def init(self, rng: Array, in_shape: base.Shape) -> base.Params:
    params = self._init_weights(rng, in_shape)
    if self.quantize_state:
      params['state_quant'] = {
          key: {'quant_range': fake_quant.empty_range()}
          for key in self.init_state(1, in_shape)}
    return params

  @abc.abstractmethod
  def _init_weights(self, rng: Array, in_shape: base.Shape) -> base.Params:
    """The cell's weights."""

  @abc.abstractmethod
  def _cell(self, params: base.Params) -> tuple[
      Callable[[Array], Array], Callable[[Any, Array], tuple[Any, Array]]]:
    """``(project, cell)``: ``project`` maps all frames ``[batch, time, F]``
    through the input weights at once; ``cell(state, projected frame)``
    returns ``(state, output [batch, output_width])``."""

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del rng
    state = self.init_state(x.shape[0], tuple(x.shape[2:]), x.dtype)
    return self._run(params, state, x, rolled=train)[1]

  def apply_train(self, params: base.Params, x: Array, *,
                  rng: Array | None = None) -> tuple[Array, base.Params]:
    if not self.quantize_state:
      return self.apply(params, x, train=True, rng=rng), {}
    state = self.init_state(x.shape[0], tuple(x.shape[2:]), x.dtype)
    _, outputs, states = self._run(params, state, x, rolled=True,
                                   keep_states=True)
    ranges = {key: {'quant_range': fake_quant.observe_range(
        params['state_quant'][key]['quant_range'], value,
        self.state_momentum)} for key, value in states.items()}
    return outputs, {'state_quant': ranges}

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    base.check_blocks(self.name, frame, 1, 'frame')
    expected = jax.eval_shape(lambda: self.init_state(
        frame.shape[0], tuple(frame.shape[2:]), frame.dtype))
    for key, spec in expected.items():
      got = state.get(key) if isinstance(state, dict) else None
      if got is None:
        raise ValueError(f'{self.name}: state has no {key!r} entry; expected '
                         f'{", ".join(map(repr, expected))}.')
      base.check_frame(self.name, got, spec.shape, spec.dtype,
                       what=f'state {key!r}')
    return self._run(params, state, frame)

  def _run(self, params: base.Params, state: Any, x: Array,
           rolled: bool = False, keep_states: bool = False) -> tuple[Any, ...]:
    """Runs the cell over ``x [batch, time, features]`` from ``state``.

    Returns ``(state, outputs)``, and with ``keep_states`` (a rolled scan)
    the states after every frame, ``[time, batch, ...]`` per key.
    ``rolled`` (training) scans the cell: one compiled cell, forwards and
    backwards. Otherwise clips and steps unroll it (see below).
    """
    expected = params['kernel'].shape[0] - self._recurrent_input_width
    if x.ndim != 3 or x.shape[-1] != expected:
      raise ValueError(
          f'{self.name}: input has shape {tuple(x.shape)}, expected '
          f'[batch, time, {expected}].')
    project, cell = self._cell(params)
    if self.quantize_state:
      cell = self._quantized(cell, params['state_quant'])
    inputs = project(x)
    if keep_states:
      def cell_keeping_state(state, projected):
        state, out = cell(state, projected)
        return state, (out, state)
      state, (outputs, states) = jax.lax.scan(
          cell_keeping_state, state, jnp.moveaxis(inputs, 1, 0))
      return state, jnp.moveaxis(outputs, 0, 1), states
    if rolled or x.shape[1] > MAX_UNROLLED:
      state, outputs = jax.lax.scan(cell, state, jnp.moveaxis(inputs, 1, 0))
      return state, jnp.moveaxis(outputs, 0, 1)
    # Clips and steps run the cell in a Python loop: no WHILE op in the
    # exported graph (TFLite's int8 calibration crashes on one).
    outputs = []
    for t in range(x.shape[1]):
      state, out = cell(state, inputs[:, t])
      outputs.append(out)
    return state, jnp.stack(outputs, axis=1)

  @property
  def _activations(self) -> tuple[Callable[[Array], Array],
                                  Callable[[Array], Array]]:
    """``(sigmoid, tanh)`` of the gates: on the grids of TFLite's int8
    LOGISTIC and TANH outputs when the layer is quantization-aware."""
    if self.quantize_state:
      return fake_quant.sigmoid, fake_quant.tanh
    return jax.nn.sigmoid, jnp.tanh

  @staticmethod
  def _quantized(cell, state_quant: base.Params):
    """``cell`` whose new state is fake-quantized with its ranges."""
    def quantized_cell(state, projected):
      state, out = cell(state, projected)
      return {key: fake_quant.fake_quant_activation(
          value, state_quant[key]['quant_range'])
              for key, value in state.items()}, out
    return quantized_cell

  @property
  def _recurrent_input_width(self) -> int:
    """Rows of ``kernel`` that multiply the previous output (tf1 layouts)."""
    return 0


@dataclasses.dataclass(frozen=True)
class GRU(_Recurrent):
  """Keras' ``GRU`` (``reset_after=True``, tanh and sigmoid), every frame out.

  ``[batch, time, features]`` -> ``[batch, time, units]``. Params as Keras:
  ``kernel [features, 3 units]``, ``recurrent_kernel [units, 3 units]`` and
  ``bias [2, 3 units]`` (input and recurrent biases), gates in the order
  update (z), reset (r), candidate (h):

      z = sigmoid(x W_z + b_z + h U_z + c_z)
      r = sigmoid(x W_r + b_r + h U_r + c_r)
      n = tanh(x W_h + b_h + r * (h U_h + c_h))
      h' = z * h + (1 - z) * n

  State ``{'h': [batch, units]}``. For kws_streaming's
  ``return_sequences=0`` follow it with ``LastFrames(window=clip frames)``.
  """

  name: str
  units: int
  quantize_state: bool = False
  state_momentum: float = 0.99

  @property
  def output_width(self) -> int:
    return self.units

  def step_macs(self, in_shape: base.Shape) -> int:
    self.output_shape(in_shape)
    return 3 * self.units * (in_shape[0] + self.units)

  def _init_weights(self, rng: Array, in_shape: base.Shape) -> base.Params:
    self.output_shape(in_shape)
    kernel_rng, recurrent_rng = jax.random.split(rng)
    width = 3 * self.units
    return {
        'kernel': jax.nn.initializers.glorot_uniform()(
            kernel_rng, (in_shape[0], width), jnp.float32),
        'recurrent_kernel': jax.nn.initializers.orthogonal()(
            recurrent_rng, (self.units, width), jnp.float32),
        'bias': jnp.zeros((2, width), jnp.float32),
    }

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    self.output_shape(in_shape)
    return {'h': jnp.zeros((batch_size, self.units), dtype)}

  def _cell(self, params):
    recurrent_kernel, recurrent_bias = (params['recurrent_kernel'],
                                        params['bias'][1])
    units = self.units

    def project(x):
      return jnp.matmul(x, params['kernel']) + params['bias'][0]

    sigmoid, tanh = self._activations

    def cell(state, projected):
      h = state['h']
      hidden = jnp.matmul(h, recurrent_kernel) + recurrent_bias
      z = sigmoid(projected[:, :units] + hidden[:, :units])
      r = sigmoid(projected[:, units:2 * units] + hidden[:, units:2 * units])
      candidate = tanh(projected[:, 2 * units:] + r * hidden[:, 2 * units:])
      h = z * h + (1.0 - z) * candidate
      return {'h': h}, h

    return project, cell


@dataclasses.dataclass(frozen=True)
class LSTM(_Recurrent):
  """kws_streaming's LSTM: Keras' ``LSTM``, or tf1's ``LSTMCell`` with peepholes.

  ``[batch, time, features]`` -> ``[batch, time, width]``, ``width`` the
  ``num_proj`` of a projected cell and ``units`` otherwise. Two layouts, as
  kws_streaming's ``use_peepholes`` flag picks:

  * ``use_peepholes=False``: Keras' ``LSTM`` (``kernel [F, 4u]``,
    ``recurrent_kernel [u, 4u]``, ``bias [4u]``; gates i, f, c, o);
  * ``use_peepholes=True``: ``tf.compat.v1.nn.rnn_cell.LSTMCell(use_peepholes=
    True, num_proj=num_proj)`` with its ``forget_bias=1`` (``kernel
    [F + width, 4u]`` over ``concat(x, m)``, ``bias [4u]``, gates i, j, f, o,
    peephole diagonals ``w_f_diag``, ``w_i_diag``, ``w_o_diag [u]`` and
    ``projection_kernel [u, num_proj]``)::

        c = sigmoid(f + 1 + w_f * c) * c + sigmoid(i + w_i * c) * tanh(j)
        m = (sigmoid(o + w_o * c') * tanh(c')) @ projection_kernel

  State ``{'c': [batch, units], 'h': [batch, width]}``. As in kws_streaming,
  ``num_proj`` only applies with peepholes.
  """

  name: str
  units: int
  use_peepholes: bool = False
  num_proj: int | None = None
  quantize_state: bool = False
  state_momentum: float = 0.99

  def __post_init__(self):
    super().__post_init__()
    if self.num_proj is not None:
      base.check_positive_int(self.name, 'num_proj', self.num_proj)
      if not self.use_peepholes:
        raise ValueError(f'{self.name}: num_proj is {self.num_proj}, but the '
                         'projection needs use_peepholes=True (kws_streaming '
                         'projects only the peephole cell); use None.')

  @property
  def output_width(self) -> int:
    return self.num_proj or self.units

  @property
  def _recurrent_input_width(self) -> int:
    return self.output_width if self.use_peepholes else 0

  def keras_weight_names(self) -> tuple[str, ...]:
    if self.use_peepholes:
      return ('kernel', 'bias', 'w_f_diag', 'w_i_diag', 'w_o_diag',
              'projection_kernel')
    return ('kernel', 'recurrent_kernel', 'bias')

  def step_macs(self, in_shape: base.Shape) -> int:
    self.output_shape(in_shape)
    macs = 4 * self.units * (in_shape[0] + self.output_width)
    if self.num_proj:
      macs += self.units * self.num_proj
    return macs

  def _init_weights(self, rng: Array, in_shape: base.Shape) -> base.Params:
    self.output_shape(in_shape)
    rngs = jax.random.split(rng, 3)
    units, width = self.units, self.output_width
    glorot = jax.nn.initializers.glorot_uniform()
    # Keras' unit_forget_bias; tf1's cell adds its forget bias of 1 itself.
    bias = jnp.zeros((4 * units,), jnp.float32)
    if not self.use_peepholes:
      return {
          'kernel': glorot(rngs[0], (in_shape[0], 4 * units), jnp.float32),
          'recurrent_kernel': jax.nn.initializers.orthogonal()(
              rngs[1], (units, 4 * units), jnp.float32),
          'bias': bias.at[units:2 * units].set(1.0),
      }
    params = {
        'kernel': glorot(rngs[0], (in_shape[0] + width, 4 * units),
                         jnp.float32),
        'bias': bias,
        **{name: jnp.zeros((units,), jnp.float32)
           for name in ('w_f_diag', 'w_i_diag', 'w_o_diag')},
    }
    if self.num_proj:
      params['projection_kernel'] = glorot(rngs[2], (units, self.num_proj),
                                           jnp.float32)
    return params

  def init_state(self, batch_size: int, in_shape: base.Shape,
                 dtype: Any = jnp.float32) -> base.State:
    self.output_shape(in_shape)
    return {'c': jnp.zeros((batch_size, self.units), dtype),
            'h': jnp.zeros((batch_size, self.output_width), dtype)}

  def _cell(self, params):
    units = self.units
    sigmoid, tanh = self._activations
    if not self.use_peepholes:
      def project(x):
        return jnp.matmul(x, params['kernel']) + params['bias']

      def cell(state, projected):
        gates = projected + jnp.matmul(state['h'], params['recurrent_kernel'])
        i, f, g, o = (gates[:, k * units:(k + 1) * units] for k in range(4))
        c = sigmoid(f) * state['c'] + sigmoid(i) * tanh(g)
        h = sigmoid(o) * tanh(c)
        return {'c': c, 'h': h}, h

      return project, cell

    features = params['kernel'].shape[0] - self.output_width
    input_kernel = params['kernel'][:features]
    recurrent_kernel = params['kernel'][features:]

    def project(x):
      return jnp.matmul(x, input_kernel) + params['bias']

    def cell(state, projected):
      c_prev = state['c']
      gates = projected + jnp.matmul(state['h'], recurrent_kernel)
      i, j, f, o = (gates[:, k * units:(k + 1) * units] for k in range(4))
      c = (sigmoid(f + 1.0 + params['w_f_diag'] * c_prev) * c_prev +
           sigmoid(i + params['w_i_diag'] * c_prev) * tanh(j))
      h = sigmoid(o + params['w_o_diag'] * c) * tanh(c)
      if self.num_proj:
        h = jnp.matmul(h, params['projection_kernel'])
      return {'c': c, 'h': h}, h

    return project, cell


@dataclasses.dataclass(frozen=True)
class LastFrames(base.Layer):
  """Keeps the frames that end a whole ``window``: ``[batch, T - window + 1, ...]``.

  After a recurrent layer, a window of one clip's frames leaves the output
  of the clip's last frame, which is kws_streaming's ``return_sequences=0``.
  Streaming passes every frame through (stateless; the first ``window - 1``
  are warm-up frames, ``lookback = window - 1``).
  """

  name: str
  window: int = 1

  def __post_init__(self):
    base.check_positive_int(self.name, 'window', self.window)

  @property
  def lookback(self) -> int:
    return self.window - 1

  @property
  def receptive_field(self) -> int:
    return 1

  def apply(self, params: base.Params, x: Array, *, train: bool = False,
            rng: Array | None = None) -> Array:
    del params, train, rng
    self.output_length(x.shape[1])
    return x[:, self.window - 1:]

  def step(self, params: base.Params, state: base.State,
           frame: Array) -> tuple[base.State, Array]:
    del params
    return state, frame
