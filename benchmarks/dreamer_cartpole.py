"""Dreamer on CartPole-v1 (issue 14): for each seed, the environment steps and wall-clock until the 10-episode
greedy evaluation first reaches 450, and whether every evaluation over the next `--hold` steps stays >= 450 (no
peak-then-collapse); also the mean of the evaluations after that first one, and the first evaluation from which
every evaluation over the next `--hold` steps is >= 450 (`steady_step`, when the run is long enough to tell). Runs
train.py as a user would, one seed at a time (nothing else should run on the machine).

    python benchmarks/dreamer_cartpole.py --seeds 0 1 2 --backend gymnasium jax
    python benchmarks/dreamer_cartpole.py --preset dreamer_cartpole_pixels --seeds 0 --train_steps 20000
    python benchmarks/dreamer_cartpole.py --summarise RUN_DIR [RUN_DIR ...]   # finished runs, no training

Wall-clock is the run's own `time/elapsed_s` at that evaluation (from the run's start: compilation, acting, updates
and the evaluations so far included; Python start-up and imports, ~5 s, not).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summarise(run_dir: str, threshold: float, hold: int) -> dict:
    with open(os.path.join(run_dir, 'eval.csv')) as f:
        rows = [(int(r['step']), float(r['evaluation/episode_return']), float(r.get('time/elapsed_s') or 'nan'))
                for r in csv.DictReader(f)]
    out = dict(evals=[(s, r) for s, r, _ in rows], final_return=rows[-1][1] if rows else None)
    reached = [(s, r, t) for s, r, t in rows if r >= threshold]
    if not reached:
        return dict(out, solved_step=None, solved_seconds=None, held=None)
    step, _, seconds = reached[0]
    window = [r for s, r, _ in rows if step < s <= step + hold]
    held = None if not window or rows[-1][0] < step + hold else all(r >= threshold for r in window)
    after = [r for s, r, _ in rows if s > step]
    # steady: the first evaluation from which every evaluation over the next `hold` steps is >= threshold
    steady = next(((s, t) for s, _, t in rows if s + hold <= rows[-1][0]
                   and all(r >= threshold for s2, r, _ in rows if s <= s2 <= s + hold)), (None, None))
    return dict(out, solved_step=step, solved_seconds=seconds, held=held, min_after=min(window) if window else None,
                mean_after=sum(after) / len(after) if after else None, steady_step=steady[0], steady_seconds=steady[1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', default='dreamer_cartpole')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--backend', nargs='+', default=['gymnasium'], choices=['gymnasium', 'jax'])
    p.add_argument('--train_steps', type=int, default=20_000)
    p.add_argument('--threshold', type=float, default=450.0)
    p.add_argument('--hold', type=int, default=10_000)
    p.add_argument('--out', default='/tmp/dreamer_cartpole')
    p.add_argument('--json', default=None, help='Write the results here (benchmarks/results/...).')
    p.add_argument('--summarise', nargs='+', default=None, metavar='RUN_DIR',
                   help='Summarise finished (or stopped) runs (their eval.csv) instead of training; --json writes them.')
    p.add_argument('extra', nargs='*', help='More train.py flags, after --')
    args = p.parse_args()
    results = []
    for run_dir in args.summarise or []:
        res = dict(run=run_dir, **summarise(run_dir, args.threshold, args.hold))
        results.append(res)
        print(json.dumps({k: v for k, v in res.items() if k != 'evals'}))
    for backend in args.backend if not args.summarise else []:
        for seed in args.seeds:
            run_dir = os.path.join(args.out, f'{args.preset}-{backend}-s{seed}')
            cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--preset', args.preset, '--seed', str(seed),
                   '--env_backend', backend, '--train_steps', str(args.train_steps), '--save_dir', run_dir,
                   '--no_progress', '--wandb_mode', 'disabled', *args.extra]
            t0 = time.time()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            wall = time.time() - t0
            if proc.returncode:
                print(proc.stdout[-2000:], proc.stderr[-2000:])
                raise SystemExit(f'{" ".join(cmd)} failed')
            res = dict(backend=backend, seed=seed, wall_s=wall, **summarise(run_dir, args.threshold, args.hold))
            results.append(res)
            print(json.dumps({k: v for k, v in res.items() if k != 'evals'}), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(preset=args.preset, train_steps=args.train_steps, threshold=args.threshold, hold=args.hold,
                           extra=args.extra, results=results), f, indent=1)


if __name__ == '__main__':
    main()
