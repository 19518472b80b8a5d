"""``train_and_evaluate(config, workdir)``: the whole training run.

Trains ``config.model`` on ``config.data`` with kws_streaming's schedule,
evaluates on the validation split every ``train.eval_step_interval`` steps,
keeps the last and the best checkpoints, and finally reports the test
accuracy of the best weights (and of the last ones). Starting again with the
same workdir resumes from the last checkpoint and gives the same result as an
uninterrupted run: batches and dropout keys are functions of (seed, step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from kws_jax import atomic
from kws_jax import config as kws_config
from kws_jax import data
from kws_jax.cli import preferred_chunk_frames, preferred_conv_implementation
from kws_jax.data import device_augment
from kws_jax.data import device_data
from kws_jax.layers.base import trainable_mask
from kws_jax.models import Model, build_model, wanted_words
from kws_jax.summary import model_summary
from kws_jax.train import optim, parallel, plots, steps, workdir as run_files
from kws_jax.train.checkpoints import Checkpoints, load_run


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """Accuracy, mean loss and confusion counts ``[true, predicted]`` of a split."""

  accuracy: float
  loss: float
  confusion: np.ndarray


@dataclasses.dataclass(frozen=True)
class Selection:
  """What a run's checkpoint selection makes of one evaluation.

  Attributes:
    score: higher is better; the best checkpoint has the highest (ties go to
      the later step).
    scalars: logged as the split 'selection' of metrics.jsonl.
    text: one line for the progress output.
  """

  score: float
  scalars: dict[str, float]
  text: str


# (params, validation accuracy) -> Selection. Without one, the best
# checkpoint is the one of the highest validation accuracy.
Selector = Callable[[Any, float], Selection]
DEVICE_AUGMENTATION_CHOICES = ('auto', 'on', 'off')
# 'auto' puts the training split on the device when it takes at most this
# share of the device's memory.
CLIPS_ON_DEVICE_MEMORY_SHARE = 0.25


def check_config(config: ml_collections.ConfigDict) -> None:
  """Fails on training settings that cannot work, before any work starts."""
  train = config.train
  for field in ('batch_size', 'eval_step_interval', 'log_every'):
    if getattr(train, field) < 1:
      raise ValueError(f'train.{field} is {getattr(train, field)}, expected '
                       '>= 1.')
  if train.microbatches < 1 or train.batch_size % train.microbatches:
    raise ValueError(
        f'train.microbatches is {train.microbatches}, expected a divisor of '
        f'train.batch_size ({train.batch_size}).')
  if train.checkpoint_every < 0:
    raise ValueError(f'train.checkpoint_every is {train.checkpoint_every}, '
                     'expected >= 0 (0: at every evaluation).')
  if not 0 <= train.seed < 2**32:
    raise ValueError(f'train.seed is {train.seed}, expected 0 <= seed < 2**32.')
  kws_config.clip_layout(config)
  acoustics_settings(config)
  augments_on_device(config)
  _clips_on_device_setting(config)
  cfg = config.data
  data.AudioAugmentation(  # checks the augmentation's ranges
      background_frequency=cfg.background_frequency,
      background_volume=cfg.background_volume,
      time_shift_ms=cfg.time_shift_ms, resample=cfg.resample,
      volume_resample=cfg.volume_resample, sample_rate=cfg.sample_rate)


def augments_on_device(config: ml_collections.ConfigDict) -> bool:
  """Whether ``data.device_augmentation`` puts the augmentation on the device.

  'auto': yes unless JAX runs on the CPU or ``acoustics.enabled`` (the room
  simulation runs on the host, after kws_streaming's steps).

  Raises:
    ValueError: a value not in DEVICE_AUGMENTATION_CHOICES, or 'on' with
      acoustics.
  """
  value = config.data.get('device_augmentation', 'auto')
  if value not in DEVICE_AUGMENTATION_CHOICES:
    raise ValueError(f'data.device_augmentation is {value!r}, expected one of '
                     f'{", ".join(map(repr, DEVICE_AUGMENTATION_CHOICES))}.')
  acoustics = acoustics_settings(config) is not None
  if value == 'on' and acoustics:
    raise ValueError("data.device_augmentation is 'on' but acoustics.enabled "
                     'is set: the room simulation runs on the host; use '
                     "'auto' or 'off'.")
  if value == 'auto':
    return not acoustics and jax.default_backend() != 'cpu'
  return value == 'on'


def _clips_on_device_setting(config: ml_collections.ConfigDict) -> str:
  """``data.clips_on_device``, checked against the augmentation's place."""
  value = config.data.get('clips_on_device', 'auto')
  if value not in DEVICE_AUGMENTATION_CHOICES:
    raise ValueError(f'data.clips_on_device is {value!r}, expected one of '
                     f'{", ".join(map(repr, DEVICE_AUGMENTATION_CHOICES))}.')
  if value == 'on' and not augments_on_device(config):
    raise ValueError("data.clips_on_device is 'on' but the augmentation runs "
                     "on the host; set data.device_augmentation='on' too.")
  return value


def clips_on_device(config: ml_collections.ConfigDict,
                    dataset: data.SpeechCommands) -> bool:
  """Whether ``data.clips_on_device`` puts the training split on the device.

  'auto': yes when the augmentation runs there, JAX does not run on the CPU
  (where the host's memory is the device's) and the split's clips take at
  most ``CLIPS_ON_DEVICE_MEMORY_SHARE`` of the device's memory.

  Raises:
    ValueError: a value not in DEVICE_AUGMENTATION_CHOICES, or 'on' with
      the augmentation on the host.
  """
  value = _clips_on_device_setting(config)
  if value == 'off' or not augments_on_device(config):
    return False
  if value == 'on':
    return True
  if jax.default_backend() == 'cpu':
    return False
  limit = (jax.local_devices()[0].memory_stats() or {}).get('bytes_limit')
  layout = kws_config.clip_layout(config)
  needed = device_data.split_bytes(
      dataset, 'training', layout['foreground_samples'] or
      layout['clip_samples'])
  return limit is not None and needed <= CLIPS_ON_DEVICE_MEMORY_SHARE * limit


def load_dataset(config: ml_collections.ConfigDict) -> data.SpeechCommands:
  """The Speech Commands-layout dataset described by ``config.data``."""
  cfg = config.data
  return data.load_speech_commands(
      cfg.data_dir, wanted_words=wanted_words(config),
      silence_percentage=cfg.silence_percentage,
      unknown_percentage=cfg.unknown_percentage,
      validation_percentage=cfg.validation_percentage,
      testing_percentage=cfg.testing_percentage,
      split_data=bool(cfg.split_data), sample_rate=int(cfg.sample_rate))


def load_window_banks(config: ml_collections.ConfigDict
                      ) -> data.windows.WindowBank | None:
  """The banks of ``config.data.window_banks`` as one, or None."""
  paths = [p.strip() for p in config.data.get('window_banks', '').split(',')
           if p.strip()]
  if not paths:
    return None
  return data.windows.concatenate(
      [data.windows.load_bank(path) for path in paths])


def evaluate(eval_step, params: Any, dataset: data.SpeechCommands, split: str,
             config: ml_collections.ConfigDict, sharding) -> Evaluation:
  """Runs ``eval_step`` over a whole split, exactly once."""
  labels = len(dataset.labels)
  correct = count = loss = 0.0
  confusion = np.zeros((labels, labels), np.int64)
  for batch in data.eval_batches(dataset, split, config.train.batch_size,
                                 num_threads=config.data.num_threads or None,
                                 **kws_config.clip_layout(config)):
    out = jax.device_get(eval_step(params, parallel.put_batch(batch, sharding)))
    correct += float(out['correct'])
    count += float(out['count'])
    loss += float(out['loss'])
    real = batch['weight'] > 0
    np.add.at(confusion, (batch['label'][real], out['prediction'][real]), 1)
  return Evaluation(correct / count, loss / count, confusion)


def _augmentation(config: ml_collections.ConfigDict, model: Model):
  cfg = config.data
  audio = data.AudioAugmentation(
      background_frequency=cfg.background_frequency,
      background_volume=cfg.background_volume,
      time_shift_ms=cfg.time_shift_ms, resample=cfg.resample,
      volume_resample=cfg.volume_resample, sample_rate=cfg.sample_rate)
  if not cfg.use_spec_augment:
    return audio, None, None
  spec = data.SpecAugment(
      time_masks=cfg.time_masks_number,
      time_mask_max_size=cfg.time_mask_max_size,
      frequency_masks=cfg.frequency_masks_number,
      frequency_mask_max_size=cfg.frequency_mask_max_size)
  clip_samples = kws_config.clip_layout(config)['clip_samples']
  feature_shape = (model.frontend.output_length(clip_samples),
                   model.frontend.num_features)
  return audio, spec, feature_shape


def device_augmentation(
    config: ml_collections.ConfigDict, dataset: data.SpeechCommands,
    audio: data.AudioAugmentation, spec_augment: data.SpecAugment | None,
    feature_shape: tuple[int, int] | None,
) -> tuple[device_augment.DeviceAugmentation, device_augment.NoiseBank]:
  """The train step's augmentation settings and noise bank (host arrays)."""
  layout = kws_config.clip_layout(config)
  clip = layout['clip_samples']
  settings = device_augment.DeviceAugmentation(
      audio, layout['foreground_samples'] or clip, spec_augment, feature_shape)
  recordings = data.pipeline.load_background_noise(
      dataset, layout['sample_rate'], clip)
  return settings, device_augment.noise_bank(recordings, clip)


def load_acoustics(config: ml_collections.ConfigDict
                   ) -> tuple[data.acoustics.Acoustics | None,
                              data.acoustics.RoomBank | None]:
  """``config.acoustics`` and its room bank (made and cached on first use)."""
  acoustics = acoustics_settings(config)
  rooms = None
  if acoustics is not None and acoustics.room_probability > 0:
    cfg = config.acoustics
    rooms = data.acoustics.load_or_make_rooms(
        kws_config.rooms_path(config), cfg.rooms, cfg.rooms_seed,
        sample_rate=config.data.sample_rate)
  return acoustics, rooms


def acoustics_settings(config: ml_collections.ConfigDict
                       ) -> data.acoustics.Acoustics | None:
  """``config.acoustics`` as settings, or None when it is off.

  Raises:
    ValueError: a probability or range that cannot be (names the field).
  """
  cfg = config.get('acoustics')
  if cfg is None or not cfg.enabled:
    return None
  if cfg.rooms < 1:
    raise ValueError(f'acoustics.rooms is {cfg.rooms}, expected >= 1.')
  return data.acoustics.Acoustics(
      room_probability=cfg.room_probability,
      noise_probability=cfg.noise_probability,
      snr_db=(cfg.snr_db_low, cfg.snr_db_high),
      microphone_probability=cfg.microphone_probability,
      telephone_probability=cfg.telephone_probability,
      gain_db=(cfg.gain_db_low, cfg.gain_db_high),
      sample_rate=config.data.sample_rate)


def _clear_run(workdir: str) -> None:
  """Deletes a run's checkpoints, logs and results.

  ``manifest.json`` and the operating point go too: they describe weights
  that no longer exist, and without the manifest the runners refuse the old
  exported models (their files stay until the next export replaces them).
  """
  for name in ('checkpoints', 'logs'):
    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
  for name in ('metrics.jsonl', 'config.json', 'accuracy_last.txt',
               'accuracy_best.txt', 'manifest.json',
               run_files.OPERATING_POINT_FILE):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      os.remove(path)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       overwrite: bool = False,
                       progress: bool = True,
                       selector: Selector | None = None) -> dict[str, Any]:
  """Trains, evaluates and writes the run's artifacts to ``workdir``.

  Args:
    config: an experiment config (see ``kws_jax.config.default_config``).
    workdir: where checkpoints, logs and artifacts go; a run already there
      with the same config is resumed, one with another config is refused.
    overwrite: delete a previous run in ``workdir`` and start fresh.
    progress: show a tqdm progress bar.
    selector: chooses the best checkpoint at each evaluation (default: the
      validation accuracy); e.g. the FRR at a target false-accept rate on
      validation streams (``kws_jax.wakeword.selection``).

  Returns:
    ``test_accuracy`` (best weights), ``test_accuracy_last``,
    ``best_validation_accuracy``, ``best_score``, ``best_step``, ``steps``
    and ``workdir``.
  """
  # Everything a config can get wrong fails here, before data and compiling.
  check_config(config)
  model = build_model(
      config, auto_conv_implementation=preferred_conv_implementation(),
      auto_chunk_frames=preferred_chunk_frames())
  schedule = optim.learning_rate_schedule(config.schedule)
  optimizer = optim.make_optimizer(config.optimizer, schedule)
  num_steps = optim.total_steps(config.schedule)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.train.batch_size, mesh,
                           config.train.microbatches)

  dataset = load_dataset(config)
  if len(dataset.labels) != model.label_count:
    raise ValueError(
        f'model.label_count is {model.label_count} but the data has '
        f'{len(dataset.labels)} labels ({", ".join(dataset.labels)}); set '
        f'--config.model.label_count={len(dataset.labels)} or 0 (automatic).')

  atomic.check_writable_directory(workdir, '--workdir')
  # Only the first process writes the run's files (and holds its lock).
  lock = (run_files.locked(workdir) if jax.process_index() == 0 else
          contextlib.nullcontext())
  with lock:
    if overwrite:
      _clear_run(workdir)
    atomic.remove_leftovers(workdir)  # of a run killed while writing
    if run_files.check_resumable(workdir, config):
      _print(f'{workdir} holds a run of another config that stopped before '
             'its first checkpoint; starting over with this config')
      _clear_run(workdir)
    run_files.write_run_files(workdir, config, list(dataset.labels),
                              model_summary(model))
    return _train(config, workdir, model, optimizer, schedule, num_steps,
                  mesh, dataset, progress, selector)


