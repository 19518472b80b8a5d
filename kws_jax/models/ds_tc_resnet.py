"""kws_streaming's ds_tc_resnet (MatchboxNet): time-channel separable ResNet.

Topology as kws_streaming's ``models/ds_tc_resnet.py`` (MatchboxNet, Majumdar
and Ginsburg 2020, after Jasper). The feature frames ``[batch, time,
feature]`` become ``[batch, time, 1, feature]`` (the features are channels,
as kws_streaming's ``expand_dims(net, axis=2)``), then block ``b`` (entry
``b`` of every ``ds_*`` list) is:

* ``ds_repeat`` sub-blocks, each a convolution in time followed by BatchNorm
  (``scale=ds_scale``) and, all but the last, the activation and Dropout.
  The convolution is separable (``ds_filter_separable`` 1): a depthwise
  ``(ds_kernel_size, 1)`` kernel with ``ds_dilation`` and ``ds_stride`` in
  time and no bias (left out when ``ds_kernel_size`` is 0), then a 1x1
  Conv2D to ``ds_filters`` without bias; or not (0): one
  ``(ds_kernel_size, 1)`` Conv2D to ``ds_filters`` with ``ds_dilation``, no
  bias and no stride;
* with ``ds_residual`` 1 the sum with a shortcut from the block's input, a
  1x1 Conv2D (no bias) and BatchNorm;
* the activation and Dropout, then pooling of ``(ds_pool, 1)`` frames with
  stride ``ds_pool`` when ``ds_pool > 1`` (max with ``ds_max_pool`` 1, else
  average).

After the blocks: average pooling over every frame one clip leaves
(kws_streaming's streaming ``GlobalAveragePooling2D``), Flatten and the
classifier (Dense with bias). BatchNorm has Keras' defaults (momentum 0.99,
epsilon 1e-3), as in kws_streaming. ``params_from_keras`` takes a residual
block's weights body first, then shortcut; kws_streaming's functional Keras
model lists them by graph depth (the two interleaved), so its weights need
reordering first.

Time padding (``ds_padding``), as kws_streaming's ``Stream`` pads in its
default ``data_stride`` 1 (``span = ds_dilation * (ds_kernel_size - 1) + 1``):

* ``'causal'``: ``span - 1`` zeros before the input; output ``i`` ends on
  frame ``i * stride`` (kws_jax's causal): streams with no warm-up.
  kws_jax's default; kws_streaming's help says to use it for streaming.
* ``'same'`` (kws_streaming's default): ``(span - 1) // 2`` zeros before and
  the rest after, so an output generally reads future frames. It is accepted
  only where it equals a streaming padding exactly: a kernel of span 1 (no
  zeros at all: kws_jax's causal), and strided kernels with ``span - (span -
  1) // 2 == stride`` (``span`` is ``2 * stride - 1`` or ``2 * stride - 2``),
  whose outputs end on the last frame of their block: kws_jax's semicausal,
  provided the frames of one clip reaching the layer are a multiple of the
  stride (else 'same' emits one more frame). Other 'same' kernels are
  refused when the model is built.
* ``'valid'``: no padding (blocks without ``ds_residual`` only, as in
  kws_streaming); streams with warm-up frames, so every time convolution
  after it must be 'valid' too (refused otherwise: a stream would feed a
  causal window the warm-up frames where the full-window form reads zeros).

Streaming: every layer streams (convolutions and pools through buffers of
their last input frames; the final pooling keeps the frames of one clip);
time strides and pools make a step take ``block_size`` frames, their
product. For the same reason as 'valid' blocks, raw audio
(``preprocess='raw'``) streams exactly what the full-window form computes
only with the frontend's ``padding='semicausal'`` (no warm-up frames; see
``experiments/configs/ds_tc_resnet.py``); with 'valid' framing the first
outputs of a stream, those whose causal windows reach before the stream's
first frame, differ.

The README's MatchboxNet (these defaults) on 40 MFCC features with 12
labels has 73,220 parameters (71,684 trainable).
"""

from __future__ import annotations

import dataclasses

import ml_collections

