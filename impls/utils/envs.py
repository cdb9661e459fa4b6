"""Online environments: gymnasium ids or `module:Class` entry points, vectorised, with Atari's standard
preprocessing (no-op starts, frame skip 4 with max-pooling, 84x84 grey, rewards clipped to their sign for
learning while the logged return is the game's score, 4 stacked frames channels-last); and the expert
policies of the expert curriculum."""

from __future__ import annotations

import importlib
import os

import gymnasium
import numpy as np


class EnvError(ValueError):
    pass


def _load(spec: str, what: str):
    if ':' not in spec:
        raise EnvError(f'{what} {spec!r} must be MODULE:NAME (e.g. my_game.env:TempestEnv).')
    module_name, attr = spec.split(':', 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EnvError(f'{what} {spec!r}: cannot import {module_name!r} ({e}). Is it on PYTHONPATH?') from e
    if not hasattr(module, attr):
        raise EnvError(f'{what} {spec!r}: module {module_name!r} has no {attr!r}.')
    return getattr(module, attr)


def is_atari(env_id: str) -> bool:
    return env_id.startswith('ALE/') or 'NoFrameskip' in env_id


def _sign(reward):
    return float(np.sign(reward))


def _to_channels_last(obs):
    return np.moveaxis(np.asarray(obs), 0, -1)


class EnvFactory:
    """Makes one environment; a picklable callable (no closures), so a vector env can be checkpointed."""

    def __init__(self, env_id: str | None, entry_point: str | None = None, atari_frame_stack: int = 4):
        self.env_id, self.entry_point, self.atari_frame_stack = env_id, entry_point, atari_frame_stack
        if entry_point:
            _load(entry_point, '--env_entry_point')  # fail now, with the reason, not inside the vector env
            return
        if is_atari(env_id):
            import ale_py

            gymnasium.register_envs(ale_py)
        try:
            gymnasium.spec(env_id)
        except gymnasium.error.Error as e:
            raise EnvError(f'environment id {env_id!r} does not exist ({e}). Use a registered gymnasium id such as '
                           f'CartPole-v1, or --env_entry_point MODULE:CLASS for an environment outside the registry.') from e

    def __call__(self):
        if self.entry_point:
            env = _load(self.entry_point, '--env_entry_point')()
            if not isinstance(env, gymnasium.Env):
                raise EnvError(f'--env_entry_point {self.entry_point} made a {type(env).__name__}, not a gymnasium.Env.')
        elif is_atari(self.env_id):
            import ale_py

            gymnasium.register_envs(ale_py)
            env = gymnasium.make(self.env_id, frameskip=1, repeat_action_probability=0.0)
            env = gymnasium.wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84, terminal_on_life_loss=False,
                                                        grayscale_obs=True, noop_max=30)
            env = gymnasium.wrappers.RecordEpisodeStatistics(env)  # the game's score, before reward clipping
            env = gymnasium.wrappers.TransformReward(env, _sign)
            env = gymnasium.wrappers.FrameStackObservation(env, self.atari_frame_stack)
            return gymnasium.wrappers.TransformObservation(
                env, _to_channels_last, gymnasium.spaces.Box(0, 255, (84, 84, self.atari_frame_stack), np.uint8))
        else:
            env = gymnasium.make(self.env_id)
        return gymnasium.wrappers.RecordEpisodeStatistics(env)


def env_factory(env_id: str | None, entry_point: str | None = None, atari_frame_stack: int = 4):
    """A picklable zero-argument callable that makes one environment."""
    return EnvFactory(env_id, entry_point, atari_frame_stack)


def make_vec_env(factory, num_envs: int, seed: int):
    """A synchronous vector env (NEXT_STEP autoreset: the step after an episode ends is a reset step)."""
    env = gymnasium.vector.SyncVectorEnv([factory for _ in range(num_envs)],
                                         autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP)
    env.reset(seed=seed)
    return env


def cartpole_expert(observations):
    """A built-in CartPole-v1 controller (PD on pole angle and angular velocity plus a little cart
    feedback); it balances for the full 500 steps from every start we have tried."""
    x, x_dot, theta, theta_dot = np.asarray(observations, np.float64).T
    return (theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0).astype(np.int64)


BUILTIN_EXPERTS = {'cartpole': cartpole_expert}


class CheckpointExpert:
    """The greedy policy of an online agent saved by train.py (a run directory or a checkpoint in it). It acts
    through the online loop's FastAgent: the expert may be called every environment step."""

    def __init__(self, path: str):
        from impls.agents import load_agent
        from impls.utils.online_loop import FastAgent

        agent, record, self.step = load_agent(path)
        if not hasattr(agent, 'greedy_actions') or 'num_actions' not in record:
            raise EnvError(f'--expert {path}: the checkpoint holds a {record["algorithm"]} agent, not an online '
                           f'discrete-action agent.')
        self.policy = FastAgent(agent)

    def __call__(self, observations):
        return self.policy.act(observations)


def load_expert(spec: str | None):
    """None, 'cartpole', a checkpoint of an online agent (run directory), or MODULE:CALLABLE taking a batch of
    observations and returning actions."""
    if not spec:
        return None
    if spec in BUILTIN_EXPERTS:
        return BUILTIN_EXPERTS[spec]
    if os.path.exists(spec):
        from impls.agents import CheckpointError

        try:
            return CheckpointExpert(spec)
        except CheckpointError as e:
            raise EnvError(f'--expert {spec}: {e}') from e
    fn = _load(spec, '--expert')
    if not callable(fn):
        raise EnvError(f'--expert {spec} is not callable.')
    return fn


def check_expert_actions(actions, num_actions: int, n: int, spec: str):
    actions = np.asarray(actions)
    if actions.shape != (n,) or not np.issubdtype(actions.dtype, np.integer) or actions.min() < 0 or actions.max() >= num_actions:
        raise EnvError(
            f'expert {spec} returned {actions!r} for {n} observations; expected {n} integer actions in '
            f'[0, {num_actions}).'
        )
    return actions
