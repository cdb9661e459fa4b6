"""Replay (n-step returns by hand, prioritized sampling, dropped reset steps) and DQN targets by hand."""

import jax
import numpy as np
import pytest

from impls.agents import get_agent
from impls.data.episodes import EpisodeStore, SumTree


def filled_buffer(n_step=3, rewards=(1, 2, 3, 4, 5, 6), terminated_at=None, done_at=None, **kw):
    buf = EpisodeStore(100, 1, dict(observations=np.zeros(1, np.float32), actions=np.int32(0)), n_step, 0.5, **kw)
    for t, r in enumerate(rewards):
        buf.add(dict(observations=np.array([[t]], np.float32), actions=np.array([t % 2]), rewards=np.array([r]),
                     next_observations=np.array([[t + 1]], np.float32), terminated=np.array([t == terminated_at]),
                     done=np.array([t in (terminated_at, done_at)])))
    return buf


def test_n_step_returns_by_hand():
    buf = filled_buffer()
    batch = buf._n_step(np.array([0, 2]), np.array([0, 0]))
    # From t=0: 1 + 0.5 * 2 + 0.25 * 3 = 2.75, bootstrap 0.5^3 from s_3.
    np.testing.assert_allclose(batch['returns'], [2.75, 3 + 0.5 * 4 + 0.25 * 5])
    np.testing.assert_allclose(batch['bootstrap_discounts'], [0.125, 0.125])
    np.testing.assert_array_equal(batch['next_observations'][:, 0], [3, 5])


def test_n_step_stops_at_termination_and_at_truncation():
    term = filled_buffer(terminated_at=1)._n_step(np.array([0]), np.array([0]))
    assert term['returns'][0] == 1 + 0.5 * 2 and term['bootstrap_discounts'][0] == 0.0  # no bootstrap after termination
    trunc = filled_buffer(done_at=1)._n_step(np.array([0]), np.array([0]))
    assert trunc['returns'][0] == 1 + 0.5 * 2 and trunc['bootstrap_discounts'][0] == 0.25  # bootstrap through truncation
    assert trunc['next_observations'][0, 0] == 2


def test_reset_steps_are_never_sampled_and_newest_rows_wait_for_their_future():
    buf = EpisodeStore(100, 2, dict(observations=np.zeros(1, np.float32), actions=np.int32(0)), 2, 0.9)
    for t in range(6):
        valid = np.array([True, t != 3])  # env 1's step 3 is a reset step
        buf.add(dict(observations=np.full((2, 1), t, np.float32), actions=np.zeros(2, np.int32), rewards=np.ones(2),
                     next_observations=np.full((2, 1), t + 1, np.float32), terminated=np.zeros(2, bool),
                     done=np.array([False, t == 2])), valid=valid)
    batch = buf.sample_transitions(np.random.default_rng(0), 2000)
    rows, envs = batch['indices'] // 2, batch['indices'] % 2
    assert not np.any((rows == 3) & (envs == 1))
    assert not np.any(rows == 5)  # the newest row has no 2-step future yet


def test_sum_tree_sampling_is_proportional():
    tree = SumTree(5)
    tree.set(np.arange(5), np.array([1.0, 0.0, 3.0, 0.0, 6.0]))
    assert tree.total == 10.0
    leaves = tree.find(np.random.default_rng(0).uniform(0, 10, 100_000))
    np.testing.assert_allclose(np.bincount(leaves, minlength=5) / 1e5, [0.1, 0, 0.3, 0, 0.6], atol=0.01)
    tree.set(np.array([2]), np.array([0.0]))
    assert tree.total == 7.0


def test_prioritized_replay_weights_and_updates():
    buf = filled_buffer(n_step=1, rewards=[1] * 8, prioritized=True, alpha=1.0)
    buf.update_priorities(np.arange(8), np.array([1, 1, 1, 1, 1, 1, 1, 9.0]))
    batch = buf.sample_transitions(np.random.default_rng(0), 4000, beta=1.0)
    share = np.mean(batch['indices'] == 7)
    assert abs(share - 9 / 16) < 0.01 and batch['weights'].max() == 1.0  # priorities 7 x 1 and 9
    # Importance weights undo the sampling bias: w ~ 1 / p.
    w7 = batch['weights'][batch['indices'] == 7][0]
    w0 = batch['weights'][batch['indices'] == 0][0]
    assert w7 / w0 == pytest.approx(1 / 9, rel=1e-4)


def _dqn(**overrides):
    spec = get_agent('dqn')
    config = spec.get_config()
    config.update(dict(hidden_dims=(8,), action_dim=2, **overrides))
    return spec.agent_cls.create(0, dict(observations=np.zeros((1, 3), np.float32)), config)


def _batch(rng, b=16):
    return dict(observations=rng.normal(size=(b, 3)).astype(np.float32), actions=rng.integers(0, 2, b).astype(np.int32),
                returns=rng.normal(size=b).astype(np.float32), bootstrap_discounts=np.full(b, 0.9, np.float32),
                next_observations=rng.normal(size=(b, 3)).astype(np.float32), weights=np.ones(b, np.float32))


