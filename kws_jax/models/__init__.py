"""Models: streaming networks built from a config."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import ml_collections

from kws_jax.frontend import MfccFrontend
from kws_jax.layers import Layer, Sequential
from kws_jax.layers.quantize import DEFAULT_MOMENTUM, fake_quantized
from kws_jax.micro_frontend import MicroFrontend
from kws_jax.models import cnn, crnn, dnn, ds_cnn, gru, lstm
from kws_jax.models import ds_tc_resnet
from kws_jax.models import bc_resnet
from kws_jax.models import svdf, svdf_resnet
from kws_jax.models.keras_weights import params_from_keras
from kws_jax.models.model import Model
from kws_jax.models.parse import parse_list
from kws_jax.speech_embedding import SpeechEmbedding

__all__ = ['ARCHITECTURES', 'FRONTENDS', 'Model', 'build_model',
           'frontend_from_config',
           'label_count', 'params_from_keras', 'wanted_words']

# Architecture name -> builder of its layers on features [batch, frames, F].
ARCHITECTURES: dict[str, Callable[..., tuple[Layer, ...]]] = {
    'bc_resnet': bc_resnet.bc_resnet,
    'cnn': cnn.cnn,
    'crnn': crnn.crnn,
    'dnn': dnn.dnn,
    'ds_cnn': ds_cnn.ds_cnn,
    'ds_tc_resnet': ds_tc_resnet.ds_tc_resnet,
    'gru': gru.gru,
    'lstm': lstm.lstm,
    'svdf': svdf.svdf,
    'svdf_resnet': svdf_resnet.svdf_resnet,
}

# model.preprocess: 'raw' takes audio (the frontend inside the model); the
# others take features that the named frontend computes outside it.
PREPROCESSING = ('raw', 'mfcc', 'micro')


# config.frontend.name -> the frontend's dataclass.
FRONTENDS: dict[str, type[Layer]] = {
    'mfcc': MfccFrontend,
    'micro': MicroFrontend,
    'speech_embedding': SpeechEmbedding,
}


def frontend_from_config(config: ml_collections.ConfigDict) -> Layer:
  """The frontend described by ``config.frontend`` and ``config.data``.

  ``config.frontend.name`` picks it ('mfcc' when absent); the other fields of
  the section are its dataclass fields.

  Raises:
    ValueError: an unknown frontend, or a field it does not have.
  """
  kwargs = dict(config.frontend)
  name = kwargs.pop('name', 'mfcc')
  if name not in FRONTENDS:
    raise ValueError(f'frontend.name is {name!r}, expected one of '
                     f'{", ".join(FRONTENDS)}.')
  cls = FRONTENDS[name]
  known = {f.name for f in dataclasses.fields(cls)} - {'name', 'sample_rate'}
  unknown = sorted(set(kwargs) - known)
  if unknown:
    raise ValueError(
        f'frontend.{unknown[0]} is not a setting of the {name} frontend; '
        f'its settings are {", ".join(sorted(known))} (the {name} config '
        'section replaces the whole frontend section).')
  if name == 'mfcc':
    kwargs['fft_length'] = kwargs.get('fft_length') or None
  return cls(sample_rate=config.data.sample_rate, **kwargs)


def wanted_words(config: ml_collections.ConfigDict) -> list[str]:
  """``config.data.wanted_words`` as a list of words."""
  return parse_list('data.wanted_words', config.data.wanted_words, 'str')


def label_count(config: ml_collections.ConfigDict) -> int:
  """``config.model.label_count``, or when it is 0 the count the data implies:
  the wanted words plus ``_silence_`` and ``_unknown_`` (``split_data=1``)."""
  if config.model.label_count:
    return config.model.label_count
  return len(wanted_words(config)) + (2 if config.data.split_data else 0)


def quantization_aware(config: ml_collections.ConfigDict) -> bool:
  """Whether ``config`` trains with fake quantization (``quantization.aware``;
  configs saved before that section existed do not)."""
  section = config.get('quantization')
  return bool(section and section.get('aware'))


def build_model(config: ml_collections.ConfigDict, *,
                auto_conv_implementation: str = 'im2col',
                auto_chunk_frames: int = 0) -> Model:
  """Builds ``config.model`` for the clips and frontend of ``config``.

  ``auto_conv_implementation`` is what ``model.conv_implementation='auto'``
  becomes ('im2col' or 'xla': the same math and parameters, different
  speed); ``auto_chunk_frames`` is the MFCC frontend's ``chunk_frames``
  where ``config.frontend`` does not set it (again the same math). The
  model itself reads nothing from the environment.

  With ``quantization.aware`` the layers after the frontend are
  ``kws_jax.layers.quantize.fake_quantized``: int8 rounding where the
  full-integer export rounds (the export strips it again).

  Raises:
    ValueError: for an unknown architecture or preprocessing, features of
      another frontend than ``frontend.name`` ('mfcc' and 'micro' each
      need their own frontend), or a configuration that does not fit the
      input, with the input's size.
  """
  name, preprocess = config.model.name, config.model.preprocess
  if name not in ARCHITECTURES:
    raise ValueError(f'model.name is {name!r}, expected one of '
                     f'{", ".join(sorted(ARCHITECTURES))}.')
  if preprocess not in PREPROCESSING:
    raise ValueError(f'model.preprocess is {preprocess!r}, expected one of '
                     f'{", ".join(PREPROCESSING)}.')
  frontend_name = config.frontend.get('name', 'mfcc')
  if preprocess != 'raw' and frontend_name != preprocess:
    section = {'mfcc': 'kws_jax.config.default_config().frontend',
               'micro': 'kws_jax.micro_frontend.micro_frontend_config()'}
    others = ["model.preprocess='raw'"] + (
        [f'model.preprocess={frontend_name!r}']
        if frontend_name in PREPROCESSING else [])
    raise ValueError(
        f'model.preprocess is {preprocess!r}, which takes features of the '
        f'{preprocess} frontend, but frontend.name is {frontend_name!r}; use '
        f'the frontend section {section[preprocess]} (name {preprocess!r}), '
        f'or {" or ".join(others)}.')
  model_config = config.model
  if model_config.get('conv_implementation') == 'auto':
    model_config = copy.deepcopy(model_config)
    with model_config.unlocked():
      model_config.conv_implementation = auto_conv_implementation
      # Depthwise convolutions train fastest as per-tap multiply-adds with
      # either Conv2D implementation.
      model_config.depthwise_implementation = 'taps'
  frontend = frontend_from_config(config)
  if (isinstance(frontend, MfccFrontend) and
      'chunk_frames' not in config.frontend):
    frontend = dataclasses.replace(frontend, chunk_frames=auto_chunk_frames)
  labels = label_count(config)
  clip_samples = int(round(config.data.sample_rate *
                           config.data.clip_duration_ms / 1000.0))
  if clip_samples % frontend.block_size:
    raise ValueError(
        f'data.clip_duration_ms is {config.data.clip_duration_ms:g} '
        f'({clip_samples} samples), expected a multiple of the '
        f'{frontend.window_stride_ms:g} ms ({frontend.block_size} samples) that '
        'one streaming step of the frontend consumes.')
  frames = frontend.output_length(clip_samples)
  try:
    body = ARCHITECTURES[name](model_config, frames=frames,
                               features=frontend.num_features,
                               label_count=labels)
  except ValueError as error:
    raise ValueError(
        f'{name} on {config.data.clip_duration_ms:g} ms clips = {frames} '
        f'frames of {frontend.num_features} features (window '
        f'{frontend.window_size_ms:g} ms, stride '
        f'{frontend.window_stride_ms:g} ms): {error}') from None
  if quantization_aware(config):
    momentum = config.quantization.get('range_momentum', DEFAULT_MOMENTUM)
    body = fake_quantized(Sequential(name, tuple(body)), momentum).layers
  if preprocess == 'raw':
    return Model(name=name, net=Sequential(name, (frontend, *body)),
                 input_shape=(), clip_length=clip_samples,
                 label_count=labels, frontend=frontend)
  return Model(name=name, net=Sequential(name, body),
               input_shape=(frontend.num_features,), clip_length=frames,
               label_count=labels, frontend=frontend)
