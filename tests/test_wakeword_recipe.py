"""Custom wake words from text: the recipe's pieces and the command end to end."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from kws_jax import config as kws_config
from kws_jax.data import vocabulary
from kws_jax.wakeword import recipe as recipe_lib
from test_quickstart import REPO, TINY_MODEL

TINY = recipe_lib.RECIPES['tiny']
# The quickstart's tiny CNN; the recipe owns the words.
TINY_CNN = [arg for arg in TINY_MODEL if 'wanted_words' not in arg]


@pytest.mark.parametrize('text, expected', [
    ('hey jax,stop', ('hey jax', 'stop')),
    ('  Hey   Jax , STOP ', ('hey jax', 'stop')),
    ("what's up", ("what's up",)),
])
def test_keywords_are_normalized(text, expected):
  assert recipe_lib.parse_keywords(text) == expected


@pytest.mark.parametrize('text, message', [
    ('', 'expected comma-separated words'),
    ('yes,,no', 'expected comma-separated words'),
    ('yes,no,yes', 'yes given twice'),
    ('hey/jax', "keyword 'hey/jax': expected letters"),
    ('r2d2', "keyword 'r2d2'"),
])
def test_bad_keywords_are_refused(text, message):
  with pytest.raises(ValueError, match=message):
    recipe_lib.parse_keywords(text)


def test_a_phrase_has_its_parts_and_one_word_swaps_as_near_misses():
  vocab = vocabulary.negative_vocabulary(['hey jax', 'stop'], 2000)
  near = vocab.near_misses['hey jax']
  assert near[:2] == ('hey', 'jax')
  swaps = near[2:]
  assert any(s.endswith(' jax') for s in swaps)  # the first word swapped
  assert any(s.startswith('hey ') for s in swaps)  # the second word swapped
  assert all(len(s.split()) == 2 for s in swaps)
  assert 'top' in vocab.near_misses['stop']  # single words as before
  # A part that is itself a keyword is not a negative of the phrase.
  both = vocabulary.negative_vocabulary(['hey jax', 'jax'], 500)
  assert 'jax' not in both.near_misses['hey jax']
  assert both.near_misses['hey jax'][0] == 'hey'


def test_stream_roles_never_share_a_seed():
  for recipe in recipe_lib.RECIPES.values():
    plan = recipe_lib.stream_plan(recipe)
    seeds = [seed for _, seed, _ in plan.values()]
    assert len(set(seeds)) == len(seeds)
    train = [minutes for name, (minutes, _, _) in plan.items()
             if name.startswith('train_')]
    assert sum(train) == pytest.approx(recipe.train_stream_minutes)
    assert plan['evaluation_negative'][2] == 0.0  # keyword-free
    assert plan['validation'][2] > 0


def test_training_config_takes_the_recipe_unless_overridden(tmp_path):
  layout = recipe_lib.Layout(str(tmp_path))
  base = kws_config.default_config()
  config = recipe_lib.training_config(base, ('hey jax', 'stop'), TINY, layout,
                                      keep=['schedule.learning_rate'],
                                      rooms_dir='cache')
  assert config.data.wanted_words == 'hey jax,stop'
  assert config.data.data_dir == layout.clips
  assert config.data.window_banks == layout.window_bank
  assert config.acoustics.enabled == 1
  assert config.acoustics.rooms_path == os.path.join('cache',
                                                     'rooms_2_seed0.npz')
  assert config.schedule.how_many_training_steps == TINY.steps
  assert config.schedule.learning_rate == base.schedule.learning_rate
  assert base.acoustics.enabled == 0  # the base is not changed
  with pytest.raises(ValueError, match='data.wanted_words is set by the recipe'):
    recipe_lib.training_config(base, ('stop',), TINY, layout,
                               keep=['data.wanted_words'])


def test_a_workdir_keeps_the_data_of_its_keywords(tmp_path):
  layout = recipe_lib.Layout(str(tmp_path))
  recipe_lib.check_data(layout, ('hey jax',), 'tiny', TINY)
  recipe_lib.check_data(layout, ('hey jax',), 'tiny', TINY)  # the same: fine
  with pytest.raises(ValueError, match="made for keywords hey jax with recipe "
                     "'tiny', not stop with 'tiny'"):
    recipe_lib.check_data(layout, ('stop',), 'tiny', TINY)
  with pytest.raises(ValueError, match="not hey jax with 'quick'"):
    recipe_lib.check_data(layout, ('hey jax',), 'quick',
                          recipe_lib.RECIPES['quick'])
  # Data made before a size existed has its default value.
  marker = os.path.join(layout.data, 'recipe.json')
  made = json.loads(open(marker).read())
  del made['sizes']['kokoro_per_word']
  with open(marker, 'w') as file:
    json.dump(made, file)
  recipe_lib.check_data(layout, ('hey jax',), 'tiny', TINY)
  with pytest.raises(ValueError, match='made for keywords hey jax'):
    recipe_lib.check_data(layout, ('hey jax',), 'tiny', dataclasses.replace(
        TINY, kokoro_per_word=5))


def test_kokoro_training_holds_a_voice_style_out(tmp_path):
  layout = recipe_lib.Layout(str(tmp_path))
  with_kokoro = dataclasses.replace(TINY, kokoro_per_word=3)
  config = recipe_lib.training_config(kws_config.default_config(), ('stop',),
                                      with_kokoro, layout)
  assert config.data.data_dir == layout.training_clips
  assert recipe_lib.HELDOUT_STYLE not in recipe_lib.training_kokoro_styles()
  assert len(recipe_lib.training_kokoro_styles()) == 4
  assert recipe_lib.heldout_kokoro_styles(with_kokoro) == (
      recipe_lib.HELDOUT_STYLE,)
  assert len(recipe_lib.heldout_kokoro_styles(TINY)) == 5  # none trained on
  vocab = recipe_lib.negatives(('stop',), TINY)
  assert recipe_lib.make_kokoro_clips(('stop',), TINY, layout, vocab) == (
      layout.clips)  # eSpeak only: nothing made
  assert not os.path.exists(layout.kokoro_clips)
  with pytest.raises(ValueError, match='kokoro_per_word=-1, expected >= 0'):
    dataclasses.replace(TINY, kokoro_per_word=-1)


def run_wakeword(tmp_path, *extra):
  return subprocess.run(
      [sys.executable, '-m', 'kws_jax.wakeword', '--words', 'hey jax,stop',
       '--workdir', str(tmp_path / 'run'), '--recipe', 'tiny',
       '--rooms-dir', str(tmp_path / 'rooms'),
       # The float stream only: test_export covers the other forms.
       '--tflite_forms', 'tflite_stream_state_external', *extra, *TINY_CNN],
      cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.mark.long
def test_the_command_runs_every_step_and_resumes(tmp_path):
  result = run_wakeword(tmp_path, '--heldout-per-word', '1',
                        '--target-fa-per-hour', '5', '--kokoro-per-word', '1')
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  for step in range(1, 7):
    assert f'[{step}/6]' in out
  assert "near-misses of 'hey jax': hey, jax," in out
  assert out.count('FRR at 0.5 FA/h') == out.count('FRR at 2 FA/h') == 2
  assert ('held-out Kokoro-82M speakers (a voice style training never '
          'heard: jm_kumo)') in out
  run = tmp_path / 'run'
  report = json.loads((run / recipe_lib.REPORT_FILE).read_text())
  assert report['keywords'] == ['hey jax', 'stop']
  assert set(report['evaluation']) == {'streams', 'streams in rooms'}
  clean = report['evaluation']['streams']
  assert clean['streams'] == ['evaluation.wav', 'evaluation_negative.wav']
  assert clean['hours'] == pytest.approx(1 / 60, rel=1e-3)
  assert clean['keywords'] > 0
  assert set(clean['frr_at_fa_per_hour']) == {'0.5', '1', '2'}
  assert report['operating_point']['target_fa_per_hour'] == 5.0
  assert report['kokoro_styles'] == ['jm_kumo']
  training_clips = run / 'data' / 'training_clips'
  assert json.loads((run / 'config.json').read_text())['data']['data_dir'] == (
      str(training_clips))
  kokoro_stops = [n for n in os.listdir(training_clips / 'stop')
                  if n.startswith('k')]
  assert len(kokoro_stops) == 1 and len(os.listdir(training_clips / 'stop')) > 1
  manifest = json.loads((run / 'manifest.json').read_text())
  assert manifest['labels'][2:] == ['hey jax', 'stop']
  assert manifest['detection']['smoothing_ms'] == (
      report['operating_point']['smoothing_ms'])
  for name in ('wakeword_det_streams.png', 'wakeword_det_streams_in_rooms.png'):
    assert (run / name).stat().st_size > 5000
  assert (run / 'data' / 'clips' / 'hey jax').is_dir()
  assert (run / 'data' / 'clips' / 'hey').is_dir()  # a part of the phrase
  assert (run / 'data' / 'streams' / 'evaluation_rooms.csv').read_text() == (
      run / 'data' / 'streams' / 'evaluation.csv').read_text()
  # Run again: every step is found on disk, nothing is trained again.
  again = run_wakeword(tmp_path, '--heldout-per-word', '0',
                       '--target-fa-per-hour', '5', '--kokoro-per-word', '1')
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'train:' not in again.stderr
  # Other keywords in the same workdir are refused, naming both.
  other = subprocess.run(
      [sys.executable, '-m', 'kws_jax.wakeword', '--words', 'stop',
       '--workdir', str(run), '--recipe', 'tiny', *TINY_CNN],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert other.returncode != 0
  assert 'made for keywords hey jax, stop' in other.stderr
