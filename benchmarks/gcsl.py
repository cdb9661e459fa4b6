"""GCSL (issue 15), run with train.py as a user would; one run at a time (nothing else should run on the machine).

    python benchmarks/gcsl.py lunar --seeds 0 1 2 --json benchmarks/results/gcsl_lunar.json
    python benchmarks/gcsl.py pointmass --seed 0 --json benchmarks/results/gcsl_pointmass.json
    python benchmarks/gcsl.py lunar --preset gcsl_transformer_lunar --seeds 0 --train_steps 50000 --agent.fusion=late

lunar: GCSL on impls/LunarLanderGoal-v0 (preset gcsl_lunar: 2e5 environment steps, one update per step), one process
per seed; per seed the greedy success over 50 episodes at every evaluation (5e4 and 2e5 are the figures compared
with the GCSL paper), the wall-clock of the run (process start to end, Python start-up included) and the run's own
steps per second.
baselines: the success of a uniformly random policy and of each constant action on impls/LunarLanderGoal-v0 (the
figures GCSL is compared with), over --episodes episodes.
pointmass: preset gcsl_pointmass, 8 seeds vmapped in one process on the jax point mass (3e4 steps each); per-seed
success at the end and the total wall-clock of the process (compilation included).
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
sys.path.insert(0, ROOT)


def train(preset, seed, run_dir, extra):
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--preset', preset, '--seed', str(seed), '--save_dir',
           run_dir, '--no_progress', '--wandb_mode', 'disabled', *extra]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode:
        print(proc.stdout[-2000:], proc.stderr[-2000:])
        raise SystemExit(f'{" ".join(cmd)} failed')
    sps = [line for line in proc.stdout.splitlines() if 'steps per second' in line]
    with open(os.path.join(run_dir, 'eval.csv')) as f:
        evals = list(csv.DictReader(f))
    return wall, evals, float(sps[-1].rsplit(':', 1)[1]) if sps else None


def baselines(episodes: int) -> dict:
    import gymnasium
    import numpy as np

    from impls.envs.goal_envs import LUNAR_ID

    env = gymnasium.make(LUNAR_ID)
    rng = np.random.default_rng(0)
    policies = {'random': lambda: int(rng.integers(4)), **{f'constant_{a}': (lambda a=a: a) for a in range(4)}}
    out = {}
    for name, policy in policies.items():
        wins = 0
        for e in range(episodes):
            env.reset(seed=e)
            for _ in range(env.unwrapped.horizon):
                _, _, _, _, info = env.step(policy())
            wins += bool(info['is_success'])
        out[name] = wins / episodes
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('task', choices=['lunar', 'pointmass', 'baselines'])
    p.add_argument('--episodes', type=int, default=500, help='baselines: episodes per policy.')
    p.add_argument('--preset', default=None, help='lunar / pointmass: another preset (e.g. gcsl_transformer_lunar).')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='lunar: one process per seed.')
    p.add_argument('--seed', type=int, default=0, help='pointmass: the first of the vmapped seeds.')
    p.add_argument('--out', default='/tmp/gcsl_bench')
    p.add_argument('--json', default=None)
    args, extra = p.parse_known_args()  # anything else goes to train.py (e.g. --train_steps 50000 --agent.fusion=late)
    args.extra = [a for a in extra if a != '--']
    results = []
    if args.task == 'baselines':
        results.append(baselines(args.episodes))
        print(json.dumps(results[-1]), flush=True)
    elif args.task == 'lunar':
        preset = args.preset or 'gcsl_lunar'
        for seed in args.seeds:
            wall, evals, sps = train(preset, seed, os.path.join(args.out, f'{preset}-s{seed}'), args.extra)
            curve = [(int(r['step']), float(r['evaluation/overall_success'])) for r in evals]
            res = dict(seed=seed, wall_s=wall, steps_per_second=sps, curve=curve, final_success=curve[-1][1])
            results.append(res)
            print(json.dumps({k: v for k, v in res.items() if k != 'curve'}), flush=True)
    else:
        preset = args.preset or 'gcsl_pointmass'
        wall, evals, sps = train(preset, args.seed, os.path.join(args.out, f'{preset}-s{args.seed}'), args.extra)
        last = evals[-1]
        per_seed = {k.rsplit('seed', 1)[1]: float(v) for k, v in last.items() if k.startswith('evaluation/success_seed')}
        results.append(dict(wall_s=wall, steps_per_second=sps, step=int(last['step']), per_seed=per_seed,
                            mean_success=float(last['evaluation/overall_success']),
                            curve=[(int(r['step']), float(r['evaluation/overall_success'])) for r in evals]))
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(task=args.task, extra=args.extra, results=results), f, indent=1)


if __name__ == '__main__':
    main()
