"""DQN speed on CartPole-v1, ours vs CleanRL's dqn_jax.py side by side, at CleanRL's settings (one update
every 10 environment steps, batch 128, 120-84 MLP, buffer 10k, learning starts at 10k): environment
steps per second over the whole run, each implementation in its own process, alternating, median over
repeats.

    python benchmarks/dqn_speed.py --cleanrl PATH_TO_CLEANRL_CHECKOUT --cleanrl_python PATH/bin/python

CleanRL is never vendored here: PATH is a checkout of github.com/vwxyzjn/cleanrl (its `cleanrl/` and
`cleanrl_utils/`), and --cleanrl_python a Python with its dependencies (tyro, torch for its
SummaryWriter and buffer, gymnasium 0.29.1 as it pins; jax/flax as ours). Both report steps / seconds
of the training loop: CleanRL prints global_step / (time since its loop started); ours prints the same,
less evaluation and checkpoint time (evaluation is off here and the one checkpoint is at the end).
`--ours_num_envs 8` adds a row for our vectorised loop at the same replay ratio; `--jax_num_envs 1 16` adds rows
for the compiled loop (`--env_backend jax`: CartPole-v1 written in jax, acting, replay and updates in one
jitted loop per log interval; its evaluation would run on gymnasium's CartPole, and is off here as for the
others). Every figure includes the implementation's compilation, as CleanRL's does. `--compilation_cache` gives
both implementations (both are jax programs) jax's persistent compilation cache, warmed by one untimed run
each, as a researcher running many seeds would have it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, cwd, env=None, pattern=None):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f'command failed ({proc.returncode}): {" ".join(cmd)}\n{proc.stderr[-3000:]}')
    found = re.findall(pattern, proc.stdout)
    if not found:
        sys.exit(f'no steps/s line in the output of {" ".join(cmd)}:\n{proc.stdout[-2000:]}')
    return float(found[-1]), wall


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cleanrl', required=True, help='a checkout of CleanRL (holds cleanrl/dqn_jax.py)')
    parser.add_argument('--cleanrl_python', default=sys.executable, help="a Python with CleanRL's dependencies")
    parser.add_argument('--steps', type=int, default=50_000)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--ours_num_envs', type=int, default=0, help='also time our loop with this many envs')
    parser.add_argument('--jax_num_envs', type=int, nargs='*', default=[],
                        help='also time the compiled loop (--env_backend jax) with these numbers of envs')
    parser.add_argument('--compilation_cache', action='store_true',
                        help="time with a warm jax compilation cache (JAX_COMPILATION_CACHE_DIR) for both")
    parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results', 'dqn_speed.json'))
    args = parser.parse_args()
    script = os.path.join(args.cleanrl, 'cleanrl', 'dqn_jax.py')
    if not os.path.isfile(script) or not os.path.isdir(os.path.join(args.cleanrl, 'cleanrl_utils')):
        sys.exit(f'--cleanrl {args.cleanrl!r} is not a CleanRL checkout: expected cleanrl/dqn_jax.py and '
                 f'cleanrl_utils/ in it. Clone github.com/vwxyzjn/cleanrl and pass its root.')
    theirs_env = dict(os.environ, PYTHONPATH=os.path.abspath(args.cleanrl))
    rows = {'ours': [], 'cleanrl': []}
    if args.ours_num_envs:
        rows[f'ours_{args.ours_num_envs}envs'] = []
    for n in args.jax_num_envs:
        rows[f'ours_jax_{n}envs'] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.compilation_cache:  # one cache per implementation, every compilation cached
            for name, env in (('cleanrl', theirs_env), ('ours', None)):
                cache = dict(JAX_COMPILATION_CACHE_DIR=os.path.join(tmp, f'cache-{name}'),
                             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
                if name == 'cleanrl':
                    theirs_env = dict(theirs_env, **cache)
                else:
                    ours_env = dict(os.environ, **cache)
        else:
            ours_env = None
        for r in range(-1 if args.compilation_cache else 0, args.repeats):  # repeat -1: warms the caches, untimed
            for name in rows:
                if name == 'cleanrl':
                    cmd = [args.cleanrl_python, os.path.abspath(script), '--total-timesteps', str(args.steps),
                           '--seed', str(max(r, 0))]
                    sps, wall = run(cmd, tmp, theirs_env, r'SPS: (\d+)')
                else:
                    num_envs = 1 if name == 'ours' else int(name.rsplit('_', 1)[-1][:-4])
                    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--algorithm', 'dqn', '--env_name',
                           'CartPole-v1', '--train_steps', str(args.steps), '--eval_episodes', '0',
                           '--seed', str(max(r, 0)),
                           '--num_envs', str(num_envs), '--save_dir', os.path.join(tmp, f'{name}-{r}'),
                           '--wandb_mode', 'disabled', '--no_progress', '--log_interval', '5000']
                    if name.startswith('ours_jax'):
                        cmd += ['--env_backend', 'jax']
                    if num_envs > 1:  # learning starts and the replay ratio stay per environment step
                        cmd += [f'--training_steps_per_sample={0.1}']
                    sps, wall = run(cmd, ROOT, ours_env, r'Environment steps per second[^:]*: ([\d.]+)')
                if r < 0:
                    continue
                rows[name].append(dict(steps_per_second=sps, wall_seconds=wall))
                print(f'repeat {r}: {name:>16}: {sps:9.1f} env steps/s (process wall {wall:.1f} s)', flush=True)
    median = {k: float(np.median([x['steps_per_second'] for x in v])) for k, v in rows.items()}
    result = dict(steps=args.steps, repeats=args.repeats, runs=rows, median_steps_per_second=median,
                  ratio_vs_cleanrl={k: median[k] / median['cleanrl'] for k in median if k != 'cleanrl'},
                  compilation_cache=args.compilation_cache, date=time.strftime('%Y-%m-%d'), machine=f'{os.cpu_count()} CPU cores, no GPU')
    print(json.dumps(result['median_steps_per_second'], indent=1))
    print('ratio vs CleanRL (median):', {k: round(v, 2) for k, v in result['ratio_vs_cleanrl'].items()})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
