"""The streaming block-shuffle loader on a dataset larger than we would hold in memory (issue 18).

    python benchmarks/loader_scale.py write  --out /data/walk20g --gb 20     # the project's writer, chunk by chunk
    python benchmarks/loader_scale.py write  --out data/walk_small.npz --rows 2000000   # in-memory twin, same shapes
    python benchmarks/loader_scale.py sample --dataset /data/walk20g --dataset data/walk_small.npz
    python benchmarks/loader_scale.py train  --dataset /data/walk20g --dataset data/walk_small.npz --steps 3000
    python benchmarks/loader_scale.py train  --dataset /data/walk20g --cold --steps 3000 --logs 10 \
        --agent.value_hidden_dims=64,64 --agent.actor_hidden_dims=64,64 --agent.latent_dim=64   # a disk too slow

The data: random-walk state episodes in OGBench's layout (observations float32 (N, 29) as antmaze's, actions float32
(N, 8), terminals), written by impls.data.datasets.NpyDirWriter as a directory of .npy files that load_dataset
memory-maps (a .npz out is written whole, for the in-memory twin). `sample` times make_batch with CRL's goal
sampler through the block-shuffle loader (transitions per second; peak RSS = VmHWM, which counts the file pages the
process has mapped). `train` runs train.py (CRL, the cpu_budget sizes) on each dataset with the same loader flags
and reads its steps/s; each run's peak RSS is its own (a fresh process). --cold first drops the dataset from the OS
page cache, so the run reads from the disk: with a small network the update outruns the disk, and the run's
`data_wait` health detector should say the loop waits on data. Prints JSON lines; --json writes them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OBS_DIM, ACTION_DIM, EPISODE = 29, 8, 1000
LOADER = dict(block_size=1000, chunk_size=200_000)


def proc_memory() -> dict:
    """Peak and current resident memory of this process, GB (VmHWM, and RssAnon / RssFile now)."""
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('VmHWM', 'RssAnon', 'RssFile'):
                out[key] = int(value.split()[0]) / 1e6
    return out


def walk_chunk(rng, rows: int) -> dict:
    """`rows` rows (a whole number of EPISODE-step episodes) of random-walk states and actions."""
    episodes = rows // EPISODE
    actions = rng.uniform(-1, 1, size=(episodes, EPISODE, ACTION_DIM)).astype(np.float32)
    steps = rng.normal(0, 0.1, size=(episodes, EPISODE, OBS_DIM)).astype(np.float32)
    steps[:, :, :ACTION_DIM] += 0.1 * actions
    obs = np.cumsum(steps, axis=1, dtype=np.float32)
    terminals = np.zeros((episodes, EPISODE), bool)
    terminals[:, -1] = True
    return dict(observations=obs.reshape(rows, OBS_DIM), actions=actions.reshape(rows, ACTION_DIM),
                terminals=terminals.reshape(rows))


def write(args):
    from impls.data.datasets import NpyDirWriter, save_npz_atomic

    row_bytes = 4 * OBS_DIM + 4 * ACTION_DIM + 1
    rows = args.rows or int(args.gb * 1e9 / row_bytes)
    rows -= rows % EPISODE
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    if args.out.endswith('.npz'):
        save_npz_atomic(args.out, walk_chunk(rng, rows))
    else:
        chunk = 1000 * EPISODE
        with NpyDirWriter(args.out, rows, dict(observations=((OBS_DIM,), np.float32),
                                                actions=((ACTION_DIM,), np.float32), terminals=((), bool))) as w:
            for first in range(0, rows, chunk):
                w.append(**walk_chunk(rng, min(chunk, rows - first)))
    seconds = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out)) if os.path.isdir(
        args.out) else os.path.getsize(args.out)
    row = dict(step='write', out=args.out, rows=rows, gb=size / 1e9, seconds=seconds, gb_per_s=size / 1e9 / seconds,
               **proc_memory())
    print(json.dumps(row), flush=True)
    return [row]


def sample(args):
    """Each dataset in a fresh process, so that one's peak memory is not the other's."""
    rows = []
    for path in args.dataset:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), 'sample_one', '--dataset', path,
                               '--batches', str(args.batches), '--batch_size', str(args.batch_size)],
                              capture_output=True, text=True, cwd=ROOT)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
        if not lines:
            print(proc.stderr[-3000:], file=sys.stderr)
            continue
        rows.append(json.loads(lines[-1]))
        print(lines[-1], flush=True)
    return rows


def sample_one(args):
    from impls.agents import get_agent
    from impls.data.datasets import load_dataset
    from impls.data.loader import BlockShuffleIndices, make_batch
    from impls.data.sampler import GoalSampler

    path = args.dataset[0]
    start = time.perf_counter()
    dataset = load_dataset(path)
    load_seconds = time.perf_counter() - start
    after_load = proc_memory()
    config = get_agent('crl').get_config()
    sampler = GoalSampler(dataset, config)
    index = BlockShuffleIndices(dataset, args.batch_size, LOADER['block_size'], LOADER['chunk_size'], seed=0)
    make_batch(sampler, index, 0, 0)
    start = time.perf_counter()
    for step in range(1, args.batches + 1):
        make_batch(sampler, index, 0, step)
    seconds = time.perf_counter() - start
    print(json.dumps(dict(step='sample', dataset=path, rows=dataset.size, load_seconds=load_seconds,
                          rss_after_load_gb=after_load['VmHWM'], batches=args.batches, batch_size=args.batch_size,
                          transitions_per_s=args.batches * args.batch_size / seconds, **proc_memory(), **LOADER)),
          flush=True)


def loader_flags(extra) -> dict:
    """The block and chunk sizes a train run used: LOADER, unless the extra train.py flags (given later) override."""
    flags = dict(LOADER)
    for i, arg in enumerate(extra):
        name, _, value = arg.partition('=')
        if name.lstrip('-') in flags:
            flags[name.lstrip('-')] = int(value or extra[i + 1])
    return flags


def evict_page_cache(path):
    """Drop a dataset's pages from the OS page cache (posix_fadvise DONTNEED; no privileges needed), so that the
    run reads it from the disk, as a dataset larger than RAM or on a network disk would be read."""
    files = [os.path.join(path, f) for f in os.listdir(path)] if os.path.isdir(path) else [path]
    for name in files:
        fd = os.open(name, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def evict_when_training(path, run_dir, timeout=1800.0):
    """Once the run has logged its first interval (loading and compilation done), drop the dataset's pages."""
    start = time.time()
    while not os.path.exists(os.path.join(run_dir, 'train.csv')) and time.time() - start < timeout:
        time.sleep(0.5)
    evict_page_cache(path)


