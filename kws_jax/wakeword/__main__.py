"""Custom wake words from text: synthesize, train, export, evaluate.

    python -m kws_jax.wakeword --words "hey jax,stop" --workdir runs/heyjax \\
        [--target-fa-per-hour 2] [--recipe quick|full] [--kokoro-per-word N] \\
        [--config experiments/configs/embedding_dnn.py] [--config.f=v ...]

No recording of anyone: eSpeak NG speaks the keywords (words or phrases,
several in one model), thousands of frequent words and the keywords'
near-misses, and with the tts extra Kokoro-82M says them too in four of its
five voice styles (`--kokoro-per-word`); long generated streams give
training windows, validation
streams choose the checkpoint and the threshold for the target false-accept
rate, and held-out evaluation streams (new speakers, and the same audio again
in rooms and noise no training step uses) give FRR at 0.5, 1 and 2 FA/h with
DET curves. The best weights are exported in every form (SavedModels;
TFLite float, dynamic-range and int8; non-streaming and streaming), with the
threshold and smoothing in the manifest. Kokoro's fifth voice style, which
training never hears, says each keyword for a held-out check (all five
styles when training used eSpeak NG alone).
Steps are kept on disk: a killed run resumes where it stopped.
See kws_jax.wakeword.recipe for each step.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from absl import flags

from kws_jax import cli

_WORDS = flags.DEFINE_string(
    'words', 'yes,no,up,down,left,right,on,off,stop,go',
    'Comma-separated keywords: words or phrases ("hey jax,stop").')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/wakeword',
                               'Directory of the run and its data.')
_TARGET = flags.DEFINE_float(
    'target_fa_per_hour', 2.0,
    'False accepts per hour the checkpoint and threshold are chosen for.')
_RECIPE = flags.DEFINE_enum(
    'recipe', 'quick', ['quick', 'full', 'tiny'],
    'Data and training sizes (kws_jax.wakeword.recipe); tiny only checks '
    'that everything runs.')
_ROOMS_DIR = flags.DEFINE_string(
    'rooms_dir', 'data/rooms',
    'Cache of simulated room banks, shared by runs.')
_KOKORO_PER_WORD = flags.DEFINE_integer(
    'kokoro_per_word', None,
    'Kokoro-82M training clips per keyword (default: the recipe\'s; 0: '
    'eSpeak NG only). Needs the tts extra.')
_HELDOUT_PER_WORD = flags.DEFINE_integer(
    'heldout_per_word', 20,
    'Kokoro-82M clips per keyword for the held-out engine check (0: skip).')
_ESPHOME = flags.DEFINE_bool(
    'esphome', False,
    "Also export the model for ESPHome's micro_wake_word (one keyword; a "
    'model on ESPHome\'s features, e.g. --config '
    'experiments/configs/esphome_cnn.py), its cutoff swept on the '
    'validation streams with the int8 model under TFLM.')
_TFLITE_FORMS = cli.define_tflite_forms_flag()
DEFAULT_CONFIG = 'experiments/configs/embedding_dnn.py'
_STEPS = 6


def _step(index: int, message: str) -> None:
  print(f'[{index}/{_STEPS}] {message}', flush=True)


def _absl_argv(argv: list[str]) -> list[str]:
  """Accepts --target-fa-per-hour as well as --target_fa_per_hour."""
  out = []
  for arg in argv:
    if arg.startswith('--') and not arg.startswith('--config'):
      name, sep, value = arg[2:].partition('=')
      arg = '--' + name.replace('-', '_') + sep + value
    out.append(arg)
  return out


def _overridden(argv: list[str]) -> list[str]:
  """The "section.field" names set with --config.section.field=value."""
  return [arg[len('--config.'):].split('=')[0] for arg in argv
          if arg.startswith('--config.')]


def main(argv: list[str]) -> None:
  argv = _absl_argv(argv)
  if not any(a == '--config' or a.startswith('--config=') for a in argv):
    argv = [argv[0], '--config', DEFAULT_CONFIG, *argv[1:]]
  base, rest = cli.parse_config_flags(argv)
  if len(rest) > 1:
    sys.exit(f'error: unexpected arguments: {" ".join(rest[1:])}')
  from kws_jax.wakeword import recipe as recipe_lib  # pylint: disable=g-import-not-at-top
  started = time.time()
  try:
    keywords = recipe_lib.parse_keywords(_WORDS.value)
    if _TARGET.value <= 0:
      raise ValueError(f'--target-fa-per-hour {_TARGET.value:g}, expected > 0')
    if _ESPHOME.value and len(keywords) != 1:
      raise ValueError(f'--esphome: an ESPHome model detects one wake word, '
                       f'--words gives {len(keywords)}')
  except ValueError as error:
    sys.exit(f'error: {error}')
  cli.configure_xla_cpu()
  # pylint: disable=g-import-not-at-top
  from kws_jax import config as kws_config
  from kws_jax.detect.runners import read_labels
  from kws_jax.export import ExportError, esphome as esphome_export, export_run
  from kws_jax.export.pipeline import features_step_ms
  from kws_jax.export.report import forms_table
  from kws_jax.heldout import kokoro_accuracy
  from kws_jax.models import build_model
  from kws_jax.train import load_run, train_and_evaluate
  from kws_jax.train.workdir import check_resumable
  from kws_jax.wakeword import esphome, selection, streams as streams_lib
  # pylint: enable=g-import-not-at-top

  recipe = recipe_lib.RECIPES[_RECIPE.value]
  workdir = _WORKDIR.value
  layout = recipe_lib.Layout(workdir)
  try:
    if _KOKORO_PER_WORD.value is not None:
      recipe = dataclasses.replace(recipe,
                                   kokoro_per_word=_KOKORO_PER_WORD.value)
    config = recipe_lib.training_config(base, keywords, recipe, layout,
                                        keep=_overridden(argv),
                                        rooms_dir=_ROOMS_DIR.value)
    window_samples = kws_config.clip_layout(config)['clip_samples']
    recipe_lib.check_data(layout, keywords, _RECIPE.value, recipe)
    check_resumable(workdir, config)

    _step(1, f'eSpeak NG clips of {", ".join(keywords)}, frequent words and '
          f'near-misses in {layout.clips}')
    vocab = recipe_lib.negatives(keywords, recipe)
    for keyword in keywords:
      shown = ', '.join(vocab.near_misses[keyword][:8]) or 'none'
      print(f'  near-misses of {keyword!r}: {shown}')
    recipe_lib.make_clips(keywords, recipe, layout, vocab)
    if recipe.kokoro_per_word:
      print(f'  Kokoro-82M: {recipe.kokoro_per_word} clips per keyword, '
            'the near-misses and '
            f'{recipe.kokoro_vocabulary} frequent words, styles '
            f'{", ".join(recipe_lib.training_kokoro_styles())} (about '
            '0.25 s per clip; cached)')
    recipe_lib.make_kokoro_clips(keywords, recipe, layout, vocab)

    _step(2, f'streams in {layout.streams}: training windows, validation, '
          'evaluation (also in unseen rooms)')
    recipe_lib.make_streams(keywords, recipe, layout, vocab)
    recipe_lib.make_window_bank(recipe, layout, window_samples)
    room_streams = recipe_lib.render_evaluation_rooms(recipe, layout,
                                                      _ROOMS_DIR.value)

    if _ESPHOME.value:  # before any training: the model must fit ESPHome
      esphome_export.check_model(build_model(config))
    ladder = selection.budgets(_TARGET.value)
    _step(3, f'training {config.model.name} in {workdir}, checkpoints chosen '
          f'by recall at {ladder[0]:g}-{ladder[-1]:g} FA/h on validation '
          'streams')
    model = build_model(config)
    labels = recipe_lib.labels_of(keywords)
    selector = selection.StreamSelector(
        model, labels, streams_lib.load_streams(
            [layout.stream('validation'), layout.stream('validation_negative')]),
        target_fa_per_hour=_TARGET.value)
    if selection.read_operating_point(workdir) is None:
      train_and_evaluate(config, workdir, selector=selector)
      _, _, params = load_run(workdir, 'best')
      selection.write_operating_point(workdir,
                                      selector.operating_point(params))
    point = selection.read_operating_point(workdir)

    _step(4, 'exporting every form and measuring its test accuracy')
    esphome_sweep = {}
    if _ESPHOME.value:
      step_ms = features_step_ms(model)
      validation = streams_lib.load_streams(
          [layout.stream('validation'), layout.stream('validation_negative')])

      def esphome_detection(flatbuffer):
        detection, esphome_sweep['validation'] = esphome.choose_detection(
            flatbuffer, model.frontend, validation, keywords[0],
            step_ms / 1000, max(1, round(point['smoothing_ms'] / step_ms)),
            _TARGET.value, refractory_ms=point['refractory_ms'])
        return detection
    manifest = export_run(
        workdir, folders=_TFLITE_FORMS.value, esphome=_ESPHOME.value,
        esphome_detection=esphome_detection if _ESPHOME.value else None)
  except (ValueError, FileNotFoundError, FloatingPointError,
          ExportError) as error:
    sys.exit(f'error: {error}')

  _step(5, 'held-out evaluation: new speakers and sentences, then unseen '
        'rooms; Kokoro-82M clips')
  _, model, params = load_run(workdir, 'best')
  labels = read_labels(workdir, model.label_count)
  evaluations = {}
  for name, paths in (
      ('streams', [layout.stream('evaluation'),
                   layout.stream('evaluation_negative')]),
      ('streams in rooms', room_streams)):
    plot = os.path.join(workdir, 'wakeword_det_' + name.replace(' ', '_') +
                        '.png')
    evaluations[name] = recipe_lib.evaluate_streams(
        model, params, labels, paths, plot, f'{", ".join(keywords)}: {name}',
        smoothing_ms=point['smoothing_ms'])
  esphome_report = None
  if _ESPHOME.value:
    entry = manifest['esphome']
    with open(os.path.join(workdir, entry['file']), 'rb') as file:
      flatbuffer = file.read()
    detection = esphome_export.Detection(entry['probability_cutoff_uint8'],
                                         entry['sliding_window_size'],
                                         entry['cutoff_source'])
    esphome_report = {
        'cutoff_uint8': detection.cutoff, 'source': detection.source,
        'sliding_window_size': detection.sliding_window_size,
        'validation': esphome_sweep.get('validation'),
        **{name: esphome.evaluate(
            flatbuffer, model.frontend, streams_lib.load_streams(paths),
            keywords[0], features_step_ms(model) / 1000, detection,
            refractory_ms=point['refractory_ms'],
            plot_path=os.path.join(workdir, 'wakeword_det_esphome_' +
                                   name.replace(' ', '_') + '.png'),
            title=f'{keywords[0]}, ESPHome int8 model under TFLM: {name}')
           for name, paths in (
               ('streams', [layout.stream('evaluation'),
                            layout.stream('evaluation_negative')]),
               ('streams in rooms', room_streams))}}
  heldout_styles = recipe_lib.heldout_kokoro_styles(recipe)
  heldout = kokoro_accuracy(
      workdir, os.path.join(layout.data, 'kokoro' if len(heldout_styles) > 1
                            else f'kokoro_{heldout_styles[0]}'),
      keywords, _HELDOUT_PER_WORD.value, heldout_styles) if (
          _HELDOUT_PER_WORD.value > 0) else None
  report = {'keywords': list(keywords), 'recipe': _RECIPE.value,
            'operating_point': point, 'evaluation': evaluations,
            'kokoro': heldout.as_dict() if heldout else None,
            'kokoro_styles': list(heldout_styles),
            'esphome': esphome_report,
            'seconds': time.time() - started}
  recipe_lib.write_report(workdir, report)

  _step(6, 'summary')
  print('\n' + forms_table(manifest))
  if heldout is not None:
    heard = ('a voice style training never heard: ' + heldout_styles[0]
             if recipe.kokoro_per_word else 'never trained on')
    print(f'\nheld-out Kokoro-82M speakers ({heard}), '
          f'{int(heldout.confusion.sum())} clips: {heldout.accuracy:.2%} '
          f'({heldout.keyword_accuracy:.2%} on keywords alone)')
  threshold = point['threshold']
  print(f'\noperating point for {_TARGET.value:g} FA/h, chosen on '
        f'{point["validation_hours"]:.2f} h of validation streams: ' + (
            'not reached (no threshold gives so few false accepts)'
            if threshold is None else
            f'threshold {threshold:g}, smoothing {point["smoothing_ms"]:g} ms '
            f'(in manifest.json)'))
  for name, evaluation in evaluations.items():
    print(f'\nheld-out {name}, {evaluation["hours"]:.2f} h, '
          f'{evaluation["keywords"]} keywords:')
    for budget, best in evaluation['frr_at_fa_per_hour'].items():
      print(f'  FRR at {budget} FA/h: ' + (
          'not reached' if best is None else
          f'{best["frr"]:.1%} (threshold {best["threshold"]:g}, '
          f'{best["fa_per_hour"]:.2f} FA/h)'))
    chosen = recipe_lib.point_at(evaluation, threshold)
    if chosen is not None:
      print(f'  at the operating point: FRR {chosen["frr"]:.1%}, '
            f'{chosen["fa_per_hour"]:.2f} FA/h')
  if esphome_report is not None:
    print(f'\nESPHome model {manifest["esphome"]["manifest"]} (int8 under TFLM,'
          f' arena {manifest["esphome"]["arena_bytes"]:,} bytes): cutoff '
          f'{esphome_report["cutoff_uint8"]}/255, window '
          f'{esphome_report["sliding_window_size"]}; {esphome_report["source"]}')
    for name in ('streams', 'streams in rooms'):
      chosen = esphome_report[name]['at_cutoff']
      print(f'  held-out {name}: FRR {chosen["frr"]:.1%}, '
            f'{chosen["fa_per_hour"]:.2f} FA/h')
  print(f'\ntotal time {time.time() - started:.0f} s; artifacts in {workdir}: '
        f'manifest.json, tflite_*/, {recipe_lib.REPORT_FILE}, '
        'wakeword_det_*.png, curves.png')


if __name__ == '__main__':
  main(sys.argv)
