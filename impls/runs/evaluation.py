"""Batched goal-conditioned evaluation on OGBench environments.

All evaluation episodes (tasks x episodes per task) run side by side in one process: each step calls
the policy once on the whole batch of observations (one jitted call instead of one per episode, which
is what makes OGBench's one-episode-at-a-time loop slow), then steps every unfinished environment.
Success of an episode is ``info['success']`` at its last step, as in OGBench.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from impls.envs.ogbench import make_eval_env


class RandomPolicy:
    """Uniform random actions: the baseline a trained agent must clearly beat."""

    def __init__(self, action_dim: int, discrete: bool, seed: int = 0):
        self.action_dim, self.discrete = action_dim, discrete
        self.rng = np.random.default_rng(seed)

    def initial_carry(self, batch_size):
        return ()

    def act(self, carry, observations, goals, key=None, mode='eval'):
        n = len(observations)
        if self.discrete:
            return self.rng.integers(0, self.action_dim, size=n), carry
        return self.rng.uniform(-1.0, 1.0, size=(n, self.action_dim)).astype(np.float32), carry


def _stack(frames, frame_stack):
    return np.concatenate(list(frames), axis=-1) if frame_stack else frames[-1]


_POOL: dict = {}


def _pooled_envs(env_name: str, n: int):
    """n evaluation envs, kept between evaluations: MuJoCo manipulation envs hold ~185 MB each and give
    only part of it back on close(), so making fresh ones at every evaluation grows the process."""
    pool = _POOL.setdefault(env_name, [])
    while len(pool) < n:
        pool.append(make_eval_env(env_name))
    return pool[:n]


def evaluate(
    agent,
    env_name: str,
    episodes_per_task: int,
    seed: int = 0,
    frame_stack: int | None = None,
    task_ids=None,
    progress: bool = False,
    shuffle_goals: bool = False,
    max_envs: int = 10,
):
    """Run episodes_per_task episodes on each task; returns {'overall_success', 'task{i}_success',
    'episode_length', 'seconds'} (success rates in [0, 1]).

    Up to max_envs episodes run side by side (one batched policy call per step), in waves; episode k is
    seeded from (seed, k) (the env's seed and numpy's global generator, which OGBench's resets draw from), so
    results repeat exactly and do not depend on max_envs.
    shuffle_goals: give each episode the goal of the next task instead of its own (success is still
    judged on its own task): a policy that ignores its goal scores the same either way."""
    saved = np.random.get_state()  # the per-episode seeding below must not change the caller's global stream
    try:
        return _run_episodes(agent, env_name, episodes_per_task, seed, frame_stack, task_ids, progress, shuffle_goals,
                             max_envs)
    finally:
        np.random.set_state(saved)


def _run_episodes(agent, env_name, episodes_per_task, seed, frame_stack, task_ids, progress, shuffle_goals, max_envs):
    probe = _pooled_envs(env_name, 1)[0]
    num_tasks = len(probe.unwrapped.task_infos) if hasattr(probe.unwrapped, 'task_infos') else 5
    task_ids = list(task_ids or range(1, num_tasks + 1))
    if shuffle_goals and len(task_ids) < 2:
        raise ValueError('shuffle_goals needs at least 2 tasks.')
    jobs = [(t, e) for t in task_ids for e in range(episodes_per_task)]
    start = time.perf_counter()
    success = np.zeros(len(jobs), dtype=bool)
    length = np.zeros(len(jobs), dtype=np.int64)
    key = jax.random.PRNGKey(seed)
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc='evaluating', unit='episode', disable=not progress, leave=False)
    for wave_start in range(0, len(jobs), max_envs):
        wave = list(range(wave_start, min(wave_start + max_envs, len(jobs))))
        envs = _pooled_envs(env_name, len(wave))
        obs_frames, goals = [], []
        for env, k in zip(envs, wave):
            task_id = jobs[k][0]
            # OGBench's envs draw start and goal noise from numpy's global generator, whatever reset's seed:
            # seed it per episode too, or the same seed gives other episodes in every process.
            np.random.seed((seed * 100_003 + k) % 2**32)
            ob, info = env.reset(seed=seed * 100_003 + k, options=dict(task_id=task_id, render_goal=False))
            ob = np.asarray(ob, dtype=np.float32 if np.asarray(ob).dtype != np.uint8 else np.uint8)
            obs_frames.append([ob] * (frame_stack or 1))
            if shuffle_goals:  # the goal of the next task, from a throwaway reset of a pooled env
                other = task_ids[(task_ids.index(task_id) + 1) % len(task_ids)]
                np.random.seed((seed * 100_003 + k) % 2**32)
                _, other_info = _pooled_envs(env_name, len(wave) + 1)[-1].reset(
                    seed=seed * 100_003 + k, options=dict(task_id=other, render_goal=False))
                info = other_info
            goal = np.asarray(info['goal'], dtype=ob.dtype)
            goals.append(np.concatenate([goal] * frame_stack, axis=-1) if frame_stack else goal)
        goals = np.stack(goals)
        if goals.shape[1:] != obs_frames[0][-1].shape[:-1] + (obs_frames[0][-1].shape[-1] * (frame_stack or 1),):
            raise ValueError(f'{env_name}: goals have shape {goals.shape[1:]} but observations {obs_frames[0][-1].shape}.')
        active = np.ones(len(wave), dtype=bool)
        carry = agent.initial_carry(len(wave))
        while active.any():
            obs = np.stack([_stack(f, frame_stack) for f in obs_frames])
            key, sub = jax.random.split(key)
            actions, carry = agent.act(carry, obs, goals, sub, 'eval')
            actions = np.asarray(actions)
            for i in np.flatnonzero(active):
                ob, _, terminated, truncated, info = envs[i].step(actions[i])
                length[wave[i]] += 1
                obs_frames[i] = obs_frames[i][1:] + [np.asarray(ob, dtype=obs.dtype)]
                if terminated or truncated:
                    active[i] = False
                    success[wave[i]] = bool(info['success'])
                    bar.update(1)
    bar.close()
    result = {'overall_success': float(success.mean()), 'episode_length': float(length.mean())}
    owners = np.array([t for t, _ in jobs])
    for task_id in task_ids:
        result[f'task{task_id}_success'] = float(success[owners == task_id].mean())
    result['seconds'] = time.perf_counter() - start
    return result
