"""Dreamer: the return, two-hot and KL pieces against hand computations, the optimiser's clipping, the world model
learning a fixed batch, and the agent through train.py (run, resume, refusals)."""

from __future__ import annotations

import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from impls.agents import dreamer
from impls.data.episodes import EpisodeStore
from impls.utils.optim import clip_by_agc
from impls.utils.returns import lambda_return, symexp, symexp_bins, symlog, twohot, twohot_loss, twohot_mean


def test_lambda_return_by_hand():
    """R_t = r_{t+1} + g c_{t+1} ((1 - lam) V_{t+1} + lam R_{t+1}), R_{T-1} = V_{T-1}: bootstraps from V(s_{t+1})."""
    r = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
    c = np.array([[1.0, 1.0, 0.0, 1.0]], np.float32)  # state 2 is terminal
    v = np.array([[10.0, 20.0, 30.0, 40.0]], np.float32)
    g, lam = 0.9, 0.5
    R2 = r[0, 3] + g * c[0, 3] * ((1 - lam) * v[0, 3] + lam * v[0, 3])  # = 3 + 0.9 * 40
    R1 = r[0, 2] + g * c[0, 2] * ((1 - lam) * v[0, 2] + lam * R2)  # terminal: = 2
    R0 = r[0, 1] + g * c[0, 1] * ((1 - lam) * v[0, 1] + lam * R1)  # = 1 + 0.9 (10 + 1)
    got = np.asarray(lambda_return(r, c, v, v, g, lam))
    np.testing.assert_allclose(got, [[R0, R1, R2]], rtol=1e-6)
    assert R1 == 2.0 and abs(R0 - (1 + 0.9 * 11)) < 1e-6
    # An episode end at state 1 (last): R_0 bootstraps from V_1 alone, R_1's own value is never used downstream.
    last = np.array([[0, 1, 0, 0]], np.float32)
    got = np.asarray(lambda_return(r, np.ones_like(c), v, v, g, lam, last=last))
    assert abs(got[0, 0] - (1 + 0.9 * 20)) < 1e-5


