"""Data parallelism with jax's own sharding: a 1-D mesh over the devices, the batch split along its batch
axis, the agent replicated. The jitted update is unchanged: XLA partitions it from the input shardings and
adds the cross-device reductions (the gradient mean, CRL's all-pairs logits), so the result equals the
single-device run up to the order of floating-point sums.

Several hosts: start every process with `--distributed` (jax.distributed.initialize reads the
coordinator from the environment, e.g. SLURM or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
JAX_PROCESS_ID); every process builds the same global batch from (seed, step) and keeps its devices' rows.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


class ShardingError(ValueError):
    pass


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
