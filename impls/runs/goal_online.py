"""The online goal-reaching loop (agents of kind 'online_goal': GCSL), driven by train.py.

Each iteration collects one fixed-length episode per environment toward a freshly sampled goal (the agent's `act`
in 'explore' mode decides random vs policy actions from the environment steps done), stores whole episodes, then
makes `updates_per_step` gradient updates per environment step collected, each on a batch relabelled with
hindsight: per sample, an episode, a pair t < t' (uniform over the episode's pairs, or t' - t <= relabel_horizon)
and the goal phi(s_t'). The episode buffer, relabelling and the updates live on the device; the updates of one
iteration are one jitted `lax.scan`. Evaluation: `--eval_episodes` greedy episodes, success = the final state
within the environment's threshold of the goal (`evaluation/overall_success`), and the final distance.

Two backends, one buffer and update path:
- gymnasium goal environments (Dict observations with observation / achieved_goal / desired_goal, e.g.
  impls/LunarLanderGoal-v0), stepped from Python, the `--num_envs` environments in lockstep;
- goal environments written in jax (`--env_backend jax`, impls.envs.goal_envs.JAX_GOAL_ENVS: point_mass), where
  collection, relabelling and updates of an iteration are one compiled call, vmapped over `--num_seeds` seeds.
"""

from __future__ import annotations

import time

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from impls.envs.goal_envs import GoalEnvError, discretize, gym_goal_spec, make_jax_goal_env
from impls.envs.gym import EnvError, load_object
from impls.health import health_context
from impls.runs.online import DEFAULT_TRAIN_STEPS
from impls.runs.session import RunSession, TrainingError, agent_config, example_spec, make_monitor
from impls.runs.updates import stack_agents
from impls.utils.checkpoints import json_safe
from impls.utils.goal_actions import GOAL_OFFSET_NEEDS_INDEX

NAN_KNOBS = 'Lower --agent.lr or raise --agent.warmup_steps.'


# ---- the episode buffer and relabelling (pure, jittable) -----------------------------------------------------------
def buffer_init(capacity: int, horizon: int, obs_dim: int, goal_dim: int) -> dict:
    """Room for `capacity` whole episodes of `horizon` actions (horizon + 1 states)."""
    return dict(observations=jnp.zeros((capacity, horizon + 1, obs_dim), jnp.float32),
                achieved=jnp.zeros((capacity, horizon + 1, goal_dim), jnp.float32),
                actions=jnp.zeros((capacity, horizon), jnp.int32),
                count=jnp.zeros((), jnp.int32), position=jnp.zeros((), jnp.int32))


def buffer_add(buf: dict, observations, achieved, actions) -> dict:
    """Adds E episodes (E, T+1, D), (E, T+1, G), (E, T), overwriting the oldest when full."""
    capacity, n = buf['actions'].shape[0], actions.shape[0]
    rows = (buf['position'] + jnp.arange(n)) % capacity
    return dict(observations=buf['observations'].at[rows].set(observations),
                achieved=buf['achieved'].at[rows].set(achieved), actions=buf['actions'].at[rows].set(actions),
                count=jnp.minimum(buf['count'] + n, capacity), position=(buf['position'] + n) % capacity)


