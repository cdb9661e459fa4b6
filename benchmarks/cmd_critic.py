"""CMD's critic over its first steps on state data: does it leave the constant, goal-blind solution?

    python benchmarks/cmd_critic.py [--steps 5000] [--seeds 10 11 12] [--episodes 20]

Generates a small pointmaze-medium-navigate dataset (OGBench's recipe, no network) and trains the critic
configurations below at batch 64 (OGBench's 3x512 networks), logging the contrastive loss and the categorical
accuracy (the true future goal ranked first among the batch's goals; chance = 1/64) every 250 steps:
  * cmd_before: action-free psi(g), no logit bias (the default before the fix);
  * roll_before: the public fork's form (shared network, rolled actions), no logit bias;
  * cmd / cmd_roll: the same with the logit bias (the default now);
  * crl: CRL's dot-product critic, for reference.
Writes benchmarks/results/cmd_critic.json and prints a table of medians over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from impls.agents import get_agent  # noqa: E402
from impls.data.datasets import load_dataset  # noqa: E402
from impls.data.loader import UniformIndices, make_batch, stacked_batches  # noqa: E402
from impls.data.sampler import GoalSampler  # noqa: E402
from impls.utils.config import apply_overrides  # noqa: E402
from impls.runs.updates import scan_updates  # noqa: E402

CONFIGS = {
    'cmd_before': ('cmd', dict(logit_bias=False)),
    'roll_before': ('cmd', dict(logit_bias=False, goal_action='roll')),
    'cmd': ('cmd', {}),
    'cmd_roll': ('cmd', dict(goal_action='roll')),
    'crl': ('crl', {}),
}


def run(dataset, algorithm, overrides, seed, steps, batch_size, every=250):
    spec = get_agent(algorithm)
    config = spec.get_config()
    apply_overrides(config, dict(batch_size=batch_size, **overrides))
    sampler, indices = GoalSampler(dataset, config), UniformIndices(dataset, batch_size)
    example = make_batch(sampler, UniformIndices(dataset, 2), seed, 0)
    config.action_dim = dataset.action_dim()
    agent = spec.agent_cls.create(seed, example, config)
    curve = []
    for start in range(0, steps, every):
        agent, info = scan_updates(agent, stacked_batches(sampler, indices, seed, start, every))
        info = jax.device_get(info)
        curve.append(dict(step=start + every, loss=float(info['critic/loss']),
                          accuracy=float(info['critic/categorical_accuracy'])))
    return curve


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=5000)
    p.add_argument('--seeds', type=int, nargs='+', default=[10, 11, 12])
    p.add_argument('--episodes', type=int, default=20)
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--configs', nargs='+', default=list(CONFIGS))
    p.add_argument('--data_dir', default='data/cmd_critic')
    p.add_argument('--out', default='benchmarks/results/cmd_critic.json')
    args = p.parse_args()
    name = 'pointmaze-medium-navigate-v0'
    path = os.path.join(args.data_dir, f'{name}.npz')
    if not os.path.exists(path):
        from impls.data.generate import generate

        generate(name, args.episodes, args.data_dir, seed=0, progress=False)
    dataset = load_dataset(path)
    results = {}
    for key in args.configs:
        algorithm, overrides = CONFIGS[key]
        for seed in args.seeds:
            t0 = time.perf_counter()
            results.setdefault(key, {})[seed] = run(dataset, algorithm, overrides, seed, args.steps, args.batch_size)
            last = results[key][seed][-1]
            print(f'{key} seed {seed}: loss {last["loss"]:.4f} accuracy {last["accuracy"]:.4f} '
                  f'({time.perf_counter() - t0:.0f} s)', flush=True)
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            with open(args.out, 'w') as f:  # after every run, so a cut-short benchmark keeps what it measured
                json.dump(dict(args=vars(args), results=results), f, indent=1)
    marks = sorted({250, 1000, 2000, args.steps} & {r['step'] for r in next(iter(results.values()))[args.seeds[0]]})
    print(f'\nmedian over seeds {args.seeds}, batch {args.batch_size} (chance accuracy {1 / args.batch_size:.4f}):')
    print('| config | ' + ' | '.join(f'loss @{m} | acc @{m}' for m in marks) + ' |')
    print('|---|' + '---|---|' * len(marks))
    for key, by_seed in results.items():
        cells = []
        for m in marks:
            rows = [next(r for r in curve if r['step'] == m) for curve in by_seed.values()]
            cells += [f'{np.median([r["loss"] for r in rows]):.4f}', f'{np.median([r["accuracy"] for r in rows]):.3f}']
        print(f'| {key} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
