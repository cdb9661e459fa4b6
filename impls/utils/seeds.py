"""Many independent seeds in one process: agents stacked on a leading axis and updated under jax.vmap.

Each seed keeps its own parameters, optimiser state, PRNG key, data order and evaluation; only the
compiled program is shared. Before stacking, `check_seed_memory` compares an estimate of what N seeds
need (from XLA's own memory analysis of one seed's update) with the memory the device has, so a count
that cannot fit stops with the estimate instead of an out-of-memory kill.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


class SeedMemoryError(ValueError):
    pass


def stack_agents(agents):
    """N agents of one structure -> one agent whose every array has a leading axis N. (The agents' static
    parts, e.g. optimiser closures, are taken from the first.)"""
    treedef = jax.tree.structure(agents[0])
    leaves = [jax.tree.leaves(a) for a in agents]
    return jax.tree.unflatten(treedef, [jnp.stack(xs) for xs in zip(*leaves)])


def unstack_agent(agent, index: int):
    """Seed `index` of a stacked agent, as a plain agent."""
    return jax.tree.map(lambda x: x[index], agent)


@functools.partial(jax.jit, donate_argnums=0)
def scan_seed_updates(agents, batches):
    """batches: leading axes (n updates, N seeds); runs n vmapped updates in one dispatch and returns the
    agents and the last update's info, each leaf with a leading axis N."""

    def body(carry, batch):
        return jax.vmap(lambda agent, b: agent.update(b))(carry, batch)

    agents, infos = jax.lax.scan(body, agents, batches)
    return agents, jax.tree.map(lambda x: x[-1], infos)


def available_bytes() -> tuple[int, str]:
    """Free memory of the default device: the accelerator's allocator limit, or the host's MemAvailable."""
    device = jax.devices()[0]
    if device.platform != 'cpu':
        stats = device.memory_stats() or {}
        if 'bytes_limit' in stats:
            return int(stats['bytes_limit'] - stats.get('bytes_in_use', 0)), f'{device.device_kind} memory'
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024, 'available host memory'
    raise RuntimeError('cannot read /proc/meminfo')


def seed_memory_estimate(agent, batch, updates_per_dispatch: int) -> dict:
    """Bytes one seed needs: its agent (held twice across an update), the compiled update's workspace (XLA's
    memory analysis of one update), and its batches in flight (a dispatch's worth, twice for prefetch)."""
    state = sum(np.asarray(x).nbytes for x in jax.tree.leaves(agent))
    batch_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(batch))
    compiled = jax.jit(lambda a, b: a.update(b)).lower(agent, batch).compile()
    analysis = compiled.memory_analysis()
    workspace = int(getattr(analysis, 'temp_size_in_bytes', 0)) if analysis is not None else 0
    per_seed = 2 * state + workspace + 2 * updates_per_dispatch * batch_bytes
    return dict(per_seed=per_seed, state=state, workspace=workspace, batches=2 * updates_per_dispatch * batch_bytes)


def check_seed_memory(agent, batch, num_seeds: int, updates_per_dispatch: int, headroom: float = 0.8,
                      available: tuple[int, str] | None = None) -> dict:
    """Raise SeedMemoryError, with the estimate, when num_seeds seeds will not fit in `headroom` of the
    device's free memory."""
    est = seed_memory_estimate(agent, batch, updates_per_dispatch)
    free, where = available or available_bytes()
    need = num_seeds * est['per_seed']
    if need > headroom * free:
        fits = max(0, int(headroom * free // est['per_seed']))
        gb = lambda b: f'{b / 1e9:.2f} GB'  # noqa: E731
        raise SeedMemoryError(
            f'--num_seeds {num_seeds} needs about {gb(need)} ({gb(est["per_seed"])} per seed: agent '
            f'{gb(est["state"])} x2, update workspace {gb(est["workspace"])}, batches {gb(est["batches"])}) but '
            f'{gb(free)} of {where} is free ({int(headroom * 100)}% usable). At most {fits} seeds fit; lower '
            f'--num_seeds, --batch_size or --updates_per_dispatch, or run the seeds as separate processes.'
        )
    return dict(est, needed=need, free=free)
