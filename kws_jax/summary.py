"""Model summary: layers, output shapes, parameters and streaming state.

    python -m kws_jax.summary --config experiments/configs/cnn.py \
        [--config.model.preprocess=mfcc] [--config.model.label_count=14]

Training writes the same text to ``model_summary.txt``.
"""

from __future__ import annotations

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.layers import count_params
from kws_jax.layers import Sequential
from kws_jax.layers.base import trainable_mask
from kws_jax.layers.combinators import _Branches
from kws_jax.models import Model

_RULE_WIDTH = 80
_NAME_WIDTH = 44


def model_summary(model: Model, batch_size: int = 1) -> str:
  """A Keras-style table of ``model`` plus its streaming state, as text."""
  params = jax.eval_shape(lambda: model.init(jax.random.key(0)))
  rows = [('input', _shape(model.clip_length, model.input_shape), 0)]
  for layer, in_shape, length in model.net.shapes(model.input_shape,
                                                  model.clip_length):
    rows += _layer_rows(layer, in_shape, length, params.get(layer.name, {}),
                        depth=0)
  total = count_params(params)
  mask = trainable_mask(params)
  trainable = sum(int(np.prod(leaf.shape)) for leaf, keep in zip(
      jax.tree.leaves(params), jax.tree.leaves(mask)) if keep)

  lines = [f'Model: {model.name} (preprocess={model.preprocess!r}, '
           f'{model.label_count} labels)', '=' * _RULE_WIDTH,
           f'{"Layer (type)":<{_NAME_WIDTH}}{"Output shape":<24}{"Params":>12}',
           '=' * _RULE_WIDTH]
  lines += [f'{name:<{_NAME_WIDTH}}{shape:<24}{count:>12,}' for name, shape, count in rows]
  lines += ['=' * _RULE_WIDTH, f'Total params: {total:,}',
            f'Trainable params: {trainable:,}',
            f'Non-trainable params: {total - trainable:,}', '']
  lines += _streaming_lines(model, batch_size)
  return '\n'.join(lines) + '\n'


def _layer_rows(layer, in_shape, length: int, params, depth: int
                ) -> list[tuple[str, str, int]]:
  """The layer's row, then (indented) those of the layers it is made of.

  Stacks and branch combinators list their children; other composite
  layers show one row.
  """
  rows = [(f'{"  " * depth}{layer.name} ({type(layer).__name__})',
           _shape(layer.output_length(length), layer.output_shape(in_shape)),
           count_params(params))]
  if isinstance(layer, Sequential):
    children = layer.shapes(in_shape, length)
  elif isinstance(layer, _Branches):
    children = [(child, in_shape, length) for child in layer.children()]
  else:
    children = []
  for child, child_shape, child_length in children:
    rows += _layer_rows(child, child_shape, child_length,
                        params.get(child.name, {}), depth + 1)
  return rows


def step_macs(model: Model) -> dict[str, int]:
  """Multiply-accumulates of one streaming step (batch 1), per layer name.

  Each layer's ``step_macs``: convolutions and dense layers count their
  matmuls, the frontend its DFT, mel and DCT; element-wise ops count 0.
  """
  return {layer.name: layer.step_macs(in_shape)
          for layer, in_shape, _ in model.net.shapes(model.input_shape)}


def _streaming_lines(model: Model, batch_size: int) -> list[str]:
  if not model.supports_step:
    return ['Streaming: none (a layer needs the whole clip); the export '
            'writes the non-streaming forms only.']
  state = jax.eval_shape(lambda: model.init_state(batch_size))
  block = (batch_size, model.block_size, *model.input_shape)
  unit = 'samples' if model.preprocess == 'raw' else 'frames'
  lines = [
      f'Streaming: a step takes {block} '
      f'({model.step_ms:g} ms) and returns logits '
      f'{(batch_size, 1, model.label_count)}.',
      (f'Receptive field {model.receptive_field} input {unit}; the first '
       f'{model.lookback} steps warm up the state.'
       if math.isfinite(model.receptive_field) else
       f'Receptive field unbounded (recurrent state); at step '
       f'{model.lookback + 1} the logits are those of the first clip.'),
      f'{"State":<{_NAME_WIDTH}}{"Shape":<24}{"Elements":>12}',
      '-' * _RULE_WIDTH,
  ]
  total, count = 0, 0
  for layer_name in [l.name for l in model.net.layers if l.name in state]:
    layer_state = state[layer_name]
    for path, leaf in jax.tree_util.tree_flatten_with_path(layer_state)[0]:
      name = '/'.join([layer_name] + [str(getattr(k, 'key', k)) for k in path])
      size = math.prod(leaf.shape)
      total, count = total + size, count + 1
      lines.append(f'{name:<{_NAME_WIDTH}}{str(tuple(leaf.shape)):<24}'
                   f'{size:>12,}')
  nbytes = sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(state))
  macs = step_macs(model)
  lines += ['-' * _RULE_WIDTH,
            f'Total state: {total:,} values ({nbytes:,} bytes) in '
            f'{count} tensors.',
            f'Multiply-accumulates per step: {sum(macs.values()):,} '
            f'({macs.get(model.frontend.name, 0):,} in the frontend).']
  return lines


def _shape(length: int, frame_shape: tuple[int, ...]) -> str:
  return str((None, length, *frame_shape))


def main(argv: list[str]) -> None:
  from kws_jax.cli import parse_config_flags  # pylint: disable=g-import-not-at-top
  from kws_jax.models import build_model  # pylint: disable=g-import-not-at-top

  config, rest = parse_config_flags(argv)
  if len(rest) > 1:
    sys.exit(f'error: unexpected arguments: {" ".join(rest[1:])}')
  try:
    model = build_model(config)
  except ValueError as error:
    sys.exit(f'error: {error}')
  print(model_summary(model), end='')


if __name__ == '__main__':
  main(sys.argv)
