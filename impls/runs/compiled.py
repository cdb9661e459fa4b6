"""The online loop compiled: for an environment written in jax (impls/envs/jax_envs.py), each stretch
between two log rows runs as one jitted `fori_loop` over vector steps -- the agent's exploring `act`, the
environment step with its time limit and reset, the replay write, and `training_steps_per_sample`
updates on n-step batches sampled from a replay buffer held on the device -- with no Python per step.

The same agent update, the same n-step targets (impls.data.episodes.n_step_batch), the same schedules,
logging, health monitor, evaluation (on gymnasium's own environment of that name) and checkpoints as the
gymnasium loop (`OnlineRun`). What it does not do: prioritized replay (its sum-tree lives on the host),
the expert curriculum (experts are host callables) and custom entry points; each is refused with the fix.
A run is deterministic given its seed and resumes exactly: the whole loop state is one pytree.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from impls.data.episodes import FIELDS, n_step_batch
from impls.envs.gym import env_factory
from impls.envs.jax_envs import JaxEnvError, auto_reset_step, make_jax_env
from impls.runs.online import OnlineRun, online_config
from impls.runs.session import TrainingError, example_spec, trend_slope
from impls.runs.updates import metric_vector_update, reduction


def _check_supported(args, replay):
    refused = []
    if args.env_entry_point:
        refused.append('--env_entry_point (a Python environment): drop --env_backend jax')
    if args.expert:
        refused.append('--expert (the expert curriculum calls a host policy every step): drop --env_backend jax')
    if args.pixels:
        refused.append('--pixels (the jax environments give their state only): drop --env_backend jax')
    if replay['kind'] not in ('transitions', 'sequences'):
        refused.append(f'{replay["kind"]} replay (the device replay serves n-step transitions and sequences): drop '
                       f'--env_backend jax')
    elif replay['kind'] == 'sequences' and not replay.get('cross_episodes', True):
        refused.append('sequences within episodes (--agent.cross_episodes=false): the device replay samples windows '
                       'across episode ends; drop one of them')
    elif replay.get('prioritized'):
        refused.append('--agent.prioritized (its sum-tree lives on the host): drop it or --env_backend jax')
    if refused:
        raise TrainingError('--env_backend jax does not support ' + '; '.join(refused) + '.')
    if replay['kind'] == 'transitions' and args.buffer_size // args.num_envs <= replay['n_step']:
        raise TrainingError(f'replay buffer {args.buffer_size} over {args.num_envs} envs holds too few steps per env '
                            f'for {replay["n_step"]}-step returns; raise --buffer_size.')


def init_state(env, agent_leaves, buffer_size, num_envs, seed, ring, carry=()):
    """The whole loop state as one pytree (everything but the agent is plain arrays); `carry` is the agent's state
    carried between steps (per env)."""
    key, reset_key = jax.random.split(jax.random.PRNGKey(seed + 1_000_003))
    env_state, obs = jax.vmap(env.reset)(jax.random.split(reset_key, num_envs))
    per_env = buffer_size // num_envs
    shape = (per_env, num_envs)
    replay = dict(
        observations=jnp.zeros(shape + env.observation_shape, jnp.float32),
        next_observations=jnp.zeros(shape + env.observation_shape, jnp.float32),
        actions=jnp.zeros(shape, jnp.int32), rewards=jnp.zeros(shape, jnp.float32),
        terminated=jnp.zeros(shape, bool), done=jnp.zeros(shape, bool),
        is_first=jnp.zeros(shape, bool),  # the step starts an episode (the env's first, or one after an end)
    )
    return dict(
        agent=agent_leaves, replay=replay, pos=jnp.int32(0), rows=jnp.int32(0),
        env_state=env_state, elapsed=jnp.zeros(num_envs, jnp.int32), obs=obs,
        episode_return=jnp.zeros(num_envs, jnp.float32), key=key, step=jnp.int32(0), updates_due=jnp.float32(0),
        recent_returns=jnp.zeros(ring, jnp.float32), returns_seen=jnp.int32(0),  # ring of finished episodes
        carry=carry, episode_start=jnp.ones(num_envs, bool),
    )


def sample_sequences(state, key, c, num_envs):
    """Uniform windows of c['length'] consecutive steps of one env, possibly across episode ends (is_first), from the
    device replay: the layout of EpisodeStore.sample_sequences."""
    per_env, length = c['buffer_size'] // num_envs, c['length']
    env_key, start_key = jax.random.split(key)
    envs = jax.random.randint(env_key, (c['batch_size'],), 0, num_envs)
    starts = jax.random.randint(start_key, (c['batch_size'],), 0, state['rows'] - length + 1)  # from the oldest
    rows = (state['pos'] - state['rows'] + starts[:, None] + jnp.arange(length)) % per_env  # (B, T)
    data = state['replay']
    batch = {k: data[k][rows, envs[:, None]] for k in ('observations', 'next_observations', 'actions', 'rewards',
                                                       'terminated', 'is_first')}
    batch['age'] = (state['rows'] - starts - length).astype(jnp.int32)
    return batch


def sample_batch(state, key, c, num_envs):
    """A uniform batch from the device replay (`c`: buffer_size, batch_size, n_step, discount, kind, length): n-step
    transitions, or sequences."""
    if c['kind'] == 'sequences':
        return sample_sequences(state, key, c, num_envs)
    per_env = c['buffer_size'] // num_envs
    eligible = state['rows'] - (c['n_step'] - 1)  # the newest n - 1 rows lack their n-step future
    flat = jax.random.randint(key, (c['batch_size'],), 0, eligible * num_envs)
    rows = (state['pos'] - state['rows'] + flat // num_envs) % per_env  # counted from the oldest row
    batch = n_step_batch(state['replay'], rows, flat % num_envs, c['n_step'], c['discount'], per_env, jnp)
    batch['weights'] = jnp.ones(c['batch_size'], jnp.float32)
    return batch


def make_run_steps(env, treedef, update_fn, num_metrics, c, num_envs, total, fresh_carry=()):
    """jit(fn(state, vector_steps) -> (state, interval stats)): that many vector steps of the loop (`c`: the
    replay's sizes and the loop settings learning_starts and training_steps_per_sample)."""
    per_env = c['buffer_size'] // num_envs
    ratio = c['training_steps_per_sample'] * num_envs

    def update(i, carry):
        state, stats = carry
        key, sample_key = jax.random.split(state['key'])
        leaves, vector, _ = update_fn(state['agent'], sample_batch(state, sample_key, c, num_envs))
        stats = dict(updates=stats['updates'] + 1, sum=stats['sum'] + vector,
                     min=jnp.minimum(stats['min'], vector), max=jnp.maximum(stats['max'], vector))
        return dict(state, agent=leaves, key=key), stats

    def vector_step(i, carry):
        state, stats = carry
        # The agent draws its exploration from split(state key, 4)[1:3]; [0] is the loop's next key, [3] resets.
        key, _, _, reset_key = jax.random.split(state['key'], 4)
        agent = jax.tree.unflatten(treedef, state['agent'])
        actions, carry = agent.act(state['carry'], state['obs'], None, state['key'], 'explore',
                                   progress=(state['step'], total))
        env_state, elapsed, obs, final_obs, reward, terminated, truncated = jax.vmap(
            lambda s, t, a, k: auto_reset_step(env, s, t, a, k))(
            state['env_state'], state['elapsed'], actions, jax.random.split(reset_key, num_envs))
        done = terminated | truncated
        transition = dict(observations=state['obs'], actions=actions, rewards=reward, next_observations=final_obs,
                          terminated=terminated, done=done, is_first=state['episode_start'])
        replay = {k: state['replay'][k].at[state['pos']].set(transition[k]) for k in (*FIELDS, 'is_first')}
        # An env whose episode ended acts next from its reset observation: its carried state starts afresh.
        carry = jax.tree.map(lambda x, f: jnp.where(done.reshape((-1,) + (1,) * (x.ndim - 1)), f, x), carry,
                             fresh_carry)
        episode_return = state['episode_return'] + reward
        ring = state['recent_returns'].shape[0]
        slots = state['returns_seen'] + jnp.cumsum(done) - 1
        recent = state['recent_returns'].at[jnp.where(done, slots % ring, ring)].set(episode_return, mode='drop')
        step = state['step'] + num_envs
        learning = (step >= c['learning_starts']) & (state['rows'] + 1 >= c['min_rows'])
        updates_due = state['updates_due'] + jnp.where(learning, ratio, 0.0)
        state = dict(
            state, replay=replay, pos=(state['pos'] + 1) % per_env, rows=jnp.minimum(state['rows'] + 1, per_env),
            env_state=env_state, elapsed=elapsed, obs=obs, episode_return=jnp.where(done, 0.0, episode_return),
            key=key, step=step, updates_due=updates_due - jnp.floor(updates_due),
            recent_returns=recent, returns_seen=state['returns_seen'] + done.sum(), carry=carry, episode_start=done,
        )
        return jax.lax.fori_loop(0, jnp.floor(updates_due).astype(jnp.int32), update, (state, stats))

    @jax.jit
    def run_steps(state, vector_steps):
        stats = dict(updates=jnp.int32(0), sum=jnp.zeros(num_metrics), min=jnp.full(num_metrics, jnp.inf),
                     max=jnp.full(num_metrics, -jnp.inf))
        return jax.lax.fori_loop(0, vector_steps, vector_step, (state, stats))

    return run_steps


def _ordered_returns(state):
    """The finished episodes' returns in the ring, oldest first."""
    ring = state['recent_returns'].shape[0]
    seen = int(state['returns_seen'])
    values = np.asarray(state['recent_returns'])
    if seen <= ring:
        return values[:seen].tolist()
    start = seen % ring
    return np.concatenate([values[start:], values[:start]]).tolist()


def run_compiled(args, spec):
    config = online_config(args, spec)
    replay = spec.agent_cls.replay(config)
    _check_supported(args, replay)
    try:
        env = make_jax_env(args.env_name)
    except JaxEnvError as e:
        raise TrainingError(str(e)) from e
    num_envs = args.num_envs
    example = dict(observations=np.zeros((1, *env.observation_shape), np.float32), actions=np.zeros((1,), np.int32))
    with config.unlocked():
        config.action_dim = env.num_actions
    try:
        agent = spec.agent_cls.create(args.seed, example, config)
    except ValueError as e:
        raise TrainingError(str(e)) from e
    run = OnlineRun(args, config, dict(example_batch=example_spec(example)))
    total = run.total
    leaves, treedef = jax.tree.flatten(agent)
    fresh_carry = agent.initial_carry(num_envs)
    state = init_state(env, leaves, args.buffer_size, num_envs, args.seed, ring=max(100, args.slope_window),
                       carry=fresh_carry)
    if args.resume:
        agent, _, loop = run.session.restore(agent)
        saved = jax.tree.map(jnp.asarray, loop['state'])
        # Checkpoints written before sequence replay lack is_first, the carry and episode starts: keep the fresh ones.
        saved['replay'] = {**state['replay'], **saved['replay']}
        state = dict(state, **saved, agent=jax.tree.leaves(agent))
        print(f'Resumed {run.run_dir} at environment step {int(state["step"])}.')
    step = int(state['step'])
    run.session.start(step)
    c = dict(buffer_size=args.buffer_size, batch_size=int(config.batch_size), n_step=replay.get('n_step', 1),
             discount=replay.get('discount', 1.0), learning_starts=args.learning_starts, kind=replay['kind'],
             length=replay.get('length', 1), training_steps_per_sample=args.training_steps_per_sample)
    c['min_rows'] = c['length'] if replay['kind'] == 'sequences' else c['n_step']  # rows before a batch can be drawn
    example_batch = jax.eval_shape(lambda s: sample_batch(s, s['key'], c, num_envs), state)
    update_fn, names = metric_vector_update(treedef, leaves, example_batch)
    run_steps = make_run_steps(env, treedef, update_fn, len(names), c, num_envs, total, fresh_carry)
    factory = env_factory(args.env_name)  # evaluation runs on gymnasium's own environment
    next_log = (step // args.log_interval + 1) * args.log_interval
    next_eval = (step // run.eval_interval + 1) * run.eval_interval
    next_ckpt = (step // run.ckpt_every + 1) * run.ckpt_every
    loop_start, loop_start_step, excluded, ret = time.perf_counter(), step, 0.0, None
    exploration_info = getattr(agent, 'exploration_info', lambda progress: {})  # optional in the contract
    try:
        while step < total:
            target = min(next_log, next_eval if args.eval_episodes > 0 else total, next_ckpt, total)
            t0 = time.perf_counter()
            state, stats = run_steps(state, max(1, -(-(target - step) // num_envs)))
            stats = jax.device_get(stats)
            elapsed = time.perf_counter() - t0
            done_steps, step = int(state['step']) - step, int(state['step'])
            run.session.bar.update(done_steps)
            returns = _ordered_returns(state)
            if step >= next_log or step >= total:
                next_log = (step // args.log_interval + 1) * args.log_interval
                n = int(stats['updates'])
                reduced = {k: (stats[reduction(k)][i] if reduction(k) != 'mean' else stats['sum'][i] / n)
                           for i, k in enumerate(names)} if n else {}
                run.log_training(step, reduced, {
                    **{f'charts/{k}': v for k, v in exploration_info((step, total)).items()},
                    'charts/expert_ratio': 0.0,
                    'charts/agent_return': float(np.mean(returns[-100:])) if returns else float('nan'),
                    'charts/reward_slope': trend_slope(returns[-args.slope_window:]),
                    'charts/replay_ratio': n * config.batch_size * c['length'] / max(done_steps, 1),
                    'charts/buffer_size': int(state['rows']) * num_envs,
                    'time/steps_per_second': done_steps / max(elapsed, 1e-9),
                })
            if args.eval_episodes > 0 and (step >= next_eval or step >= total):
                next_eval = (step // run.eval_interval + 1) * run.eval_interval
                t0 = time.perf_counter()
                agent = jax.tree.unflatten(treedef, state['agent'])
                ret = run.evaluate(step, agent, factory, np.mean(returns[-10:]) if returns else float('nan'))
                excluded += time.perf_counter() - t0
            if step >= next_ckpt or step >= total:
                next_ckpt = (step // run.ckpt_every + 1) * run.ckpt_every
                t0 = time.perf_counter()
                host = jax.device_get(state)
                run.session.save(step, jax.tree.unflatten(treedef, state['agent']),
                                 loop=dict(state={k: v for k, v in host.items() if k != 'agent'}))
                excluded += time.perf_counter() - t0
    finally:
        run.close()
    sps = (step - loop_start_step) / max(time.perf_counter() - loop_start - excluded, 1e-9)
    return run.summary(jax.tree.unflatten(treedef, state['agent']), _ordered_returns(state), sps, ret)
