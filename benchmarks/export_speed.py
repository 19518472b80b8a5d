"""Inference speed of the exported paper CNN: TFLite forms and the JAX step.

    python benchmarks/export_speed.py [--preprocess raw] [--repeats 2000]

Builds the paper CNN (random weights: speed does not depend on them),
exports it like ``python -m kws_jax.export`` (float, dynamic-range and int8
TFLite, calibrated on synthetic noise), and prints, on 1 thread:

* ``invoke``: one streaming step alone (what TFLite's ``benchmark_model``
  times, and what kws_streaming's published latencies are);
* ``+ state I/O``: the step plus copying every output state back into its
  input, as an application holding the external state does;
* ``runner``: a whole ``TfliteStreaming`` call through the Python signature
  runner (input checks, dicts; Python overhead included);

and the non-streaming latency per 1 s clip, the jitted JAX step, file sizes
and multiply-accumulates per 20 ms frame.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from benchmarks.timing import median_seconds
from experiments.configs import cnn as cnn_config
from kws_jax import cli
from kws_jax.export import forms, savedmodel
from kws_jax.export.pipeline import convert_form, export_models
from kws_jax.export.runtime import TfliteNonStreaming, TfliteStreaming
from kws_jax.summary import step_macs


def median_us(fn, repeats: int) -> float:
  return median_seconds(fn, repeats, warmup=20) * 1e6


def step_with_state_io(path: str, block: np.ndarray,
                       repeats: int) -> tuple[float, float]:
  """Median µs of ``invoke`` alone and of ``invoke`` + copying states back."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_path=path, num_threads=1)
  interpreter.allocate_tensors()
  signature = interpreter._get_full_signature_list()['serving_default']  # pylint: disable=protected-access
  inputs, outputs = signature['inputs'], signature['outputs']
  interpreter.set_tensor(next(i for n, i in inputs.items()
                              if not n.startswith('state_')), block)
  states = [(inputs[n], outputs[n]) for n in inputs if n.startswith('state_')]

  def step():
    interpreter.invoke()
    for state_in, state_out in states:
      interpreter.set_tensor(state_in, interpreter.get_tensor(state_out))

  return median_us(interpreter.invoke, repeats), median_us(step, repeats)


def convert_forms(model, quant_model, params, calibration: np.ndarray,
                  directory: str, form_names=('non_stream',
                                              'stream_state_external')
                  ) -> dict[tuple[str, str], str]:
  """Every quantization of ``form_names``, as the export makes them.

  Returns ``{(form, quantization): path of the .tflite file}``.
  """
  paths = {}
  for form in form_names:
    for name, m in (('float', model), ('quant', quant_model)):
      savedmodel.save(form, m, params, os.path.join(directory, name, form))
    for quantization in ('float', 'dynamic', 'int8'):
      source = os.path.join(
          directory, 'float' if quantization == 'float' else 'quant', form)
      flatbuffer = convert_form(form, quantization, source, model,
                                quant_model, params, calibration)
      path = os.path.join(directory, f'{form}_{quantization}.tflite')
      with open(path, 'wb') as file:
        file.write(flatbuffer)
      paths[form, quantization] = path
  return paths


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--preprocess', default='raw', choices=('raw', 'mfcc'))
  parser.add_argument('--repeats', type=int, default=2000)
  args = parser.parse_args()
  cli.configure_xla_cpu()
  config = cnn_config.get_config()
  config.model.preprocess = args.preprocess
  model, quant_model = export_models(config)
  params = model.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  clip_shape = (model.clip_length, *model.input_shape)
  calibration = (0.1 * rng.standard_normal((10, *clip_shape))
                 ).astype(np.float32)

  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    paths = convert_forms(model, quant_model, params, calibration, tmp)

    block = np.zeros((1, model.block_size, *model.input_shape), np.float32)
    clip = calibration[:1]
    for quantization in ('float', 'dynamic', 'int8'):
      streaming = TfliteStreaming(paths['stream_state_external', quantization])
      non_streaming = TfliteNonStreaming(paths['non_stream', quantization])
      path = paths['stream_state_external', quantization]
      rows.append((
          quantization,
          *step_with_state_io(path, block, args.repeats),
          median_us(lambda s=streaming: s(block), args.repeats),
          median_us(lambda n=non_streaming: n(clip), args.repeats // 10),
          os.path.getsize(path),
      ))

  step = jax.jit(forms.streaming_fn(model, params))
  states = forms.zero_states(model)
  jax_us = median_us(lambda: jax.block_until_ready(step(block, *states)),
                     args.repeats)
  macs = step_macs(model)
  print(f'paper CNN, preprocess={args.preprocess}, {os.cpu_count()} cores, '
        'TFLite on 1 thread (LiteRT, XNNPACK delegate)')
  print('streaming step, us per 20 ms frame:')
  print(f'{"TFLite":<10}{"invoke":>8}{"+ state I/O":>13}{"runner":>8}'
        f'{"non-stream us/1 s":>19}{"stream file":>14}')
  for quantization, invoke_us, io_us, runner_us, clip_us, size in rows:
    print(f'{quantization:<10}{invoke_us:>8.0f}{io_us:>13.0f}{runner_us:>8.0f}'
          f'{clip_us:>19.0f}{size / 1024:>11.0f} KiB')
  print(f'JAX jitted step (batch 1, CPU): {jax_us:.0f} us per frame')
  print(f'multiply-accumulates per 20 ms frame: {sum(macs.values()):,} '
        f'(frontend {macs.get("frontend", 0):,})')


if __name__ == '__main__':
  main()
