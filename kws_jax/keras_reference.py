"""kws_streaming's paper models in Keras 3, the reference kws_jax is compared to.

The tests check kws_jax's models against these (logits, parameter counts,
weight order) and ``benchmarks/train_speed.py`` times their training. Each
builder takes the ``tensorflow`` module, so importing this module does not
import TensorFlow. All take ``[batch, 49, 20]`` MFCCs and return 12 logits
(non-streaming).
"""

from __future__ import annotations

from typing import Any

PAPER_CNN_FILTERS = (64, 64, 64, 64, 128, 64, 128)
PAPER_CNN_KERNELS = ((3, 3), (5, 3), (5, 3), (5, 3), (5, 2), (5, 1), (10, 1))
PAPER_CNN_DILATIONS = ((1, 1), (1, 1), (2, 1), (1, 1), (2, 1), (1, 1), (2, 1))


def paper_cnn(tf: Any, dropout: float = 0.5) -> Any:
  """The CNN: 7 valid Conv2D + ReLU, Flatten, Dropout, Dense 128, 256, 12."""
  net = [tf.keras.layers.Input((49, 20)), tf.keras.layers.Reshape((49, 20, 1))]
  for i, (filters, kernel, dilation) in enumerate(zip(
      PAPER_CNN_FILTERS, PAPER_CNN_KERNELS, PAPER_CNN_DILATIONS)):
    net.append(tf.keras.layers.Conv2D(
        filters, kernel, dilation_rate=dilation, activation='relu',
        name=f'conv2d_{i}'))
  net += [tf.keras.layers.Flatten(), tf.keras.layers.Dropout(dropout),
          tf.keras.layers.Dense(128, name='dense_0'),
          tf.keras.layers.Dense(256, activation='relu', name='dense_1'),
          tf.keras.layers.Dense(12, name='logits')]
  return tf.keras.Sequential(net)


def paper_ds_cnn(tf: Any, flags: Any) -> Any:
  """The DS-CNN (``experiments/configs/ds_cnn.py``'s ``model`` flags)."""

  def norm():
    return tf.keras.layers.BatchNormalization(
        momentum=flags.bn_momentum, center=bool(flags.bn_center),
        scale=bool(flags.bn_scale))

  net = [tf.keras.layers.Input((49, 20)), tf.keras.layers.Reshape((49, 20, 1)),
         tf.keras.layers.Conv2D(flags.cnn1_filters, (3, 3),
                                dilation_rate=(2, 1)),
         norm(), tf.keras.layers.Activation('relu')]
  for kernel, dilation, filters in zip(
      ((3, 3), (3, 3), (10, 3), (5, 3), (10, 3)),
      ((1, 1), (2, 2), (1, 1), (2, 2), (1, 1)), (300,) * 5):
    net += [tf.keras.layers.DepthwiseConv2D(kernel, dilation_rate=dilation),
            norm(), tf.keras.layers.Activation('relu'),
            tf.keras.layers.Conv2D(filters, (1, 1)), norm(),
            tf.keras.layers.Activation('relu')]
  net += [tf.keras.layers.AveragePooling2D((13, 4)),
          tf.keras.layers.Flatten(), tf.keras.layers.Dropout(flags.dropout1),
          tf.keras.layers.Dense(12)]
  return tf.keras.Sequential(net)


def paper_gru(tf: Any) -> Any:
  """The GRU: one GRU of 400 units (last output), Dropout, Dense 128, 256, 12."""
  return tf.keras.Sequential([
      tf.keras.layers.Input((49, 20)),
      tf.keras.layers.GRU(400, return_sequences=False, reset_after=True),
      tf.keras.layers.Flatten(), tf.keras.layers.Dropout(0.1),
      tf.keras.layers.Dense(128), tf.keras.layers.Dense(256, 'relu'),
      tf.keras.layers.Dense(12)])
