"""What the speech embedding's causal, per-frame 80 dB clip changes.

    python experiments/clip_choice.py --workdir runs/generalization/embedding_dnn \\
        --data-dir data/kokoro

openWakeWord's melspectrogram.onnx floors the log-mel 80 dB below the
maximum of the whole tensor it is given (a clip, a batch, or an 80 ms chunk
when it streams); kws_jax floors each frame 80 dB below its own loudest band,
which a stream can compute. For every clip of the dataset (1 s files at the
end of the run's 2 s clips, evaluated as ``kws_jax.heldout`` does) this
prints the share of log-mel values the rules change, the embedding change,
and the run's accuracy when its head is fed features made with each rule:
per frame (what it was trained on), per 80 ms chunk (openWakeWord's
streaming), per clip (openWakeWord on a whole clip), and with the clean
clips' zero padding replaced by the dataset's own noise floor.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax import config as kws_config
from kws_jax import data
from kws_jax.data import speech_commands
from kws_jax.heldout import load_heldout
from kws_jax.speech_embedding import LogMelSpectrogram, embeddings, network
from kws_jax.train import load_run

CLIP_UNITS = 8.0  # 80 dB in openWakeWord's units (dB / 10)


def floors(x: jax.Array, rule: str) -> jax.Array:
  """Unclipped normalized log-mel ``[B, T, 32]`` floored by ``rule``."""
  if rule == 'frame':
    top = jnp.max(x, axis=2, keepdims=True)
  elif rule == 'chunk':
    b, t, f = x.shape
    chunks = x[:, :t // 8 * 8].reshape(b, t // 8, 8 * f)
    top = jnp.repeat(jnp.max(chunks, axis=2), 8, axis=1)[..., None]
    top = jnp.concatenate([top, jnp.max(x[:, t // 8 * 8:], axis=(1, 2),
                                        keepdims=True).repeat(t % 8, 1)], 1)
  else:
    top = jnp.max(x, axis=(1, 2), keepdims=True)
  return jnp.maximum(x, top - CLIP_UNITS)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--data-dir', required=True)
  args = parser.parse_args()
  config, model, params = load_run(args.workdir)
  frontend = model.frontend
  unclipped = LogMelSpectrogram(clip_db=1e9)  # the floor at 1e-10 only
  weights = frontend.weights
  layout = kws_config.clip_layout(config)
  frames = network.WINDOW_FRAMES + 8 * (frontend.output_length(
      layout['clip_samples']) - 1)

  @jax.jit
  def logits_and_embeddings(audio, rule_index):
    x = unclipped.frame_features(unclipped.frames(audio, frames))
    x = jax.lax.switch(rule_index, [lambda v, r=r: floors(v, r)
                                    for r in ('frame', 'chunk', 'clip')], x)
    emb = embeddings(weights, x)
    return model.body.apply(params, emb)[:, -1], emb, x

  dataset = load_heldout(config, args.data_dir)
  rules = ('frame', 'chunk', 'clip')
  results = {(rule, pad): [0, 0] for rule in rules for pad in ('zeros', 'noise')}
  changed = {(rule, pad): [] for rule in rules[1:] for pad in ('zeros', 'noise')}
  emb_diff = {key: [] for key in changed}
  rng = np.random.default_rng(0)
  for split in speech_commands.SPLITS:
    for batch in data.eval_batches(dataset, split, 100, **layout):
      real = batch['weight'] > 0
      audio = batch['audio']
      pad = layout['clip_samples'] - layout['foreground_samples']
      noisy = audio.copy()
      noisy[:, :pad] = 0.001 * rng.standard_normal((len(audio), pad))
      for pad_name, clips in (('zeros', audio), ('noise', noisy)):
        outputs = {}
        for index, rule in enumerate(rules):
          logits, emb, x = logits_and_embeddings(jnp.asarray(clips), index)
          outputs[rule] = (np.asarray(emb), np.asarray(x))
          correct = np.argmax(np.asarray(logits), -1) == batch['label']
          results[rule, pad_name][0] += int(correct[real].sum())
          results[rule, pad_name][1] += int(real.sum())
        for rule in rules[1:]:
          changed[rule, pad_name].append(float(np.mean(
              outputs[rule][1][real] != outputs['frame'][1][real])))
          emb_diff[rule, pad_name].append(float(np.mean(np.abs(
              outputs[rule][0][real] - outputs['frame'][0][real]))))
  print('| context before the word | floor | log-mel values changed | '
        'mean abs embedding change | accuracy |')
  print('|---|---|---:|---:|---:|')
  for (rule, pad), (correct, count) in results.items():
    extra = ('-', '-') if rule == 'frame' else (
        f'{np.mean(changed[rule, pad]):.1%}',
        f'{np.mean(emb_diff[rule, pad]):.3f}')
    print(f'| {pad} | {rule} | {extra[0]} | {extra[1]} | '
          f'{correct / count:.2%} |')


if __name__ == '__main__':
  main()
