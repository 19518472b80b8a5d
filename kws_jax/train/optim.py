"""Optimizers and kws_streaming's learning-rate schedules, as optax objects."""

from __future__ import annotations

import math

import jax.numpy as jnp
import ml_collections
import optax

from kws_jax.models.parse import check_same_length, parse_list

OPTIMIZERS = ('adam', 'adamw', 'momentum', 'novograd')
SCHEDULES = ('linear', 'exp')


def schedule_phases(config: ml_collections.ConfigDict
                    ) -> tuple[list[int], list[float]]:
  """``(steps per phase, learning rate per phase)`` of ``config.schedule``."""
  steps = parse_list('schedule.how_many_training_steps',
                     config.how_many_training_steps, 'int')
  rates = parse_list('schedule.learning_rate', config.learning_rate, 'float')
  check_same_length('schedule', {'how_many_training_steps': steps,
                                 'learning_rate': rates})
  if not steps or any(s <= 0 for s in steps):
    raise ValueError(f'schedule.how_many_training_steps is '
                     f'{config.how_many_training_steps!r}, expected positive '
                     'step counts.')
  if any(not 0 < r < math.inf for r in rates):
    raise ValueError(f'schedule.learning_rate is {config.learning_rate!r}, '
                     'expected positive, finite rates.')
  return steps, rates


def total_steps(config: ml_collections.ConfigDict) -> int:
  """Training steps of all phases."""
  return sum(schedule_phases(config)[0])


def learning_rate_schedule(config: ml_collections.ConfigDict
                           ) -> optax.Schedule:
  """kws_streaming's schedule of ``config.schedule`` for 0-based steps.

  'linear': the rate of the phase the step falls in (piecewise constant);
  'exp': ``lr0 * exp(-r * (step + 1))`` with ``r = ln(lr0 / lr_last) /
  total_steps``, decaying from the first to the last rate. An optional
  linear warm-up from 0 over ``warmup_steps`` multiplies either.
  """
  steps, rates = schedule_phases(config)
  if config.lr_schedule not in SCHEDULES:
    raise ValueError(f'schedule.lr_schedule is {config.lr_schedule!r}, '
                     f'expected one of {", ".join(SCHEDULES)}.')
  if config.lr_schedule == 'linear':
    ends = jnp.cumsum(jnp.asarray(steps[:-1]))  # first step of phases 2, 3...
    rate_table = jnp.asarray(rates, jnp.float32)
    base = lambda step: rate_table[jnp.sum(step >= ends)]
  else:
    rate = math.log(rates[0] / rates[-1]) / sum(steps)
    base = lambda step: rates[0] * jnp.exp(-rate * (step + 1))
  if config.warmup_steps < 0:
    raise ValueError(f'schedule.warmup_steps is {config.warmup_steps}, '
                     'expected >= 0.')
  if not config.warmup_steps:
    return base
  warmup = config.warmup_steps
  return lambda step: base(step) * jnp.minimum(1.0, (step + 1) / warmup)


def make_optimizer(config: ml_collections.ConfigDict,
                   schedule: optax.Schedule) -> optax.GradientTransformation:
  """The optimizer named by ``config.name`` with ``schedule`` as its rate."""
  name = config.name
  if name == 'adam':
    optimizer = optax.adam(schedule, eps=config.epsilon)
  elif name == 'adamw':
    optimizer = optax.adamw(schedule, eps=config.epsilon,
                            weight_decay=config.weight_decay)
  elif name == 'momentum':
    optimizer = optax.sgd(schedule, momentum=config.momentum)
  elif name == 'novograd':
    optimizer = optax.novograd(schedule, b1=config.novograd_beta_1,
                               b2=config.novograd_beta_2,
                               weight_decay=config.novograd_weight_decay)
  else:
    raise ValueError(f'optimizer.name is {name!r}, expected one of '
                     f'{", ".join(OPTIMIZERS)}.')
  if config.clip_grad_norm < 0:
    raise ValueError(f'optimizer.clip_grad_norm is {config.clip_grad_norm}, '
                     'expected >= 0 (0 disables clipping).')
  if config.clip_grad_norm:
    optimizer = optax.chain(optax.clip_by_global_norm(config.clip_grad_norm),
                            optimizer)
  return optimizer
