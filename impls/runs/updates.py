"""Every way the run engine calls an agent's `update(batch) -> (agent, info)`:

* `scan_updates`: several updates fused into one dispatch (`lax.scan` over a stack of batches), the offline
  hot path; with a device mesh the same call runs data parallel (batches sharded, agent replicated:
  impls.utils.sharding).
* `scan_seed_updates`: N seeds stacked on a leading axis and updated under `jax.vmap` (`--num_seeds`), with
  `stack_agents` / `unstack_agent` and a memory check before stacking (`check_seed_memory`).
* `FlatAgent` / `metric_vector_update`: one update per call on the agent's flat leaves, metrics as one
  vector: the online loops' per-step path, where dispatch overhead dominates a small network's update.

Many seeds in one process: each seed keeps its own parameters, optimiser state, PRNG key, data order and
evaluation; only the compiled program is shared. `check_seed_memory` compares an estimate of what N seeds
need (from XLA's own memory analysis of one seed's update) with the memory the device has, so a count that
cannot fit stops with the estimate instead of an out-of-memory kill.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, donate_argnums=0)
def scan_updates(agent, batches):
    """Run agent.update over a stack of batches (leading axis n) in one dispatch; returns the new
    agent and the info of the last update."""

    def body(carry, batch):
        carry, info = carry.update(batch)
        return carry, info

    agent, infos = jax.lax.scan(body, agent, batches)
    return agent, jax.tree.map(lambda x: x[-1], infos)


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


def metric_vector_update(treedef, leaves, example_batch):
    """The agent's update on its flat leaves, with the scalar metrics stacked into one vector.

    Returns (fn(leaves, batch) -> (leaves, vector (M,), td errors or None), the M metric names).
    """

    def run(leaves, batch):
        agent, info = jax.tree.unflatten(treedef, leaves).update(batch)
        scalars = {k: v for k, v in info.items() if k != 'td_errors'}
        return jax.tree.leaves(agent), scalars, info.get('td_errors')

    names = sorted(jax.eval_shape(run, leaves, example_batch)[1])

    def update(leaves, batch):
        leaves, scalars, td = run(leaves, batch)
        return leaves, jnp.stack([jnp.asarray(scalars[k], jnp.float32) for k in names]), td

    return update, names


def reduction(name):
    """How a metric is summarised over the updates of a log interval: a name ending in `min` (`critic/q_min`) by
    the minimum, in `max` by the maximum, the rest by the mean."""
    last = name.rsplit('/', 1)[-1].rsplit('_', 1)[-1]
    return last if last in ('min', 'max') else 'mean'


class FastAgent:
    """The agent as one flat list of arrays, for the jitted calls made every environment step.

    Calling a jitted function on the agent itself costs ~115 us on CPU (flattening the dataclass and
    comparing its static config for the jit cache: measured with an update that does nothing), more than
    the tiny network's update; on a flat list of arrays it costs a few. The update also returns its scalar
    metrics as one vector: reading ~14 scalars from each of 4,000 updates cost more than the updates did.
    The agent needs `update(batch) -> (agent, info)` and `act(carry, observations, goals, key, mode, ...)`.
    """

    def __init__(self, agent):
        self.leaves, self.treedef = jax.tree.flatten(agent)
        treedef = self.treedef

        def act(leaves, carry, observations, goals, key, mode, progress):
            agent = jax.tree.unflatten(treedef, leaves)
            if progress is None:
                return agent.act(carry, observations, goals, key, mode)
            return agent.act(carry, observations, goals, key, mode, progress=progress)

        self._act = jax.jit(act, static_argnames='mode')
        self._greedy = jax.jit(lambda leaves, obs: act(leaves, (), obs, None, None, 'eval', None)[0])
        self._update, self.metric_names = None, None

    @property
    def agent(self):
        return jax.tree.unflatten(self.treedef, self.leaves)

    def greedy(self, observations):
        """The agent's 'eval' actions for a batch (no carry, no goal), as a writable numpy array."""
        return np.array(self._greedy(self.leaves, observations))

    def act(self, carry, observations, goals, key, mode, progress=None):
        """agent.act on the flat leaves: (actions as numpy, carry)."""
        actions, carry = self._act(self.leaves, carry, observations, goals, key, mode, progress)
        return np.array(actions), carry

    def update(self, batch):
        """One update; returns (metric vector (len(metric_names),), td errors or None), both on device."""
        if self._update is None:
            update, self.metric_names = metric_vector_update(self.treedef, self.leaves, batch)
            self._update = jax.jit(update)
        self.leaves, vector, td = self._update(self.leaves, batch)
        return vector, td