def test_twohot_round_trip_and_zero_at_init():
    bins = symexp_bins(255)
    np.testing.assert_array_equal(np.asarray(bins), -np.asarray(bins)[::-1])  # exactly symmetric
    y = jnp.array([0.0, 1.0, -3.7, 250.0, 1e4])
    weights = twohot(y, bins)
    np.testing.assert_allclose(np.asarray(weights.sum(-1)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(weights @ bins), np.asarray(y), rtol=1e-5, atol=1e-5)
    logits = jnp.log(weights + 1e-12)  # the target itself as the prediction
    np.testing.assert_allclose(np.asarray(twohot_mean(logits, bins)), np.asarray(y), rtol=1e-4, atol=1e-4)
    # Uniform probabilities (zero-initialised heads) predict exactly 0, also under jit.
    assert float(jax.jit(lambda x: twohot_mean(x, bins).max())(jnp.zeros((4, 255)))) == 0.0
    assert float(twohot_loss(logits[1], y[1], bins)) < float(twohot_loss(jnp.zeros(255), y[1], bins))
    np.testing.assert_allclose(np.asarray(symexp(symlog(y))), np.asarray(y), rtol=1e-5)


def test_free_bits_modes():
    """'clip' (DreamerV3): max(kl, free), no gradient below the floor; 'straight_through': same value, KL's gradient."""
    for kl, free in ((0.3, 1.0), (2.0, 1.0)):
        clip_value, clip_grad = jax.value_and_grad(lambda k: dreamer.free_bits(k, free, 'clip'))(kl)
        st_value, st_grad = jax.value_and_grad(lambda k: dreamer.free_bits(k, free, 'straight_through'))(kl)
        assert float(clip_value) == float(st_value) == max(kl, free)
        assert float(st_grad) == 1.0
        assert float(clip_grad) == (0.0 if kl < free else 1.0)


def test_agc_clips_each_tensor_to_its_parameter_norm():
    params = {'a': jnp.full((4,), 1.0), 'b': jnp.full((4,), 1e-6)}  # norms 2 and ~0 (floored at 1e-3)
    grads = {'a': jnp.full((4,), 10.0), 'b': jnp.full((4,), 1e-5)}
    out, _ = clip_by_agc(0.3).update(grads, (), params)
    assert abs(float(jnp.linalg.norm(out['a'])) - 0.3 * 2.0) < 1e-5  # clipped to 0.3 x |a|
    assert abs(float(jnp.linalg.norm(out['b'])) - 2e-5) < 1e-9  # 2e-5 < 0.3 x 1e-3: untouched


TINY = dict(deter=32, hidden=16, units=16, stoch=4, classes=4, batch_size=4, sequence_length=8, imag_horizon=5,
            bins=31, mlp_layers=1, ac_layers=1, lr=1e-3, warmup_steps=0)


def _cartpole_like_store(n=200, seed=0):
    """Deterministic episodes of a 4-d state with reward 1, terminated every 20 steps."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore(1000, 1, dict(observations=np.zeros(4, np.float32), actions=np.int32(0)))
    state = rng.normal(size=4).astype(np.float32)
    for t in range(n):
        action = rng.integers(0, 2, 1).astype(np.int32)
        nxt = (0.9 * state + (action[0] - 0.5)).astype(np.float32)
        end = np.array([t % 20 == 19])
        store.add(dict(observations=state[None], actions=action, rewards=np.ones(1, np.float32),
                       next_observations=nxt[None], terminated=end, done=end))
        state = rng.normal(size=4).astype(np.float32) if end[0] else nxt
    return store


def _agent(**overrides):
    config = dreamer.get_config()
    config.update({**TINY, 'action_dim': 2, **overrides})
    return dreamer.DreamerAgent.create(0, dict(observations=np.zeros((1, 4), np.float32),
                                               actions=np.zeros((1,), np.int32)), config)


def test_world_model_learns_a_fixed_batch():
    store = _cartpole_like_store()
    batch = store.sample_sequences(np.random.default_rng(0), 4, 8)
    assert batch['next_observations'].shape == (4, 8, 4) and batch['age'].shape == (4,)
    agent = _agent()
    first = None
    for _ in range(60):
        agent, info = agent.update(batch)
        first = first if first is not None else {k: float(info[k]) for k in info}
    for key in ('world_model/rec_loss', 'world_model/rew_loss', 'world_model/con_loss'):
        assert float(info[key]) < 0.5 * first[key], key
    assert np.isfinite(float(info['actor/loss'])) and np.isfinite(float(info['critic/loss']))


def test_terminal_continue_and_unexplained_variance_metrics():
    """cont_at_terminal: the continue head's probability averaged over the terminated steps only (by hand);
    rec_unexplained_worst: 1 - R^2 of the worst observation dimension, ~1 for an untrained decoder, falling as it
    learns."""
    store = _cartpole_like_store()
    batch = store.sample_sequences(np.random.default_rng(0), 4, 8)
    assert batch['terminated'].any()
    batch = jax.tree.map(jnp.asarray, batch)
    agent = _agent()
    p = agent.params['wm']
    states = agent.observe(p, batch, jax.random.PRNGKey(0))
    _, info = agent.world_model_loss(p, batch, states)
    prob = jax.nn.sigmoid(agent._call(p, 'cont', None, agent.features(states['deter'], states['stoch']))[..., 0])
    expected = float(np.asarray(prob)[np.asarray(batch['terminated'])].mean())
    assert abs(float(info['world_model/cont_at_terminal']) - expected) < 1e-6
    assert abs(float(info['world_model/terminal_fraction']) - float(batch['terminated'].mean())) < 1e-6
    untrained = float(info['world_model/rec_unexplained_worst'])
    assert untrained > 0.5
    no_end = dict(batch, terminated=jnp.zeros_like(batch['terminated']))
    _, info = agent.world_model_loss(p, no_end, agent.observe(p, no_end, jax.random.PRNGKey(0)))
    assert float(info['world_model/cont_at_terminal']) == 0.0
    for _ in range(40):
        agent, info = agent.update(batch)
    assert float(info['world_model/rec_unexplained_worst']) < 0.5 * untrained


def test_terminal_weight_of_the_continue_loss_by_hand():
    """con_terminal_weight W multiplies the continue loss of terminated steps by W (the others by 1)."""
    store = _cartpole_like_store()
    batch = jax.tree.map(jnp.asarray, store.sample_sequences(np.random.default_rng(0), 4, 8))
    agent = _agent()
    p = agent.params['wm']
    states = agent.observe(p, batch, jax.random.PRNGKey(0))
    logit = agent._call(p, 'cont', None, agent.features(states['deter'], states['stoch']))[..., 0]
    terminal = np.asarray(batch['terminated'], np.float32)
    bce = np.asarray(optax.sigmoid_binary_cross_entropy(logit, (1 - terminal) * (1 - 1 / 333)))
    for weight in (1.0, 20.0):
        weighted = agent.replace(config=flax.core.FrozenDict({**agent.config, 'con_terminal_weight': weight}))
        _, info = weighted.world_model_loss(p, batch, states)
        want = (bce * np.where(terminal > 0, weight, 1.0)).mean()
        np.testing.assert_allclose(float(info['world_model/con_loss']), want, rtol=1e-5)


def test_prior_gradient_is_zero_below_the_floor_only_in_clip_mode():
    store = _cartpole_like_store()
    batch = store.sample_sequences(np.random.default_rng(0), 4, 8)
    _, clipped = _agent(free_nats=1e3).update(batch)  # every KL below a huge floor
    _, straight = _agent(free_nats=1e3, free_bits='straight_through').update(batch)
    assert float(clipped['world_model/kl_below_floor']) == 1.0
    assert float(clipped['grad/prior_norm']) == 0.0 and float(straight['grad/prior_norm']) > 0.0


def test_imagined_continuation_is_the_probability_or_its_mode():
    disc = 1.0 - 1.0 / 333
    prob = jnp.array([0.1, 0.6, 0.51 * disc, 0.49 * disc, 0.99])
    np.testing.assert_allclose(dreamer.imagined_continuation(prob, 333, 'prob'), prob)
    np.testing.assert_allclose(dreamer.imagined_continuation(prob, 333, 'mode'), [0.0, disc, disc, 0.0, disc])
    with pytest.raises(ValueError, match='imag_cont'):
        dreamer.DreamerAgent.check_config({**_agent().config, 'imag_cont': 'soft'})


def test_imagination_window_ends_at_the_last_failure_that_fits():
    term = np.zeros((4, 10), bool)
    term[0, 7] = True  # fits: window 4..7
    term[1, [3, 8]] = True  # the last one: 5..8
    term[2, 1] = True  # too early for a 4-step window: the default last 4 steps
    key = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(dreamer.imagination_window(jnp.asarray(term), 4, 0.0, None), [6, 6, 6, 6])
    np.testing.assert_array_equal(dreamer.imagination_window(jnp.asarray(term), 4, 1.0, key), [4, 5, 6, 6])
    half = dreamer.imagination_window(jnp.asarray(np.tile(term[:1], (1000, 1))), 4, 0.5, key)
    assert 0.45 < float((half == 4).mean()) < 0.55 and set(np.unique(half).tolist()) == {4, 6}
    with pytest.raises(ValueError, match='imag_ends'):
        dreamer.DreamerAgent.check_config({**_agent().config, 'imag_ends': 1.5})
    batch = _cartpole_like_store().sample_sequences(np.random.default_rng(0), 4, 8)  # a failure every 20 steps
    has_end = batch['terminated'][:, 3:].any(1).mean()
    _, info = _agent(imag_ends=1.0, imag_last=4).update(batch)
    assert np.isfinite(float(info['actor/loss'])) and float(info['imagination/end_windows']) <= has_end


def test_acting_carries_the_state_and_resets_from_zeros():
    agent = _agent()
    carry = agent.initial_carry(3)
    obs = np.ones((3, 4), np.float32)
    act = jax.jit(lambda c, o, k, m: agent.act(c, o, None, k, m), static_argnums=3)
    a1, c1 = act(carry, obs, jax.random.PRNGKey(0), 'eval')
    a2, c2 = act(c1, obs, jax.random.PRNGKey(0), 'eval')
    assert a1.shape == (3,) and a1.dtype == jnp.int32
    assert not np.allclose(np.asarray(c1['deter']), np.asarray(c2['deter']))  # the state moves on
    a3, c3 = act(agent.initial_carry(3), obs, jax.random.PRNGKey(0), 'eval')
    np.testing.assert_array_equal(np.asarray(c3['deter']), np.asarray(c1['deter']))


def test_sequences_within_episodes_and_the_refusal():
    store = _cartpole_like_store(n=100)
    batch = store.sample_sequences(np.random.default_rng(0), 64, 10, cross_episodes=False)
    assert not batch['is_first'][:, 1:].any()  # no window crosses an episode start
    with pytest.raises(ValueError, match='longer than every episode held'):
        store.sample_sequences(np.random.default_rng(0), 4, 21, cross_episodes=False)


def _train(tmp_path, *extra):
    import train

    save = str(tmp_path / 'run')
    return train.main(['--preset', 'dreamer_debug', '--save_dir', save, '--no_progress', '--wandb_mode', 'disabled',
                       *extra]), save


def test_train_runs_and_resumes(tmp_path):
    summary, save = _train(tmp_path, '--train_steps', '150', '--ckpt_every', '50', '--eval_episodes', '1')
    with open(os.path.join(save, 'config.json')) as f:
        record = json.load(f)
    assert record['algorithm'] == 'dreamer' and record['flags']['training_steps_per_sample'] == 1.0
    rows = open(os.path.join(save, 'train.csv')).read().splitlines()
    header = rows[0].split(',')
    assert 'training/world_model/kl_dyn' in header and 'charts/replay_ratio' in header
    assert abs(float(rows[-1].split(',')[header.index('charts/replay_ratio')]) - 32.0) < 1e-6
    import train

    train.main(['--resume', '--save_dir', save, '--train_steps', '200', '--no_progress', '--wandb_mode', 'disabled',
                '--eval_episodes', '1'])
    lines = open(os.path.join(save, 'train.csv')).read().splitlines()[1:]
    steps = [int(r.split(',')[header.index('step')]) for r in lines]
    assert steps[-1] == 200


@pytest.mark.parametrize('extra, message', [
    (['--pixels', '64'], 'image observations'),
    (['--train_ratio', '0.001'], 'would never update'),
    (['--agent.cross_episodes=false', '--agent.sequence_length=40', '--train_steps', '150'],
     'longer than every episode held'),
])
def test_refusals(tmp_path, extra, message, capsys):
    if '--pixels' in extra:
        pytest.importorskip('pygame')
    with pytest.raises(SystemExit):
        _train(tmp_path, '--agent.encoder=mlp', *extra)
    assert message in capsys.readouterr().err


def test_compiled_loop_trains_dreamer_and_resumes(tmp_path):
    """--env_backend jax: acting with the RSSM carry, device sequence replay and updates in one jitted loop."""
    summary, save = _train(tmp_path, '--env_backend', 'jax', '--train_steps', '150', '--ckpt_every', '50',
                           '--eval_episodes', '1')
    header = open(os.path.join(save, 'train.csv')).read().splitlines()[0].split(',')
    last = open(os.path.join(save, 'train.csv')).read().splitlines()[-1].split(',')
    assert 'training/world_model/loss' in header and np.isfinite(float(last[header.index('training/world_model/loss')]))
    assert abs(float(last[header.index('charts/replay_ratio')]) - 32.0) < 1e-6  # one 4 x 8 update per step
    import train

    train.main(['--resume', '--save_dir', save, '--train_steps', '200', '--no_progress', '--wandb_mode', 'disabled',
                '--eval_episodes', '1'])
    assert open(os.path.join(save, 'train.csv')).read().splitlines()[-1].split(',')[header.index('step')] == '200'
