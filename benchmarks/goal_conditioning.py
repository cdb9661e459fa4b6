"""test_goal_conditioning.py on a healthy agent and on a BC-dominated one.

    python benchmarks/goal_conditioning.py --out benchmarks/results/goal_conditioning.json \
        [--checkpoints runs/benchmarks/pointmaze-medium-navigate-v0-crl-s0 ...]

* BC-dominated: CRL with alpha = 100 on a line world whose recorded actions depend on the state only
  (a = sin(2x), states i.i.d.), the "always drives forward" situation: the goal carries no information
  about the data's actions and the BC term drowns the Q term.
* Healthy, same size: CRL with alpha = 0.1 on a line world whose actions move towards the future goal.
* Any further checkpoints given (e.g. the pointmaze benchmark runs) are probed on their own data and env.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import test_goal_conditioning as tgc  # noqa: E402
import train  # noqa: E402
from impls.data import synthetic  # noqa: E402


def line_world(path, directional):
    np.savez(path, **synthetic.line_world(directional))
    return path


def train_line_world(run_dir, dataset, alpha, steps):
    if not os.path.isdir(os.path.join(run_dir, 'checkpoints')):
        train.main(['--algorithm', 'crl', '--dataset_path', dataset, '--save_dir', run_dir, '--train_steps', str(steps),
                    '--batch_size', '64', '--eval_episodes', '0', '--wandb_mode', 'disabled', '--no_progress',
                    '--log_interval', str(min(steps, 500)), '--agent.value_hidden_dims=32,32', '--agent.actor_hidden_dims=32,32',
                    '--agent.latent_dim=16', f'--agent.alpha={alpha}', '--agent.lr=1e-3'])
    return run_dir


def probe(run_dir, algorithm, out_json, *extra):
    code = tgc.main(['--checkpoint', run_dir, '--algorithm', algorithm, '--json', out_json, *extra])
    with open(out_json) as f:
        report = json.load(f)
    report['exit_code'] = code
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--runs_dir', default='runs/goal_conditioning')
    p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--checkpoints', nargs='*', default=[], help='ALGORITHM=RUN_DIR of trained benchmark runs.')
    args = p.parse_args()
    os.makedirs(args.runs_dir, exist_ok=True)
    reports = {}
    independent = line_world(os.path.join(args.runs_dir, 'goal_independent.npz'), directional=False)
    directional = line_world(os.path.join(args.runs_dir, 'directional.npz'), directional=True)
    cases = {
        'bc_dominated_goal_independent_data': (independent, 100.0),
        'healthy_directional_data': (directional, 0.1),
    }
    for name, (data, alpha) in cases.items():
        run = train_line_world(os.path.join(args.runs_dir, name), data, alpha, args.steps)
        print(f'== {name}')
        reports[name] = probe(run, 'crl', os.path.join(args.runs_dir, f'{name}.json'), '--env_name', 'none')
    for item in args.checkpoints:
        algorithm, run = item.split('=', 1)
        name = os.path.basename(run.rstrip('/'))
        print(f'== {name}')
        reports[name] = probe(run, algorithm, os.path.join(args.runs_dir, f'{name}.json'))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(reports, f, indent=2)


if __name__ == '__main__':
    main()