def params_from_run(params: Any, source_workdir: str) -> Any:
  """``params`` with every weight taken from the best checkpoint of a run.

  The two models must hold the same weights (keys and shapes); what only
  ``params`` has must be non-trainable (the ranges of a quantization-aware
  model trained from a float run), and keeps its initial value.

  Raises:
    ValueError: a weight the run lacks or holds in another shape.
  """
  _, _, source = load_run(source_workdir)
  found = {jax.tree_util.keystr(path): leaf for path, leaf in
           jax.tree_util.tree_leaves_with_path(source)}
  mask = trainable_mask(params)

  def take(path, leaf, trainable):
    key = jax.tree_util.keystr(path)
    if key not in found:
      if trainable:
        raise ValueError(f'train.init_from: {source_workdir} has no weight '
                         f'{key}; expected a run of the same model.')
      return leaf
    if found[key].shape != leaf.shape:
      raise ValueError(f'train.init_from: {source_workdir} holds {key} with '
                       f'shape {found[key].shape}, expected {leaf.shape}.')
    return jnp.asarray(found[key], leaf.dtype)

  return jax.tree_util.tree_map_with_path(take, params, mask)


@dataclasses.dataclass(frozen=True)
class TrainingInputs:
  """What the loop calls each step: ``train_step(state, batch, *arguments)``.

  Attributes:
    train_step: the jitted step; ``state`` is donated.
    batches: host batches from the loader, one per step.
    arguments: arrays the step takes besides the batch, already on the
      devices: the noise bank with augmentation on the device, and the
      training split's and window bank's clip stores with the clips there.
    augment_on_device: where the augmentation runs.
    clips_on_device: whether the training clips are on the device.
  """

  train_step: Callable[..., Any]
  batches: Iterator[dict[str, np.ndarray]]
  arguments: tuple[Any, ...]
  augment_on_device: bool
  clips_on_device: bool