@pytest.mark.parametrize('double', [False, True])
def test_dqn_target_by_hand(double):
    agent = _dqn(double=double)
    agent = agent.replace(target_params=jax.tree.map(lambda p: p * 0.5, agent.params))  # a different target net
    batch = _batch(np.random.default_rng(0))
    _, (info, td) = agent.loss(agent.params, batch)
    q_next_target = np.asarray(agent.q_values(batch['next_observations'], agent.target_params))
    chooser = np.asarray(agent.q_values(batch['next_observations'])) if double else q_next_target
    target = batch['returns'] + 0.9 * q_next_target[np.arange(16), chooser.argmax(1)]
    q = np.asarray(agent.q_values(batch['observations']))[np.arange(16), batch['actions']]
    np.testing.assert_allclose(td, q - target, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info['critic/loss'], np.mean(0.5 * (q - target) ** 2), rtol=1e-5)


def test_target_clamp_and_huber():
    agent = _dqn(target_clamp=(-0.1, 0.1), loss='huber', huber_delta=0.5)
    batch = _batch(np.random.default_rng(1))
    batch['returns'] *= 100
    _, (info, td) = agent.loss(agent.params, batch)
    assert info['critic/target_max'] == pytest.approx(0.1) and info['critic/target_min'] == pytest.approx(-0.1)


def test_soft_and_hard_target_updates_and_gradient_accumulation():
    batch = _batch(np.random.default_rng(2))
    soft = _dqn(tau=0.25, hard_update_every=0)
    new, info = soft.update(batch)
    expected = jax.tree.map(lambda p, t: 0.25 * p + 0.75 * t, new.params, soft.target_params)
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(new.target_params)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    hard = _dqn(tau=0.0, hard_update_every=2)
    one, _ = hard.update(batch)
    two, _ = one.update(batch)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(one.target_params), jax.tree.leaves(hard.params)))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(two.target_params), jax.tree.leaves(two.params)))
    accum = _dqn(grad_accum=3, tau=0.5, hard_update_every=0)
    a1, _ = accum.update(batch)
    a2, _ = a1.update(batch)
    assert int(a2.step) == 0 and all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a2.params), jax.tree.leaves(accum.params)))
    a3, _ = a2.update(batch)
    assert int(a3.step) == 1 and not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a3.params), jax.tree.leaves(accum.params)))


def test_grad_clipping_metrics():
    agent = _dqn(max_grad_norm=1e-3)
    batch = _batch(np.random.default_rng(3))
    _, info = agent.update(batch)
    assert float(info['grad/clipped_fraction']) == 1.0 and float(info['grad/norm_clipped']) == pytest.approx(1e-3)
    assert float(info['grad/norm']) > 1e-3


def test_epsilon_greedy():
    agent = _dqn()
    obs = np.random.default_rng(4).normal(size=(2000, 3)).astype(np.float32)
    greedy = np.asarray(agent.q_values(obs)).argmax(1)
    np.testing.assert_array_equal(agent.act((), obs, None, jax.random.PRNGKey(0), 'eval')[0], greedy)
    # epsilon 1 (start of the schedule): random actions; epsilon_end after the decay; greedy in 'eval' mode.
    random = np.asarray(agent.act((), obs, None, jax.random.PRNGKey(0), 'explore', progress=(0, 100))[0])
    assert 0.4 < np.mean(random == greedy) < 0.6
    late = np.asarray(agent.act((), obs, None, jax.random.PRNGKey(0), 'explore', progress=(100, 100))[0])
    assert np.mean(late != greedy) == pytest.approx(agent.config['epsilon_end'] / 2, abs=0.02)
    host = agent.explore_on_host(lambda o: np.asarray(agent.q_values(o)).argmax(1), obs, np.random.default_rng(0),
                                 (0, 100))
    assert 0.4 < np.mean(host == greedy) < 0.6 and host.dtype == np.int32


def test_fast_agent_matches_the_agent_and_packs_its_metrics():
    from impls.runs.updates import FastAgent

    agent, rng = _dqn(), np.random.default_rng(0)
    batches = [_batch(rng) for _ in range(3)]
    fast = FastAgent(agent)
    for batch in batches:
        agent, info = agent.update(batch)
        vector, td = fast.update(batch)
    for x, y in zip(jax.tree.leaves(agent), jax.tree.leaves(fast.agent)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert 'td_errors' not in fast.metric_names and 'critic/q_mean' in fast.metric_names
    np.testing.assert_allclose(vector[fast.metric_names.index('critic/q_mean')], info['critic/q_mean'], rtol=1e-5)
    np.testing.assert_allclose(td, info['td_errors'], rtol=1e-5, atol=1e-6)
    obs = batches[0]['observations']
    np.testing.assert_array_equal(fast.greedy(obs), np.asarray(agent.q_values(obs)).argmax(-1))
