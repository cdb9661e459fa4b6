"""The online training loop, driven by train.py. It knows no algorithm: it reads only the agent contract
(docs/ARCHITECTURE.md) -- the action spaces the agent takes, its carried state, its exploration (`act` in
'explore' mode, or `explore_on_host` for agents that explore from a host generator) and the replay it declares
(n-step transitions, sequences or hindsight pairs from impls.data.episodes.EpisodeStore).

Per vector step: the agent acts for every env (one jitted call), an expert may drive
whole episodes (the expert curriculum), the transitions go to replay -- except gymnasium's reset steps:
with NEXT_STEP autoreset the step after an episode ends only resets that env, and its transition is
dropped -- and `training_steps_per_sample` gradient updates per environment step are made (a fractional
ratio accumulates). Bootstrapping stops at termination, not at truncation. `--train_steps` counts
environment steps here.

Two backends share everything but the stepping (`OnlineRun`: configuration, run directory, logging,
health monitor, evaluation, checkpoints): gymnasium environments stepped from Python (this module), and
environments written in jax, where whole stretches of the loop run as one compiled loop
(`--env_backend jax`, impls/runs/compiled.py).
"""

from __future__ import annotations

import os
import pickle
import time
from collections import deque

import gymnasium
import jax
import numpy as np

from impls.agents import get_agent
from impls.data.episodes import EpisodeStore
from impls.envs.experts import check_expert_actions
from impls.envs.experts import load_expert as load_builtin_expert
from impls.envs.gym import EnvError, env_factory, make_vec_env
from impls.health import health_context
from impls.runs.session import (RunSession, TrainingError, agent_config, example_spec, make_monitor, next_multiple,
                                 trend_slope)
from impls.runs.updates import FastAgent, reduction
from impls.utils.checkpoints import json_safe
from impls.utils.schedules import linear


def evaluate_online(agent, factory, episodes: int, seed: int):
    """Mean return of `episodes` episodes acting in the agent's 'eval' mode (vectorised over episodes)."""
    env = make_vec_env(factory, episodes, seed)
    obs, _ = env.reset(seed=seed)
    returns = np.zeros(episodes)
    finished = np.zeros(episodes, bool)
    key = jax.random.PRNGKey(seed)
    carry = agent.initial_carry(episodes)
    act = jax.jit(lambda carry, obs, key: agent.act(carry, obs, None, key, 'eval'))
    while not finished.all():
        key, sub = jax.random.split(key)
        actions, carry = act(carry, obs, sub)
        obs, reward, term, trunc, _ = env.step(np.asarray(actions))
        returns += np.where(finished, 0.0, reward)
        finished |= term | trunc
    env.close()
    return float(returns.mean())


class CheckpointExpert:
    """The greedy policy of an online agent saved by train.py (a run directory or a checkpoint in it). It acts
    through FastAgent: the expert may be called every environment step."""

    def __init__(self, path: str):
        from impls.runs.restore import load_agent

        agent, record, self.step = load_agent(path)
        if get_agent(record['algorithm']).kind != 'online' or 'discrete' not in type(agent).action_kinds:
            raise EnvError(f'--expert {path}: the checkpoint holds a {record["algorithm"]} agent, not an online '
                           f'discrete-action agent.')
        self.policy = FastAgent(agent)

    def __call__(self, observations):
        return self.policy.greedy(observations)


def load_expert(spec: str | None):
    """None, 'cartpole', a run directory of a trained online agent, or MODULE:CALLABLE (impls.envs.experts)."""
    if spec and os.path.exists(spec):
        from impls.utils.checkpoints import CheckpointError

        try:
            return CheckpointExpert(spec)
        except CheckpointError as e:
            raise EnvError(f'--expert {spec}: {e}') from e
    return load_builtin_expert(spec)


def _picklable(env):
    try:
        pickle.dumps(env)
        return env
    except Exception:
        return None


DEFAULT_TRAIN_STEPS = 50_000  # environment steps


def online_config(args, spec):
    """The agent's config (impls.runs.session.agent_config), checked against the replay's size, with a
    learning-rate decay over the run's updates when lr_end is set without lr_decay_steps."""
    config = agent_config(args, spec)
    if config.batch_size > args.buffer_size:
        raise TrainingError(f'batch size {config.batch_size} is larger than the replay buffer ({args.buffer_size}); '
                            f'raise --buffer_size or lower --batch_size.')
    total = args.train_steps or DEFAULT_TRAIN_STEPS
    resolve_train_ratio(args, config, {**dict(kind='transitions'), **spec.agent_cls.replay(config)}, total)
    if config.get('lr_end') is not None and not config.get('lr_decay_steps'):
        updates = (total - args.learning_starts) * args.training_steps_per_sample / config.get('grad_accum', 1)
        config.lr_decay_steps = max(1, int(updates))
    return config