from kws_jax import layers
from kws_jax.models import cnn
from kws_jax.models.parse import check_same_length, parse_list

PADDINGS = ('causal', 'same', 'valid')

# The per-block lists: flag and element kind, in kws_streaming's order.
_LISTS = (('ds_filters', 'int'), ('ds_repeat', 'int'),
          ('ds_filter_separable', 'int'), ('ds_residual', 'int'),
          ('ds_padding', 'str'), ('ds_kernel_size', 'int'),
          ('ds_stride', 'int'), ('ds_dilation', 'int'), ('ds_pool', 'int'))


def default_config() -> ml_collections.ConfigDict:
  """kws_streaming's ds_tc_resnet flags and defaults (the README's MatchboxNet).

  One default differs: ``ds_padding`` is causal (kws_streaming: 'same', which
  reads future frames and cannot stream).
  """
  return ml_collections.ConfigDict({
      'name': 'ds_tc_resnet',
      'preprocess': 'raw',  # 'raw': audio in, frontend inside; 'mfcc'
      'label_count': 0,  # 0: from data.wanted_words (+ silence, unknown)
      'activation': 'relu',
      'dropout': 0.0,
      'ds_filters': '128, 64, 64, 64, 128, 128',
      'ds_repeat': '1, 1, 1, 1, 1, 1',
      'ds_filter_separable': '1, 1, 1, 1, 1, 1',
      'ds_residual': '0, 1, 1, 1, 0, 0',
      'ds_padding': "'causal', 'causal', 'causal', 'causal', 'causal', "
                    "'causal'",
      'ds_kernel_size': '11, 13, 15, 17, 29, 1',
      'ds_stride': '1, 1, 1, 1, 1, 1',
      'ds_dilation': '1, 1, 1, 1, 2, 1',
      'ds_pool': '1, 1, 1, 1, 1, 1',
      'ds_max_pool': 0,
      'ds_scale': 1,
      'return_softmax': False,
      # Speed knob (same parameters and math), as ds_cnn: 'auto' picks the
      # fast CPU forms; 'xla' the lax convolutions (used by the export).
      'conv_implementation': 'auto',
  })


@dataclasses.dataclass(frozen=True)
class _Block:
  """Entry ``index`` (from 1) of the ``ds_*`` lists."""

  index: int
  filters: int
  repeat: int
  filter_separable: int
  residual: int
  padding: str
  kernel_size: int
  stride: int
  dilation: int
  pool: int

  @property
  def span(self) -> int:
    """Frames in time one output of the block's time convolution reads."""
    return self.dilation * (self.kernel_size - 1) + 1


def _fail(config: ml_collections.ConfigDict, field: str, block: _Block,
          problem: str) -> ValueError:
  return ValueError(f'model.{field} is {config[field]!r}: block '
                    f'{block.index} {problem}.')


def _blocks(config: ml_collections.ConfigDict) -> list[_Block]:
  """The parsed, checked blocks of ``config``."""
  lists = {field: parse_list(f'model.{field}', config[field], kind)
           for field, kind in _LISTS}
  check_same_length('model', lists)
  if not lists['ds_filters']:
    raise ValueError(f'model.ds_filters is {config.ds_filters!r}, expected '
                     'at least one block.')
  blocks = [_Block(index, *values)
            for index, values in enumerate(zip(*lists.values()), start=1)]
  for block in blocks:
    for field in ('filters', 'repeat', 'stride', 'dilation', 'pool'):
      value = getattr(block, field)
      if value < 1:
        raise _fail(config, f'ds_{field}', block,
                    f'has {value}, expected a positive int')
    for field in ('filter_separable', 'residual'):
      value = getattr(block, field)
      if value not in (0, 1):
        raise _fail(config, f'ds_{field}', block,
                    f'has {value}, expected 0 or 1')
    smallest = 0 if block.filter_separable else 1
    if block.kernel_size < smallest:
      raise _fail(config, 'ds_kernel_size', block,
                  f'has {block.kernel_size}, expected {smallest} or more '
                  '(0 only for separable blocks: no depthwise convolution)')
    if block.padding not in PADDINGS:
      raise _fail(config, 'ds_padding', block,
                  f'has {block.padding!r}, expected one of '
                  f'{", ".join(map(repr, PADDINGS))}')
    if block.residual and block.padding == 'valid':
      raise _fail(config, 'ds_padding', block,
                  "has 'valid' with ds_residual 1, expected 'causal' or "
                  "'same': the sum needs branches of equal length")
    if block.stride > 1:
      if block.residual:
        problem = ('with ds_residual 1: the 1x1 shortcut has no stride, so '
                   'the branches of the sum would differ in length')
      elif not block.filter_separable:
        problem = ("with ds_filter_separable 0: kws_streaming's time Conv2D "
                   'takes no stride and would ignore it')
      elif block.kernel_size == 0:
        problem = ('with ds_kernel_size 0: there is no depthwise convolution '
                   'to take the stride')
      else:
        problem = ''
      if problem:
        raise _fail(config, 'ds_stride', block,
                    f'has {block.stride} {problem}; expected 1')
  return blocks


