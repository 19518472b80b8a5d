"""Gradient accumulation over micro-batches inside the train step; the
data-parallel step's frontend."""

import json
import os
import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import ds_cnn as ds_cnn_config
from kws_jax import config as kws_config
from kws_jax.models import build_model, cnn
from kws_jax.train import optim, parallel, steps

BATCH = 8


def small_cnn_config(microbatches: int, dropout: float = 0.0):
  config = kws_config.default_config()
  config.model = cnn.default_config()
  config.model.update(
      preprocess='mfcc', label_count=4, cnn_filters='4,4',
      cnn_kernel_size='(3,3),(5,3)', cnn_act="'relu','relu'",
      cnn_dilation_rate='(1,1),(2,1)', cnn_strides='(1,1),(1,2)',
      units2='8', act2="'relu'", dropout1=dropout)
  config.schedule.update(how_many_training_steps='10', learning_rate='0.01')
  config.optimizer.update(l2_weight_decay=1e-3, label_smoothing=0.1)
  config.train.update(batch_size=BATCH, microbatches=microbatches)
  return config


def small_ds_cnn_config(microbatches: int):
  config = ds_cnn_config.get_config()
  config.model.update(
      preprocess='mfcc', label_count=4, cnn1_filters=6, cnn2_filters='8',
      dw2_kernel_size='(3,3)', dw2_dilation_rate='(1,1)',
      dw2_strides='(1,1)', dw2_act="'relu'", cnn2_act="'relu'")
  config.schedule.update(how_many_training_steps='10', learning_rate='0.01')
  config.train.update(batch_size=BATCH, microbatches=microbatches)
  return config


def a_batch(seed: int = 0) -> dict[str, jnp.ndarray]:
  rng = np.random.default_rng(seed)
  # Uneven weights (one row left out) so that the denominator matters.
  weights = np.ones(BATCH, np.float32)
  weights[3] = 0.0
  weights[5] = 2.0
  return {'audio': jnp.asarray(0.1 * rng.standard_normal((BATCH, 16000)),
                               jnp.float32),
          'label': jnp.asarray(rng.integers(0, 4, BATCH), jnp.int32),
          'weight': jnp.asarray(weights)}


def one_step(config, batch):
  model = build_model(config)
  schedule = optim.learning_rate_schedule(config.schedule)
  optimizer = optim.make_optimizer(config.optimizer, schedule)
  state = steps.init_state(model, optimizer, seed=0)
  step = jax.jit(steps.make_train_step(model, optimizer, schedule, config))
  return model, state, step(state, batch)


@pytest.mark.parametrize('microbatches', [2, 4])
def test_microbatches_compute_the_batch_gradient(microbatches):
  batch = a_batch()
  _, _, (reference, reference_metrics) = one_step(small_cnn_config(1), batch)
  _, _, (state, metrics) = one_step(small_cnn_config(microbatches), batch)
  for name in ('loss', 'accuracy', 'grad_norm'):
    np.testing.assert_allclose(metrics[name], reference_metrics[name],
                               rtol=2e-5, err_msg=name)
  assert float(reference_metrics['grad_norm']) > 0.1
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6),
               state['params'], reference['params'])
  # The step moved the parameters: the comparison above is not vacuous.
  first = jax.tree.leaves(state['params'])[1]
  initial = jax.tree.leaves(one_step(small_cnn_config(1), batch)[1]['params'])
  assert float(jnp.max(jnp.abs(first - initial[1]))) > 1e-3


def test_microbatch_dropout_draws_a_key_per_microbatch():
  batch = a_batch()
  _, _, (one, _) = one_step(small_cnn_config(1, dropout=0.5), batch)
  _, _, (two, metrics) = one_step(small_cnn_config(2, dropout=0.5), batch)
  assert np.isfinite(float(metrics['loss']))
  differences = [float(jnp.max(jnp.abs(a - b))) for a, b in
                 zip(jax.tree.leaves(one['params']),
                     jax.tree.leaves(two['params']))]
  assert max(differences) > 1e-4