NAN_KNOBS = 'Lower --agent.lr, clip gradients (--agent.max_grad_norm) or clamp targets (--agent.target_clamp).'


class OnlineRun:
    """What both online backends share beyond the run session: the interval settings, the per-interval training
    log (a non-finite metric stops the run), evaluation and the end-of-run summary."""

    def __init__(self, args, config, record_extra):
        self.args = args
        self.total = args.train_steps or DEFAULT_TRAIN_STEPS
        self.eval_interval = args.eval_interval or self.total
        self.ckpt_every = args.ckpt_every or self.eval_interval
        saved_config = json_safe(config)
        context = health_context(dict(saved_config, reward_bound=args.reward_bound or 1.0))
        if not args.reward_bound:
            context.pop('value_bound', None)
        monitor = make_monitor(args, context)
        record = dict(algorithm=args.algorithm, agent=saved_config, seed=args.seed, env_name=args.env_name,
                      env_entry_point=args.env_entry_point, **record_extra)
        self.session = RunSession(args, args.env_name or 'custom', record, monitor, self.total,
                                  desc=f'{args.algorithm} {args.env_name or args.env_entry_point}',
                                  step_name='environment step')
        self.run_dir, self.monitor = self.session.run_dir, monitor
        self.started = time.perf_counter()  # wall clock of this process's run, logged as time/elapsed_s

    def log_training(self, step, reduced, charts):
        """Logs one interval: `reduced` {metric: value} summarised over its updates, `charts` the loop's own
        figures. A non-finite training metric stops the run, the last good checkpoint untouched."""
        metrics = {f'training/{k}': float(v) for k, v in reduced.items()}
        metrics.update(charts)
        metrics['time/elapsed_s'] = time.perf_counter() - self.started
        metrics = {k: v for k, v in metrics.items() if not (isinstance(v, float) and np.isnan(v) and 'return' in k)}
        self.session.flush_episodes()
        self.session.log('train', step, metrics)
        self.session.check_finite(step, metrics, NAN_KNOBS)

    def evaluate(self, step, agent, factory, last10):
        """Greedy return over --eval_episodes episodes, logged and shown."""
        ret = evaluate_online(agent, factory, self.args.eval_episodes, seed=self.args.seed * 1000 + step)
        self.session.log('eval', step, {'evaluation/episode_return': ret,
                                        'time/elapsed_s': time.perf_counter() - self.started})
        self.session.bar.write(f'step {step}: greedy return {ret:.1f} over {self.args.eval_episodes} episodes; '
                               f'last-10 training return {last10:.1f}')
        return ret

    def close(self):
        self.session.close()
        print(self.monitor.summary_line(self.run_dir))

    def summary(self, agent, agent_returns, sps, eval_return):
        last10 = list(agent_returns)[-10:]
        summary = dict(agent=agent, run_dir=self.run_dir, last10_return=float(np.mean(last10)) if last10 else None,
                       steps_per_second=sps)
        if self.args.eval_episodes > 0:
            summary['eval_return'] = eval_return
        print(f'Last 10 training episodes (agent-driven): mean return {summary["last10_return"]}')
        print(f'Environment steps per second (training, without evaluation and checkpoints): {sps:.1f}')
        print(f'Run saved in {self.run_dir}')
        return summary


REPLAY_KINDS = ('transitions', 'sequences', 'pairs')


def sample_replay(store: EpisodeStore, replay: dict, rng, batch_size: int, beta: float) -> dict:
    """A batch of the kind the agent declared: n-step transitions (uniform or prioritized), sequences of
    replay['length'] steps (is_first marks episode starts), or (state, later state) pairs for hindsight goals."""
    if replay['kind'] == 'transitions':
        return store.sample_transitions(rng, batch_size, beta)
    if replay['kind'] == 'sequences':
        try:
            return store.sample_sequences(rng, batch_size, replay['length'], replay.get('cross_episodes', True))
        except ValueError as e:
            raise TrainingError(str(e)) from e
    return store.sample_pairs(rng, batch_size)


