"""Data parallelism with jax's own sharding: a 1-D mesh over the devices, the batch split along its batch
axis, the agent replicated. The jitted update is unchanged: XLA partitions it from the input shardings and
adds the cross-device reductions (the gradient mean, CRL's all-pairs logits), so the result equals the
single-device run up to the order of floating-point sums.

Several hosts: start every process with `--distributed`. Under SLURM, Open MPI or Kubernetes jax finds the
coordinator itself; elsewhere set JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and
JAX_PROCESS_ID in each process's environment (jax reads the first; `initialize_distributed` passes the other
two). Every process builds the same global batch from (seed, step) and keeps its devices' rows; process 0
alone writes logs, and checkpoints go through orbax, which all processes call: the run directory must be on
a filesystem they share.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


class ShardingError(ValueError):
    pass


def initialize_distributed():
    """jax.distributed.initialize for a multi-process run, with a clear error when no coordinator is set."""
    num_processes, process_id = os.environ.get('JAX_NUM_PROCESSES'), os.environ.get('JAX_PROCESS_ID')
    try:
        jax.distributed.initialize(num_processes=None if num_processes is None else int(num_processes),
                                   process_id=None if process_id is None else int(process_id))
    except ValueError as e:
        raise ShardingError(
            f'--distributed could not start jax.distributed ({e}). Outside SLURM / Open MPI / Kubernetes, set '
            f'JAX_COORDINATOR_ADDRESS=host:port (process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID in every '
            f'process, or drop --distributed for a single-host run.'
        ) from e


def is_primary() -> bool:
    """True in the process that writes logs and prints (process 0; the only one without --distributed)."""
    return jax.process_index() == 0


def host_local(tree):
    """With several processes, a copy of a replicated pytree on this host's default device (numpy leaves), so
    that one process can run it alone (evaluation, probes); with one process the tree itself."""
    return jax.device_get(tree) if jax.process_count() > 1 else tree


def data_mesh(num_devices: int = 0) -> Mesh | None:
    """A mesh over the first `num_devices` devices (0: all of them, across hosts); None for one device."""
    devices = jax.devices()
    if num_devices < 0 or num_devices > len(devices):
        raise ShardingError(f'--num_devices {num_devices} but {len(devices)} devices are visible '
                            f'({devices[0].platform}); use 0 for all of them.')
    devices = devices[: num_devices or len(devices)]
    if len(devices) == 1:
        return None
    return Mesh(np.array(devices), (DATA_AXIS,))


def check_divisible(batch_size: int, mesh: Mesh | None):
    if mesh is None:
        return
    n = mesh.devices.size
    if batch_size % n:
        lower, upper = batch_size - batch_size % n, batch_size + n - batch_size % n
        raise ShardingError(
            f'batch size {batch_size} does not split evenly over {n} devices; use a multiple of {n} '
            f'(--batch_size {lower or upper} or {upper}), or fewer devices with --num_devices.'
        )


def replicate(tree, mesh: Mesh | None):
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(tree, mesh: Mesh | None, batch_axis: int):
    """Split every array of `tree` along `batch_axis` over the mesh (leading axes, e.g. scan steps or
    seeds, stay whole on every device)."""
    if mesh is None:
        return jax.device_put(tree)
    spec = PartitionSpec(*([None] * batch_axis), DATA_AXIS)
    sharding = NamedSharding(mesh, spec)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), tree)
