"""Fast head studies on cached speech-embedding features.

    python experiments/head_study.py --data data/synth_vocab_2k \\
        --bank runs/negatives/banks/streams6h.npz \\
        --validation-stream data/streams/val_20min_seed300.wav

The speech embedding is frozen, so the embeddings of a fixed set of windows
can be computed once (about 3 minutes for 30k clips here) and heads trained
on them in seconds, without augmentation. This measures what the negatives
do to a dense head (experiments/configs/embedding_dnn.py) on windows of a
validation stream it never trains on:

  - keyword and unknown accuracy on the dataset's validation clips;
  - on the stream's windows (positives ending 50-500 ms after a keyword,
    3,000 keyword-free windows), the FRR at a false-positive rate of 1% and
    0.1% of the negative windows (a window every 80 ms: 0.1% is 45 false
    windows per hour, so this ranks heads, it is not FA/h).

Variants: all unknown clips; without the keywords' extensions ("stopped" for
"stop"); near-misses kept at 20% or 0%; plus the window bank.
Clips get background noise at a uniform 0-0.1 volume, as in training.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.configs import embedding_dnn
from kws_jax.data import audio, speech_commands, vocabulary
from kws_jax.data import windows as windows_lib
from kws_jax.models import build_model
from kws_jax.wakeword import streams as streams_lib

VARIANTS = {
    'all unknown clips': {},
    'no extensions': {'drop_extensions': True},
    'no extensions, near-misses 20%': {'drop_extensions': True,
                                       'near_keep': 0.2},
    'no extensions, near-misses 0%': {'drop_extensions': True,
                                      'near_keep': 0.0},
    'no extensions, near-misses 20%, + bank': {
        'drop_extensions': True, 'near_keep': 0.2, 'bank': True},
}
STEPS, BATCH = 3000, 256


def embed(model, clips: np.ndarray) -> np.ndarray:
  apply = jax.jit(lambda x: model.frontend.apply({}, x))
  out = []
  for start in range(0, len(clips), 100):
    part = clips[start:start + 100]
    padded = np.zeros((100,) + part.shape[1:], np.float32)
    padded[:len(part)] = part
    out.append(np.asarray(apply(jnp.asarray(padded)))[:len(part)])
  return np.concatenate(out)


def clip_features(model, dataset, split: str, rng) -> dict[str, np.ndarray]:
  noise = [audio.read_wav(p) for p in dataset.background_noise_paths]
  examples = dataset.split(split)
  clips = np.zeros((len(examples), 32000), np.float32)
  for row, example in enumerate(examples):
    if example.path:
      clips[row, 16000:] = audio.read_clip(example.path, 16000)
    recording = noise[rng.integers(len(noise))]
    start = rng.integers(len(recording) - 32000)
    clips[row] += recording[start:start + 32000] * rng.uniform(0, 0.1)
  words = [os.path.basename(os.path.dirname(e.path)) if e.path else
           speech_commands.SILENCE_LABEL for e in examples]
  return {'features': embed(model, clips),
          'labels': np.array([e.label for e in examples]),
          'words': np.array(words)}


def bank_features(model, bank, labels) -> dict[str, np.ndarray]:
  index = {label: i for i, label in enumerate(labels)}
  return {'features': embed(model, bank.float_audio()),
          'labels': np.array([index.get(w, speech_commands.UNKNOWN_INDEX)
                              for w in bank.words])}


def cached(path: str, make) -> dict[str, np.ndarray]:
  if not os.path.exists(path):
    np.savez(path, **make())
  with np.load(path) as data:
    return dict(data)


def train_head(model, x, y, seed: int = 0):
  body = model.body
  params = model.init(jax.random.key(seed))
  optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, STEPS))
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, xb, yb, key):
    def loss(p):
      logits = body.apply(p, xb, train=True, rng=key)[:, -1]
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    grads = jax.grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(seed)
  key = jax.random.key(seed + 1)
  for _ in range(STEPS):
    rows = rng.integers(len(x), size=BATCH)
    key, sub = jax.random.split(key)
    params, opt_state = step(params, opt_state, jnp.asarray(x[rows]),
                             jnp.asarray(y[rows]), sub)
  posteriors = jax.jit(lambda p, f: jax.nn.softmax(body.apply(p, f)[:, -1]))
  return lambda f: np.concatenate([
      np.asarray(posteriors(params, jnp.asarray(f[i:i + 1000])))
      for i in range(0, len(f), 1000)])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', required=True)
  parser.add_argument('--bank', required=True)
  parser.add_argument('--validation-stream', required=True)
  parser.add_argument('--cache', default='runs/head_study')
  args = parser.parse_args()
  os.makedirs(args.cache, exist_ok=True)
  config = embedding_dnn.get_config()
  model = build_model(config)
  keywords = config.data.wanted_words.split(',')
  dataset = speech_commands.load_speech_commands(
      args.data, keywords, unknown_percentage=1000)
  labels = dataset.labels
  name = os.path.basename(os.path.normpath(args.data))
  train = cached(f'{args.cache}/{name}_training.npz', lambda: clip_features(
      model, dataset, 'training', np.random.default_rng(0)))
  valid = cached(f'{args.cache}/{name}_validation.npz', lambda: clip_features(
      model, dataset, 'validation', np.random.default_rng(1)))
  bank = cached(f'{args.cache}/bank.npz', lambda: bank_features(
      model, windows_lib.load_bank(args.bank), labels))

  def stream_windows():
    stream = streams_lib.Stream.from_wav(args.validation_stream)
    cut = windows_lib.cut_windows(stream.audio, stream.events, 32000,
                                  np.random.default_rng(2), negatives=3000)
    return bank_features(model, cut, labels)
  heldout = cached(f'{args.cache}/validation_stream.npz', stream_windows)

  negatives = vocabulary.negative_vocabulary(keywords, 3000)
  near = set(negatives.all_near_misses())
  extensions = {word for group in negatives.extensions.values()
                for word in group}
  print(f'| variant ({name}) | keyword acc. | unknown acc. | stream FRR at '
        '1% / 0.1% FPR |')
  print('|---|---|---|---|')
  for variant, settings in VARIANTS.items():
    rng = np.random.default_rng(0)
    keep = np.ones(len(train['labels']), bool)
    if settings.get('drop_extensions'):
      keep &= ~np.isin(train['words'], list(extensions))
    is_near = np.isin(train['words'], list(near))
    keep &= ~is_near | (rng.uniform(size=len(keep)) <
                        settings.get('near_keep', 1.0))
    x, y = train['features'][keep], train['labels'][keep]
    if settings.get('bank'):
      x = np.concatenate([x, bank['features']])
      y = np.concatenate([y, bank['labels']])
    predict = train_head(model, x, y)
    clip = predict(valid['features']).argmax(1)
    is_keyword = valid['labels'] >= 2
    keyword_acc = (clip[is_keyword] == valid['labels'][is_keyword]).mean()
    unknown = valid['labels'] == speech_commands.UNKNOWN_INDEX
    unknown_acc = (clip[unknown] == speech_commands.UNKNOWN_INDEX).mean()
    posteriors = predict(heldout['features'])
    positive = heldout['labels'] >= 2
    scores = posteriors[positive, heldout['labels'][positive]]
    negative_scores = posteriors[~positive][:, 2:].max(axis=1)
    frr = [np.mean(scores < np.quantile(negative_scores, 1 - fpr))
           for fpr in (0.01, 0.001)]
    print(f'| {variant} | {keyword_acc:.1%} | {unknown_acc:.1%} | '
          f'{frr[0]:.0%} / {frr[1]:.0%} |', flush=True)


if __name__ == '__main__':
  main()
