"""Pixel training speed through train.py against the bare jitted update, on the researcher's data shapes.

    python benchmarks/pixel_speed.py [--algorithms cmd crl] [--steps 60] [--repeats 3]

Data: the synthetic driving dataset (impls.data.synthetic.pixel_driving: uint8 64x64x3 frames, 5 discrete
actions, 150-step episodes, no environment). Settings: batch 64, frame stack 4, impala_small, random crops
p_aug 0.5 (--preset cmd_driving's agent settings), the block-shuffle loader (block 150, chunk 2100).
  * bare: `agent.update(batch)` on one fixed batch already on the device, blocking on each result;
  * train.py: the command line as a user types it, steps/s read from train.csv after the first log
    interval (compilation).
Medians over repeats; writes benchmarks/results/pixel_speed.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402
from impls.agents import get_agent  # noqa: E402
from impls.data.datasets import load_dataset  # noqa: E402
from impls.data.loader import BlockShuffleIndices, make_batch  # noqa: E402
from impls.data.sampler import GoalSampler  # noqa: E402
from impls.data.synthetic import pixel_driving  # noqa: E402
from impls.utils.config import apply_overrides  # noqa: E402

AGENT = dict(encoder='impala_small', p_aug=0.5, batch_size=64, frame_stack=4)


def bare_updates_per_second(path, algorithm, updates):
    dataset = load_dataset(path)
    spec = get_agent(algorithm)
    config = spec.get_config()
    apply_overrides(config, dict(AGENT, discrete=dataset.discrete))
    sampler = GoalSampler(dataset, config)
    indices = BlockShuffleIndices(dataset, 64, 150, 2100, seed=0, frame_stack=4)
    batch = jax.device_put(make_batch(sampler, indices, 0, 0))
    config.action_dim = dataset.action_dim()
    agent = spec.agent_cls.create(0, {k: batch[k][:2] for k in ('observations', 'actions')}, config)
    for _ in range(2):  # compile and warm up
        agent, info = agent.update(batch)
        jax.block_until_ready(info)
    t0 = time.perf_counter()
    for _ in range(updates):
        agent, info = agent.update(batch)
        jax.block_until_ready(info)
    return updates / (time.perf_counter() - t0)


def train_py_steps_per_second(path, algorithm, steps, log_interval):
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train.main(['--dataset_path', path, '--save_dir', os.path.join(tmp, 'run'), '--frame_stack', '4',
                    '--algorithm', algorithm.upper(), '--chunk_size', '2100', '--batch_size', '64', '--steps',
                    str(steps), '--epochs', '1', '--block_size', '150', '--agent.p_aug=0.5', '--log_interval',
                    str(log_interval), '--wandb_mode', 'disabled', '--no_progress'])
        wall = time.perf_counter() - t0
        with open(os.path.join(tmp, 'run', 'train.csv')) as f:
            rows = list(csv.DictReader(f))
    rates = [float(r['time/steps_per_second']) for r in rows[1:]]
    return float(np.median(rates)), wall


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--algorithms', nargs='+', default=['cmd', 'crl'])
    p.add_argument('--steps', type=int, default=60, help='train.py steps per run (first log interval excluded).')
    p.add_argument('--log_interval', type=int, default=10)
    p.add_argument('--updates', type=int, default=10, help='Timed bare updates per repeat.')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--episodes', type=int, default=100)
    p.add_argument('--data', default='data/pixel_driving/train_data.npz')
    p.add_argument('--out', default='benchmarks/results/pixel_speed.json')
    args = p.parse_args()
    if not os.path.exists(args.data):
        from impls.data.datasets import save_npz_atomic

        save_npz_atomic(args.data, pixel_driving(episodes=args.episodes, length=150, size=64, seed=0))
    results = {}
    for algorithm in args.algorithms:
        bare, fused, walls = [], [], []
        for _ in range(args.repeats):  # alternate, so that machine noise falls on both
            bare.append(bare_updates_per_second(args.data, algorithm, args.updates))
            rate, wall = train_py_steps_per_second(args.data, algorithm, args.steps, args.log_interval)
            fused.append(rate)
            walls.append(wall)
        results[algorithm] = dict(bare_updates_per_second=bare, train_py_steps_per_second=fused, train_py_wall_s=walls,
                                  ratio=float(np.median(fused) / np.median(bare)))
        print(json.dumps(dict(algorithm=algorithm, bare=float(np.median(bare)), train_py=float(np.median(fused)),
                              ratio=results[algorithm]['ratio'], wall_s=float(np.median(walls)))), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(args=vars(args), cpu=os.cpu_count(), results=results), f, indent=1)


if __name__ == '__main__':
    main()
