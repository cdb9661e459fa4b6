"""The online training loop (DQN now; Dreamer and GCSL will run on it), driven by train.py.

Per vector step: the agent acts for every env (one jitted call; epsilon-greedy), an expert may drive
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

from impls.data.replay import ReplayBuffer
from impls.envs.experts import check_expert_actions
from impls.envs.experts import load_expert as load_builtin_expert
from impls.envs.gym import EnvError, env_factory, make_vec_env
from impls.health import health_context
from impls.runs.session import RunSession, TrainingError, make_monitor, trend_slope
from impls.runs.updates import FastAgent, reduction
from impls.utils.checkpoints import json_safe
from impls.utils.config import apply_overrides


def linear(start, end, fraction, step, total):
    horizon = max(1.0, fraction * total)
    return end + (start - end) * max(0.0, 1.0 - step / horizon)


def evaluate_online(agent, factory, episodes: int, seed: int, epsilon: float = 0.0):
    """Mean return of `episodes` episodes with epsilon-greedy actions (vectorised over episodes)."""
    env = make_vec_env(factory, episodes, seed)
    obs, _ = env.reset(seed=seed)
    returns = np.zeros(episodes)
    finished = np.zeros(episodes, bool)
    key = jax.random.PRNGKey(seed)
    while not finished.all():
        key, sub = jax.random.split(key)
        obs, reward, term, trunc, _ = env.step(np.asarray(agent.sample_actions(obs, sub, epsilon)))
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
        if not hasattr(agent, 'greedy_actions') or 'num_actions' not in record:
            raise EnvError(f'--expert {path}: the checkpoint holds a {record["algorithm"]} agent, not an online '
                           f'discrete-action agent.')
        self.policy = FastAgent(agent)

    def __call__(self, observations):
        return self.policy.act(observations)


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


def agent_config(args, spec):
    """The agent's config with presets and --agent.KEY overrides applied, checked before anything is built."""
    config = spec.get_config()
    overrides = dict(args.agent_overrides)
    if args.batch_size is not None:
        overrides['batch_size'] = args.batch_size
    apply_overrides(config, overrides)
    clamp = config.get('target_clamp')
    if clamp is not None and (len(clamp) != 2 or not clamp[0] < clamp[1]):
        raise TrainingError(f'--agent.target_clamp={clamp!r}: expected a range LOW,HIGH with LOW < HIGH (e.g. '
                            f'--agent.target_clamp=-50,50, or 0,200 for CartPole at gamma 0.995); unset it for no clamp.')
    if config.batch_size > config.buffer_size:
        raise TrainingError(f'batch size {config.batch_size} is larger than the replay buffer ({config.buffer_size}); '
                            f'raise --agent.buffer_size or lower --batch_size.')
    total = args.train_steps or 50_000
    if config.lr_end is not None and not config.lr_decay_steps:
        updates = (total - config.learning_starts) * config.training_steps_per_sample / config.grad_accum
        config.lr_decay_steps = max(1, int(updates))
    return config


