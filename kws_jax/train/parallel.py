"""Data parallelism: one mesh axis over every device, replicated parameters.

On one machine the mesh spans its local devices (on CPU, force several with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``). Across machines,
start every process with the same command plus ``--distributed`` (which calls
``jax.distributed.initialize()``; set ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, or let a cluster launcher such
as SLURM provide them): each process builds the same global batch
(deterministically), keeps the rows of its own devices, and XLA all-reduces
the gradients.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Batch = dict[str, np.ndarray]


def make_mesh() -> Mesh:
  """A 1-D mesh ``('data',)`` over all devices of all processes."""
  return Mesh(np.asarray(jax.devices()), ('data',))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Splits the leading (batch) axis over the mesh."""
  return NamedSharding(mesh, PartitionSpec('data'))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh, microbatches: int = 1
                     ) -> None:
  """Raises unless ``batch_size`` and each of its ``microbatches`` split
  evenly over the mesh's devices."""
  if batch_size < 1 or batch_size % mesh.size:
    raise ValueError(
        f'train.batch_size is {batch_size}, which does not divide over the '
        f'{mesh.size} devices; use a multiple of {mesh.size}.')
  if (batch_size // microbatches) % mesh.size:
    raise ValueError(
        f'train.microbatches is {microbatches}: micro-batches of '
        f'{batch_size // microbatches} rows do not divide over the '
        f'{mesh.size} devices; use batch_size / microbatches a multiple of '
        f'{mesh.size}.')


def put_batch(batch: Batch, sharding: NamedSharding) -> dict[str, jax.Array]:
  """Places a global numpy batch on the devices, split along the batch axis.

  Every process holds the same global batch; in a multi-process run each one
  contributes only the rows of its own devices.
  """
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  rows = next(iter(batch.values())).shape[0]
  per_process = rows // jax.process_count()
  start = jax.process_index() * per_process
  return {
      key: jax.make_array_from_process_local_data(
          sharding, value[start:start + per_process], value.shape)
      for key, value in batch.items()
  }
