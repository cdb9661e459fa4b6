"""Expert curriculum on CartPole-v1: environment steps until the greedy policy first scores >= 475
(10 evaluation episodes every 2,500 steps), with a decaying expert vs without, same preset, same seeds.

    python benchmarks/expert_curriculum.py [--seeds 0 1 2] [--runs_dir runs/expert_curriculum]

The expert is the built-in CartPole controller (`--expert cartpole`); it drives a whole episode with
probability expert_ratio, which decays linearly from --ratio_start to --ratio_floor over the first
--decay_fraction of training. Its episodes fill the replay buffer; only the agent's own episodes count as
training returns.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def steps_to(run_dir, threshold):
    with open(os.path.join(run_dir, 'eval.csv')) as f:
        for row in csv.DictReader(f):
            if float(row['evaluation/episode_return']) >= threshold:
                return int(float(row['step']))
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--runs_dir', default=os.path.join(ROOT, 'runs', 'expert_curriculum'))
    parser.add_argument('--ratio_start', type=float, default=0.5)
    parser.add_argument('--ratio_floor', type=float, default=0.0)
    parser.add_argument('--decay_fraction', type=float, default=0.3)
    parser.add_argument('--threshold', type=float, default=475.0)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args()
    variants = {
        'no expert': [],
        'decaying expert': ['--expert', 'cartpole', f'--expert_ratio_start={args.ratio_start}',
                            f'--expert_ratio_floor={args.ratio_floor}',
                            f'--expert_decay_fraction={args.decay_fraction}'],
    }
    jobs = [(name, seed) for seed in args.seeds for name in variants]

    def run(job):
        name, seed = job
        run_dir = os.path.join(args.runs_dir, f'{name.replace(" ", "_")}-s{seed}')
        cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--preset', 'dqn_cartpole', '--seed', str(seed),
               '--eval_interval', '2500', '--save_dir', run_dir, '--wandb_mode', 'disabled', '--no_progress',
               *variants[name]]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f'{" ".join(cmd)} failed:\n{proc.stderr[-3000:]}')
        final = [line for line in proc.stdout.splitlines() if 'greedy return' in line][-1]
        return name, seed, steps_to(run_dir, args.threshold), final

    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(run, jobs))
    table = {name: {} for name in variants}
    for name, seed, steps, final in results:
        table[name][seed] = steps
        print(f'{name:>16} seed {seed}: first greedy >= {args.threshold:g} at step {steps}; final: {final}')
    summary = {}
    for name, per_seed in table.items():
        reached = [s for s in per_seed.values() if s is not None]
        summary[name] = dict(per_seed=per_seed, median=float(np.median(reached)) if reached else None,
                             reached=f'{len(reached)}/{len(per_seed)}')
        print(f'{name:>16}: median steps to {args.threshold:g}: {summary[name]["median"]} '
              f'({summary[name]["reached"]} seeds reached it)')
    os.makedirs(os.path.join(ROOT, 'benchmarks', 'results'), exist_ok=True)
    with open(os.path.join(ROOT, 'benchmarks', 'results', 'expert_curriculum.json'), 'w') as f:
        json.dump(dict(summary=summary, args=vars(args)), f, indent=2)


if __name__ == '__main__':
    main()
