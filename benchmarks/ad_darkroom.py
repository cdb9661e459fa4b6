"""Algorithm Distillation and compressed AD on Dark Room (issue 16; benchmarks/RESULTS.md).

    # the learning runs: one train.py process per seed, results (last evaluation, wall-clock) into a JSON file
    python benchmarks/ad_darkroom.py runs --preset ad_darkroom --seeds 0 1 2 --json benchmarks/results/ad.json
    python benchmarks/ad_darkroom.py runs --preset cad_darkroom --seeds 0 --json benchmarks/results/cad.json
    python benchmarks/ad_darkroom.py runs --preset ad_darkroom --seeds 0 --tag cut60 --json ... --agent.seq_len=60
    # the source and random play on the held-out goals of a history dataset
    python benchmarks/ad_darkroom.py baselines --dataset data/darkroom/histories.npz
    # evaluation cost per step with and without the key-value cache, and training tokens/s
    python benchmarks/ad_darkroom.py speed --preset ad_darkroom

Flags after the known ones go to train.py unchanged.
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


def last_row(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for k, v in rows[-1].items() if v not in ('', None)} if rows else {}


def runs(args, extra):
    results = json.load(open(args.json)) if args.json and os.path.exists(args.json) else {}
    for seed in args.seeds:
        save = os.path.join(args.out, f'{args.preset}{"-" + args.tag if args.tag else ""}-s{seed}')
        cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--preset', args.preset, '--seed', str(seed),
               '--save_dir', save, '--no_progress', *extra]
        print(' '.join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        ev, tr = last_row(os.path.join(save, 'eval.csv')), last_row(os.path.join(save, 'train.csv'))
        curves = {}
        with open(os.path.join(save, 'in_context_curves.csv')) as f:
            for row in csv.DictReader(f):
                curves.setdefault(row['goal'], []).append(float(row['return']))
        results[f'{args.preset}{"-" + args.tag if args.tag else ""}-s{seed}'] = dict(
            command=' '.join(cmd[1:]), wall_s=wall, eval=ev,
            train={k: v for k, v in tr.items() if 'ce' in k or 'accuracy' in k or 'per_second' in k or 'depth' in k},
            per_goal_mean={g: sum(c) / len(c) for g, c in curves.items()})
        print(json.dumps(results[list(results)[-1]]['eval'], indent=1), flush=True)
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, 'w') as f:
                json.dump(results, f, indent=1)


def baselines(args, extra):
    import numpy as np

    from impls.data.histories import load_histories
    from impls.envs import darkroom

    train, heldout, meta = load_histories(args.dataset)
    for name, part in (('training goals', train), ('held-out goals', heldout)):
        r = darkroom.episode_returns(part['rewards']).mean(0)
        marks = ', '.join(f'ep {e}: {r[e - 1]:.2f}' for e in (1, 10, 60, 100) if e <= len(r))
        print(f'source ({meta["source"]}) on {name}: mean over the first 100 episodes {r[:100].mean():.2f}; {marks}')
    optimal = np.mean([darkroom.optimal_return(g) for g in meta['heldout_goals']])
    print(f'optimal return on the held-out goals: {optimal:.2f}')


def speed(args, extra):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from impls.agents import get_agent
    from impls.data.histories import device_histories, load_histories, sample_windows
    from impls.runs.in_context import in_context_rollout
    from impls.runs.session import agent_config
    from train import parse_args

    a = parse_args(['--preset', args.preset, *extra])
    spec = get_agent(a.algorithm)
    train, _, meta = load_histories(args.dataset)
    config = agent_config(a, spec)
    with config.unlocked():
        config.num_observations, config.action_dim, config.horizon = 81, 5, 20
    L = spec.agent_cls.replay(config)['length']
    data = device_histories(train, 5)
    agent = spec.agent_cls.create(0, jax.device_get(sample_windows(data, jax.random.PRNGKey(0), 1, L)), config)
    B = int(config.batch_size)

    def body(ag, k):
        return ag.update(sample_windows(data, k, B, L))

    train_n = jax.jit(lambda ag, k: jax.lax.scan(body, ag, jax.random.split(k, 20)))
    times = []
    for i in range(4):
        t0 = time.perf_counter()
        out = train_n(agent, jax.random.PRNGKey(i))
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    t_update = float(np.median(times[1:])) / 20
    print(f'{a.algorithm}: {t_update * 1e3:.1f} ms/update, {B * L / t_update:,.0f} tokens/s (batch {B} x {L})')
    goals = jnp.repeat(jnp.asarray(meta['heldout_goals']), 4)
    steps = 20 * 20
    cached = jax.jit(lambda ag, k: in_context_rollout(ag, goals, 20, k))
    jax.block_until_ready(cached(agent, jax.random.PRNGKey(0)))
    t0 = time.perf_counter()
    jax.block_until_ready(cached(agent, jax.random.PRNGKey(1)))
    t_cache = (time.perf_counter() - t0) / steps
    line = f'evaluation, {len(goals)} contexts in parallel: with the cache {t_cache * 1e3:.2f} ms/step'
    if hasattr(agent, 'window_logits'):  # a full pass over the context every step
        N = agent.context_tokens()
        tokens = jnp.zeros((len(goals), N, agent.initial_carry(1)['tokens'].shape[-1]))
        full = jax.jit(lambda ag, t: ag.window_logits(t, jnp.ones(t.shape[:2], bool))[:, -1])
        jax.block_until_ready(full(agent, tokens))
        t0 = time.perf_counter()
        for _ in range(50):
            out = full(agent, tokens)
        jax.block_until_ready(out)
        t_full = (time.perf_counter() - t0) / 50
        line += f', without (a full pass over {N} tokens) {t_full * 1e3:.2f} ms/step: {t_full / t_cache:.1f}x'
    print(line)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('mode', choices=['runs', 'baselines', 'speed'])
    p.add_argument('--preset', default='ad_darkroom')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--tag', default='')
    p.add_argument('--out', default='runs/benchmarks')
    p.add_argument('--json', default=None)
    p.add_argument('--dataset', default='data/darkroom/histories.npz')
    args, extra = p.parse_known_args()
    dict(runs=runs, baselines=baselines, speed=speed)[args.mode](args, extra)


if __name__ == '__main__':
    main()
