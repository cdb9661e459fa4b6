"""Throughput of train.py against the bare jitted update on the same config and data.

    python benchmarks/throughput.py --dataset_path data/pointmaze-medium-navigate-v0.npz [--algorithm crl]

Bare update: `agent.update(batch)` in a Python loop on one fixed batch already on the device (no data
sampling, no logging) -- the ceiling for this network. train.py: the real loop (sampling in a background
thread, lax.scan over updates_per_dispatch updates, logging, validation loss) with evaluation off; its
steps/s is read from train.csv, excluding the first log interval (compilation). Medians over repeats.
Prints one JSON line per configuration.
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
from impls.data.loader import UniformIndices, make_batch  # noqa: E402
from impls.data.sampler import GoalSampler  # noqa: E402
from impls.utils.config import apply_overrides  # noqa: E402

CONFIGS = {
    # OGBench's defaults: batch 1024, 3x512 MLPs.
    'ogbench_default': dict(batch_size=1024, agent={}),
    # The quick-start / CPU-budget size, where per-step overhead matters most.
    'small': dict(batch_size=256, agent=dict(value_hidden_dims=(256, 256), actor_hidden_dims=(256, 256))),
}


def bare_update_steps_per_second(algorithm, dataset_path, batch_size, agent_overrides, steps, repeats):
    spec = get_agent(algorithm)
    config = spec.get_config()
    apply_overrides(config, dict(agent_overrides, batch_size=batch_size))
    ds = load_dataset(dataset_path)
    sampler = GoalSampler(ds, config)
    batch = jax.device_put(make_batch(sampler, UniformIndices(ds, batch_size), 0, 0))
    config.action_dim = ds.action_dim()
    agent = spec.agent_cls.create(0, {k: batch[k][:2] for k in ('observations', 'actions')}, config)
    agent, info = agent.update(batch)
    jax.block_until_ready(info)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            agent, info = agent.update(batch)
        jax.block_until_ready(info)
        rates.append(steps / (time.perf_counter() - start))
    return float(np.median(rates)), rates


def train_py_steps_per_second(algorithm, dataset_path, batch_size, agent_overrides, steps, repeats):
    interval = steps
    with tempfile.TemporaryDirectory() as tmp:
        argv = ['--algorithm', algorithm, '--dataset_path', dataset_path, '--save_dir', tmp,
                '--batch_size', str(batch_size), '--train_steps', str(interval * (repeats + 1)),
                '--log_interval', str(interval), '--eval_episodes', '0', '--wandb_mode', 'disabled',
                '--no_progress', '--ckpt_every', str(interval * (repeats + 1))]
        argv += [f'--agent.{k}={",".join(map(str, v)) if isinstance(v, tuple) else v}' for k, v in agent_overrides.items()]
        train.main(argv)
        with open(os.path.join(tmp, 'train.csv')) as f:
            rows = list(csv.DictReader(f))
    rates = [float(r['time/steps_per_second']) for r in rows[1:]]  # row 0 includes compilation
    return float(np.median(rates)), rates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dataset_path', required=True)
    parser.add_argument('--algorithm', default='crl')
    parser.add_argument('--configs', default='small,ogbench_default')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--seconds', type=float, default=20.0, help='Approximate seconds per timed repeat.')
    args = parser.parse_args()
    for name in args.configs.split(','):
        cfg = CONFIGS[name]
        probe, _ = bare_update_steps_per_second(args.algorithm, args.dataset_path, cfg['batch_size'], cfg['agent'], 3, 1)
        steps = max(10, int(probe * args.seconds))
        bare, bare_all = bare_update_steps_per_second(
            args.algorithm, args.dataset_path, cfg['batch_size'], cfg['agent'], steps, args.repeats
        )
        loop, loop_all = train_py_steps_per_second(
            args.algorithm, args.dataset_path, cfg['batch_size'], cfg['agent'], steps, args.repeats
        )
        print(json.dumps(dict(
            algorithm=args.algorithm, config=name, batch_size=cfg['batch_size'], steps_per_repeat=steps,
            bare_update_steps_per_s=round(bare, 2), train_py_steps_per_s=round(loop, 2), ratio=round(loop / bare, 3),
            bare_repeats=[round(r, 2) for r in bare_all], train_py_repeats=[round(r, 2) for r in loop_all],
            device=jax.devices()[0].device_kind, cpus=os.cpu_count(),
        )), flush=True)


if __name__ == '__main__':
    main()
