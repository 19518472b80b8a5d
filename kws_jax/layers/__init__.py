"""Streaming layers: each has a full-window form and ``init_state`` + ``step``."""

from kws_jax.layers.activations import get_activation
from kws_jax.layers.base import Layer, count_params, scan_steps
from kws_jax.layers.broadcast import BroadcastResidual, FeatureMean, SpatialDropout
from kws_jax.layers.combinators import Parallel, Residual
from kws_jax.layers.conv import Conv2D, DepthwiseConv2D
from kws_jax.layers.core import (
    Activation, Dense, Dropout, ExpandDims, FeaturePool, Flatten)
from kws_jax.layers.normalization import BatchNorm
from kws_jax.layers.pooling import Pool2D
from kws_jax.layers.reshape import FrameReshape
from kws_jax.layers.recurrent import GRU, LSTM, LastFrames
from kws_jax.layers.sequential import Sequential
from kws_jax.layers.subspectral import SubSpectralNorm
from kws_jax.layers.svdf import Svdf
from kws_jax.layers.window import TimeWindow

__all__ = [
    'Activation', 'BatchNorm', 'Conv2D', 'DepthwiseConv2D', 'Dense', 'Dropout', 'ExpandDims', 'FeaturePool',
    'Flatten', 'GRU', 'LSTM', 'LastFrames', 'Layer', 'Parallel', 'Pool2D', 'Residual', 'Sequential', 'TimeWindow', 'count_params',
    'get_activation', 'scan_steps',
    'Svdf',
    'FrameReshape',
    'BroadcastResidual', 'FeatureMean', 'SpatialDropout', 'SubSpectralNorm',
]