def relabel(buf: dict, key, batch_size: int, horizon_limit: int = 0, context: int = 0) -> dict:
    """A hindsight batch: per sample an episode, a pair t < t' and the goal phi(s_t'). horizon_limit 0: the pair is
    uniform over the episode's T (T + 1) / 2 pairs; else t uniform and t' - t uniform in [1, min(limit, T - t)].
    context K > 0: observations are the windows (B, K, D) of the K states up to s_t, with `valid` (B, K) false for
    positions before the episode's start."""
    T = buf['actions'].shape[1]
    k_ep, k1, k2 = jax.random.split(key, 3)
    episodes = jax.random.randint(k_ep, (batch_size,), 0, jnp.maximum(buf['count'], 1))
    if horizon_limit:
        t = jax.random.randint(k1, (batch_size,), 0, T)
        reach = jnp.minimum(horizon_limit, T - t)
        goal_t = t + 1 + jnp.floor(jax.random.uniform(k2, (batch_size,)) * reach).astype(jnp.int32)
    else:  # two distinct indices of the T + 1 states, uniformly: the smaller acts, the larger is the goal
        i = jax.random.randint(k1, (batch_size,), 0, T + 1)
        j = jax.random.randint(k2, (batch_size,), 0, T)
        j = j + (j >= i)
        t, goal_t = jnp.minimum(i, j), jnp.maximum(i, j)
    batch = dict(goals=buf['achieved'][episodes, goal_t], actions=buf['actions'][episodes, t])
    if not context:
        return dict(batch, observations=buf['observations'][episodes, t])
    positions = t[:, None] - context + 1 + jnp.arange(context)[None]  # (B, K), ending at t
    valid = positions >= 0
    window = buf['observations'][episodes[:, None], jnp.maximum(positions, 0)]
    return dict(batch, observations=jnp.where(valid[..., None], window, 0.0), valid=valid)


def make_train(batch_size: int, horizon_limit: int, context: int = 0):
    """train(agent, buf, key, n) -> (agent, metric means): n updates on relabelled batches, one lax.scan."""

    def train(agent, buf, key, n: int):
        def body(agent, k):
            agent, info = agent.update(relabel(buf, k, batch_size, horizon_limit, context))
            return agent, info

        agent, infos = jax.lax.scan(body, agent, jax.random.split(key, n))
        return agent, jax.tree.map(lambda x: x.mean(0), infos)

    return train


# ---- the run ---------------------------------------------------------------------------------------------------------
class GoalRun:
    """Config, run session (logging, health, checkpoints) and the shared bookkeeping of both backends."""

    def __init__(self, args, spec, env_spec, table, num_seeds):
        config = agent_config(args, spec)
        self.args, self.spec, self.env_spec, self.table = args, spec, env_spec, table
        T = env_spec.horizon
        replay = spec.agent_cls.replay(config)
        limit = int(replay.get('relabel_horizon', 0))
        if limit > T - 1 and limit:
            raise TrainingError(f'--agent.relabel_horizon={limit} is longer than the episodes ({T} steps): every '
                                f'pair would be cut at the episode end. Use at most {T - 1}, or 0 for any later state.')
        if args.buffer_size < T:
            raise TrainingError(f'--buffer_size {args.buffer_size} holds less than one episode ({T} steps); raise it.')
        with config.unlocked():
            config.action_dim = len(table)
            if config.get('goal_offset'):
                if env_spec.goal_index is None:
                    raise TrainingError(GOAL_OFFSET_NEEDS_INDEX)
                config.goal_index = tuple(env_spec.goal_index)
        self.config, self.limit, self.context = config, limit, int(replay.get('context', 0))
        self.explore_after_goal = float(config.get('explore_after_goal', 0.0))
        self.total = args.train_steps or DEFAULT_TRAIN_STEPS
        self.eval_interval = args.eval_interval or self.total
        self.ckpt_every = args.ckpt_every or self.eval_interval
        self.capacity = args.buffer_size // T
        self.example = dict(observations=np.zeros((1, env_spec.obs_dim), np.float32),
                            goals=np.zeros((1, env_spec.goal_dim), np.float32), actions=np.zeros((1,), np.int32))
        saved_config = json_safe(config)
        monitor = make_monitor(args, health_context(dict(saved_config)))
        record = dict(algorithm=args.algorithm, agent=saved_config, seed=args.seed, env_name=args.env_name,
                      env_entry_point=args.env_entry_point, num_seeds=num_seeds,
                      example_batch=example_spec(self.example), action_table=table.tolist())
        self.session = RunSession(args, (args.env_name or 'custom').replace('/', '_'), record, monitor, self.total,
                                  desc=f'{args.algorithm} {args.env_name or args.env_entry_point}',
                                  step_name='environment step')
        self.run_dir, self.monitor = self.session.run_dir, monitor
        self.started = time.perf_counter()
        self.train = make_train(int(config.batch_size), limit, self.context)

    def start(self, agent, buf, key):
        """Resumes from the latest checkpoint when --resume (agent, buffer, key, step), then opens the session."""
        step = 0
        if self.args.resume:
            agent, _, loop = self.session.restore(agent)
            buf, key, step = jax.tree.map(jnp.asarray, loop['buffer']), jnp.asarray(loop['key']), int(loop['step'])
            print(f'Resumed {self.run_dir} at environment step {step}.')
        self.session.start(step)
        return agent, buf, key, step

    def save(self, step, agent, buf, key) -> float:
        """A checkpoint with the episode buffer and key; returns the seconds it took."""
        t0 = time.perf_counter()
        self.session.save(step, agent, loop=dict(buffer=jax.device_get(buf), key=np.asarray(key), step=step))
        return time.perf_counter() - t0

    def updates_per_iteration(self, num_envs: int) -> int:
        return max(1, int(round(num_envs * self.env_spec.horizon * float(self.config.updates_per_step))))

    def create(self, seed):
        try:
            return self.spec.agent_cls.create(seed, self.example, self.config)
        except ValueError as e:
            raise TrainingError(str(e)) from e

    def log_training(self, step, metrics, charts):
        row = {f'training/{k}': float(v) for k, v in metrics.items()}
        row.update(charts)
        row['time/elapsed_s'] = time.perf_counter() - self.started
        self.session.log('train', step, row)
        self.session.check_finite(step, row, NAN_KNOBS)

    def log_eval(self, step, success, distance, per_seed=None):
        row = {'evaluation/overall_success': float(np.mean(success)), 'evaluation/final_distance': float(distance),
               'time/elapsed_s': time.perf_counter() - self.started}
        if per_seed is not None and len(per_seed) > 1:
            row.update({f'evaluation/success_seed{self.args.seed + i}': float(s) for i, s in enumerate(per_seed)})
        self.session.log('eval', step, row)
        self.session.bar.write(f'step {step}: success {np.mean(success):.3f} over {self.args.eval_episodes} greedy '
                               f'episodes{" per seed" if per_seed is not None and len(per_seed) > 1 else ""}, final '
                               f'distance {distance:.3f}')

    def finish(self, step, sps, success):
        self.session.close()
        print(self.monitor.summary_line(self.run_dir))
        print(f'Final success rate: {success:.3f} (greedy, final state within {self.env_spec.threshold} of the goal)')
        print(f'Environment steps per second (training, without evaluation and checkpoints): {sps:.1f}')
        print(f'Run saved in {self.run_dir}')