class _Builder:
  """Makes the layers of the blocks, following the frames of one clip."""

  def __init__(self, config: ml_collections.ConfigDict, frames: int):
    self.config = config
    self.length = frames  # frames of one clip reaching the next layer
    self.warmup_block = 0  # the first block whose stream has warm-up frames
    self.conv_implementation = cnn.conv_implementation(
        config.conv_implementation)
    self.depthwise_implementation = cnn.depthwise_implementation(config)

  def track(self, layer: layers.Layer, field: str, block: _Block
            ) -> layers.Layer:
    """``layer``; moves the clip's frames past it (errors name ``field``)."""
    try:
      self.length = layer.output_length(self.length)
    except ValueError as error:
      raise _fail(self.config, field, block, f'does not fit: {error}') from None
    if layer.lookback and not self.warmup_block:
      self.warmup_block = block.index
    return layer

  def time_padding(self, block: _Block) -> str:
    """kws_jax's time padding equal to ``block.padding`` (module docstring)."""
    padding = self._same_padding(block)
    if padding != 'valid' and self.warmup_block:
      raise _fail(
          self.config, 'ds_padding', block,
          f"has {block.padding!r} after the 'valid' convolution of block "
          f"{self.warmup_block}: a stream would feed it that layer's warm-up "
          "frames where the full-window form pads zeros; expected 'valid' "
          "after a 'valid' block")
    return padding

  def _same_padding(self, block: _Block) -> str:
    if block.padding != 'same':
      return block.padding
    span, stride = block.span, block.stride
    before = (span - 1) // 2
    if span == 1:
      return 'causal'
    if span - before == stride:
      if self.length % stride:
        raise _fail(
            self.config, 'ds_padding', block,
            f"has 'same' at stride {stride} on {self.length} frames of a "
            "clip, not a multiple of the stride: 'same' would emit one more "
            "frame than any streaming padding; expected 'causal' or a clip "
            'whose frames there are a multiple of the stride')
      return 'semicausal'
    ahead = span - before - stride
    reads = (f'reads {ahead} frame(s) after its block' if ahead > 0 else
             f'ends {-ahead} frame(s) before the end of its block')
    raise _fail(
        self.config, 'ds_padding', block,
        f"has 'same' with ds_kernel_size {block.kernel_size}, ds_dilation "
        f'{block.dilation} and ds_stride {stride}: it pads {before} zero '
        f'frame(s) before and {span - 1 - before} after, so an output {reads}, '
        "which no streaming padding computes; expected 'causal'")

  def norm(self, name: str) -> layers.BatchNorm:
    return layers.BatchNorm(name, scale=bool(self.config.ds_scale))

  def activation(self, suffix: str) -> list[layers.Layer]:
    out: list[layers.Layer] = [
        layers.Activation(f'activation_{suffix}', self.config.activation)]
    if self.config.dropout:
      out.append(layers.Dropout(f'dropout_{suffix}', self.config.dropout))
    return out

  def pointwise(self, name: str, filters: int) -> layers.Conv2D:
    return layers.Conv2D(name, filters, (1, 1), use_bias=False,
                         implementation=self.conv_implementation)

  def time_conv(self, block: _Block, repeat: int) -> list[layers.Layer]:
    """The convolution in time of sub-block ``repeat``: 1 or 2 layers."""
    suffix = f'{block.index}_{repeat}'
    kernel, dilation = (block.kernel_size, 1), (block.dilation, 1)
    if not block.filter_separable:
      return [self.track(layers.Conv2D(
          f'conv_{suffix}', block.filters, kernel, dilation=dilation,
          time_padding=self.time_padding(block), use_bias=False,
          implementation=self.conv_implementation), 'ds_kernel_size', block)]
    out: list[layers.Layer] = []
    if block.kernel_size:
      out.append(self.track(layers.DepthwiseConv2D(
          f'depthwise_{suffix}', kernel, dilation=dilation,
          strides=(block.stride, 1), time_padding=self.time_padding(block),
          use_bias=False, implementation=self.depthwise_implementation),
                            'ds_kernel_size', block))
    out.append(self.pointwise(f'pointwise_{suffix}', block.filters))
    return out

  def block(self, block: _Block) -> list[layers.Layer]:
    b = block.index
    body: list[layers.Layer] = []
    for repeat in range(1, block.repeat + 1):
      body += self.time_conv(block, repeat)
      body.append(self.norm(f'batch_norm_{b}_{repeat}'))
      if repeat < block.repeat:
        body += self.activation(f'{b}_{repeat}')
    if block.residual:
      shortcut = layers.Sequential(f'shortcut_{b}', (
          self.pointwise(f'shortcut_conv_{b}', block.filters),
          self.norm(f'shortcut_batch_norm_{b}')))
      out: list[layers.Layer] = [layers.Residual(
          f'residual_{b}', layers.Sequential(f'body_{b}', tuple(body)),
          shortcut, activation=self.config.activation)]
      if self.config.dropout:
        out.append(layers.Dropout(f'dropout_{b}', self.config.dropout))
    else:
      out = body + self.activation(f'{b}')
    if block.pool > 1:
      kind = 'max' if self.config.ds_max_pool else 'average'
      out.append(self.track(layers.Pool2D(
          f'{kind}_pool_{b}', (block.pool, 1), strides=(block.pool, 1),
          kind=kind), 'ds_pool', block))
    return out


