"""CMD at OGBench's defaults (batch 1024, 3x512 MLPs, latent 512, 8 MRN components): time per update and
peak resident memory of the process, with the blockwise pairwise distance.

    python benchmarks/cmd_memory.py [--batch_size 1024] [--updates 5]

The public fork's direct broadcast builds (2, B, B, 512) float32 tensors: 8 GiB at B = 1024 before the
backward pass (14.3 GB peak measured on this machine type, see the shared field notes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from impls.agents import get_agent  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch_size', type=int, default=1024)
    p.add_argument('--updates', type=int, default=5)
    p.add_argument('--goal_action', default='none')
    args = p.parse_args()
    spec = get_agent('cmd')
    config = spec.get_config()
    config.goal_action = args.goal_action
    rng = np.random.default_rng(0)
    b, obs_dim, act_dim = args.batch_size, 2, 2
    batch = dict(
        observations=rng.normal(size=(b, obs_dim)).astype(np.float32),
        next_observations=rng.normal(size=(b, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, (b, act_dim)).astype(np.float32),
        value_goals=rng.normal(size=(b, obs_dim)).astype(np.float32),
        actor_goals=rng.normal(size=(b, obs_dim)).astype(np.float32),
        rewards=np.zeros(b, np.float32), masks=np.ones(b, np.float32),
    )
    config.action_dim = act_dim
    agent = spec.agent_cls.create(0, {k: batch[k][:2] for k in ('observations', 'actions')}, config)
    agent, info = agent.update(batch)
    jax.block_until_ready(info)
    times = []
    for _ in range(args.updates):
        start = time.perf_counter()
        agent, info = agent.update(batch)
        jax.block_until_ready(info)
        times.append(time.perf_counter() - start)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps(dict(batch_size=b, goal_action=args.goal_action, median_seconds_per_update=float(np.median(times)),
                          peak_rss_gb=round(peak_gb, 3), device=jax.devices()[0].device_kind, cpus=os.cpu_count())))


if __name__ == '__main__':
    main()