def run_goal_online(args, spec):
    if jax.process_count() > 1:
        raise TrainingError('--distributed is for the offline agents; the online loop runs in one process.')
    if args.env_backend == 'jax':
        return _run_jax(args, spec)
    if args.num_seeds != 1:
        raise TrainingError('--num_seeds > 1 needs --env_backend jax (seeds vmapped in one compiled loop); run '
                            'gymnasium seeds as separate processes.')
    return _run_gym(args, spec)


def _make_gym_env(args):
    import impls.envs.goal_envs  # noqa: F401  registers impls/LunarLanderGoal-v0

    try:
        if args.env_entry_point:
            return load_object(args.env_entry_point, 'environment')()
        return gymnasium.make(args.env_name)
    except (gymnasium.error.Error, GoalEnvError, EnvError) as e:
        raise TrainingError(f'cannot make goal environment {args.env_name or args.env_entry_point!r}: {e}') from e


def _env_actions(table, indices):
    return [int(i) for i in indices] if table.shape[1] == 0 else [table[i] for i in indices]


def _gym_episodes(envs, act, env_spec, table, seeds, explore_after_goal: float = 0.0):
    """One episode per env in lockstep; act(observations, goals, carry) -> (actions, carry), the carry starting at
    None (the agent's initial carry). A fraction explore_after_goal of the episodes (drawn from their seeds) take
    uniformly random actions from the step their info says is_success on. Returns observations (E, T+1, D), achieved
    (E, T+1, G), actions (E, T), final success (E,), final distance (E,) and whether each episode explored (E,)."""
    T = env_spec.horizon
    resets = [env.reset(seed=int(s)) for env, s in zip(envs, seeds)]
    obs = [r[0] for r in resets]
    states, achieved, actions = [[o['observation'] for o in obs]], [[o['achieved_goal'] for o in obs]], []
    goals = np.stack([o['desired_goal'] for o in obs]).astype(np.float32)
    infos, carry = [r[1] for r in resets], None
    rng = np.random.default_rng([int(s) for s in seeds])
    explores = rng.random(len(envs)) < explore_after_goal
    exploring = np.zeros(len(envs), bool)
    for _ in range(T):
        a, carry = act(np.stack(states[-1]).astype(np.float32), goals, carry)
        a = np.asarray(a, np.int32)
        if explores.any():
            exploring |= explores & np.array([bool(i.get('is_success', False)) for i in infos])
            a = np.where(exploring, rng.integers(0, len(table), len(envs)), a).astype(np.int32)
        actions.append(a)
        step = [env.step(x) for env, x in zip(envs, _env_actions(table, a))]
        states.append([s[0]['observation'] for s in step])
        achieved.append([s[0]['achieved_goal'] for s in step])
        infos = [s[4] for s in step]
    observations = np.asarray(states, np.float32).swapaxes(0, 1)
    if not np.isfinite(observations).all():
        raise TrainingError('the environment returned a non-finite observation; replay keeps only finite data.')
    success = np.array([bool(i.get('is_success', False)) for i in infos])
    final = np.asarray(achieved, np.float32).swapaxes(0, 1)
    distance = np.array([float(i.get('distance', np.linalg.norm(f[-1] - g))) for i, f, g in zip(infos, final, goals)])
    return observations, final, np.asarray(actions, np.int32).swapaxes(0, 1), success, distance, exploring


