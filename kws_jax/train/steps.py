"""The pure, jitted train and eval steps.

The train state is a plain pytree ``{'step', 'params', 'opt_state'}``. The
dropout key of step ``s`` is ``fold_in(key(seed), s)`` and, with augmentation
on the device, its augmentation key ``fold_in(fold_in(key(seed), 2**32 - 1),
s)`` (a stream no step's dropout key reaches), so a resumed run draws the same
keys as an uninterrupted one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, PartitionSpec

from kws_jax.data import device_augment
from kws_jax.data import device_data
from kws_jax.layers.base import merge_updates, trainable_mask
from kws_jax.models import Model

State = dict[str, Any]
Metrics = dict[str, jax.Array]
# fold_in(key(seed), AUGMENT_STREAM) roots the augmentation keys: steps stay
# below 2**31, so no dropout key equals it.
AUGMENT_STREAM = 2**32 - 1


def init_state(model: Model, optimizer: optax.GradientTransformation,
               seed: int) -> State:
  """Fresh parameters (from ``key(seed)``) and optimizer state at step 0."""
  params = model.init(jax.random.key(seed))
  return {'step': jnp.zeros((), jnp.int32), 'params': params,
          'opt_state': optimizer.init(params)}


def _features(model: Model, batch: dict[str, jax.Array],
              mesh: Mesh | None = None) -> jax.Array:
  """The frontend's features of ``batch['audio']``, SpecAugment masks applied.

  With a ``mesh`` of several devices over which the batch is split, each
  device computes the features of its own rows: XLA's SPMD partitioner does
  not split an FFT along the batch (it would gather every device's frames
  and compute the whole batch's FFT on each device).
  """
  frontend = lambda audio: model.frontend.apply({}, audio)
  if mesh is not None and mesh.size > 1:
    rows = PartitionSpec(mesh.axis_names)
    frontend = jax.shard_map(frontend, mesh=mesh, in_specs=rows,
                             out_specs=rows)
  features = frontend(batch['audio'])
  if 'time_mask' in batch:
    features = (features * batch['time_mask'][:, :, None] *
                batch['frequency_mask'][:, None, :])
  return features


def model_logits(model: Model, params: Any, batch: dict[str, jax.Array],
                 mesh: Mesh | None = None) -> jax.Array:
  """Inference logits ``[batch, labels]`` of the clips in ``batch['audio']``.

  Features come from the model's frontend (inside the model for raw-audio
  models, applied here for feature models); SpecAugment masks in the batch
  (``time_mask [B, T]``, ``frequency_mask [B, F]``) are multiplied in.
  ``mesh``: the devices the batch is split over (see ``_features``).
  """
  return model.body.apply(params, _features(model, batch, mesh))[:, -1]


def train_logits(model: Model, params: Any, batch: dict[str, jax.Array],
                 rng: jax.Array, mesh: Mesh | None = None
                 ) -> tuple[jax.Array, Any]:
  """``(logits [batch, labels], updates)`` of the training form.

  ``updates``: new values of non-trainable params (BatchNorm statistics).
  ``mesh``: the devices the batch is split over (see ``_features``).
  """
  outputs, updates = model.body.apply_train(
      params, _features(model, batch, mesh), rng=rng)
  return outputs[:, -1], updates


def cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array,
                  label_smoothing: float = 0.0,
                  total_weight: jax.Array | None = None) -> jax.Array:
  """Weighted mean softmax cross entropy (rows of weight 0 do not count).

  ``total_weight``: the denominator's weight sum when these rows are one
  micro-batch of a larger batch (default: their own weights' sum).
  """
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  losses = optax.softmax_cross_entropy(logits, targets)
  if total_weight is None:
    total_weight = jnp.sum(weights)
  return jnp.sum(losses * weights) / jnp.maximum(total_weight, 1.0)


def l2_penalty(params: Any) -> jax.Array:
  """Sum of squared kernels, as Keras' L2 regularizer.

  Biases, BatchNorm's parameters and its statistics are excluded.
  """
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return sum(jnp.sum(jnp.square(leaf)) for path, leaf in leaves
             if getattr(path[-1], 'key', None) == 'kernel')


def augment_key(seed: int, step: jax.Array) -> jax.Array:
  """The device augmentation's key of step ``step``: a function of both."""
  root = jax.random.fold_in(jax.random.key(seed), AUGMENT_STREAM)
  return jax.random.fold_in(root, step)


def make_train_step(
    model: Model, optimizer: optax.GradientTransformation,
    schedule: optax.Schedule, config: ml_collections.ConfigDict,
    device_augmentation: device_augment.DeviceAugmentation | None = None,
    clips_on_device: int | None = None,
    mesh: Mesh | None = None,
) -> Callable[..., tuple[State, Metrics]]:
  """``train_step(state, batch) -> (state, metrics)`` (not yet jitted).

  With ``device_augmentation``, ``train_step(state, batch, noise)`` instead:
  ``batch`` comes from ``train_batches(..., augment_on_device=True)`` and
  ``noise`` is the device's ``device_augment.NoiseBank`` (an argument, not a
  constant of the compiled step); the step first augments the batch with
  ``augment_key(seed, step)``.

  With ``clips_on_device`` (the clip length W of the batches) as well,
  ``train_step(state, batch, noise, clips, windows)``: ``batch`` holds
  indices (``train_batches(..., clips_on_device=...)``), ``clips`` and
  ``windows`` are the ``device_data.ClipStore``s of the training split and
  of the window bank (None without one), and the step first gathers the
  batch's audio from them.

  With ``config.train.microbatches`` k > 1 the step computes the gradient
  of the same batch loss as the sum of k gradients over micro-batches of
  ``B / k`` rows (rows ``i, i + k, ...``), one after another: on a CPU the
  caches then hold a micro-batch's activations (XLA:CPU's peak memory stays
  that of the whole batch). Dropout masks are drawn per micro-batch
  (``fold_in(key, i)``) and BatchNorm normalizes with each micro-batch's
  statistics; its running statistics take the mean of the micro-batches'
  updates.

  ``mesh``: the devices the step's batch is split over (its leading axis
  over all of the mesh's axes), so that each computes its own rows'
  features.

  Metrics: loss (cross entropy, without the L2 term), accuracy, learning
  rate and global gradient norm, all scalars.
  """
  seed = config.train.seed
  l2 = config.optimizer.l2_weight_decay
  smoothing = config.optimizer.label_smoothing
  microbatches = config.train.microbatches

  def gradients(params, batch, rng, total_weight, with_l2):
    def loss_fn(params):
      logits, statistics = train_logits(model, params, batch, rng, mesh)
      loss = cross_entropy(logits, batch['label'], batch['weight'], smoothing,
                           total_weight)
      total = loss + l2 * l2_penalty(params) if l2 and with_l2 else loss
      return total, (loss, logits, statistics)

    return jax.grad(loss_fn, has_aux=True)(params)

  def train_step(state, batch):
    step = state['step']
    rng = jax.random.fold_in(jax.random.key(seed), step)
    total_weight = jnp.sum(batch['weight'])
    parts = split_microbatches(batch, microbatches)
    # One micro-batch after another, each of the whole batch's loss
    # denominator: the summed gradients are the batch's. The L2 term's
    # gradient is added once.
    results = [
        gradients(state['params'], part,
                  rng if len(parts) == 1 else jax.random.fold_in(rng, i),
                  total_weight, with_l2=i == 0)
        for i, part in enumerate(parts)]
    grads = _tree_sum([part_grads for part_grads, _ in results])
    loss = _tree_sum([loss for _, (loss, _, _) in results])
    logits = jnp.concatenate([logits for _, (_, logits, _) in results])
    statistics = _tree_mean([stats for _, (_, _, stats) in results])
    updates, opt_state = optimizer.update(grads, state['opt_state'],
                                          state['params'])
    # The optimizer leaves non-trainable params alone; the training form
    # brings their new values.
    updates = jax.tree.map(lambda u, t: u if t else jnp.zeros_like(u),
                           updates, trainable_mask(state['params']))
    params = merge_updates(optax.apply_updates(state['params'], updates),
                           statistics)
    labels = jnp.concatenate([part['label'] for part in parts])
    weights = jnp.concatenate([part['weight'] for part in parts])
    metrics = {
        'loss': loss,
        'accuracy': _weighted_accuracy(logits, labels, weights),
        'learning_rate': jnp.asarray(schedule(step), jnp.float32),
        'grad_norm': optax.tree.norm(grads),
    }
    return {'step': step + 1, 'params': params, 'opt_state': opt_state}, metrics

  if device_augmentation is None:
    if clips_on_device is not None:
      raise ValueError('clips_on_device needs device_augmentation: the '
                       'gathered clips are augmented on the device')
    return train_step

  def augmenting_train_step(state, batch, noise):
    key = augment_key(seed, state['step'])
    return train_step(state, device_augment.augment_batch(
        key, batch, noise, device_augmentation))

  if clips_on_device is None:
    return augmenting_train_step

  def gathering_train_step(state, batch, noise, clips, windows):
    return augmenting_train_step(state, device_data.gather_audio(
        batch, clips, windows, clips_on_device), noise)

  return gathering_train_step


def make_eval_step(model: Model, mesh: Mesh | None = None
                   ) -> Callable[[Any, dict[str, jax.Array]], Metrics]:
  """``eval_step(params, batch) -> sums`` over the batch (not yet jitted).

  ``mesh``: the devices the batch is split over (see ``make_train_step``).

  Returns the weighted counts ``correct`` and ``count``, the summed
  ``loss`` and the per-row ``prediction`` (argmax), so that a split's
  accuracy is ``sum(correct) / sum(count)`` over its batches.
  """

  def eval_step(params, batch):
    logits = model_logits(model, params, batch, mesh)
    weights = batch['weight']
    losses = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label'])
    prediction = jnp.argmax(logits, axis=-1)
    return {
        'correct': jnp.sum((prediction == batch['label']) * weights),
        'count': jnp.sum(weights),
        'loss': jnp.sum(losses * weights),
        'prediction': prediction,
    }

  return eval_step


def split_microbatches(batch: dict[str, jax.Array], count: int
                       ) -> list[dict[str, jax.Array]]:
  """``count`` micro-batches of ``batch``: number ``i`` holds rows ``i, i +
  count, i + 2 count, ...`` (so that each device's shard of a batch split
  over devices stays on that device).

  Raises:
    ValueError: when ``count`` is below 1 or does not divide the batch.
  """
  rows = batch['label'].shape[0]
  if count < 1 or rows % count:
    raise ValueError(f'train.microbatches is {count}, which does not divide '
                     f'a batch of {rows} rows; use a divisor of {rows}.')
  if count == 1:
    return [batch]
  strided = {name: value.reshape(rows // count, count, *value.shape[1:])
             for name, value in batch.items()}
  return [{name: value[:, i] for name, value in strided.items()}
          for i in range(count)]


def _tree_sum(trees: list[Any]) -> Any:
  return functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b), trees)


def _tree_mean(trees: list[Any]) -> Any:
  if len(trees) == 1:
    return trees[0]
  return jax.tree.map(lambda *leaves: sum(leaves) / len(leaves), *trees)


def _weighted_accuracy(logits, labels, weights):
  correct = (jnp.argmax(logits, axis=-1) == labels) * weights
  return jnp.sum(correct) / jnp.maximum(jnp.sum(weights), 1.0)
