"""The accuracy of every exported form, as the table the main jobs print."""

from __future__ import annotations

from typing import Any

QUANTIZATION_NAMES = {'float': 'TFLite float', 'dynamic': 'TFLite dynamic-range',
                      'int8': 'TFLite int8'}
FORM_NAMES = {'non_stream': 'non-streaming',
              'stream_state_external': 'streaming, external state',
              'stream_state_internal': 'streaming, internal state'}
RESET_NAMES = {'reset1': 'reset per clip', 'reset0': 'state carried over'}


def form_rows(manifest: dict[str, Any]
              ) -> list[tuple[str, str, float, int | None]]:
  """(runtime, form, test accuracy in %, file bytes or None) per form."""
  jax_accuracy = manifest['accuracy_test_split']['jax']
  rows = [('JAX', 'non-streaming', jax_accuracy['non_stream'], None),
          ('JAX', 'streaming, reset per clip', jax_accuracy['stream_reset1'],
           None),
          ('JAX', 'streaming, state carried over',
           jax_accuracy['stream_reset0'], None)]
  for result in manifest['tflite'].values():
    for key, value in result['accuracy'].items():
      form = FORM_NAMES[result['form']]
      if key in RESET_NAMES:
        form = f'{form}, {RESET_NAMES[key]}'
      rows.append((QUANTIZATION_NAMES[result['quantization']], form, value,
                   result['bytes']))
  return rows


def forms_table(manifest: dict[str, Any]) -> str:
  """The test-split accuracy of every form, one line each."""
  lines = [f'test split, {manifest["accuracy_test_split"]["clips"]} clips',
           f'{"model":<22}{"form":<46}{"accuracy":>9}{"size":>10}']
  for model, form, value, size in form_rows(manifest):
    size_text = f'{size / 1024:.0f} KiB' if size else ''
    lines.append(f'{model:<22}{form:<46}{value:>8.2f}%{size_text:>10}')
  return '\n'.join(lines)
