"""The same train.py command in two checkouts, alternating, to tell a speed change from machine noise:

    python benchmarks/ab_trees.py --before /tmp/tree-40da5ed --after . --repeats 5 -- \
        --algorithm dqn --env_name CartPole-v1 --train_steps 50000 --eval_episodes 0

Each repeat runs before then after (then after then before on the next, so neither always goes first) and reads
the rate train.py prints at its end (online: environment steps per second of the training loop; offline: steps/s
of updates). Prints the medians and their ratio after / before; writes JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

PATTERNS = (r'Environment steps per second[^:]*: ([\d.]+)', r'of updates, ([\d.]+) steps/s')


def rate(tree, argv, save_dir):
    env = dict(os.environ, PYTHONPATH=tree, WANDB_MODE='disabled')
    cmd = [sys.executable, 'train.py', *argv, '--save_dir', save_dir, '--no_progress', '--wandb_mode', 'disabled']
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f'failed in {tree}:\n{proc.stderr[-2000:]}')
    for pattern in PATTERNS:
        match = re.search(pattern, proc.stdout)
        if match:
            return float(match.group(1))
    raise SystemExit(f'no rate in the output of {tree}:\n{proc.stdout[-2000:]}')


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--before', required=True)
    p.add_argument('--after', required=True)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--out', default=None)
    p.add_argument('argv', nargs=argparse.REMAINDER, help='-- then the train.py flags')
    args = p.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ['--'] else args.argv
    rates = {'before': [], 'after': []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = ('before', 'after') if r % 2 == 0 else ('after', 'before')
            for side in order:
                value = rate(os.path.abspath(getattr(args, side)), argv, os.path.join(tmp, f'{side}-{r}'))
                rates[side].append(value)
                print(f'repeat {r}: {side:6s} {value:10.1f}', flush=True)
    median = {k: float(np.median(v)) for k, v in rates.items()}
    result = dict(argv=argv, rates=rates, median=median, ratio_after_over_before=median['after'] / median['before'])
    print(f'median before {median["before"]:.1f}, after {median["after"]:.1f}: after / before = '
          f'{result["ratio_after_over_before"]:.3f}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
