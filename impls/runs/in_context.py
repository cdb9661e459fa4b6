"""The in-context RL loop (agents of kind 'in_context': AD, compressed AD), driven by train.py.

Training: windows of learning histories (impls/data/histories.py), sampled on the device, `--updates_per_dispatch`
updates per jitted call. Every `--log_interval` updates: the training metrics beside chance level (ln A), and the
same metrics on histories of the held-out tasks (`validation/`, never trained on). Every `--eval_interval` updates:
the in-context evaluation -- on every held-out goal, `--eval_runs` fresh contexts each run `--eval_episodes`
episodes in a row with the weights frozen, actions sampled; logged: the mean return, the first-10 and last-10 episode
means and their gap (the in-context gain, which can appear and then fade over training), and the goals whose mean is
above 1. The last evaluation writes the per-goal curves (`in_context_curves.csv`) and their plot
(`in_context_curves.png`) into the run directory.

The dataset's goal split is checked against its seed, and no training history may hold a held-out task
(impls/data/histories.py refuses it); the evaluation runs only held-out goals.
"""

from __future__ import annotations

import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from impls.data.datasets import DatasetError
from impls.data.histories import device_histories, load_histories, sample_windows
from impls.envs import darkroom
from impls.health import health_context
from impls.runs.session import (RunSession, TrainingError, agent_config, due, example_spec, make_monitor,
                                 make_plan)
from impls.utils.checkpoints import json_safe
from impls.utils.history_tokens import chance_loss

DEFAULT_TRAIN_STEPS = 20_000
DEFAULT_DATASET = os.path.join('data', 'darkroom', 'histories.npz')
NAN_KNOBS = 'Lower --agent.lr or raise --agent.num_warmup_steps.'


def resolve_histories(args):
    """(train, heldout, meta): the dataset at --dataset_path, or the default one (written on first use)."""
    path = args.dataset_path or DEFAULT_DATASET
    if args.dataset_path is None and not os.path.exists(path):
        print(f'No history dataset at {path}: writing {darkroom.HISTORIES_PER_GOAL} {args.generate_episodes}-episode '
              f'{args.history_source} histories per training goal (python -m impls.envs.darkroom).')
        darkroom.write_dataset(path, args.generate_episodes, args.history_source)
    train, heldout, meta = load_histories(path)
    if meta['env'] != 'darkroom':
        raise DatasetError(f'{path} holds histories of {meta["env"]!r}; the in-context loop evaluates in darkroom.')
    expect_train, expect_held = darkroom.split_goals(int(meta['split_seed']))
    if sorted(meta['heldout_goals']) != expect_held.tolist() or sorted(meta['train_goals']) != expect_train.tolist():
        raise DatasetError(f'{path}: its recorded goal split is not the split of its seed {meta["split_seed"]}; the '
                           f'file was edited or written by another version. Write it again (python -m '
                           f'impls.envs.darkroom --split_seed {meta["split_seed"]}).')
    return path, train, heldout, meta


def check_context(meta, length: int, history_length: int):
    """A context that cannot hold one episode is warned about; one longer than the histories is refused. length: the
    transitions of a training window, raw and (compressed AD) compressed alike: older episodes that reach the model
    as latents count, so a raw window shorter than an episode is not warned about when compression covers more."""
    if length > history_length:
        raise TrainingError(f'the context needs windows of {length} transitions, but the histories hold '
                            f'{history_length}; shorten the context (--agent.seq_len / the compression lengths) or '
                            f'write longer histories (--generate_episodes).')
    if length < meta['horizon']:
        warnings.warn(f'the context holds {length} transitions, less than one {meta["horizon"]}-step episode: the '
                      f'model sees at most the tail of the previous episode, so it can learn in context only what '
                      f'that tail shows. Raise it to several episodes (--agent.seq_len, or the compression depth and '
                      f'lengths).', stacklevel=2)


def in_context_rollout(agent, goals, episodes: int, key):
    """Per goal (G,), one fresh context running `episodes` Dark Room episodes in a row: returns (G, episodes)."""
    G, T = goals.shape[0], episodes * darkroom.HORIZON
    goal_pos = darkroom.goal_position(goals)

    def body(carry, inputs):
        pos, ctx = carry
        t, k = inputs
        obs = darkroom.cell(pos)
        actions, ctx = agent.act(ctx, obs, None, k, 'eval')
        new, rewards = jax.vmap(darkroom.step)(pos, actions, goal_pos)
        ctx = agent.record(ctx, actions, rewards)
        last = (t + 1) % darkroom.HORIZON == 0
        new = jnp.where(last, jnp.broadcast_to(darkroom.reset(), new.shape), new)
        return (new, ctx), rewards

    start = jnp.broadcast_to(darkroom.reset(), (G, 2))
    _, rewards = jax.lax.scan(body, (start, agent.initial_carry(G)), (jnp.arange(T), jax.random.split(key, T)))
    return rewards.T.reshape(G, episodes, darkroom.HORIZON).sum(-1)