class OnlineRun:
    """What both online backends share beyond the run session: the interval settings, the per-interval training
    log (a non-finite metric stops the run), evaluation and the end-of-run summary."""

    def __init__(self, args, config, record_extra):
        self.args = args
        self.total = args.train_steps or 50_000
        self.eval_interval = args.eval_interval or self.total
        self.ckpt_every = args.ckpt_every or self.eval_interval
        agent_config = json_safe(config)
        context = health_context(dict(agent_config, reward_bound=args.reward_bound or 1.0))
        if not args.reward_bound:
            context.pop('value_bound', None)
        monitor = make_monitor(args, context)
        record = dict(algorithm=args.algorithm, agent=agent_config, seed=args.seed, env_name=args.env_name,
                      env_entry_point=args.env_entry_point, **record_extra)
        self.session = RunSession(args, args.env_name or 'custom', record, monitor, self.total,
                                  desc=f'{args.algorithm} {args.env_name or args.env_entry_point}',
                                  step_name='environment step')
        self.run_dir, self.monitor = self.session.run_dir, monitor

    def log_training(self, step, reduced, charts):
        """Logs one interval: `reduced` {metric: value} summarised over its updates, `charts` the loop's own
        figures. A non-finite training metric stops the run, the last good checkpoint untouched."""
        metrics = {f'training/{k}': float(v) for k, v in reduced.items()}
        metrics.update(charts)
        metrics = {k: v for k, v in metrics.items() if not (isinstance(v, float) and np.isnan(v) and 'return' in k)}
        self.session.flush_episodes()
        self.session.log('train', step, metrics)
        self.session.check_finite(step, metrics, 'Lower --agent.lr, clip gradients (--agent.max_grad_norm) or clamp '
                                  'targets (--agent.target_clamp).')

    def evaluate(self, step, agent, factory, last10):
        ret = evaluate_online(agent, factory, self.args.eval_episodes, seed=self.args.seed * 1000 + step)
        self.session.log('eval', step, {'evaluation/episode_return': ret})
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
    config = agent_config(args, spec)
    try:
        factory = env_factory(args.env_name, args.env_entry_point)
        env = make_vec_env(factory, args.num_envs, args.seed)
        expert = load_expert(args.expert)
    except EnvError as e:
        raise TrainingError(str(e)) from e
    except gymnasium.error.Error as e:
        raise TrainingError(f'cannot make environment {args.env_name!r}: {e}') from e
    space = env.single_action_space
    if not isinstance(space, gymnasium.spaces.Discrete):
        raise TrainingError(f'{args.algorithm} needs a discrete action space, but {args.env_name or args.env_entry_point} '
                            f'has {space}. Use a continuous-control agent, or discretise the actions.')
    num_actions = int(space.n)
    example_obs = np.asarray(env.single_observation_space.sample())
    if example_obs.ndim == 3 and config.get('torso') == 'mlp':
        raise TrainingError(f'the environment gives image observations {example_obs.shape} {example_obs.dtype}; an MLP '
                            f'torso on raw frames will not learn. Use --agent.torso=nature_cnn (or --preset dqn_atari).')
    agent = spec.agent_cls.create(args.seed, example_obs[None], num_actions, config)
    buffer = ReplayBuffer(config.buffer_size, args.num_envs, dict(observations=example_obs, actions=np.int32(0)),
                          config.n_step, config.discount, config.prioritized, config.per_alpha)
    run = OnlineRun(args, config, dict(num_actions=num_actions, observation_shape=list(example_obs.shape),
                                       observation_dtype=str(example_obs.dtype)))
    total = run.total
    rng = np.random.default_rng([args.seed, 1])
    explore_rng = np.random.default_rng([args.seed, 2])  # epsilon-greedy exploration, on the host
    step, updates_due = 0, 0.0
    obs, _ = env.reset(seed=args.seed)
    prev_done = np.zeros(args.num_envs, bool)
    expert_episode = np.zeros(args.num_envs, bool)  # who drives each env's current episode
    if expert is not None:
        expert_episode = rng.random(args.num_envs) < config.expert_ratio_start
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
        if loop['env'] is not None:
            env = loop['env']
        else:  # environments that cannot be pickled (e.g. emulators) restart their episodes
            obs, _ = env.reset(seed=args.seed + step)
            prev_done = np.zeros(args.num_envs, bool)
            print('The environments could not be saved with the checkpoint; their episodes restart.')
        print(f'Resumed {run.run_dir} at environment step {step}.')
    run.session.start(step)
    fast = FastAgent(agent)  # from here on the agent lives in fast.leaves
    del agent
    interval_infos, interval_updates, timer, timer_steps = [], 0, time.perf_counter(), 0
    loop_start, loop_start_step, excluded = time.perf_counter(), step, 0.0  # excluded: evaluation + checkpoints
    next_log = (step // args.log_interval + 1) * args.log_interval
    next_eval = (step // run.eval_interval + 1) * run.eval_interval
    next_ckpt = (step // run.ckpt_every + 1) * run.ckpt_every
    c = config.to_dict()  # plain dict: ConfigDict lookups are slow in the per-step path
    ret = None
    try:
        while step < total:
            epsilon = linear(c['epsilon_start'], c['epsilon_end'], c['epsilon_fraction'], step, total)
            expert_ratio = linear(c['expert_ratio_start'], c['expert_ratio_floor'], c['expert_decay_fraction'],
                                  step, total)
            explore = explore_rng.random(args.num_envs) < epsilon
            if explore.all():  # no network call on the steps where every env explores
                actions = explore_rng.integers(0, num_actions, args.num_envs, dtype=np.int32)
            else:
                actions = fast.act(obs)
                if explore.any():
                    actions[explore] = explore_rng.integers(0, num_actions, int(explore.sum()), dtype=np.int32)
            if expert is not None and expert_episode.any():
                expert_actions = check_expert_actions(expert(obs), num_actions, args.num_envs, args.expert)
                actions = np.where(expert_episode, expert_actions, actions).astype(np.int32)
            next_obs, reward, terminated, truncated, info = env.step(actions)
            valid = ~prev_done  # the step after an episode end only resets that env
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
            # A new episode starts at the reset step: decide who drives it.
            if expert is not None and prev_done.any():
                expert_episode = np.where(prev_done, rng.random(args.num_envs) < expert_ratio, expert_episode)
            prev_done, obs = done, next_obs
            step += args.num_envs
            timer_steps += args.num_envs
            run.session.bar.update(args.num_envs)
            if step >= c['learning_starts']:
                updates_due += c['training_steps_per_sample'] * args.num_envs
                beta = linear(c['per_beta_start'], 1.0, 1.0, total - step, total) if c['prioritized'] else 0.0
                while updates_due >= 1.0:
                    batch = buffer.sample(rng, c['batch_size'], beta)
                    indices = batch.pop('indices')
                    metric_vector, td_errors = fast.update(batch)
                    if c['prioritized']:
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
                    reduced = {k: getattr(np, reduction(k))(values) for k, values in zip(fast.metric_names, table.T)}
                run.log_training(step, reduced, {
                    'charts/epsilon': epsilon, 'charts/expert_ratio': expert_ratio,
                    'charts/agent_return': float(np.mean(agent_returns)) if agent_returns else float('nan'),
                    'charts/expert_return': float(np.mean(expert_returns)) if expert_returns else float('nan'),
                    'charts/reward_slope': trend_slope([r for _, r in all_agent_returns[-args.slope_window:]]),
                    'charts/replay_ratio': interval_updates * config.batch_size / max(timer_steps, 1),
                    'charts/buffer_size': len(buffer),
                    'time/steps_per_second': timer_steps / max(elapsed, 1e-9),
                })
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
                    env=_picklable(env)))
                timer += time.perf_counter() - t0
                excluded += time.perf_counter() - t0
    finally:
        run.close()
    sps = (step - loop_start_step) / max(time.perf_counter() - loop_start - excluded, 1e-9)
    return run.summary(fast.agent, agent_returns, sps, ret)