def _run_gym(args, spec):
    envs = [_make_gym_env(args) for _ in range(args.num_envs)]
    eval_env = _make_gym_env(args)
    try:
        env_spec = gym_goal_spec(envs[0])
        config_bins = agent_config(args, spec)
        table = discretize(env_spec.action_space, int(config_bins.action_bins), int(config_bins.max_actions))
    except GoalEnvError as e:
        raise TrainingError(str(e)) from e
    run = GoalRun(args, spec, env_spec, table, 1)
    agent = run.create(args.seed)
    buf = buffer_init(run.capacity, env_spec.horizon, env_spec.obs_dim, env_spec.goal_dim)
    agent, buf, key, step = run.start(agent, buf, jax.random.PRNGKey(args.seed + 1))
    act_explore = jax.jit(lambda a, o, g, c, k, s: a.act(c, o, g, k, 'explore', (s, run.total)))
    act_eval = jax.jit(lambda a, o, g, c: a.act(c, o, g, None, 'eval'))
    train = jax.jit(run.train, static_argnums=3)
    add = jax.jit(buffer_add)
    E, T = args.num_envs, env_spec.horizon
    n_updates = run.updates_per_iteration(E)
    next_log, next_eval, next_ckpt = (((step // i) + 1) * i for i in (args.log_interval, run.eval_interval,
                                                                       run.ckpt_every))
    interval, successes, explored, timer, timer_steps = [], [], [], time.perf_counter(), 0
    loop_start, loop_start_step, excluded, success = time.perf_counter(), step, 0.0, float('nan')
    try:
        while step < run.total:
            key, k_act, k_train = jax.random.split(key, 3)
            keys = iter(jax.random.split(k_act, T))

            def act(o, g, carry, s=step):
                carry = agent.initial_carry(len(o)) if carry is None else carry
                return act_explore(agent, o, g, carry, next(keys), s)

            seeds = args.seed * 1_000_003 + step + np.arange(E)
            obs, ach, actions, succ, _, went = _gym_episodes(envs, act, env_spec, table, seeds, run.explore_after_goal)
            buf = add(buf, obs, ach, actions)
            successes.extend(succ.tolist())
            explored.extend(went.tolist())
            step += E * T
            timer_steps += E * T
            run.session.bar.update(E * T)
            if step > args.learning_starts:
                agent, info = train(agent, buf, k_train, n_updates)
                interval.append(info)
            if step >= next_log or step >= run.total:
                next_log += args.log_interval
                metrics = jax.tree.map(lambda *x: np.mean(x), *jax.device_get(interval)) if interval else {}
                run.log_training(step, metrics, {
                    'charts/collect_success': float(np.mean(successes)) if successes else float('nan'),
                    'charts/explored_after_goal': float(np.mean(explored)) if explored else float('nan'),
                    'charts/buffer_episodes': int(buf['count']),
                    'time/steps_per_second': timer_steps / max(time.perf_counter() - timer, 1e-9)})
                interval, successes, explored, timer, timer_steps = [], [], [], time.perf_counter(), 0
            if args.eval_episodes > 0 and (step >= next_eval or step >= run.total):
                next_eval += run.eval_interval
                t0 = time.perf_counter()
                success, distance = _gym_evaluate(eval_env, agent, act_eval, env_spec, table, args.eval_episodes,
                                                  args.seed * 1000 + step)
                run.log_eval(step, success, distance)
                excluded += time.perf_counter() - t0
                timer += time.perf_counter() - t0
            if step >= next_ckpt or step >= run.total:
                next_ckpt += run.ckpt_every
                took = run.save(step, agent, buf, key)
                excluded += took
                timer += took
    finally:
        sps = (step - loop_start_step) / max(time.perf_counter() - loop_start - excluded, 1e-9)
        run.finish(step, sps, success)
    return dict(agent=agent, run_dir=run.run_dir, success=success, steps_per_second=sps)


def _gym_evaluate(env, agent, act_eval, env_spec, table, episodes, seed):
    successes, distances = [], []
    for e in range(episodes):
        def act(o, g, carry):
            return act_eval(agent, o, g, agent.initial_carry(len(o)) if carry is None else carry)

        _, _, _, succ, dist, _ = _gym_episodes([env], act, env_spec, table, [seed + e])
        successes.append(succ[0])
        distances.append(dist[0])
    return float(np.mean(successes)), float(np.mean(distances))


# ---- the jax backend: seeds vmapped, one compiled call per iteration -------------------------------------------------
def _jax_rollout(env, agent, key, num_envs, table, mode, step, total, explore_after_goal: float = 0.0):
    """num_envs episodes of env under agent.act(mode): observations, achieved goals, actions, final distance, and
    whether each episode explored: a fraction explore_after_goal of them take uniformly random actions from the step
    they are first within the success threshold of their goal on."""
    T, threshold = env.spec.horizon, env.spec.threshold
    k_reset, k_act = jax.random.split(key)
    state, goal = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))
    explores = jax.random.uniform(jax.random.fold_in(key, 2), (num_envs,)) < explore_after_goal
    table = jnp.asarray(table)

    def body(carry, k):
        state, agent_carry, exploring = carry
        obs, achieved = jax.vmap(env.observe)(state), jax.vmap(env.achieved)(state)
        idx, agent_carry = agent.act(agent_carry, obs, goal, k, mode, (step, total))
        if explore_after_goal:
            exploring = exploring | (explores & (jnp.linalg.norm(achieved - goal, axis=-1) < threshold))
            idx = jnp.where(exploring, jax.random.randint(jax.random.fold_in(k, 1), idx.shape, 0, len(table)), idx)
        new = jax.vmap(env.step)(state, table[idx])
        return (new, agent_carry, exploring), (obs, achieved, idx)

    (final, _, exploring), (obs, ach, actions) = jax.lax.scan(
        body, (state, agent.initial_carry(num_envs), jnp.zeros((num_envs,), bool)), jax.random.split(k_act, T))
    last_obs, last_ach = jax.vmap(env.observe)(final)[None], jax.vmap(env.achieved)(final)[None]
    obs = jnp.concatenate([obs, last_obs], 0).swapaxes(0, 1)
    ach = jnp.concatenate([ach, last_ach], 0).swapaxes(0, 1)
    distance = jnp.linalg.norm(ach[:, -1] - goal, axis=-1)
    return obs, ach, actions.swapaxes(0, 1), distance, exploring


