"""Do metrics jump at epoch boundaries of the block-shuffle loader?

    python benchmarks/epoch_boundary.py --dataset_path data/pointmaze-medium-navigate-v0.npz \
        --env_name pointmaze-medium-navigate-v0 --out benchmarks/results/epoch_boundary.json

Trains the same agent on the same data three ways -- the block-shuffle loader with a new block order
every epoch, the same loader with a fixed shuffle seed, and i.i.d. sampling -- logging every
`--log_interval` steps. For a metric m (default training/actor/q_mean) the jump at step t is
|mean(m over the k logs after t) - mean(m over the k logs before t)|. We report the median jump at epoch
boundaries, the median jump at all other log steps, and their ratio (1 = no epoch effect).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODES = {
    'reshuffle_each_epoch': ['--block_size', '{block}', '--chunk_size', '{chunk}'],
    'fixed_shuffle_seed': ['--block_size', '{block}', '--chunk_size', '{chunk}', '--shuffle_seed', '0'],
    'iid': [],
}


def jumps(values, steps, boundaries, k):
    at, elsewhere = [], []
    for i in range(k, len(values) - k):
        jump = abs(np.mean(values[i : i + k]) - np.mean(values[i - k : i]))
        (at if steps[i - 1] in boundaries else elsewhere).append(jump)
    return at, elsewhere


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset_path', required=True)
    p.add_argument('--env_name', default='pointmaze-medium-navigate-v0')
    p.add_argument('--algorithm', default='crl')
    p.add_argument('--metric', default='training/actor/q_mean')
    p.add_argument('--block_size', type=int, default=150)
    p.add_argument('--chunk_size', type=int, default=2100)
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--steps', type=int, default=400, help='Steps per epoch.')
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--log_interval', type=int, default=10)
    p.add_argument('--window', type=int, default=3, help='Logs averaged on each side of a step.')
    p.add_argument('--hidden_dims', default='256,256', help='Actor and critic MLP sizes (CPU-sized).')
    p.add_argument('--seeds', default='0,1')
    p.add_argument('--runs_dir', default='runs/epoch_boundary')
    p.add_argument('--out', required=True)
    args, extra = p.parse_known_args()
    boundaries = {e * args.steps for e in range(1, args.epochs)}
    summary = {}
    for mode, flags in MODES.items():
        at, elsewhere = [], []
        for seed in map(int, args.seeds.split(',')):
            run_dir = os.path.join(args.runs_dir, f'{mode}-s{seed}')
            cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--algorithm', args.algorithm,
                   '--dataset_path', args.dataset_path, '--env_name', args.env_name, '--seed', str(seed),
                   '--batch_size', str(args.batch_size), '--steps', str(args.steps), '--epochs', str(args.epochs),
                   '--log_interval', str(args.log_interval), '--eval_episodes', '0', '--save_dir', run_dir,
                   '--wandb_mode', 'disabled', '--no_progress', '--updates_per_dispatch', str(args.log_interval),
                   f'--agent.value_hidden_dims={args.hidden_dims}', f'--agent.actor_hidden_dims={args.hidden_dims}',
                   *[f.format(block=args.block_size, chunk=args.chunk_size) for f in flags], *extra]
            if os.path.isdir(os.path.join(run_dir, 'checkpoints')):
                cmd.append('--resume')
            subprocess.run(cmd, check=True)
            with open(os.path.join(run_dir, 'train.csv')) as f:
                rows = list(csv.DictReader(f))
            steps = [int(r['step']) for r in rows]
            values = [float(r[args.metric]) for r in rows]
            a, b = jumps(values, steps, boundaries, args.window)
            at += a
            elsewhere += b
        summary[mode] = dict(
            median_jump_at_epoch_boundaries=float(np.median(at)),
            median_jump_elsewhere=float(np.median(elsewhere)),
            ratio=float(np.median(at) / np.median(elsewhere)),
            boundary_samples=len(at),
            other_samples=len(elsewhere),
        )
        print(mode, summary[mode], flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(vars(args), extra=extra, results=summary), f, indent=2)


if __name__ == '__main__':
    main()