def train(args):
    rows = []
    for path in args.dataset:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--preset', 'cpu_budget', '--algorithm', 'crl',
                   '--dataset_path', path, '--save_dir', tmp, '--train_steps', str(args.steps), '--log_interval',
                   str(args.steps // args.logs), '--eval_episodes', '0', '--no_progress', '--wandb_mode', 'disabled',
                   '--block_size', str(LOADER['block_size']), '--chunk_size', str(LOADER['chunk_size']), *args.extra]
            evictor = None
            if args.cold:  # after loading (whose NaN scan reads the whole file through the page cache), drop it
                evictor = threading.Thread(target=evict_when_training, args=(path, tmp), daemon=True)
                evictor.start()
            wrapper = ('import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:]); '
                       'print(json.dumps(dict(rc=r.returncode, '
                       'peak_rss_gb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6)))')
            proc = subprocess.run([sys.executable, '-c', wrapper, *cmd], capture_output=True, text=True, cwd=ROOT)
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            if info['rc'] != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                continue
            with open(os.path.join(tmp, 'train.csv')) as f:
                logs = list(csv.DictReader(f))
            rates = [float(r['time/steps_per_second']) for r in logs][1:]  # the first has compiling
            waits = [float(r.get('time/data_wait_fraction') or 'nan') for r in logs]
            with open(os.path.join(tmp, 'health.json')) as f:
                fired = json.load(f)['fired']
        row = dict(step='train', dataset=path, steps=args.steps, steps_per_s=float(np.median(rates)), rates=rates,
                   data_wait_fraction=waits, data_wait_fired_at=fired.get('data_wait'), cold=args.cold, extra=args.extra,
                   peak_rss_gb=info['peak_rss_gb'], **loader_flags(args.extra))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('what', choices=['write', 'sample', 'sample_one', 'train'])
    p.add_argument('--out', help='write: a directory (memory-mapped .npy files) or NAME.npz (in memory).')
    p.add_argument('--gb', type=float, default=20.0)
    p.add_argument('--rows', type=int, default=None)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--dataset', action='append', default=[])
    p.add_argument('--batches', type=int, default=3000)
    p.add_argument('--batch_size', type=int, default=1024)
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--logs', type=int, default=4, help='train: log intervals over the run.')
    p.add_argument('--cold', action='store_true',
                   help='train: drop the dataset from the page cache first, so that the run reads it from the disk')
    p.add_argument('--json', default=None, help='Append the rows to this JSON file.')
    args, extra = p.parse_known_args()  # train: anything else goes to train.py (e.g. --agent.value_hidden_dims=64,64)
    args.extra = [a for a in extra if a != '--']
    rows = {'write': write, 'sample': sample, 'sample_one': sample_one, 'train': train}[args.what](args)
    if args.json and rows:
        old = json.load(open(args.json)) if os.path.exists(args.json) else []
        with open(args.json, 'w') as f:
            json.dump(old + rows, f, indent=1)


if __name__ == '__main__':
    main()