def ds_tc_resnet(config: ml_collections.ConfigDict, *, frames: int,
                 features: int, label_count: int) -> tuple[layers.Layer, ...]:
  """Layers of the ds_tc_resnet for features ``[batch, frames, features]``.

  Args:
    config: the model section (see ``default_config``).
    frames: feature frames in one clip; the final pooling covers what the
      blocks leave of them.
    features: features per frame (the channels of the first block).
    label_count: number of classes.

  Returns:
    The layers, from features ``[batch, time, features]`` to logits
    ``[batch, time_out, label_count]``.

  Raises:
    ValueError: naming the flag, its value and what was expected, for
      malformed or unequal lists, values out of range, 'same' padding that
      reads future frames, strides kws_streaming cannot apply, or kernels and
      pools that do not fit the clip.
  """
  layers.get_activation(config.activation, owner='model.activation')
  if not 0.0 <= config.dropout < 1.0:
    raise ValueError(f'model.dropout is {config.dropout!r}, expected '
                     '0 <= dropout < 1.')
  for field in ('ds_max_pool', 'ds_scale'):
    if config[field] not in (0, 1):
      raise ValueError(f'model.{field} is {config[field]!r}, expected 0 or 1.')
  builder = _Builder(config, frames)
  net: list[layers.Layer] = [layers.FrameReshape('expand_dims', (1, features))]
  for block in _blocks(config):
    net += builder.block(block)
  net += [
      layers.Pool2D('average_pool', (builder.length, 1), strides=(1, 1),
                    kind='average'),
      layers.Flatten('flatten'),
      layers.Dense('logits', label_count),
  ]
  if config.return_softmax:
    net.append(layers.Activation('softmax', 'softmax'))
  return tuple(net)