def test_batch_norm_statistics_are_the_mean_of_the_microbatches():
  batch = a_batch(seed=1)
  config = small_ds_cnn_config(2)
  model, state, (new_state, _) = one_step(config, batch)
  rng = jax.random.fold_in(jax.random.key(config.train.seed), 0)
  expected = []
  for i, part in enumerate(steps.split_microbatches(batch, 2)):
    _, statistics = steps.train_logits(model, state['params'], part,
                                       jax.random.fold_in(rng, i))
    expected.append(statistics)
  mean = jax.tree.map(lambda a, b: (a + b) / 2, *expected)
  checked = 0
  for path, value in jax.tree_util.tree_leaves_with_path(mean):
    stored = new_state['params']
    for key in path:
      stored = stored[key.key]
    np.testing.assert_allclose(stored, value, rtol=1e-5, atol=1e-7)
    checked += 1
  assert checked >= 4  # moving mean and variance of two BatchNorms at least


def test_split_microbatches_takes_strided_rows():
  batch = {'label': jnp.arange(6), 'weight': jnp.arange(6.0) * 10,
           'audio': jnp.arange(12.0).reshape(6, 2)}
  parts = steps.split_microbatches(batch, 3)
  assert [p['label'].tolist() for p in parts] == [[0, 3], [1, 4], [2, 5]]
  assert parts[2]['audio'].tolist() == [[4.0, 5.0], [10.0, 11.0]]
  assert steps.split_microbatches(batch, 1)[0] is batch


@pytest.mark.parametrize('count', [0, 4])
def test_split_microbatches_names_a_count_that_does_not_divide(count):
  batch = {'label': jnp.arange(6), 'weight': jnp.ones(6)}
  with pytest.raises(ValueError, match=f'train.microbatches is {count}, '
                     'which does not divide a batch of 6 rows'):
    steps.split_microbatches(batch, count)


def test_microbatches_must_divide_over_the_devices():
  two_devices = types.SimpleNamespace(size=2)
  parallel.check_batch_size(8, two_devices, microbatches=4)
  with pytest.raises(ValueError, match='micro-batches of 1 rows do not '
                     'divide over the 2 devices'):
    parallel.check_batch_size(8, two_devices, microbatches=8)


PARALLEL_SCRIPT = textwrap.dedent('''
    import json, os, re, sys
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
    sys.path.insert(0, {tests!r})
    import jax, numpy as np
    from test_microbatches import a_batch, small_cnn_config
    from kws_jax.models import build_model
    from kws_jax.train import optim, parallel, steps
    config = small_cnn_config({microbatches})
    model = build_model(config)
    schedule = optim.learning_rate_schedule(config.schedule)
    optimizer = optim.make_optimizer(config.optimizer, schedule)
    state = steps.init_state(model, optimizer, seed=0)
    batch = {{k: np.asarray(v) for k, v in a_batch().items()}}
    mesh = parallel.make_mesh()
    rows, whole = parallel.batch_sharding(mesh), parallel.replicated(mesh)
    shardings = jax.tree.map(lambda _: whole, state)
    sharded = jax.jit(
        steps.make_train_step(model, optimizer, schedule, config, mesh=mesh),
        in_shardings=(shardings, rows), out_shardings=(shardings, whole))
    args = (jax.device_put(state, whole), parallel.put_batch(batch, rows))
    hlo = sharded.lower(*args).compile().as_text()
    new_state, _ = sharded(*args)
    reference, _ = jax.jit(steps.make_train_step(
        model, optimizer, schedule, config))(state, batch)
    evaluate = jax.jit(steps.make_eval_step(model, mesh),
                       in_shardings=(shardings['params'], rows),
                       out_shardings=whole)
    predictions = evaluate(args[0]['params'], args[1])['prediction']
    expected = jax.jit(steps.make_eval_step(model))(
        state['params'], batch)['prediction']
    print(json.dumps({{
        'devices': mesh.size,
        'frame_gathers': len(re.findall(r'all-gather[^\\n]*1024\\]', hlo)),
        'difference': max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                          for a, b in zip(jax.tree.leaves(new_state['params']),
                                          jax.tree.leaves(reference['params']))),
        'same_predictions': bool(np.array_equal(predictions, expected)),
    }}))
''')


@pytest.mark.parametrize('microbatches', [1, 2])
def test_data_parallel_step_computes_each_devices_features(microbatches):
  tests = os.path.dirname(os.path.abspath(__file__))
  script = PARALLEL_SCRIPT.format(tests=tests, microbatches=microbatches)
  out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                       text=True, check=False, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['devices'] == 2
  # Without shard_map XLA gathers the [B, 49, 1024] frames for the FFT.
  assert result['frame_gathers'] == 0
  assert result['difference'] < 1e-6
  assert result['same_predictions']