def summarize(returns, goals) -> dict:
    """Metrics of (G, E) in-context returns: the mean, first-10 / last-10 episode means, their gap and its standard
    error over the contexts, the goals whose mean is above 1, the mean per goal."""
    first, last = returns[:, :10].mean(), returns[:, -10:].mean()
    gains = returns[:, -10:].mean(1) - returns[:, :10].mean(1)  # per context
    se = float(gains.std(ddof=1) / np.sqrt(len(gains))) if len(gains) > 1 else float('nan')
    per_goal = {int(g): float(returns[goals == g].mean()) for g in np.unique(goals)}
    row = {'evaluation/return_mean': float(returns.mean()), 'evaluation/return_first10': float(first),
           'evaluation/return_last10': float(last), 'evaluation/in_context_gain': float(last - first),
           'evaluation/in_context_gain_se': se,
           'evaluation/goals_above_1': float(sum(v > 1 for v in per_goal.values()))}
    row.update({f'evaluation/goal{g}': v for g, v in per_goal.items()})
    return row


def write_curves(run_dir, returns, goals, meta):
    """in_context_curves.csv (goal, episode, mean return over runs) and its plot."""
    ids = np.unique(goals)
    curves = np.stack([returns[goals == g].mean(0) for g in ids])
    path = os.path.join(run_dir, 'in_context_curves.csv')
    with open(path, 'w') as f:
        f.write('goal,episode,return\n')
        for g, curve in zip(ids, curves):
            f.writelines(f'{g},{e + 1},{r:.4f}\n' for e, r in enumerate(curve))
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for g, curve in zip(ids, curves):
        ax.plot(np.arange(1, len(curve) + 1), curve, lw=1, alpha=0.7, label=f'goal {divmod(int(g), darkroom.SIZE)}')
    ax.plot(np.arange(1, curves.shape[1] + 1), curves.mean(0), 'k', lw=2.5, label='mean')
    ax.axhline(np.mean([darkroom.optimal_return(g) for g in ids]), color='g', ls='--', lw=1, label='optimal')
    ax.set_xlabel('in-context episode')
    ax.set_ylabel('return')
    ax.set_title(f'held-out goals (split seed {meta["split_seed"]})')
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, 'in_context_curves.png'), dpi=100)
    plt.close(fig)
    return path


