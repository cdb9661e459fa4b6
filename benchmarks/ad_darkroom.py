"""Algorithm Distillation and compressed AD on Dark Room (issue 16; benchmarks/RESULTS.md).

    # the learning runs: one train.py process per seed, results (last evaluation, wall-clock) into a JSON file
    python benchmarks/ad_darkroom.py runs --preset ad_darkroom --seeds 0 1 2 --json benchmarks/results/ad.json
    python benchmarks/ad_darkroom.py runs --preset cad_darkroom --seeds 0 --json benchmarks/results/cad.json
    python benchmarks/ad_darkroom.py runs --preset ad_darkroom --seeds 0 --tag cut60 --json ... --agent.seq_len=60
    # the source and random play on the held-out goals of a history dataset
    python benchmarks/ad_darkroom.py baselines --dataset data/darkroom/histories.npz
    # evaluation cost per step with and without the key-value cache, and training tokens/s
    python benchmarks/ad_darkroom.py speed --preset ad_darkroom
    # a trained run's checkpoint evaluated in context again (held-out goals, or training goals to choose settings on)
    python benchmarks/ad_darkroom.py evaluate --runs RUN_DIR --temperature 0.3 [--goals training] --json ...
    python benchmarks/ad_darkroom.py evaluate --runs CAD_RUN_DIR --eval_memory window   # compressed AD's memory
    # the loss of each run beside chance level (ln 5), and the in-context gain over training
    python benchmarks/ad_darkroom.py plot --runs RUN_DIR [RUN_DIR ...] --png benchmarks/results/ad_loss.png

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


def evaluate(args, extra):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from impls.envs import darkroom
    from impls.runs.in_context import in_context_rollout, summarize
    from impls.runs.restore import load_agent

    results = json.load(open(args.json)) if args.json and os.path.exists(args.json) else {}
    for run in args.runs:
        agent, record, step = load_agent(run)
        if args.goals == 'heldout':
            goals = np.asarray(record['heldout_goals'])
        else:  # 16 training goals drawn once: for choosing evaluation settings without touching held-out goals
            goals = np.random.default_rng(1).choice(darkroom.split_goals(record['split_seed'])[0], 16, replace=False)
        goals = jnp.repeat(jnp.asarray(goals, jnp.int32), args.runs_per_goal)
        overrides = {'eval_temperature': args.temperature}
        if args.eval_memory:
            if 'eval_memory' not in agent.config:
                raise SystemExit(f'--eval_memory is a compressed-AD setting; {run} holds another agent.')
            overrides['eval_memory'] = args.eval_memory
        agent = agent.replace(config=agent.config.copy(overrides))
        t0 = time.perf_counter()
        returns = np.asarray(jax.jit(lambda ag, k: in_context_rollout(ag, goals, args.episodes, k))(
            agent, jax.random.PRNGKey(args.eval_seed)))
        row = summarize(returns, np.asarray(goals))
        row['seconds'] = time.perf_counter() - t0
        name = (f'{os.path.basename(os.path.normpath(run))}@{step}-T{args.temperature}-{args.goals}'
                + (f'-{args.eval_memory}' if args.eval_memory else ''))
        results[name] = row
        per_goal = ', '.join(f'{k.split("goal")[-1]}: {v:.1f}' for k, v in row.items()
                             if k[len('evaluation/goal'):].isdigit())
        print(f'{name}: mean {row["evaluation/return_mean"]:.2f} first10 {row["evaluation/return_first10"]:.2f} '
              f'last10 {row["evaluation/return_last10"]:.2f} gain {row["evaluation/in_context_gain"]:.2f} +- '
              f'{row["evaluation/in_context_gain_se"]:.2f} (s.e.) goals>1 {int(row["evaluation/goals_above_1"])} | '
              f'{per_goal}', flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


def plot(args, extra):
    import math

    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for run in args.runs:
        with open(os.path.join(run, 'train.csv')) as f:
            rows = list(csv.DictReader(f))
        name = os.path.basename(os.path.normpath(run))
        steps = [float(r['step']) for r in rows]
        line, = ax.plot(steps, [float(r['training/actor/ce']) for r in rows], label=f'{name} training')
        ax.plot(steps, [float(r['validation/actor/ce']) for r in rows], '--', color=line.get_color(),
                label=f'{name} held-out histories')
        with open(os.path.join(run, 'eval.csv')) as f:
            ev = list(csv.DictReader(f))
        bx.plot([float(r['step']) for r in ev], [float(r['evaluation/in_context_gain']) for r in ev], 'o-', label=name)
    ax.axhline(math.log(5), color='k', ls=':', label='chance (ln 5)')
    ax.set_xlabel('update')
    ax.set_ylabel('action cross-entropy')
    ax.legend(fontsize=6)
    bx.axhline(0, color='k', ls=':')
    bx.set_xlabel('update')
    bx.set_ylabel('in-context gain, in-run evaluations (last 10 - first 10)')
    bx.legend(fontsize=6)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.png)), exist_ok=True)
    fig.savefig(args.png, dpi=100)
    print(f'wrote {args.png}')


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('mode', choices=['runs', 'baselines', 'speed', 'plot', 'evaluate'])
    p.add_argument('--temperature', type=float, default=0.3)
    p.add_argument('--goals', choices=['heldout', 'training'], default='heldout')
    p.add_argument('--episodes', type=int, default=100)
    p.add_argument('--runs_per_goal', type=int, default=4)
    p.add_argument('--eval_memory', choices=['recurrent', 'window'], default=None,
                   help="evaluate: compressed AD's memory at evaluation (default: the run's own)")
    p.add_argument('--eval_seed', type=int, default=12345)
    p.add_argument('--runs', nargs='*', default=[])
    p.add_argument('--png', default='benchmarks/results/ad_loss.png')
    p.add_argument('--preset', default='ad_darkroom')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--tag', default='')
    p.add_argument('--out', default='runs/benchmarks')
    p.add_argument('--json', default=None)
    p.add_argument('--dataset', default='data/darkroom/histories.npz')
    args, extra = p.parse_known_args()
    dict(runs=runs, baselines=baselines, speed=speed, plot=plot, evaluate=evaluate)[args.mode](args, extra)


if __name__ == '__main__':
    main()
