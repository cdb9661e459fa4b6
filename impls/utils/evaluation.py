"""Batched goal-conditioned evaluation on OGBench environments.

All evaluation episodes (tasks x episodes per task) run side by side in one process: each step calls
the policy once on the whole batch of observations (one jitted call instead of one per episode, which
is what makes OGBench's one-episode-at-a-time loop slow), then steps every unfinished environment.
Success of an episode is ``info['success']`` at its last step, as in OGBench.
"""

from __future__ import annotations

import time
import warnings

import jax
import numpy as np


def make_eval_env(env_name: str):
    """The OGBench evaluation env for a dataset name (no dataset download)."""
    import ogbench

    try:
        with warnings.catch_warnings():  # MuJoCo probing for a display, gymnasium's float64 bounds notes
            warnings.filterwarnings('ignore', message='.*DISPLAY.*')
            warnings.filterwarnings('ignore', message='.*precision lowered.*')
            return ogbench.make_env_and_datasets(env_name, env_only=True)
    except Exception as e:  # gymnasium raises several error types for unknown ids.
        raise ValueError(
            f'cannot make the evaluation env for --env_name {env_name!r} ({type(e).__name__}: {e}). Use an OGBench '
            f'dataset name such as pointmaze-medium-navigate-v0, or --eval_episodes 0 to skip evaluation.'
        ) from e


class RandomPolicy:
    """Uniform random actions: the baseline a trained agent must clearly beat."""

    def __init__(self, action_dim: int, discrete: bool, seed: int = 0):
        self.action_dim, self.discrete = action_dim, discrete
        self.rng = np.random.default_rng(seed)

    def sample_actions(self, observations, goals, seed=None, temperature=1.0):
        n = len(observations)
        if self.discrete:
            return self.rng.integers(0, self.action_dim, size=n)
        return self.rng.uniform(-1.0, 1.0, size=(n, self.action_dim)).astype(np.float32)


def _stack(frames, frame_stack):
    return np.concatenate(list(frames), axis=-1) if frame_stack else frames[-1]


def evaluate(
    agent,
    env_name: str,
    episodes_per_task: int,
    seed: int = 0,
    temperature: float = 0.0,
    frame_stack: int | None = None,
    task_ids=None,
    progress: bool = False,
    shuffle_goals: bool = False,
):
    """Run episodes_per_task episodes on each task; returns {'overall_success', 'task{i}_success',
    'episode_length', 'seconds'} (success rates in [0, 1]).

    shuffle_goals: give each episode the goal of the next task instead of its own (success is still
    judged on its own task): a policy that ignores its goal scores the same either way."""
    probe = make_eval_env(env_name)
    task_infos = probe.unwrapped.task_infos if hasattr(probe.unwrapped, 'task_infos') else [None] * 5
    task_ids = list(task_ids or range(1, len(task_infos) + 1))
    envs = [probe] + [make_eval_env(env_name) for _ in range(len(task_ids) * episodes_per_task - 1)]
    owners = [t for t in task_ids for _ in range(episodes_per_task)]
    start = time.perf_counter()

    obs_frames, goals = [], []
    for k, (env, task_id) in enumerate(zip(envs, owners)):
        ob, info = env.reset(seed=seed * 100_003 + k, options=dict(task_id=task_id, render_goal=False))
        ob = np.asarray(ob, dtype=np.float32 if np.asarray(ob).dtype != np.uint8 else np.uint8)
        obs_frames.append([ob] * (frame_stack or 1))
        goal = np.asarray(info['goal'], dtype=ob.dtype)
        goals.append(np.concatenate([goal] * frame_stack, axis=-1) if frame_stack else goal)
    goals = np.stack(goals)
    if goals.shape[1:] != obs_frames[0][-1].shape[:-1] + (obs_frames[0][-1].shape[-1] * (frame_stack or 1),):
        raise ValueError(f'{env_name}: goals have shape {goals.shape[1:]} but observations {obs_frames[0][-1].shape}.')
    if shuffle_goals:
        if len(task_ids) < 2:
            raise ValueError('shuffle_goals needs at least 2 tasks.')
        goals = np.roll(goals, -episodes_per_task, axis=0)
    n = len(envs)
    active = np.ones(n, dtype=bool)
    success = np.zeros(n, dtype=bool)
    length = np.zeros(n, dtype=np.int64)
    key = jax.random.PRNGKey(seed)
    from tqdm import tqdm

    bar = tqdm(desc='evaluating', unit='step', disable=not progress, leave=False)
    while active.any():
        obs = np.stack([_stack(f, frame_stack) for f in obs_frames])
        key, sub = jax.random.split(key)
        actions = np.asarray(agent.sample_actions(obs, goals, seed=sub, temperature=temperature))
        for k in np.flatnonzero(active):
            ob, _, terminated, truncated, info = envs[k].step(actions[k])
            length[k] += 1
            obs_frames[k] = obs_frames[k][1:] + [np.asarray(ob, dtype=obs.dtype)]
            if terminated or truncated:
                active[k] = False
                success[k] = bool(info['success'])
        bar.update(1)
    bar.close()
    for env in envs:
        env.close()
    result = {'overall_success': float(success.mean()), 'episode_length': float(length.mean())}
    for task_id in task_ids:
        result[f'task{task_id}_success'] = float(success[np.asarray(owners) == task_id].mean())
    result['seconds'] = time.perf_counter() - start
    return result
