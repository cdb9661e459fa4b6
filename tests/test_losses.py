"""Loss values on hand-checkable inputs, and losses that fall on a fixed batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.agents import get_agent
from impls.utils.distributions import Categorical, DiagGaussian
from impls.utils.losses import binary_nce_loss, expectile_loss
from tests.conftest import tiny_config


def test_expectile_loss_by_hand():
    diff = jnp.array([2.0, -2.0, 0.5])
    # weights 0.9 for diff >= 0, 0.1 below: [0.9 * 4, 0.1 * 4, 0.9 * 0.25]
    np.testing.assert_allclose(expectile_loss(diff, 0.9), [3.6, 0.4, 0.225], rtol=1e-6)


def test_binary_nce_by_hand():
    # One ensemble member, d = 1, B = 2: logits = phi_i * psi_j / sqrt(1).
    phi = jnp.array([[[1.0], [2.0]]])
    psi = jnp.array([[[3.0], [-1.0]]])
    logits = np.array([[3.0, -1.0], [6.0, -2.0]])
    labels = np.eye(2)
    bce = -(labels * np.log(1 / (1 + np.exp(-logits))) + (1 - labels) * np.log(1 - 1 / (1 + np.exp(-logits))))
    loss, info = binary_nce_loss(phi, psi)
    np.testing.assert_allclose(loss, bce.mean(), rtol=1e-5)
    np.testing.assert_allclose(info['logits_pos'], (3.0 - 2.0) / 2)
    np.testing.assert_allclose(info['logits_neg'], (-1.0 + 6.0) / 2)
    np.testing.assert_allclose(info['categorical_accuracy'], 0.5)  # row 0 picks column 0; row 1 picks column 0


def test_distributions_by_hand():
    g = DiagGaussian(loc=jnp.array([[0.0, 1.0]]), scale=jnp.array([[1.0, 2.0]]))
    x = jnp.array([[1.0, 1.0]])
    expected = -0.5 * 1.0 - 0.5 * np.log(2 * np.pi) + (-np.log(2.0) - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(g.log_prob(x), [expected], rtol=1e-6)
    c = Categorical(logits=jnp.log(jnp.array([[0.2, 0.3, 0.5]])))
    np.testing.assert_allclose(c.log_prob(jnp.array([2])), [np.log(0.5)], rtol=1e-6)
    np.testing.assert_allclose(c.entropy(), [-(0.2 * np.log(0.2) + 0.3 * np.log(0.3) + 0.5 * np.log(0.5))], rtol=1e-6)


def _batch(rng, b=8, obs_dim=3, discrete=False):
    obs = rng.normal(size=(b, obs_dim)).astype(np.float32)
    actions = rng.integers(0, 3, size=b).astype(np.int32) if discrete else rng.uniform(-1, 1, (b, 2)).astype(np.float32)
    return dict(
        observations=obs,
        next_observations=obs + 0.1,
        actions=actions,
        value_goals=rng.normal(size=(b, obs_dim)).astype(np.float32),
        actor_goals=rng.normal(size=(b, obs_dim)).astype(np.float32),
        rewards=-np.ones(b, np.float32),
        masks=np.ones(b, np.float32),
    )


def _create(name, discrete=False, **overrides):
    spec = get_agent(name)
    config = tiny_config(spec, discrete=discrete, **overrides)
    batch = _batch(np.random.default_rng(0), discrete=discrete)
    with config.unlocked():
        config.action_dim = 3 if discrete else 2
    agent = spec.agent_cls.create(0, batch, config)
    return agent, batch


def test_gciql_critic_target_by_hand():
    agent, batch = _create('gciql')
    batch['rewards'] = np.array([0, -1, -1, -1, -1, -1, -1, -1], np.float32)
    batch['masks'] = np.array([0, 1, 1, 1, 1, 1, 1, 1], np.float32)
    _, info = agent.total_loss(batch, agent.network.params)
    next_v = agent.network.select('value')(batch['next_observations'], batch['value_goals'])
    target = batch['rewards'] + 0.99 * batch['masks'] * np.asarray(next_v)
    q = agent.network.select('critic')(batch['observations'], batch['value_goals'], batch['actions'])
    np.testing.assert_allclose(info['critic/loss'], np.mean(np.sum((np.asarray(q) - target) ** 2, axis=0)), rtol=1e-5)
    np.testing.assert_allclose(info['critic/target_mean'], target.mean(), rtol=1e-5)


def test_gciql_target_network_moves_by_tau():
    agent, batch = _create('gciql', tau=0.25)
    new, _ = agent.update(batch)
    p = new.network.params
    expected = jax.tree.map(lambda q, t: 0.25 * q + 0.75 * t, p['modules_critic'], agent.network.params['modules_target_critic'])
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(p['modules_target_critic'])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_ddpgbc_actor_terms_by_hand():
    agent, batch = _create('crl', alpha=0.5)
    _, info = agent.total_loss(batch, agent.network.params)
    dist = agent.network.select('actor')(batch['observations'], batch['actor_goals'])
    log_prob = np.asarray(dist.log_prob(batch['actions']))
    np.testing.assert_allclose(info['actor/bc_loss'], -0.5 * log_prob.mean(), rtol=1e-5)
    q = np.asarray(agent.critic_values(batch['observations'], batch['actor_goals'], jnp.clip(dist.mode(), -1, 1)))
    np.testing.assert_allclose(info['actor/q_loss'], -q.mean() / (np.abs(q).mean() + 1e-6), rtol=1e-5)
    np.testing.assert_allclose(info['actor/q_mean'], q.mean(), rtol=1e-5)


@pytest.mark.parametrize('name', ['crl', 'gciql'])
@pytest.mark.parametrize('discrete, actor_loss', [(False, 'ddpgbc'), (True, 'ddpgbc'), (False, 'awr')])
def test_loss_decreases_on_a_fixed_batch(name, discrete, actor_loss):
    agent, batch = _create(name, discrete=discrete, actor_loss=actor_loss, lr=3e-3)
    key = 'critic/loss'
    initial_actor = agent.network.params['modules_actor']
    _, first = agent.total_loss(batch, agent.network.params)
    for _ in range(60):
        agent, info = agent.update(batch)
    _, last = agent.total_loss(batch, agent.network.params)
    assert last[key] < 0.7 * first[key], (first[key], last[key])
    if actor_loss == 'awr':  # a weighted likelihood: the data's actions become more likely
        assert last['actor/bc_log_prob'] > first['actor/bc_log_prob']
    else:  # DDPG+BC: against the final critic, the trained actor beats the initial one
        params = dict(agent.network.params, modules_actor=initial_actor)
        _, untrained = agent.total_loss(batch, params)
        assert last['actor/loss'] < untrained['actor/loss']
    assert np.isfinite(info['grad/norm'])