def training_inputs(config: ml_collections.ConfigDict, model: Model,
                    optimizer, schedule, dataset: data.SpeechCommands, mesh,
                    state_shardings: Any, start: int, num_steps: int | None,
                    progress: bool = True) -> TrainingInputs:
  """The jitted train step and the batches of ``num_steps`` steps (None:
  no end) from step ``start`` on.

  Where the augmentation runs and where the clips are read follow
  ``data.device_augmentation`` and ``data.clips_on_device``; the batches
  and the trained weights do not depend on where the clips are read.
  """
  replicated = parallel.replicated(mesh)
  audio_augmentation, spec_augment, feature_shape = _augmentation(config,
                                                                  model)
  on_device = augments_on_device(config)
  window_bank = load_window_banks(config)
  if window_bank is not None:
    _print(f'window banks: {len(window_bank)} windows '
           f'({window_bank.counts()}), {config.data.window_fraction:.0%} of '
           'each batch')
  layout = kws_config.clip_layout(config)
  on_device_settings, clip_length, readable = None, None, None
  arguments = ()
  if on_device:
    _print('augmenting on the device')
    on_device_settings, noise = device_augmentation(
        config, dataset, audio_augmentation, spec_augment, feature_shape)
    arguments = (noise,)
    spec_augment = feature_shape = None  # drawn on the device
    if clips_on_device(config, dataset):
      clips, readable = device_data.load_clips(
          dataset, 'training', on_device_settings.foreground_samples,
          layout['sample_rate'], num_threads=config.data.num_threads or
          data.pipeline.default_num_threads(), progress=progress)
      _print(f'training clips on the device: {clips.nbytes / 2**20:,.0f} '
             f'MiB ({clips.samples.dtype})')
      windows = (None if window_bank is None else
                 device_data.window_store(window_bank))
      arguments += (clips, windows)
      clip_length = layout['clip_samples']
  arguments = jax.device_put(arguments, replicated)
  train_step = jax.jit(
      steps.make_train_step(model, optimizer, schedule, config,
                            on_device_settings, clip_length, mesh),
      in_shardings=(state_shardings, parallel.batch_sharding(mesh),
                    *[replicated] * len(arguments)),
      out_shardings=(state_shardings, replicated), donate_argnums=0)
  acoustics, rooms = load_acoustics(config)
  batches = data.train_batches(
      dataset, config.train.batch_size, seed=config.train.seed,
      start_step=start, num_steps=num_steps,
      augmentation=audio_augmentation, spec_augment=spec_augment,
      feature_shape=feature_shape,
      windows=window_bank,
      window_fraction=config.data.get('window_fraction', 0.0),
      acoustics=acoustics, rooms=rooms, augment_on_device=on_device,
      clips_on_device=readable,
      num_threads=config.data.num_threads or None, **layout)
  return TrainingInputs(train_step, batches, arguments, on_device,
                        readable is not None)


