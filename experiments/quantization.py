"""Full-integer accuracy: float vs post-training quantization vs quantization-aware.

    python experiments/quantization.py [--models cnn,ds_cnn,gru] [--steps 400] \
        [--finetune-steps 200] [--variants float,qat,qat_finetune] \
        [--data data/synth] [--out runs/quantization]

For each model of ``experiments/configs/<model>.py`` (the zoo's settings:
``experiments/zoo.py``'s schedule, raw audio in) trains, from the same seed:

* ``float``: ``--steps`` steps of plain training; its export quantizes
  after training (post-training quantization, PTQ);
* ``qat``: the same schedule with ``quantization.aware=1`` (int8 fake
  quantization of weights, activations and recurrent states throughout);
* ``qat_finetune``: quantization-aware training that starts from the float
  run's best weights (``train.init_from``) for ``--finetune-steps`` more
  steps at a fifth of the learning rate;
* ``float_finetune``: the same continuation without fake quantization, the
  float model that ``qat_finetune`` is to match (and its PTQ).

Both are exported with ``--micro`` (the full-integer streaming model, int8
features in, calibrated on training clips) and measured on the test split:
the JAX model on clips and streaming (reset per clip), the full-integer
model streaming under TensorFlow Lite Micro and LiteRT, its flash, arena,
MACs per step, LiteRT's time per step on one thread (optimized kernels) and
TFLM's on this host. With ``--heldout-dir``, every run is also measured on
Kokoro-82M speech (30 speakers of a neural engine training never heard):
the JAX model on clips and the full-integer model under TFLM. Writes ``<out>/quantization.json`` (atomically; a
finished model is not run again) and ``<out>/quantization.png``, and prints
the table of ``experiments/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import numpy as np  # pylint: disable=g-import-not-at-top
import tqdm

import jax  # pylint: disable=g-import-not-at-top

from kws_jax import atomic, cli, heldout
from kws_jax import config as kws_config
from kws_jax.export import accuracy, export_run, micro, micro_runtime
from kws_jax.models import wanted_words
from kws_jax.train import load_run, train_and_evaluate
from experiments import zoo

VARIANTS = ('float', 'qat', 'float_finetune', 'qat_finetune')
FINETUNED = ('float_finetune', 'qat_finetune')


def variant_config(name: str, variant: str, args):
  if variant not in FINETUNED:
    config = zoo.config_for(name, args.data, args.steps)
    config.quantization.aware = int(variant == 'qat')
    return config
  config = zoo.config_for(name, args.data, args.finetune_steps)
  config.quantization.aware = int(variant == 'qat_finetune')
  config.train.init_from = os.path.join(args.out, name, 'float')
  config.schedule.learning_rate = str(
      float(config.schedule.learning_rate) / 5)
  return config


def litert_int8_ms(flatbuffer: bytes) -> float:
  """Median ms of one step of the full-integer model under LiteRT, 1 thread."""
  stream = micro_runtime.litert_stream(flatbuffer)
  block = np.full(stream.input.shape, stream.input.zero_point,
                  stream.input.dtype)
  return zoo.median_ms(lambda: stream(block))


def heldout_figures(workdir: str, heldout_dir: str) -> dict:
  """The run on every clip of a held-out set (Kokoro-82M speech): the JAX
  model on clips and the full-integer model streaming under TFLM."""
  config, model, params = load_run(workdir)
  dataset = heldout.load_heldout(config, heldout_dir)
  audio, labels = accuracy.load_split(model, dataset, 'training',
                                      layout=kws_config.clip_layout(config))
  logits = jax.jit(model.logits)
  jax_correct = sum(
      int(np.sum(np.argmax(np.asarray(logits(params, audio[i:i + 100])),
                           -1) == labels[i:i + 100]))
      for i in range(0, len(labels), 100))
  frontend = jax.jit(lambda x: model.frontend.apply({}, x))
  features = (audio if model.preprocess != 'raw' else np.concatenate(
      [np.asarray(frontend(audio[i:i + 100]))
       for i in range(0, len(audio), 100)]))
  with open(os.path.join(workdir, 'micro', 'stream_int8.tflite'), 'rb') as f:
    flatbuffer = f.read()
  stream = micro.FloatFacing(micro_runtime.tflm_stream(flatbuffer))
  tflm = accuracy.streaming_accuracy(stream, features, labels, 1, reset=True)
  return {'clips': int(len(labels)),
          'jax_non_stream': 100 * jax_correct / len(labels),
          'int8_tflm_reset1': 100 * tflm.accuracy}


def measure(name: str, variant: str, args) -> dict:
  workdir = os.path.join(args.out, name, variant)
  config = variant_config(name, variant, args)
  result = train_and_evaluate(config, workdir, progress=True)
  manifest = export_run(workdir, progress=True, workers=0, micro=True,
                        folders=('tflite_stream_state_external',))
  entry = manifest['micro']
  with open(os.path.join(workdir, entry['file']), 'rb') as file:
    flatbuffer = file.read()
  jax_accuracy = manifest['accuracy_test_split']['jax']
  return {
      'steps': args.finetune_steps if variant in FINETUNED else args.steps,
      'test_accuracy_fake_quant' if 'qat' in variant else 'test_accuracy':
          100 * result['test_accuracy'],
      'jax_non_stream': jax_accuracy['non_stream'],
      'jax_stream_reset1': jax_accuracy['stream_reset1'],
      'int8_tflm_reset1': entry['accuracy_test_split']['tflm_reset1'],
      'int8_litert_reset1': entry['accuracy_test_split']['litert_reset1'],
      'int8_litert_reset0': entry['accuracy_test_split']['litert_reset0'],
      'flash_bytes': entry['flash_bytes'],
      'arena_bytes': entry['arena_bytes'],
      'macs_per_step': entry['macs_per_step'],
      'litert_int8_ms_per_step': litert_int8_ms(flatbuffer),
      'tflm_ms_per_step_host': entry['tflm_vs_litert']['tflm_ms_per_step_host'],
  }


def table(results: dict) -> str:
  """One row per model and run: the float network (for a QAT run, its
  weights without the activation quantizers: what the export converts), the
  QAT network itself, the full-integer stream and what it costs."""
  lines = ['| model | run | steps | float JAX: clips / stream | QAT JAX '
           '(fake quant): clips | full-int8 stream: TFLM / LiteRT | flash | '
           'arena | MACs/step | LiteRT int8 ms/step | TFLM ms/step (host) | '
           'Kokoro held out: JAX clips / int8 TFLM stream |',
           '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  names = {'float': 'float, PTQ', 'qat': 'QAT from scratch',
           'float_finetune': '+ float fine-tuning, PTQ',
           'qat_finetune': '+ QAT fine-tuning'}
  for name, runs in results.items():
    for variant in VARIANTS:
      if variant not in runs:
        continue
      r = runs[variant]
      lines.append(
          f'| {name} | {names[variant]} | {r["steps"]} | '
          f'{r["jax_non_stream"]:.1f}% / {r["jax_stream_reset1"]:.1f}% | '
          + (f'{r["test_accuracy_fake_quant"]:.1f}%' if 'qat' in variant
             else '') + ' | '
          f'{r["int8_tflm_reset1"]:.1f}% / {r["int8_litert_reset1"]:.1f}% | '
          f'{r["flash_bytes"] / 1024:,.0f} KiB | '
          f'{r["arena_bytes"] / 1024:,.1f} KiB | {r["macs_per_step"]:,} | '
          f'{r["litert_int8_ms_per_step"]:.2f} | '
          f'{r["tflm_ms_per_step_host"]:.2f} | ' + (
              f'{r["heldout"]["jax_non_stream"]:.1f}% / '
              f'{r["heldout"]["int8_tflm_reset1"]:.1f}% |'
              if 'heldout' in r else 'not measured |'))
  return '\n'.join(lines)


def plot(results: dict, path: str) -> None:
  """Bars per model: each run's JAX stream and full-integer TFLM accuracy."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(results)
  fig, ax = plt.subplots(figsize=(8, 4))
  width = 0.8 / (2 * len(VARIANTS))
  for v, variant in enumerate(VARIANTS):
    for k, (key, label) in enumerate((('jax_stream_reset1', 'JAX stream'),
                                      ('int8_tflm_reset1', 'int8 TFLM'))):
      values = [results[n].get(variant, {}).get(key, np.nan) for n in names]
      offset = (2 * v + k) * width - 0.4 + width / 2
      ax.bar(np.arange(len(names)) + offset, values, width,
             label=f'{variant}: {label}', alpha=1.0 if k else 0.5,
             color=f'C{v}')
  ax.set_xticks(np.arange(len(names)), names)
  ax.set_ylabel('streaming test accuracy (%)')
  finite = [r[key] for runs in results.values() for r in runs.values()
            for key in ('jax_stream_reset1', 'int8_tflm_reset1')]
  ax.set_ylim(max(0.0, min(finite) - 10), 100)
  ax.legend(fontsize=7, ncol=2)
  ax.set_title('Float vs post-training vs quantization-aware int8 (TFLM)')
  with atomic.atomic_write(path, 'wb') as file:
    fig.savefig(file, format='png', dpi=110)
  plt.close(fig)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='cnn,ds_cnn,gru')
  parser.add_argument('--steps', type=int, default=400)
  parser.add_argument('--finetune-steps', type=int, default=200)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--data', default='data/synth')
  parser.add_argument('--out', default='runs/quantization')
  parser.add_argument('--heldout-dir', default='',
                      help='also measure every run on Kokoro-82M speech made '
                      'here (voices and an engine training never heard)')
  parser.add_argument('--heldout-per-word', type=int, default=60)
  args = parser.parse_args()
  cli.configure_xla_cpu()
  path = os.path.join(args.out, 'quantization.json')
  results = {}
  if os.path.exists(path):
    with open(path, encoding='utf-8') as file:
      results = json.load(file)
  variants = args.variants.split(',')
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    parser.error(f'--variants: {", ".join(unknown)} unknown; expected some of '
                 f'{", ".join(VARIANTS)}')
  if set(FINETUNED) & set(variants) and 'float' not in variants:
    parser.error('--variants: the fine-tuned runs start from the float run; '
                 'include float')
  for name in tqdm.tqdm(args.models.split(','), desc='models'):
    for variant in VARIANTS:
      done = results.get(name, {}).get(variant)
      if variant not in variants or (done and done['steps'] == (
          args.finetune_steps if variant in FINETUNED else args.steps)):
        continue
      results.setdefault(name, {})[variant] = measure(name, variant, args)
      atomic.write_json(path, results)
  if args.heldout_dir:
    from kws_jax.data import kokoro  # pylint: disable=g-import-not-at-top
    for name, runs in results.items():
      words = wanted_words(variant_config(name, 'float', args))
      kokoro.synthesize_dataset(args.heldout_dir, words=words,
                                per_word=args.heldout_per_word, seed=1)
      for variant, result in runs.items():
        if 'heldout' not in result:
          result['heldout'] = heldout_figures(
              os.path.join(args.out, name, variant), args.heldout_dir)
          atomic.write_json(path, results)
  plot(results, os.path.join(args.out, 'quantization.png'))
  print(table(results))


if __name__ == '__main__':
  main()
