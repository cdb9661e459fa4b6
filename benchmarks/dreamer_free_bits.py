"""Free-bits modes side by side (issue 14): the same Dreamer run (same seed, preset and budget) with DreamerV3's
max(KL, free) floor and with the straight-through floor; per log row, the dynamics KL, the fraction of steps below
the floor and the gradient norm reaching the prior, then the evaluation returns.

    python benchmarks/dreamer_free_bits.py --seed 0 --train_steps 8000 --json benchmarks/results/dreamer_free_bits.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ('training/world_model/kl_dyn', 'training/world_model/kl_below_floor', 'training/grad/prior_norm',
        'training/world_model/loss')


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', default='dreamer_cartpole')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--train_steps', type=int, default=8000)
    p.add_argument('--out', default='/tmp/dreamer_free_bits')
    p.add_argument('--json', default=None)
    args = p.parse_args()
    results = {}
    for mode in ('clip', 'straight_through'):
        run_dir = os.path.join(args.out, mode)
        cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--preset', args.preset, '--seed', str(args.seed),
               '--train_steps', str(args.train_steps), '--save_dir', run_dir, '--no_progress', '--wandb_mode',
               'disabled', f'--agent.free_bits={mode}']
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-2000:])
        with open(os.path.join(run_dir, 'train.csv')) as f:
            rows = [{'step': int(r['step']), **{k: float(r[k]) for k in KEYS if r.get(k)}} for r in csv.DictReader(f)]
        with open(os.path.join(run_dir, 'eval.csv')) as f:
            evals = [(int(r['step']), float(r['evaluation/episode_return'])) for r in csv.DictReader(f)]
        results[mode] = dict(train=rows, evals=evals)
        print(mode)
        print('  step   kl_dyn  below_floor  prior_grad_norm')
        for r in rows:
            if 'training/world_model/kl_dyn' in r:
                print(f'  {r["step"]:5d}  {r["training/world_model/kl_dyn"]:6.3f}  '
                      f'{r["training/world_model/kl_below_floor"]:11.3f}  {r["training/grad/prior_norm"]:.3g}')
        print('  eval:', evals, flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(preset=args.preset, seed=args.seed, train_steps=args.train_steps, results=results), f,
                      indent=1)


if __name__ == '__main__':
    main()
