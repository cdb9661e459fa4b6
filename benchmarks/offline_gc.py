"""Success rates of the offline goal-conditioned agents on locally generated OGBench data.

    python benchmarks/offline_gc.py --env_name pointmaze-medium-navigate-v0 \
        --dataset_path data/pointmaze-medium-navigate-v0.npz --algorithms crl,gciql --seeds 0,1,2 \
        --preset cpu_budget --alpha crl=0.03,gciql=0.003 --out benchmarks/results/pointmaze.json

Runs train.py once per (algorithm, seed), sequentially, and writes the final success over the env's
5 tasks (x --eval_episodes episodes each) per seed, with the mean and standard deviation over seeds.
Variants of one algorithm: --variants "cmd=cmd" "cmd_roll=cmd --agent.goal_action=roll" (LABEL=ALGORITHM
FLAGS...) instead of --algorithms.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--env_name', required=True)
    parser.add_argument('--dataset_path', required=True)
    parser.add_argument('--algorithms', default='crl,gciql')
    parser.add_argument('--variants', nargs='*', default=None, help='LABEL=ALGORITHM [train.py flags]')
    parser.add_argument('--seeds', default='0,1,2')
    parser.add_argument('--preset', default='cpu_budget')
    parser.add_argument('--alpha', default='', help='Per-algorithm alpha, e.g. crl=0.03,gciql=0.003.')
    parser.add_argument('--runs_dir', default='runs/benchmarks')
    parser.add_argument('--out', required=True)
    parser.add_argument('extra', nargs='*', help='Further train.py flags (after --).')
    args = parser.parse_args()
    alphas = dict(item.split('=') for item in args.alpha.split(',') if item)  # by algorithm
    if args.variants:
        variants = []
        for item in args.variants:
            label, rest = item.split('=', 1)
            words = shlex.split(rest)
            variants.append((label, words[0], words[1:]))
    else:
        variants = [(a, a, []) for a in args.algorithms.split(',')]
    results = {}
    for label, algorithm, flags in variants:
        per_seed = []
        for seed in map(int, args.seeds.split(',')):
            run_dir = os.path.join(args.runs_dir, f'{args.env_name}-{label}-s{seed}')
            cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--preset', args.preset, '--algorithm', algorithm,
                   '--env_name', args.env_name, '--dataset_path', args.dataset_path, '--seed', str(seed),
                   '--save_dir', run_dir, '--wandb_mode', 'disabled', '--no_progress', *flags, *args.extra]
            if algorithm in alphas:
                cmd.append(f'--agent.alpha={alphas[algorithm]}')
            if os.path.isdir(os.path.join(run_dir, 'checkpoints')):
                cmd.append('--resume')
            start = time.time()
            subprocess.run(cmd, check=True)
            with open(os.path.join(run_dir, 'eval.csv')) as f:
                rows = list(csv.DictReader(f))
            final = rows[-1]
            per_seed.append(dict(
                seed=seed, step=int(final['step']), success=float(final['evaluation/overall_success']),
                tasks=[float(final[f'evaluation/task{i}_success']) for i in range(1, 6)],
                curve=[(int(r['step']), float(r['evaluation/overall_success'])) for r in rows],
                minutes=(time.time() - start) / 60,
            ))
            print(label, per_seed[-1], flush=True)
        success = np.array([r['success'] for r in per_seed])
        results[label] = dict(algorithm=algorithm, flags=flags, mean=float(success.mean()), std=float(success.std()),
                              seeds=per_seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(env_name=args.env_name, dataset_path=args.dataset_path, preset=args.preset,
                       extra=args.extra, alpha=alphas, results=results), f, indent=2)
    for algorithm, r in results.items():
        print(f'{algorithm}: {100 * r["mean"]:.1f} +- {100 * r["std"]:.1f} % over seeds {args.seeds}')


if __name__ == '__main__':
    main()