def _run_jax(args, spec):
    try:
        env = make_jax_goal_env(args.env_name)
        config_bins = agent_config(args, spec)
        table = discretize(env.spec.action_space, int(config_bins.action_bins), int(config_bins.max_actions))
    except GoalEnvError as e:
        raise TrainingError(str(e)) from e
    S, E, T = args.num_seeds, args.num_envs, env.spec.horizon
    run = GoalRun(args, spec, env.spec, table, S)
    agents = stack_agents([run.create(args.seed + i) for i in range(S)])
    bufs = jax.vmap(lambda _: buffer_init(run.capacity, T, env.spec.obs_dim, env.spec.goal_dim))(jnp.arange(S))
    keys = jax.vmap(lambda s: jax.random.PRNGKey(s + 1))(jnp.arange(args.seed, args.seed + S))
    agents, bufs, keys, step = run.start(agents, bufs, keys)
    n_updates = run.updates_per_iteration(E)
    learning_starts, total, threshold = args.learning_starts, run.total, env.spec.threshold

    def iteration(agent, buf, key, step):
        key, k_col, k_train = jax.random.split(key, 3)
        obs, ach, actions, distance, went = _jax_rollout(env, agent, k_col, E, table, 'explore', step, total,
                                                         run.explore_after_goal)
        buf = buffer_add(buf, obs, ach, actions)
        trained, info = run.train(agent, buf, k_train, n_updates)
        on = step + E * T > learning_starts
        agent = jax.tree.map(lambda a, b: jnp.where(on, a, b), trained, agent)
        return agent, buf, key, info, ((distance < threshold).mean(), went.mean())

    def evaluate(agent, key):
        _, _, _, distance, _ = _jax_rollout(env, agent, key, args.eval_episodes, table, 'eval', 0, total)
        return (distance < threshold).mean(), distance.mean()

    iterate = jax.jit(jax.vmap(iteration, in_axes=(0, 0, 0, None)))
    evaluate = jax.jit(jax.vmap(evaluate))
    next_log, next_eval, next_ckpt = (((step // i) + 1) * i for i in (args.log_interval, run.eval_interval,
                                                                       run.ckpt_every))
    interval, successes, explored, timer, timer_steps = [], [], [], time.perf_counter(), 0
    loop_start, loop_start_step, excluded, success = time.perf_counter(), step, 0.0, float('nan')
    try:
        while step < total:
            agents, bufs, keys, info, (succ, went) = iterate(agents, bufs, keys, jnp.asarray(step))
            if step + E * T > learning_starts:
                interval.append(info)
            successes.append(succ)
            explored.append(went)
            step += E * T
            timer_steps += E * T
            run.session.bar.update(E * T)
            if step >= next_log or step >= total:
                next_log += args.log_interval
                metrics = jax.tree.map(lambda *x: np.mean(x), *jax.device_get(interval)) if interval else {}
                run.log_training(step, metrics, {
                    'charts/collect_success': float(np.mean(jax.device_get(successes))),
                    'charts/explored_after_goal': float(np.mean(jax.device_get(explored))),
                    'time/steps_per_second': timer_steps * S / max(time.perf_counter() - timer, 1e-9)})
                interval, successes, explored, timer, timer_steps = [], [], [], time.perf_counter(), 0
            if args.eval_episodes > 0 and (step >= next_eval or step >= total):
                next_eval += run.eval_interval
                t0 = time.perf_counter()
                eval_keys = jax.vmap(lambda s: jax.random.PRNGKey(s * 1000 + step))(jnp.arange(args.seed,
                                                                                            args.seed + S))
                per_seed, distance = jax.device_get(evaluate(agents, eval_keys))
                success = float(np.mean(per_seed))
                run.log_eval(step, per_seed, float(np.mean(distance)), per_seed)
                excluded += time.perf_counter() - t0
                timer += time.perf_counter() - t0
            if step >= next_ckpt or step >= total:
                next_ckpt += run.ckpt_every
                took = run.save(step, agents, bufs, keys)
                excluded += took
                timer += took
    finally:
        sps = (step - loop_start_step) * S / max(time.perf_counter() - loop_start - excluded, 1e-9)
        run.finish(step, sps, success)
    return dict(agent=agents, run_dir=run.run_dir, success=success, steps_per_second=sps)
