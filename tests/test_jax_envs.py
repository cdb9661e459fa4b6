"""The jax CartPole against gymnasium's, step by step; the time limit and reset of auto_reset_step."""

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.envs.jax_envs import JaxEnvError, auto_reset_step, make_jax_env


def test_cartpole_matches_gymnasium_step_by_step():
    env = make_jax_env('CartPole-v1')
    step = jax.jit(env.step)
    reference = gymnasium.make('CartPole-v1').unwrapped
    rng = np.random.default_rng(0)
    compared = terminations = 0
    for episode in range(20):
        reference.reset(seed=episode)
        state = jnp.asarray(reference.state, jnp.float32)
        for _ in range(200):
            action = int(rng.integers(2))
            obs, reward, terminated, _, _ = reference.step(action)
            state, jax_obs, jax_reward, jax_terminated = step(state, action)
            np.testing.assert_allclose(jax_obs, obs, rtol=1e-4, atol=1e-5)
            assert float(jax_reward) == reward == 1.0
            assert bool(jax_terminated) == terminated
            compared += 1
            if terminated:
                terminations += 1
                break
            state = jnp.asarray(reference.state, jnp.float32)  # no drift between float32 and float64
    assert terminations == 20 and compared > 200  # random actions drop the pole within 200 steps


def test_cartpole_reset_draws_from_gymnasiums_range():
    env = make_jax_env('CartPole-v1')
    states, obs = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 1000))
    assert obs.shape == (1000, 4) and obs.dtype == jnp.float32
    assert float(jnp.abs(states).max()) <= 0.05 and float(jnp.abs(states).max()) > 0.049
    np.testing.assert_array_equal(states, obs)


def test_time_limit_truncates_and_resets():
    env = make_jax_env('CartPole-v1')
    balanced = jnp.zeros(4, jnp.float32)  # pushing right once from rest does not drop the pole
    key = jax.random.PRNGKey(1)
    state, elapsed, obs, final_obs, reward, terminated, truncated = auto_reset_step(env, balanced, 499, 1, key)
    assert bool(truncated) and not bool(terminated) and int(elapsed) == 0
    np.testing.assert_array_equal(final_obs, env.step(balanced, 1)[1])  # the true next observation, to bootstrap
    np.testing.assert_array_equal(obs, env.reset(key)[1])  # the next step starts from a reset
    state, elapsed, obs, final_obs, *_, truncated = auto_reset_step(env, balanced, 10, 1, key)
    assert not bool(truncated) and int(elapsed) == 11
    np.testing.assert_array_equal(obs, final_obs)
    fallen = jnp.array([0.0, 0.0, 0.3, 0.0], jnp.float32)  # past 12 degrees
    *_, reward, terminated, truncated = auto_reset_step(env, fallen, 499, 0, key)
    assert bool(terminated) and not bool(truncated) and float(reward) == 1.0


def test_unknown_jax_env():
    with pytest.raises(JaxEnvError, match=r"no jax version of environment 'Pong-v5'.*CartPole-v1.*Drop --env_backend"):
        make_jax_env('Pong-v5')
