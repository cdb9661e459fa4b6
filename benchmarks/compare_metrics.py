"""Do two versions of impls train identically? Runs the same four fixed-seed runs in two checkouts and compares
their train.csv (and eval.csv) column by column.

    python benchmarks/compare_metrics.py --before 40da5ed            # a commit, checked out in a worktree
    python benchmarks/compare_metrics.py --before_tree /tmp/base      # or a checkout already on disk

The runs (CPU, fixed seeds, each through train.py as a user types it):
  crl        300 steps of CRL on a 20-episode pointmaze-medium dataset (state), evaluated at the end
  cmd_pixel  300 steps of CMD on synthetic uint8 driving frames, discrete actions, no environment,
             --frame_stack 3 and the block-shuffle loader
  dqn_gym    3,000 environment steps of the CartPole preset, gymnasium backend
  dqn_jax    the same on the compiled jax backend

Timing columns (time/*) and the evaluation's wall time differ between any two runs and are skipped. Metric names
that the redesign renamed are compared under their new names (RENAMES). Writes benchmarks/results/
compare_metrics.json; exits 1 when any compared value differs.
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

# Old metric name -> new name (one metric vocabulary across agents: docs/ARCHITECTURE.md), after the
# training/ or validation/ prefix; identity for everything else.
RENAMES = {  # the critic's, value's and actor's objective: component/loss
    'critic/contrastive_loss': 'critic/loss', 'critic/critic_loss': 'critic/loss', 'value/value_loss': 'value/loss',
    'value/contrastive_loss': 'value/loss', 'actor/actor_loss': 'actor/loss', 'losses/td_loss': 'critic/loss',
    # DQN's critic statistics under critic/
    'q/mean': 'critic/q_mean', 'q/min': 'critic/q_min', 'q/max': 'critic/q_max', 'q/all_max': 'critic/q_all_max',
    'target/mean': 'critic/target_mean', 'target/min': 'critic/target_min', 'target/max': 'critic/target_max',
    'target/lag': 'critic/target_lag', 'td/abs_mean': 'critic/td_abs_mean',
}


def renamed(column: str) -> str:
    """A column of the earlier version under the later version's name (prefix and per-seed suffix kept)."""
    prefix, _, name = column.partition('/')
    for old, new in RENAMES.items():
        if name == old or name.startswith(old + '/seed'):
            return f'{prefix}/{new}{name[len(old):]}'
    return column


# Differences made on purpose, with the reason; reported apart, not counted as failures.
EXPECTED = {
    'crl/eval.csv': 'evaluation was not reproducible before: OGBench resets draw start and goal noise from numpy\'s '
                    'global generator, which impls/runs/evaluation.py now seeds per episode',
    'dqn_gym/train.csv:training/critic/q_all_max': 'summarised over a log interval by its maximum, as every *_max '
                                                   'metric (before: DQN\'s q/all_max by the mean)',
    'dqn_jax/train.csv:training/critic/q_all_max': 'summarised over a log interval by its maximum, as every *_max '
                                                   'metric (before: DQN\'s q/all_max by the mean)',
}
SKIP_PREFIXES = ('time/',)
SKIP_COLUMNS = ('evaluation/seconds', 'health/data_wait')  # wall-clock measures


def runs(data_dir):
    common = ['--seed', '0', '--no_progress', '--wandb_mode', 'disabled']
    return {
        'crl': ['--algorithm', 'crl', '--dataset_path', os.path.join(data_dir, 'pointmaze-medium-navigate-v0.npz'),
                '--env_name', 'pointmaze-medium-navigate-v0', '--train_steps', '300', '--log_interval', '50',
                '--batch_size', '128', '--eval_episodes', '1', '--agent.value_hidden_dims=128,128',
                '--agent.actor_hidden_dims=128,128', '--agent.latent_dim=128', *common],
        'cmd_pixel': ['--algorithm', 'CMD', '--dataset_path', os.path.join(data_dir, 'driving.npz'),
                      '--frame_stack', '3', '--block_size', '50', '--train_steps', '300', '--log_interval', '50',
                      '--batch_size', '32', '--agent.encoder=impala_debug', *common],
        'dqn_gym': ['--preset', 'dqn_cartpole', '--train_steps', '3000', '--log_interval', '500', '--eval_interval',
                    '3000', '--eval_episodes', '2', *common],
        'dqn_jax': ['--preset', 'dqn_cartpole', '--env_backend', 'jax', '--train_steps', '3000', '--log_interval',
                    '500', '--eval_interval', '3000', '--eval_episodes', '2', *common],
    }


def make_data(data_dir):
    os.makedirs(data_dir, exist_ok=True)
    if not os.path.exists(os.path.join(data_dir, 'pointmaze-medium-navigate-v0.npz')):
        subprocess.run([sys.executable, '-m', 'impls.data.generate', '--env_name', 'pointmaze-medium-navigate-v0',
                        '--num_episodes', '20', '--save_dir', data_dir], check=True, cwd=ROOT)
    if not os.path.exists(os.path.join(data_dir, 'driving.npz')):
        subprocess.run([sys.executable, '-m', 'impls.data.synthetic', '--out', os.path.join(data_dir, 'driving.npz')],
                       check=True, cwd=ROOT)


