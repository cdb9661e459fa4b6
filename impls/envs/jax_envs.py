"""Environments written in jax, for the compiled online loop (`train.py --env_backend jax`): acting, the
environment step, the replay write and the updates all run inside one jitted loop, with no Python per
step (the PureJaxRL pattern). Each is a pure-function port of a gymnasium environment with the same
dynamics, checked step by step against gymnasium's own in tests/test_jax_envs.py.

An environment is `reset(key) -> (state, obs)` and `step(state, action) -> (state, obs, reward, terminated)`,
without a time limit; `auto_reset_step` adds gymnasium's TimeLimit (truncation) and resets a finished
episode in the same step, returning the true final observation for the replay buffer.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class JaxEnv(NamedTuple):
    name: str
    observation_shape: tuple
    num_actions: int
    max_episode_steps: int
    reset: Callable[[Any], tuple]  # key -> (state, obs)
    step: Callable[[Any, Any], tuple]  # (state, action) -> (state, obs, reward, terminated)


# CartPole-v1 (gymnasium.envs.classic_control.CartPoleEnv, Euler integration, reward 1 on every step
# including the one that terminates, 500-step time limit).
_GRAVITY, _MASS_CART, _MASS_POLE, _HALF_LENGTH, _FORCE, _DT = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
_TOTAL_MASS = _MASS_CART + _MASS_POLE
_POLE_MASS_LENGTH = _MASS_POLE * _HALF_LENGTH
_X_LIMIT, _THETA_LIMIT = 2.4, 12 * 2 * math.pi / 360


def _cartpole_reset(key):
    state = jax.random.uniform(key, (4,), jnp.float32, -0.05, 0.05)
    return state, state


def _cartpole_step(state, action):
    """state (4,) = (x, x_dot, theta, theta_dot); action 0 (push left) or 1 (push right)."""
    x, x_dot, theta, theta_dot = state
    force = jnp.where(action == 1, _FORCE, -_FORCE)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (force + _POLE_MASS_LENGTH * theta_dot**2 * sin) / _TOTAL_MASS
    theta_acc = (_GRAVITY * sin - cos * temp) / (_HALF_LENGTH * (4.0 / 3.0 - _MASS_POLE * cos**2 / _TOTAL_MASS))
    x_acc = temp - _POLE_MASS_LENGTH * theta_acc * cos / _TOTAL_MASS
    state = jnp.stack([x + _DT * x_dot, x_dot + _DT * x_acc, theta + _DT * theta_dot, theta_dot + _DT * theta_acc])
    terminated = (jnp.abs(state[0]) > _X_LIMIT) | (jnp.abs(state[2]) > _THETA_LIMIT)
    return state, state, jnp.float32(1.0), terminated


JAX_ENVS = {
    'CartPole-v1': JaxEnv('CartPole-v1', (4,), 2, 500, _cartpole_reset, _cartpole_step),
}


class JaxEnvError(ValueError):
    pass


def make_jax_env(name: str) -> JaxEnv:
    if name not in JAX_ENVS:
        raise JaxEnvError(f'no jax version of environment {name!r}; --env_backend jax has {sorted(JAX_ENVS)}. '
                          f'Drop --env_backend jax to run {name!r} through gymnasium.')
    return JAX_ENVS[name]


def auto_reset_step(env: JaxEnv, state, elapsed, action, key):
    """One step of one environment with gymnasium's time limit and an immediate reset.

    Returns (state, elapsed, obs, final_obs, reward, terminated, truncated): `final_obs` is the observation
    the step reached (the transition's next observation, to bootstrap from on truncation); `obs` is the
    one the next step starts from (the reset observation when the episode ended).
    """
    state, final_obs, reward, terminated = env.step(state, action)
    elapsed = elapsed + 1
    truncated = (elapsed >= env.max_episode_steps) & ~terminated
    done = terminated | truncated
    reset_state, reset_obs = env.reset(key)
    state = jnp.where(done, reset_state, state)
    obs = jnp.where(done, reset_obs, final_obs)
    return state, jnp.where(done, 0, elapsed), obs, final_obs, reward, terminated, truncated
