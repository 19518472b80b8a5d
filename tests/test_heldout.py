"""Held-out evaluation: every clip of another dataset, and accent splits."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from kws_jax import heldout
from kws_jax.data import speech_commands as sc, synth
from kws_jax.models import build_model
from test_train import tiny_config, tiny_data  # pylint: disable=unused-import

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from experiments import holdout_split  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_result_accuracies():
  confusion = np.array([[5, 0, 0, 0],   # silence
                        [1, 3, 0, 0],   # unknown
                        [0, 2, 6, 2],   # yes
                        [0, 0, 0, 10]])  # no
  result = heldout.HeldOutResult(('_silence_', '_unknown_', 'yes', 'no'),
                                 confusion)
  assert result.accuracy == pytest.approx(24 / 29)
  assert result.keyword_accuracy == pytest.approx(16 / 20)
  report = result.as_dict()
  assert report['labels']['yes'] == {'clips': 10, 'accuracy': 0.6}


def test_every_clip_of_every_split_is_counted(tiny_data):
  config = tiny_config(tiny_data)
  model = build_model(config)
  params = model.init(jax.random.key(0))
  dataset = heldout.load_heldout(config, tiny_data)
  result = heldout.evaluate_heldout(model, params, config, dataset,
                                    batch_size=16, progress=False)
  expected = sum(len(dataset.split(s)) for s in sc.SPLITS)
  assert result.confusion.sum() == expected
  words = sum(1 for s in sc.SPLITS for e in dataset.split(s)
              if e.label >= sc.UNKNOWN_INDEX + 1)
  assert words == 80 and result.confusion[2:].sum() == 80


def test_label_mismatch_is_refused(tiny_data):
  config = tiny_config(tiny_data)
  config.data.wanted_words = 'yes'
  dataset = heldout.load_heldout(config, tiny_data)
  config.data.wanted_words = 'yes,no'
  model = build_model(config)
  with pytest.raises(ValueError, match='has 3 labels'):
    heldout.evaluate_heldout(model, model.init(jax.random.key(0)), config,
                             dataset, progress=False)


def test_accent_split_links_every_clip_once(tiny_data, tmp_path):
  speakers = synth.dataset_speakers(tiny_data)
  accent = sorted({s.voice for s in speakers.values()})[0]
  counts = holdout_split.split_by_accent(tiny_data, {accent}, str(tmp_path))
  held = {os.path.basename(p).split('_nohash_')[0]
          for word in ('yes', 'no', 'bed', 'cat')
          for p in os.listdir(tmp_path / 'heldout' / word)}
  assert held and all(speakers[s].voice == accent for s in held)
  assert sum(counts['train'].values()) + sum(counts['heldout'].values()) == 100
  assert os.path.isdir(tmp_path / 'train' / sc.BACKGROUND_NOISE_DIR)
  with pytest.raises(ValueError, match="accents \\['xx'\\] are not in"):
    holdout_split.split_by_accent(tiny_data, {'xx'}, str(tmp_path / 'x'))


def test_command_line_writes_the_report_and_the_picture(tiny_data, tmp_path,
                                                        capsys):
  from kws_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  train_and_evaluate(tiny_config(tiny_data), workdir, progress=False)
  heldout.main(['--workdir', workdir, '--data-dir', tiny_data, '--name',
                'again'])
  with open(os.path.join(workdir, 'heldout', 'again.json')) as file:
    report = json.load(file)
  dataset = heldout.load_heldout(tiny_config(tiny_data), tiny_data)
  assert report['clips'] == sum(len(dataset.split(s)) for s in sc.SPLITS)
  assert sum(v['clips'] for v in report['labels'].values()) == report['clips']
  assert 0 <= report['keyword_accuracy'] <= 1
  assert os.path.getsize(os.path.join(workdir, 'heldout',
                                      'again_confusion.png')) > 1000
  assert 'again:' in capsys.readouterr().out