def run_in_context(args, spec):
    if jax.process_count() > 1 or args.num_seeds != 1:
        raise TrainingError('the in-context loop runs one seed in one process; run seeds as separate processes.')
    if args.env_name not in (None, 'darkroom'):
        raise TrainingError(f'--env_name {args.env_name!r}: the in-context agents evaluate in darkroom (the only '
                            f'environment with learning histories here).')
    path, train, heldout, meta = resolve_histories(args)
    config = agent_config(args, spec)
    with config.unlocked():
        config.num_observations, config.action_dim = int(meta['num_observations']), int(meta['num_actions'])
        config.horizon = int(meta['horizon'])
    length = int(spec.agent_cls.replay(config)['length'])
    check_context(meta, length, train['observations'].shape[1])
    data, val = device_histories(train, config.action_dim), device_histories(heldout, config.action_dim)
    batch_size = int(config.batch_size)
    example = jax.device_get(sample_windows(data, jax.random.PRNGKey(0), 1, length))
    try:
        agent = spec.agent_cls.create(args.seed, example, config)
    except ValueError as e:
        raise TrainingError(str(e)) from e
    total = args.train_steps or DEFAULT_TRAIN_STEPS
    eval_interval = args.eval_interval or total
    ckpt_every = args.ckpt_every or eval_interval
    saved_config = json_safe(config)
    monitor = make_monitor(args, dict(health_context(dict(saved_config)), chance_loss=chance_loss(config.action_dim)))
    record = dict(algorithm=args.algorithm, agent=saved_config, seed=args.seed, env_name='darkroom', dataset_path=path,
                  split_seed=meta['split_seed'], heldout_goals=meta['heldout_goals'],
                  example_batch=example_spec(example))
    session = RunSession(args, 'darkroom', record, monitor, total)
    key, step = jax.random.PRNGKey(args.seed + 1), 0
    if args.resume:
        agent, _, loop = session.restore(agent)
        key, step = jnp.asarray(loop['key']), int(loop['step'])
        print(f'Resumed {session.run_dir} at step {step}.')
    session.start(step)

    def train_n(agent, key, n):
        def body(agent, k):
            return agent.update(sample_windows(data, k, batch_size, length))

        agent, infos = jax.lax.scan(body, agent, jax.random.split(key, n))
        return agent, jax.tree.map(lambda x: x.mean(0), infos)

    train_n = jax.jit(train_n, static_argnums=2)
    validate = jax.jit(lambda agent, k: agent.loss_info(sample_windows(val, k, batch_size, length)))
    heldout_goals = jnp.asarray(meta['heldout_goals'], jnp.int32)
    eval_goals = jnp.repeat(heldout_goals, max(1, args.eval_runs))
    episodes = max(args.eval_episodes, 1)
    rollout = jax.jit(lambda agent, k: in_context_rollout(agent, eval_goals, episodes, k))

    plan = make_plan(step, total, (args.log_interval, eval_interval, ckpt_every), args.updates_per_dispatch)
    interval, timer, timer_steps, started = [], time.perf_counter(), 0, time.perf_counter()
    result, excluded, loop_start, loop_start_step = {}, 0.0, time.perf_counter(), step
    try:
        for seg_start, n in plan:
            key, k_train, k_val, k_eval = jax.random.split(key, 4)
            agent, info = train_n(agent, k_train, n)
            interval.append((n, info))
            step = seg_start + n
            timer_steps += n
            session.bar.update(n)
            if due(step, args.log_interval, total):
                info = jax.device_get(interval)
                weights = np.array([w for w, _ in info], float)
                row = {f'training/{k}': float(np.average([i[k] for _, i in info], weights=weights))
                       for k in info[0][1]}
                row.update({f'validation/{k}': float(v) for k, v in jax.device_get(validate(agent, k_val)).items()})
                elapsed = max(time.perf_counter() - timer - excluded, 1e-9)
                row['time/steps_per_second'] = timer_steps / elapsed
                row['time/tokens_per_second'] = timer_steps * batch_size * length / elapsed
                row['time/elapsed_s'] = time.perf_counter() - started
                session.log('train', step, row)
                session.check_finite(step, row, NAN_KNOBS)
                interval, timer, timer_steps, excluded = [], time.perf_counter(), 0, 0.0
            if args.eval_episodes > 0 and due(step, eval_interval, total):
                t0 = time.perf_counter()
                returns = np.asarray(jax.device_get(rollout(agent, k_eval)))
                goals = np.asarray(eval_goals)
                result = summarize(returns, goals)
                result['time/elapsed_s'] = time.perf_counter() - started
                session.log('eval', step, result)
                session.bar.write(
                    f'step {step}: in-context return {result["evaluation/return_mean"]:.2f} over {episodes} '
                    f'episodes on {len(heldout_goals)} held-out goals (first 10 {result["evaluation/return_first10"]:.2f}'
                    f', last 10 {result["evaluation/return_last10"]:.2f}; goals above 1: '
                    f'{int(result["evaluation/goals_above_1"])})')
                if step == total:
                    write_curves(session.run_dir, returns, goals, meta)
                excluded += time.perf_counter() - t0
            if due(step, ckpt_every, total):
                t0 = time.perf_counter()
                session.save(step, agent, loop=dict(key=np.asarray(key), step=step))
                excluded += time.perf_counter() - t0
    finally:
        session.close()
        sps = (step - loop_start_step) / max(time.perf_counter() - loop_start, 1e-9)
        print(monitor.summary_line(session.run_dir))
        if result:
            print(f'In-context return on the held-out goals: {result["evaluation/return_mean"]:.2f} per episode over '
                  f'{episodes} episodes (random play ~0.22, optimal {np.mean([darkroom.optimal_return(g) for g in meta["heldout_goals"]]):.2f})')
        print(f'Updates per second (with logging and evaluation): {sps:.2f}')
        print(f'Run saved in {session.run_dir}')
    return dict(agent=agent, run_dir=session.run_dir, result=result, steps_per_second=sps)