def run_tree(tree, out_dir, data_dir, names):
    """Each run in checkout `tree` (its own train.py, with this interpreter), into out_dir/NAME."""
    seconds = {}
    for name, argv in runs(data_dir).items():
        if name not in names:
            continue
        save_dir = os.path.join(out_dir, name)
        if os.path.exists(os.path.join(save_dir, 'train.csv')):
            continue
        t0 = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=tree, WANDB_MODE='disabled')
        proc = subprocess.run([sys.executable, 'train.py', *argv, '--save_dir', save_dir], cwd=tree, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f'{name} failed in {tree}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
        seconds[name] = time.perf_counter() - t0
        print(f'{tree}: {name} done in {seconds[name]:.0f} s', flush=True)
    return seconds


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def compare_file(before_path, after_path):
    """Column-by-column comparison of two CSV logs; returns a dict of what matched and what did not."""
    before, after = read_csv(before_path), read_csv(after_path)
    result = dict(rows=(len(before), len(after)), compared=[], differ={}, only_before=[], only_after=[])
    if len(before) != len(after):
        result['differ']['<rows>'] = f'{len(before)} rows before, {len(after)} after'
        return result
    cols_after = set(after[0]) if after else set()
    # A column is compared under its new name when the later version logs that name instead.
    cols_before = {(renamed(k) if k not in cols_after else k): k for k in before[0]} if before else {}
    skip = lambda c: c.startswith(SKIP_PREFIXES) or c.split('/', 1)[-1].startswith(SKIP_PREFIXES) or c in SKIP_COLUMNS  # noqa: E731
    result['only_before'] = sorted(c for c in cols_before if c not in cols_after and not skip(c))
    result['only_after'] = sorted(c for c in cols_after if c not in cols_before and not skip(c))
    for new, old in sorted(cols_before.items()):
        if new not in cols_after or skip(new):
            continue
        a = [row[old] for row in before]
        b = [row[new] for row in after]
        if a != b:
            first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            result['differ'][new] = f'row {first}: {a[first]} before, {b[first]} after'
        else:
            result['compared'].append(new)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--before', default=None, help='Commit to compare against (checked out in a temporary worktree).')
    p.add_argument('--before_tree', default=None, help='A checkout of the earlier version already on disk.')
    p.add_argument('--after_tree', default=ROOT, help='The checkout to test (default: this one).')
    p.add_argument('--work_dir', default='/tmp/compare_metrics', help='Data and run directories.')
    p.add_argument('--runs', nargs='*', default=['crl', 'cmd_pixel', 'dqn_gym', 'dqn_jax'])
    p.add_argument('--only', choices=['before', 'after'], default=None, help='Run one side only (no comparison).')
    p.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results', 'compare_metrics.json'))
    args = p.parse_args()
    data_dir = os.path.join(args.work_dir, 'data')
    make_data(data_dir)
    before_tree = args.before_tree
    if args.only != 'after':
        if before_tree is None:
            if args.before is None:
                raise SystemExit('pass --before COMMIT or --before_tree PATH.')
            before_tree = os.path.join(args.work_dir, f'tree-{args.before}')
            if not os.path.exists(before_tree):
                subprocess.run(['git', 'worktree', 'add', '--detach', before_tree, args.before], cwd=ROOT, check=True)
        run_tree(before_tree, os.path.join(args.work_dir, 'before'), data_dir, args.runs)
    if args.only == 'before':
        return
    seconds = run_tree(args.after_tree, os.path.join(args.work_dir, 'after'), data_dir, args.runs)
    if args.only == 'after':
        return
    report, failed = dict(before=args.before or before_tree, after_seconds=seconds, runs={}), False
    for name in args.runs:
        for log in ('train', 'eval'):
            paths = [os.path.join(args.work_dir, side, name, f'{log}.csv') for side in ('before', 'after')]
            if not os.path.exists(paths[0]) and not os.path.exists(paths[1]):
                continue
            if not all(os.path.exists(q) for q in paths):
                report['runs'][f'{name}/{log}'] = dict(differ={'<file>': 'present on one side only'})
                failed = True
                continue
            r = compare_file(*paths)
            report['runs'][f'{name}/{log}'] = r
            key = f'{name}/{log}.csv'
            r['expected'] = {k: EXPECTED.get(f'{key}:{k}', EXPECTED.get(key)) for k in r['differ']
                             if f'{key}:{k}' in EXPECTED or key in EXPECTED}
            unexpected = {k: v for k, v in r['differ'].items() if k not in r['expected']}
            bad = unexpected or r['only_before'] or r['only_after']
            failed |= bool(bad)
            status = 'DIFFER' if bad else ('identical' if not r['differ'] else 'identical but for the expected')
            print(f'{name:10s} {log}.csv: {r["rows"][1]} rows, {len(r["compared"])} columns identical: {status}')
            for col, what in r['differ'].items():
                why = f'  [expected: {r["expected"][col]}]' if col in r['expected'] else ''
                print(f'    {col}: {what}{why}')
            for side in ('only_before', 'only_after'):
                if r[side]:
                    print(f'    {side}: {r[side]}')
    report['identical'] = not failed
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'{"All identical" if not failed else "Differences found"}; written to {args.out}')
    raise SystemExit(1 if failed else 0)


if __name__ == '__main__':
    main()
