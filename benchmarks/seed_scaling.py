"""Throughput of --num_seeds N (N seeds vmapped in one process) against N = 1: seed-updates per second.

    python benchmarks/seed_scaling.py --dataset_path data/pointmaze-medium-navigate-v0.npz [--seeds 1 2 4 8]

Each N is one train.py process (CRL at the cpu_budget size unless --network_size default, no evaluation);
the figure is the median of its logged time/steps_per_second rows after the first (compilation), times N.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset_path', required=True)
    p.add_argument('--algorithm', default='crl')
    p.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 4, 8])
    p.add_argument('--steps', type=int, default=600)
    p.add_argument('--log_interval', type=int, default=100)
    p.add_argument('--extra', nargs='*', default=['--preset', 'cpu_budget'], help='more train.py flags')
    p.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results', 'seed_scaling.json'))
    args = p.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.seeds:
            run = os.path.join(tmp, f'n{n}')
            cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--algorithm', args.algorithm, '--dataset_path',
                   args.dataset_path, *args.extra, '--num_seeds', str(n), '--train_steps', str(args.steps),
                   '--log_interval', str(args.log_interval), '--eval_episodes', '0', '--save_dir', run,
                   '--wandb_mode', 'disabled', '--no_progress', '--health_probe_interval', '0']
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                sys.exit(f'N={n} failed:\n{proc.stderr[-3000:]}')
            with open(os.path.join(run, 'train.csv')) as f:
                sps = [float(r['time/steps_per_second']) for r in csv.DictReader(f)][1:]
            rows[n] = dict(steps_per_second=float(np.median(sps)), seed_updates_per_second=n * float(np.median(sps)))
            print(f'N={n}: {rows[n]["steps_per_second"]:.1f} steps/s, {rows[n]["seed_updates_per_second"]:.1f} '
                  f'seed-updates/s ({rows[n]["seed_updates_per_second"] / rows[args.seeds[0]]["seed_updates_per_second"]:.2f}x N={args.seeds[0]})',
                  flush=True)
    with open(args.out, 'w') as f:
        json.dump(dict(rows=rows, args=vars(args), date=time.strftime('%Y-%m-%d'), cpu_count=os.cpu_count()), f,
                  indent=2)


if __name__ == '__main__':
    main()
