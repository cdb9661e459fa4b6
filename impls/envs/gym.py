"""Online environments: gymnasium ids or `module:Class` entry points, vectorised, with Atari's standard
preprocessing (no-op starts, frame skip 4 with max-pooling, 84x84 grey, rewards clipped to their sign for
learning while the logged return is the game's score, 4 stacked frames channels-last)."""

from __future__ import annotations

import importlib

import gymnasium
import numpy as np


class EnvError(ValueError):
    pass


def load_object(spec: str, what: str):
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


class RenderObservation(gymnasium.ObservationWrapper):
    """Observations are the environment's own `render()` frames, resized to size x size RGB uint8 when collected
    (so replay holds small frames and no batch is ever resized)."""

    def __init__(self, env, size: int):
        super().__init__(env)
        self.size = size
        self.observation_space = gymnasium.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def observation(self, observation):
        from PIL import Image

        frame = np.asarray(self.env.render())
        if frame.ndim != 3:
            raise EnvError(f'--pixels: render() of {self.env.spec.id if self.env.spec else self.env} gave an array of '
                           f'shape {frame.shape}, not an RGB frame.')
        return np.asarray(Image.fromarray(frame[..., :3]).resize((self.size, self.size), Image.BILINEAR))


class EnvFactory:
    """Makes one environment; a picklable callable (no closures), so a vector env can be checkpointed.

    Continuous actions are rescaled to [-1, 1] (gymnasium's RescaleAction) when the space has other finite bounds;
    `pixels` N replaces observations by N x N RGB renders."""

    def __init__(self, env_id: str | None, entry_point: str | None = None, atari_frame_stack: int = 4,
                 pixels: int | None = None):
        self.env_id, self.entry_point, self.atari_frame_stack = env_id, entry_point, atari_frame_stack
        self.pixels = pixels
        if pixels is not None and (entry_point or is_atari(env_id or '')):
            raise EnvError('--pixels renders a gymnasium environment from the registry; Atari and --env_entry_point '
                           'environments give their own observations (drop --pixels).')
        if entry_point:
            load_object(entry_point, '--env_entry_point')  # fail now, with the reason, not inside the vector env
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
            env = load_object(self.entry_point, '--env_entry_point')()
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
            try:
                env = gymnasium.make(self.env_id, **({'render_mode': 'rgb_array'} if self.pixels else {}))
                if self.pixels:
                    env.reset(seed=0)
                    env.render()
            except gymnasium.error.DependencyNotInstalled as e:
                raise EnvError(f'--pixels: rendering {self.env_id} needs a package that is not installed ({e}). '
                               f"Install it (pip install -e '.[pixels]').") from e
            if self.pixels:
                env = RenderObservation(env, self.pixels)
        space = env.action_space
        box = isinstance(space, gymnasium.spaces.Box)
        bounded = box and np.isfinite(space.low).all() and np.isfinite(space.high).all()
        if bounded and not (np.all(space.low == -1) and np.all(space.high == 1)):
            env = gymnasium.wrappers.RescaleAction(env, -1.0, 1.0)
        return gymnasium.wrappers.RecordEpisodeStatistics(env)


def env_factory(env_id: str | None, entry_point: str | None = None, atari_frame_stack: int = 4,
                pixels: int | None = None):
    """A picklable zero-argument callable that makes one environment."""
    return EnvFactory(env_id, entry_point, atari_frame_stack, pixels)


def make_vec_env(factory, num_envs: int, seed: int):
    """A synchronous vector env (NEXT_STEP autoreset: the step after an episode ends is a reset step)."""
    env = gymnasium.vector.SyncVectorEnv([factory for _ in range(num_envs)],
                                         autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP)
    env.reset(seed=seed)
    return env