def replayed_per_update(config, replay: dict) -> int:
    """Environment steps one update replays: batch_size x sequence length, or batch_size."""
    return int(config.batch_size) * (int(replay['length']) if replay['kind'] == 'sequences' else 1)


def resolve_train_ratio(args, config, replay: dict, total: int):
    """Sets --training_steps_per_sample from --train_ratio (replayed steps per environment step, DreamerV3's count)
    and refuses a ratio or replay size the run cannot meet."""
    per_update = replayed_per_update(config, replay)
    if args.train_ratio is not None:
        if args.train_ratio <= 0:
            raise TrainingError(f'--train_ratio {args.train_ratio}: must be positive (replayed steps per environment '
                                f'step; DreamerV3 uses 32-1024).')
        args.training_steps_per_sample = args.train_ratio / per_update
    updates = (total - args.learning_starts) * args.training_steps_per_sample
    if args.train_ratio is not None and (args.learning_starts >= total or updates < 1):
        ratio = args.training_steps_per_sample * per_update
        raise TrainingError(
            f'this run would never update: {total} environment steps, learning from step {args.learning_starts}, at '
            f'{args.training_steps_per_sample:.3g} updates per step (train ratio {ratio:.3g} replayed steps per '
            f'environment step, {per_update} per update) gives {updates:.2f} updates. Raise --train_ratio or '
            f'--train_steps, or lower --learning_starts.')
    if replay['kind'] == 'sequences' and args.buffer_size // args.num_envs < replay['length']:
        raise TrainingError(f'replay holds {args.buffer_size // args.num_envs} steps per env, fewer than one '
                            f'{replay["length"]}-step sequence; raise --buffer_size or lower --agent.sequence_length.')


def example_transition(env, action_kinds, algorithm: str, label: str):
    """One observation and one action of the environment, as the episode store holds them; refuses an action
    space the agent cannot act in."""
    space = env.single_action_space
    discrete = isinstance(space, gymnasium.spaces.Discrete)
    if ('discrete' if discrete else 'continuous') not in action_kinds:
        fix = 'Use a continuous-control agent, or discretise the actions.' if discrete is False else \
            'Use an agent for discrete actions.'
        raise TrainingError(f'{algorithm} needs a {" or ".join(action_kinds)} action space, but {label} has {space}. '
                            f'{fix}')
    action = np.int32(0) if discrete else np.zeros(space.shape, np.float32)
    return dict(observations=np.asarray(env.single_observation_space.sample()), actions=action)


