"""SavedModels of the three forms, through jax2tf (native serialization).

Each SavedModel has a ``serving_default`` signature with named tensors:

* ``non_stream``: ``audio|features`` -> ``logits``;
* ``stream_state_external``: ``audio|features`` and ``state_<name>`` for
  every state tensor -> ``logits`` and the next ``state_<name>`` (same names);
* ``stream_state_internal``: ``audio|features`` -> ``logits``, the states
  kept in ``tf.Variable``s; a second signature ``reset`` zeroes them.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from jax.experimental import jax2tf

from kws_jax.atomic import atomic_directory
from kws_jax.export import forms
from kws_jax.models import Model


def state_key(spec: forms.TensorSpec) -> str:
  """Signature name of a state tensor: ``state_`` + name, '/' -> '__'."""
  return 'state_' + spec.name.replace('/', '__')


def _tf_spec(spec: forms.TensorSpec, name: str | None = None) -> tf.TensorSpec:
  return tf.TensorSpec(spec.shape, tf.dtypes.as_dtype(spec.dtype),
                       name=name or spec.name)


class NonStreaming(tf.Module):
  """``serving(input) -> {'logits'}`` on one clip."""

  def __init__(self, model: Model, params: Any):
    super().__init__(name='non_stream')
    logits = jax2tf.convert(forms.non_streaming_fn(model, params),
                            with_gradient=False)
    self.serving = tf.function(
        lambda x: {'logits': logits(x)}, autograph=False,
        input_signature=[_tf_spec(forms.non_streaming_input(model))])

  def signatures(self) -> dict[str, Any]:
    return {'serving_default': self.serving.get_concrete_function()}


class StreamingExternalState(tf.Module):
  """``serving(input, state_*) -> {'logits', state_*}``: one step."""

  def __init__(self, model: Model, params: Any):
    super().__init__(name='stream_state_external')
    specs = forms.state_specs(model)
    keys = [state_key(s) for s in specs]
    step = jax2tf.convert(forms.streaming_fn(model, params),
                          with_gradient=False)

    def serving(x, *states):
      logits, *new_states = step(x, *states)
      return {'logits': logits, **dict(zip(keys, new_states))}

    self.serving = tf.function(
        serving, autograph=False,
        input_signature=[_tf_spec(forms.streaming_input(model))] +
        [_tf_spec(s, k) for s, k in zip(specs, keys)])

  def signatures(self) -> dict[str, Any]:
    return {'serving_default': self.serving.get_concrete_function()}


class StreamingInternalState(tf.Module):
  """``serving(input) -> {'logits'}`` with the states in variables."""

  def __init__(self, model: Model, params: Any):
    super().__init__(name='stream_state_internal')
    specs = forms.state_specs(model)
    self.states = [
        tf.Variable(tf.zeros(s.shape, s.dtype), trainable=False,
                    name=state_key(s)) for s in specs]
    step = jax2tf.convert(forms.streaming_fn(model, params),
                          with_gradient=False)

    def serving(x):
      logits, *new_states = step(x, *[v.read_value() for v in self.states])
      for variable, value in zip(self.states, new_states):
        variable.assign(value)
      return {'logits': logits}

    def reset():
      for variable in self.states:
        variable.assign(tf.zeros_like(variable))
      return {'reset': tf.constant(True)}

    self.serving = tf.function(
        serving, autograph=False,
        input_signature=[_tf_spec(forms.streaming_input(model))])
    self.reset = tf.function(reset, autograph=False, input_signature=[])

  def signatures(self) -> dict[str, Any]:
    return {'serving_default': self.serving.get_concrete_function(),
            'reset': self.reset.get_concrete_function()}


FORMS = {
    'non_stream': NonStreaming,
    'stream_state_external': StreamingExternalState,
    'stream_state_internal': StreamingInternalState,
}


def save(form: str, model: Model, params: Any, path: str) -> tf.Module:
  """Writes the SavedModel of ``form`` to ``path`` atomically."""
  module = FORMS[form](model, params)
  with atomic_directory(path) as temporary:
    tf.saved_model.save(module, temporary, signatures=module.signatures())
  return module
