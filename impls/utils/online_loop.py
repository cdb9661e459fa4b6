"""The online training loop (DQN now; Dreamer and GCSL will run on it), driven by train.py.

Per vector step: the agent acts for every env (one jitted call; epsilon-greedy), an expert may drive
whole episodes (the expert curriculum), the transitions go to replay -- except gymnasium's reset steps:
with NEXT_STEP autoreset the step after an episode ends only resets that env, and its transition is
dropped -- and `training_steps_per_sample` gradient updates per environment step are made (a fractional
ratio accumulates). Bootstrapping stops at termination, not at truncation. `--train_steps` counts
environment steps here.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections import deque

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from impls.data.replay import ReplayBuffer
from impls.utils.checkpoints import Checkpointer, json_safe
from impls.utils.config import apply_overrides
from impls.utils.envs import EnvError, check_expert_actions, env_factory, load_expert, make_vec_env
from impls.utils.health import HealthMonitor, health_context, parse_health_overrides, read_run_metrics
from impls.utils.logging import Logger
from impls.utils.offline_loop import TrainingError, _prepare_run_dir


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


class FastAgent:
    """The agent as one flat list of arrays, for the jitted calls made every environment step.

    Calling a jitted function on the agent itself costs ~115 us on CPU (flattening the dataclass and
    comparing its static config for the jit cache: measured with an update that does nothing), more than
    the tiny network's update; on a flat list of arrays it costs a few. The update also returns its scalar
    metrics as one vector: reading ~14 scalars from each of 4,000 updates cost more than the updates did.
    The agent needs `update(batch) -> (agent, info)` and `greedy_actions(observations)`.
    """

    def __init__(self, agent):
        self.leaves, self.treedef = jax.tree.flatten(agent)
        treedef = self.treedef
        self._act = jax.jit(lambda leaves, obs: jax.tree.unflatten(treedef, leaves).greedy_actions(obs))
        self._update, self.metric_names = None, None

    @property
    def agent(self):
        return jax.tree.unflatten(self.treedef, self.leaves)

    def act(self, observations):
        return np.array(self._act(self.leaves, observations))

    def _build_update(self, batch):
        treedef = self.treedef

        def run(leaves, batch):
            agent, info = jax.tree.unflatten(treedef, leaves).update(batch)
            scalars = {k: v for k, v in info.items() if k != 'td_errors'}
            return jax.tree.leaves(agent), scalars, info.get('td_errors')

        names = sorted(jax.eval_shape(run, self.leaves, batch)[1])

        @jax.jit
        def update(leaves, batch):
            leaves, scalars, td = run(leaves, batch)
            return leaves, jnp.stack([jnp.asarray(scalars[k], jnp.float32) for k in names]), td

        self._update, self.metric_names = update, names

    def update(self, batch):
        """One update; returns (metric vector (len(metric_names),), td errors or None), both on device."""
        if self._update is None:
            self._build_update(batch)
        self.leaves, vector, td = self._update(self.leaves, batch)
        return vector, td


def _picklable(env):
    try:
        pickle.dumps(env)
        return env
    except Exception:
        return None


def _slope(values):
    if len(values) < 3:
        return 0.0
    x = np.arange(len(values), dtype=float)
    return float(np.polyfit(x, np.asarray(values, float), 1)[0])


def run_online(args, spec):
    # Acting is one tiny network call per environment step: on CPU, handing it to XLA's worker thread and
    # waking it costs ~50 us a step (72 vs 22 us for act + CartPole step, measured); run it inline. (A CPU-only
    # flag, read when the CPU client is made, so before any jax computation.)
    jax.config.update('jax_cpu_enable_async_dispatch', False)
    if args.num_seeds != 1:
        raise TrainingError('--num_seeds is for the offline agents; run online seeds as separate processes.')
    if jax.process_count() > 1:
        raise TrainingError('--distributed is for the offline agents; the online loop runs in one process.')
    config = spec.get_config()
    overrides = dict(args.agent_overrides)
    if args.batch_size is not None:
        overrides['batch_size'] = args.batch_size
    apply_overrides(config, overrides)
    if config.batch_size > config.buffer_size:
        raise TrainingError(f'batch size {config.batch_size} is larger than the replay buffer ({config.buffer_size}); '
                            f'raise --agent.buffer_size or lower --batch_size.')
    total = args.train_steps or 50_000
    if config.lr_end is not None and not config.lr_decay_steps:
        updates = (total - config.learning_starts) * config.training_steps_per_sample / config.grad_accum
        config.lr_decay_steps = max(1, int(updates))
    disable = [d for d in args.health_disable.split(',') if d]
    agent_config = json_safe(config)
    context = health_context(dict(agent_config, reward_bound=args.reward_bound or 1.0))
    if not args.reward_bound:
        context.pop('value_bound', None)
    monitor = HealthMonitor(context, parse_health_overrides(args.health, disable), disable,
                            printer=lambda text: tqdm.write(text))
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
    eval_interval = args.eval_interval or total
    ckpt_every = args.ckpt_every or eval_interval

    run_dir = args.save_dir or os.path.join('runs', f'{args.algorithm}-{args.env_name or "custom"}-s{args.seed}')
    ckpt_dir = args.ckpt_dir or os.path.join(run_dir, 'checkpoints')
    _prepare_run_dir(args, run_dir, ckpt_dir)
    record = dict(algorithm=args.algorithm, agent=agent_config, env_name=args.env_name,
                  env_entry_point=args.env_entry_point, num_actions=num_actions, seed=args.seed,
                  observation_shape=list(example_obs.shape), observation_dtype=str(example_obs.dtype),
                  flags={k: v for k, v in vars(args).items() if k != 'agent_overrides'})
    checkpointer = Checkpointer(ckpt_dir)
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
        agent, meta = checkpointer.restore(agent, expect=dict(algorithm=args.algorithm, agent=agent_config))
        with open(os.path.join(ckpt_dir, f'loop_{meta["step"]}.pkl'), 'rb') as f:
            loop = pickle.load(f)
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
        monitor.replay(read_run_metrics(run_dir, until_step=step))
        print(f'Resumed {run_dir} at environment step {step}.')
    for path in (run_dir, ckpt_dir):
        with open(os.path.join(path, 'config.json'), 'w') as f:
            json.dump(record, f, indent=2, default=str)
    logger = Logger(run_dir, args.project, os.path.basename(os.path.abspath(run_dir)), record, args.wandb_mode,
                    resume_step=step if args.resume else None, group=args.run_group)
    bar = tqdm(total=total, initial=step, desc=f'{args.algorithm} {args.env_name or args.env_entry_point}',
               unit='step', disable=args.no_progress, dynamic_ncols=True)
    fast = FastAgent(agent)  # from here on the agent lives in fast.leaves
    del agent
    interval_infos, interval_updates, timer, timer_steps = [], 0, time.perf_counter(), 0
    loop_start, loop_start_step, excluded = time.perf_counter(), step, 0.0  # excluded: evaluation + checkpoints
    next_log = (step // args.log_interval + 1) * args.log_interval
    next_eval = (step // eval_interval + 1) * eval_interval
    next_ckpt = (step // ckpt_every + 1) * ckpt_every
    c = config.to_dict()  # plain dict: ConfigDict lookups are slow in the per-step path
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
                ret = float(info['episode']['r'][i])
                (expert_returns if expert_episode[i] else agent_returns).append(ret)
                if not expert_episode[i]:
                    all_agent_returns.append((step, ret))
            # A new episode starts at the reset step: decide who drives it.
            if expert is not None and prev_done.any():
                expert_episode = np.where(prev_done, rng.random(args.num_envs) < expert_ratio, expert_episode)
            prev_done, obs = done, next_obs
            step += args.num_envs
            timer_steps += args.num_envs
            bar.update(args.num_envs)
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
                metrics = {}
                if interval_infos:
                    table = np.stack(jax.device_get(interval_infos)).astype(np.float64)  # (updates, metrics)
                    for k, values in zip(fast.metric_names, table.T):
                        reduce = {'min': np.min, 'max': np.max}.get(k.rsplit('/', 1)[-1], np.mean)
                        metrics[f'training/{k}'] = float(reduce(values))
                metrics.update({
                    'charts/epsilon': epsilon, 'charts/expert_ratio': expert_ratio,
                    'charts/agent_return': float(np.mean(agent_returns)) if agent_returns else float('nan'),
                    'charts/expert_return': float(np.mean(expert_returns)) if expert_returns else float('nan'),
                    'charts/reward_slope': _slope([r for _, r in all_agent_returns[-args.slope_window:]]),
                    'charts/replay_ratio': interval_updates * config.batch_size / max(timer_steps, 1),
                    'charts/buffer_size': len(buffer),
                    'time/steps_per_second': timer_steps / max(elapsed, 1e-9),
                })
                metrics = {k: v for k, v in metrics.items() if not (isinstance(v, float) and np.isnan(v) and 'return' in k)}
                bad = [k for k, v in metrics.items() if k.startswith('training/') and not np.isfinite(v)]
                metrics.update(monitor.observe(step, metrics))
                logger.log('train', step, metrics)
                if bad:
                    raise TrainingError(
                        f'non-finite {bad[0]} at environment step {step}; stopping. The last good checkpoint in '
                        f'{ckpt_dir} (step {checkpointer.latest_step()}) is intact. Lower --agent.lr, clip gradients '
                        f'(--agent.max_grad_norm) or clamp targets (--agent.target_clamp).'
                    )
                interval_infos, interval_updates, timer, timer_steps = [], 0, time.perf_counter(), 0
            if args.eval_episodes > 0 and (step >= next_eval or step >= total):
                next_eval += eval_interval
                t0 = time.perf_counter()
                ret = evaluate_online(fast.agent, factory, args.eval_episodes, seed=args.seed * 1000 + step)
                eval_metrics = {'evaluation/episode_return': ret}
                eval_metrics.update(monitor.observe(step, eval_metrics))
                logger.log('eval', step, eval_metrics)
                bar.write(f'step {step}: greedy return {ret:.1f} over {args.eval_episodes} episodes; '
                          f'last-10 training return {np.mean(list(agent_returns)[-10:]) if agent_returns else float("nan"):.1f}')
                timer += time.perf_counter() - t0
                excluded += time.perf_counter() - t0
            if step >= next_ckpt or step >= total:
                next_ckpt += ckpt_every
                t0 = time.perf_counter()
                loop = dict(buffer=buffer.state_dict(), rng=rng.bit_generator.state,
                            explore_rng=explore_rng.bit_generator.state, step=step,
                            updates_due=updates_due, obs=obs, prev_done=prev_done, expert_episode=expert_episode,
                            agent_returns=agent_returns, expert_returns=expert_returns, all_returns=all_agent_returns,
                            env=_picklable(env))
                tmp = os.path.join(ckpt_dir, f'.loop_{step}.pkl.tmp')
                with open(tmp, 'wb') as f:
                    pickle.dump(loop, f)
                os.replace(tmp, os.path.join(ckpt_dir, f'loop_{step}.pkl'))
                checkpointer.save(step, fast.agent, dict(step=step, algorithm=args.algorithm, agent=agent_config))
                kept = {int(s) for s in checkpointer.manager.all_steps()}
                for name in os.listdir(ckpt_dir):
                    if name.startswith('loop_') and int(name[5:-4]) not in kept:
                        os.remove(os.path.join(ckpt_dir, name))
                timer += time.perf_counter() - t0
                excluded += time.perf_counter() - t0
    finally:
        bar.close()
        logger.close()
        monitor.write_report(run_dir)
    last10 = list(agent_returns)[-10:]
    sps = (step - loop_start_step) / max(time.perf_counter() - loop_start - excluded, 1e-9)
    summary = dict(agent=fast.agent, run_dir=run_dir, last10_return=float(np.mean(last10)) if last10 else None,
                   steps_per_second=sps)
    if args.eval_episodes > 0:
        summary['eval_return'] = ret
    print(f'Last 10 training episodes (agent-driven): mean return {summary["last10_return"]}')
    print(f'Environment steps per second (training, without evaluation and checkpoints): {sps:.1f}')
    print(f'Run saved in {run_dir}')
    return summary
