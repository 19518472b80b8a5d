"""BatchNorm folding: the folded network computes what the unfolded one does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kws_jax import layers
from kws_jax.layers import scan_steps
from kws_jax.layers.folding import fold_batch_norms


def _with_statistics(params, seed=1):
  """Params with every leaf moved off its init; variances stay positive."""
  leaves, tree = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  moved = []
  for (path, leaf), key in zip(leaves, keys):
    noise = 0.3 * jax.random.normal(key, leaf.shape)
    moved.append(jnp.abs(leaf + noise) + 0.2
                 if path[-1].key == 'moving_variance' else leaf + noise)
  return jax.tree_util.tree_unflatten(tree, moved)


def _norm(name, scale=True, center=True):
  return layers.BatchNorm(name, center=center, scale=scale)


def _count(layer, kind):
  own = int(isinstance(layer, kind))
  return own + sum(_count(child, kind) for child in layer.children())


NETS = {
    'conv': lambda: (
        layers.ExpandDims(),
        layers.Conv2D('conv', 4, (3, 3), use_bias=False), _norm('norm'),
        layers.Activation('relu', 'relu')),
    'depthwise_multiplier': lambda: (
        layers.ExpandDims(), layers.Conv2D('conv', 3, (1, 1)),
        layers.DepthwiseConv2D('depthwise', (3, 3), depth_multiplier=2,
                               time_padding='causal'),
        _norm('norm', scale=False)),
    'dense': lambda: (
        layers.Dense('dense', 5), _norm('norm', center=False),
        layers.Activation('tanh', 'tanh')),
    'residual': lambda: (
        layers.ExpandDims(), layers.Conv2D('conv', 3, (1, 1)),
        layers.Residual('block', layers.Sequential('body', (
            layers.Conv2D('inner', 3, (3, 1), time_padding='causal'),
            _norm('inner_norm'))), layers.Sequential('shortcut', (
                layers.Conv2D('project', 3, (1, 1)), _norm('project_norm'))),
            activation='relu')),
}


@pytest.mark.parametrize('name', sorted(NETS))
def test_folded_network_equals_the_unfolded_one(name):
  net = layers.Sequential(name, NETS[name]())
  params = _with_statistics(net.init(jax.random.key(0), (6,)))
  folded, folded_params = fold_batch_norms(net, params)
  assert _count(net, layers.BatchNorm) >= 1
  assert _count(folded, layers.BatchNorm) == 0
  x = jax.random.normal(jax.random.key(2), (2, 9, 6))
  np.testing.assert_allclose(folded.apply(folded_params, x),
                             net.apply(params, x), atol=1e-5)
  np.testing.assert_allclose(scan_steps(folded, folded_params, x)[1],
                             scan_steps(net, params, x)[1], atol=1e-5)
  assert (jax.tree.structure(folded.init_state(2, (6,))) ==
          jax.tree.structure(net.init_state(2, (6,))))


def test_a_norm_after_a_nonlinearity_stays():
  net = layers.Sequential('net', (
      layers.Dense('dense', 4, activation='relu'), _norm('norm')))
  params = _with_statistics(net.init(jax.random.key(0), (3,)))
  folded, folded_params = fold_batch_norms(net, params)
  assert [layer.name for layer in folded.layers] == ['dense', 'norm']
  assert folded_params.keys() == params.keys()