def _train(config: ml_collections.ConfigDict, workdir: str, model: Model,
           optimizer, schedule, num_steps: int, mesh, dataset,
           progress: bool, selector: Selector | None) -> dict[str, Any]:
  """The body of train_and_evaluate, in a checked and locked workdir."""
  replicated = parallel.replicated(mesh)
  batch_sharding = parallel.batch_sharding(mesh)
  state = jax.device_put(
      steps.init_state(model, optimizer, config.train.seed), replicated)
  checkpoints = Checkpoints(os.path.join(workdir, 'checkpoints'),
                            config.train.max_to_keep)
  restored = checkpoints.restore_last(state)
  if restored is not None:
    state = jax.device_put(restored, replicated)
  elif config.train.get('init_from'):
    state = dict(state, params=jax.device_put(params_from_run(
        state['params'], config.train.init_from), replicated))
  start = int(state['step'])
  checkpoints.discard_after(start)
  log = run_files.MetricsLog(os.path.join(workdir, 'metrics.jsonl'), start)
  board = run_files.TensorBoard(workdir, start)
  _print(f'{"resuming" if start else "training"} {model.name} in {workdir} '
         f'from step {start} of {num_steps} on {mesh.size} device(s); '
         f'{len(dataset.split("training"))} training clips, labels: '
         f'{", ".join(dataset.labels)}')

  state_shardings = jax.tree.map(lambda _: replicated, state)
  inputs = training_inputs(config, model, optimizer, schedule, dataset, mesh,
                           state_shardings, start, num_steps - start,
                           progress)
  eval_step = jax.jit(steps.make_eval_step(model, mesh),
                      in_shardings=(state_shardings['params'], batch_sharding),
                      out_shardings=replicated)
  eval_interval = config.train.eval_step_interval
  checkpoint_every = config.train.checkpoint_every or eval_interval
  bar = tqdm(total=num_steps, initial=start, disable=not progress,
             desc='train', unit='step', dynamic_ncols=True)
  started = time.time()
  input_seconds = 0.0  # waiting for the loader
  clock = _Clock(start, config.train.batch_size)
  try:
    for step in range(start, num_steps):
      waiting = time.perf_counter()
      batch = parallel.put_batch(next(inputs.batches), batch_sharding)
      input_seconds += time.perf_counter() - waiting
      state, metrics = inputs.train_step(state, batch, *inputs.arguments)
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      done = step + 1
      if not np.isfinite(metrics['loss']):
        saved = (f'The last good checkpoint (step {checkpoints.last_step}) in '
                 f'{checkpoints.directory} is intact'
                 if checkpoints.last_step is not None else
                 'No checkpoint was saved yet')
        raise FloatingPointError(
            f'the training loss is {metrics["loss"]} at step {done}; stopping. '
            f'{saved}; lower the learning rate or clip gradients '
            '(optimizer.clip_grad_norm).')
      bar.update()
      bar.set_postfix(loss=f'{metrics["loss"]:.3f}',
                      acc=f'{metrics["accuracy"]:.1%}',
                      lr=f'{metrics["learning_rate"]:.2g}', refresh=False)
      if done % config.train.log_every == 0 or done == num_steps:
        log.append(done, 'train', metrics)
        board.scalars('train', done, metrics)
        board.scalars('train', done, clock.lap(done, input_seconds))
      if done % eval_interval == 0 or done == num_steps:
        result = evaluate(eval_step, state['params'], dataset, 'validation',
                          config, batch_sharding)
        scalars = {'accuracy': result.accuracy, 'loss': result.loss}
        log.append(done, 'validation', scalars)
        board.scalars('validation', done, scalars)
        if selector is None:
          chosen = Selection(result.accuracy, {},
                             f'{result.accuracy:.2%} validation accuracy')
        else:
          chosen = selector(state['params'], result.accuracy)
          log.append(done, 'selection', {'score': chosen.score,
                                         **chosen.scalars})
        best_step = checkpoints.best_step
        improved = checkpoints.offer_best(state, chosen.score)
        bar.write(f'step {done}: validation accuracy {result.accuracy:.2%}, '
                  f'loss {result.loss:.4f}'
                  + ('' if selector is None else f'; {chosen.text}')
                  + (' (best so far)' if improved else
                     f' (best at step {best_step})'))
      if done % checkpoint_every == 0 or done == num_steps:
        checkpoints.save_last(state)
        board.flush()
  finally:
    bar.close()
    board.close()
  seconds = time.time() - started
  trained = (num_steps - start) * config.train.batch_size

  best_state = checkpoints.restore_best(state) or state
  best = evaluate(eval_step, best_state['params'], dataset, 'testing', config,
                  batch_sharding)
  last = evaluate(eval_step, state['params'], dataset, 'testing', config,
                  batch_sharding)
  checkpoints.close()
  run_files.write_text(os.path.join(workdir, 'accuracy_last.txt'),
                       f'{last.accuracy * 100}')
  run_files.write_text(os.path.join(workdir, 'accuracy_best.txt'),
                       f'{best.accuracy * 100}')
  log.append(num_steps, 'test', {'accuracy': best.accuracy, 'loss': best.loss})
  plots.plot_curves(log.rows, os.path.join(workdir, 'curves.png'))
  plots.plot_confusion(
      best.confusion, dataset.labels,
      os.path.join(workdir, 'confusion_matrix.png'),
      f'{model.name}: test accuracy {best.accuracy:.2%} (best weights, step '
      f'{int(best_state["step"])})')
  best_validation = _validation_accuracy(log.rows, int(best_state['step']))
  _print(f'test accuracy {best.accuracy:.2%} with the best weights (step '
         f'{int(best_state["step"])}, validation '
         f'{best_validation:.2%}), {last.accuracy:.2%} with the last; '
         f'{num_steps - start} steps in {seconds:.0f} s '
         f'({trained / max(seconds, 1e-9):.0f} examples/s, '
         f'{input_seconds / max(seconds, 1e-9):.0%} of the time waiting for '
         f'the input pipeline). Artifacts in {workdir}')
  return {
      'test_accuracy': best.accuracy,
      'test_accuracy_last': last.accuracy,
      'best_validation_accuracy': best_validation,
      'best_score': checkpoints.best_score,
      'best_step': int(best_state['step']),
      'steps': num_steps,
      'workdir': workdir,
  }


class _Clock:
  """Training speed between two logged steps, for TensorBoard."""

  def __init__(self, step: int, batch_size: int):
    self._step, self._batch_size = step, batch_size
    self._time, self._input = time.perf_counter(), 0.0

  def lap(self, step: int, input_seconds: float) -> dict[str, float]:
    """Examples per second and the share of the wall time spent waiting for
    batches since the last lap."""
    now = time.perf_counter()
    elapsed = max(now - self._time, 1e-9)
    lap = {'speed/examples_per_second':
               (step - self._step) * self._batch_size / elapsed,
           'speed/input_share': (input_seconds - self._input) / elapsed}
    self._step, self._time, self._input = step, now, input_seconds
    return lap


def _validation_accuracy(rows: list[dict[str, Any]], step: int) -> float:
  """The validation accuracy logged at ``step`` (NaN if none was)."""
  for row in reversed(rows):
    if row['step'] == step and row['split'] == 'validation':
      return float(row['accuracy'])
  return float('nan')


def _print(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)