def run_online(args, spec):
    # Acting is one tiny network call per environment step: on CPU, handing it to XLA's worker thread and
    # waking it costs ~50 us a step (72 vs 22 us for act + CartPole step, measured); run it inline. (A CPU-only
    # flag, read when the CPU client is made, so before any jax computation, jax.process_count() included.)
    jax.config.update('jax_cpu_enable_async_dispatch', False)
    if args.num_seeds != 1:
        raise TrainingError('--num_seeds is for the offline agents; run online seeds as separate processes.')
    if jax.process_count() > 1:
        raise TrainingError('--distributed is for the offline agents; the online loop runs in one process.')
    if args.env_backend == 'jax':
        from impls.runs.compiled import run_compiled

        return run_compiled(args, spec)
    config = online_config(args, spec)
    try:
        factory = env_factory(args.env_name, args.env_entry_point, pixels=args.pixels)
        env = make_vec_env(factory, args.num_envs, args.seed)
        expert = load_expert(args.expert)
    except EnvError as e:
        raise TrainingError(str(e)) from e
    except gymnasium.error.Error as e:
        raise TrainingError(f'cannot make environment {args.env_name!r}: {e}') from e
    label = args.env_name or args.env_entry_point
    example = example_transition(env, spec.agent_cls.action_kinds, args.algorithm, label)
    example_batch = {k: np.asarray(v)[None] for k, v in example.items()}
    space = env.single_action_space
    with config.unlocked():  # set from the environment
        config.action_dim = int(space.n) if isinstance(space, gymnasium.spaces.Discrete) else int(np.prod(space.shape))
    try:
        agent = spec.agent_cls.create(args.seed, example_batch, config)
    except ValueError as e:
        raise TrainingError(str(e)) from e
    replay = {**dict(n_step=1, discount=1.0, prioritized=False, alpha=0.6, beta_start=0.4),
              **spec.agent_cls.replay(config)}
    if replay['kind'] not in REPLAY_KINDS:
        raise TrainingError(f'{args.algorithm} declares replay of kind {replay["kind"]!r}; the episode store serves '
                            f'{", ".join(REPLAY_KINDS)}.')
    buffer = EpisodeStore(args.buffer_size, args.num_envs, example, replay['n_step'], replay['discount'],
                          replay['prioritized'], replay['alpha'])
    run = OnlineRun(args, config, dict(example_batch=example_spec(example_batch)))
    total = run.total
    rng = np.random.default_rng([args.seed, 1])
    explore_rng = np.random.default_rng([args.seed, 2])  # exploration on the host (agents with explore_on_host)
    act_key = jax.random.PRNGKey(args.seed + 2)  # exploration in the agent's own act, for the others
    step, updates_due = 0, 0.0
    obs, _ = env.reset(seed=args.seed)
    carry = agent.initial_carry(args.num_envs)
    prev_done = np.zeros(args.num_envs, bool)
    expert_episode = np.zeros(args.num_envs, bool)  # who drives each env's current episode
    if expert is not None:
        expert_episode = rng.random(args.num_envs) < args.expert_ratio_start
    agent_returns, expert_returns = deque(maxlen=100), deque(maxlen=100)
    all_agent_returns = []
    if args.resume:
        agent, _, loop = run.session.restore(agent)
        buffer.load_state_dict(loop['buffer'])
        rng.bit_generator.state = loop['rng']
        explore_rng.bit_generator.state = loop['explore_rng']
        step, updates_due, obs, prev_done, expert_episode = (loop[k] for k in ('step', 'updates_due', 'obs', 'prev_done',
                                                                                 'expert_episode'))
        agent_returns, expert_returns, all_agent_returns = loop['agent_returns'], loop['expert_returns'], loop['all_returns']
        carry, act_key = loop.get('carry', carry), loop.get('act_key', act_key)
        if loop['env'] is not None:
            env = loop['env']
        else:  # environments that cannot be pickled (e.g. emulators) restart their episodes
            obs, _ = env.reset(seed=args.seed + step)
            carry = agent.initial_carry(args.num_envs)
            prev_done = np.zeros(args.num_envs, bool)
            print('The environments could not be saved with the checkpoint; their episodes restart.')
        print(f'Resumed {run.run_dir} at environment step {step}.')
    run.session.start(step)
    host_explore = getattr(agent, 'explore_on_host', None)  # reads only the agent's config
    fresh_carry = agent.initial_carry(args.num_envs)
    fast = FastAgent(agent)  # from here on the agent lives in fast.leaves
    exploration_info = getattr(agent, 'exploration_info', lambda progress: {})
    del agent
    interval_infos, interval_updates, timer, timer_steps = [], 0, time.perf_counter(), 0
    loop_start, loop_start_step, excluded = time.perf_counter(), step, 0.0  # excluded: evaluation + checkpoints
    next_log = next_multiple(step, args.log_interval)
    next_eval = next_multiple(step, run.eval_interval)
    next_ckpt = next_multiple(step, run.ckpt_every)
    batch_size = int(config.batch_size)
    replayed = replayed_per_update(config, replay)
    prioritized = replay['prioritized']
    ret, progress = None, (step, total)
    try:
        while step < total:
            progress = (step, total)
            expert_ratio = linear(args.expert_ratio_start, args.expert_ratio_floor, args.expert_decay_fraction,
                                  step, total)
            if host_explore is not None:
                actions = host_explore(fast.greedy, obs, explore_rng, progress)
            else:
                act_key, key = jax.random.split(act_key)
                actions, carry = fast.act(carry, obs, None, key, 'explore', progress)
            if expert is not None and expert_episode.any():
                expert_actions = check_expert_actions(expert(obs), int(config.action_dim), args.num_envs, args.expert)
                actions = np.where(expert_episode, expert_actions, actions).astype(np.int32)
            next_obs, reward, terminated, truncated, info = env.step(actions)
            valid = ~prev_done  # the step after an episode end only resets that env
            if not np.isfinite(reward).all() or (next_obs.dtype.kind == 'f' and not np.isfinite(next_obs).all()):
                raise TrainingError(f'{label} returned a non-finite reward or observation at environment step {step} '
                                    f'(reward {reward}); replay keeps only finite data. Fix the environment or wrap '
                                    f'it to clip or replace such values.')
            done = terminated | truncated
            buffer.add(dict(observations=obs, actions=actions, rewards=reward, next_observations=next_obs,
                            terminated=terminated, done=done), valid=valid)
            for i in np.flatnonzero(done & valid):
                ret_i = float(info['episode']['r'][i])
                run.session.episodes.append((step + args.num_envs, ret_i, int(info['episode']['l'][i]),
                                             int(bool(expert_episode[i]))))
                (expert_returns if expert_episode[i] else agent_returns).append(ret_i)
                if not expert_episode[i]:
                    all_agent_returns.append((step, ret_i))
            # A new episode starts at the reset step: decide who drives it, and start its carried state afresh.
            if prev_done.any():
                if expert is not None:
                    expert_episode = np.where(prev_done, rng.random(args.num_envs) < expert_ratio, expert_episode)
                carry = jax.tree.map(lambda c, f: np.where(prev_done.reshape((-1,) + (1,) * (np.ndim(c) - 1)), f, c),
                                     carry, fresh_carry)
            prev_done, obs = done, next_obs
            step += args.num_envs
            timer_steps += args.num_envs
            run.session.bar.update(args.num_envs)
            if step >= args.learning_starts:
                updates_due += args.training_steps_per_sample * args.num_envs
                beta = linear(replay['beta_start'], 1.0, 1.0, total - step, total) if prioritized else 0.0
                while updates_due >= 1.0:
                    batch = sample_replay(buffer, replay, rng, batch_size, beta)
                    indices = batch.pop('indices', None)
                    metric_vector, td_errors = fast.update(batch)
                    if prioritized:
                        buffer.update_priorities(indices, np.asarray(td_errors))
                    interval_infos.append(metric_vector)
                    interval_updates += 1
                    updates_due -= 1.0
            if step >= next_log or step >= total:
                next_log += args.log_interval
                elapsed = time.perf_counter() - timer
                reduced = {}
                if interval_infos:
                    table = np.stack(jax.device_get(interval_infos)).astype(np.float64)  # (updates, metrics)
                    run.session.check_finite_updates(step, fast.metric_names, table, NAN_KNOBS)
                    reduced = {k: getattr(np, reduction(k))(values) for k, values in zip(fast.metric_names, table.T)}
                charts = {f'charts/{k}': v for k, v in exploration_info(progress).items()}
                charts.update({
                    'charts/expert_ratio': expert_ratio,
                    'charts/agent_return': float(np.mean(agent_returns)) if agent_returns else float('nan'),
                    'charts/expert_return': float(np.mean(expert_returns)) if expert_returns else float('nan'),
                    'charts/reward_slope': trend_slope([r for _, r in all_agent_returns[-args.slope_window:]]),
                    'charts/replay_ratio': interval_updates * replayed / max(timer_steps, 1),
                    'charts/buffer_size': len(buffer),
                    'time/steps_per_second': timer_steps / max(elapsed, 1e-9),
                })
                run.log_training(step, reduced, charts)
                interval_infos, interval_updates, timer, timer_steps = [], 0, time.perf_counter(), 0
            if args.eval_episodes > 0 and (step >= next_eval or step >= total):
                next_eval += run.eval_interval
                t0 = time.perf_counter()
                last10 = np.mean(list(agent_returns)[-10:]) if agent_returns else float('nan')
                ret = run.evaluate(step, fast.agent, factory, last10)
                timer += time.perf_counter() - t0
                excluded += time.perf_counter() - t0
            if step >= next_ckpt or step >= total:
                next_ckpt += run.ckpt_every
                t0 = time.perf_counter()
                run.session.save(step, fast.agent, loop=dict(
                    buffer=buffer.state_dict(), rng=rng.bit_generator.state,
                    explore_rng=explore_rng.bit_generator.state, step=step,
                    updates_due=updates_due, obs=obs, prev_done=prev_done, expert_episode=expert_episode,
                    agent_returns=agent_returns, expert_returns=expert_returns, all_returns=all_agent_returns,
                    carry=jax.device_get(carry), act_key=np.asarray(act_key), env=_picklable(env)))
                timer += time.perf_counter() - t0
                excluded += time.perf_counter() - t0
    finally:
        run.close()
    sps = (step - loop_start_step) / max(time.perf_counter() - loop_start - excluded, 1e-9)
    return run.summary(fast.agent, agent_returns, sps, ret)
