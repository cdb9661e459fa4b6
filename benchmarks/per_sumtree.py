"""Prioritized replay at large batches: time of sampling B indices + updating B priorities in the sum-tree
vs one DQN update on the same batch (CartPole-size MLP and the Nature CNN are both far costlier per sample).

    python benchmarks/per_sumtree.py [--capacity 1000000] [--batch 16384]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from impls.agents.dqn import DQNAgent, get_config  # noqa: E402
from impls.data.episodes import EpisodeStore  # noqa: E402


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--capacity', type=int, default=1_000_000)
    parser.add_argument('--batch', type=int, default=16384)
    parser.add_argument('--repeats', type=int, default=20)
    args = parser.parse_args()
    obs = np.zeros(4, np.float32)
    buffer = EpisodeStore(args.capacity, 1, dict(observations=obs, actions=np.int32(0)), 3, 0.99, True, 0.6)
    rng = np.random.default_rng(0)
    # fill through the public add() path, one vector step at a time (num_envs=1)
    for i in range(args.capacity):
        o = rng.standard_normal((1, 4)).astype(np.float32)
        buffer.add(dict(observations=o, actions=np.zeros(1, np.int32), rewards=np.ones(1), next_observations=o,
                        terminated=np.zeros(1, bool), done=np.zeros(1, bool)), valid=np.ones(1, bool))
    batch = buffer.sample_transitions(rng, args.batch, 0.4)
    idx = batch.pop('indices')
    t_sample = median_time(lambda: buffer.sample_transitions(rng, args.batch, 0.4), args.repeats)
    t_update_prio = median_time(lambda: buffer.update_priorities(idx, rng.random(args.batch)), args.repeats)
    config = get_config()
    config.batch_size = args.batch
    config.action_dim = 2
    agent = DQNAgent.create(0, dict(observations=obs[None]), config)
    agent.update(batch)[1]['critic/q_mean'].block_until_ready()
    state = {'agent': agent}

    def update():
        state['agent'], info = state['agent'].update(batch)
        info['critic/q_mean'].block_until_ready()

    t_update = median_time(update, args.repeats)
    print(f'capacity {args.capacity}, batch {args.batch}: sample {t_sample * 1e3:.1f} ms, priority update '
          f'{t_update_prio * 1e3:.1f} ms, DQN update (120-84 MLP) {t_update * 1e3:.1f} ms')


if __name__ == '__main__':
    main()
