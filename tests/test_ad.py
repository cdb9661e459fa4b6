"""Dark Room, learning histories, Algorithm Distillation and compressed AD: the room's rules, the goal split and its
checks, the key-value caches against full passes, the compression windows, learning on a fixed batch, bad input,
and train.py end to end with resume."""

from __future__ import annotations

import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.agents import ad, cad
from impls.data.datasets import DatasetError
from impls.data.histories import device_histories, load_histories, sample_windows, save_histories
from impls.envs import darkroom
from impls.utils.history_tokens import action_loss, encode_observation, feature_size, state_token, window_tokens


def test_room_rules():
    centre = darkroom.reset()
    goal = jnp.array([4, 5])
    pos, r = darkroom.step(centre, 1, goal)  # up: y + 1
    assert pos.tolist() == [4, 5] and float(r) == 1.0
    pos, r = darkroom.step(pos, 0, goal)  # stay on the goal: rewarded again
    assert float(r) == 1.0
    corner, r = darkroom.step(jnp.array([0, 0]), 3, goal)  # left into the wall: stays
    assert corner.tolist() == [0, 0] and float(r) == 0.0
    assert int(darkroom.cell(jnp.array([2, 7]))) == 2 * 9 + 7
    assert darkroom.optimal_return(4 * 9 + 4) == 20 and darkroom.optimal_return(0) == 21 - 8


def test_split_is_seeded_and_disjoint():
    train, held = darkroom.split_goals(0)
    assert len(train) == 73 and len(held) == 8 and not set(train) & set(held)
    assert sorted([*train, *held]) == list(range(81))
    assert darkroom.split_goals(0)[1].tolist() == held.tolist() and darkroom.split_goals(1)[1].tolist() != held.tolist()


def test_sources_improve_over_their_history():
    goals = np.arange(0, 81, 5)
    for source in ('q_learning', 'noisy_optimal'):
        out = darkroom.make_histories(jax.random.PRNGKey(0), goals, 80, source, eps_decay=0.2)
        returns = darkroom.episode_returns(out['rewards']).mean(0)
        assert out['observations'].shape == (len(goals), 80 * 20) and out['observations'].dtype == np.uint8
        assert returns[:3].mean() < 1.0 < 8.0 < returns[-10:].mean(), (source, returns[:3], returns[-10:])


@pytest.fixture(scope='module')
def histories(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('hist') / 'histories.npz')
    darkroom.write_dataset(path, episodes=12, source='noisy_optimal', histories_per_goal=1, eps_decay=0.5)
    return path


def _rewrite(src, dst, edit):
    with np.load(src) as f:
        files = dict(f)
    meta = json.loads(str(files.pop('meta')))
    train = {k: files[k] for k in ('observations', 'actions', 'rewards', 'task_ids')}
    held = {k: files[f'heldout_{k}'] for k in ('observations', 'actions', 'rewards', 'task_ids')}
    edit(train, held, meta)
    save_histories(dst, train, held, meta)
    return dst


def test_loader_refuses_leaks_nans_and_missing_files(histories, tmp_path):
    train, held, meta = load_histories(histories)
    assert train['observations'].shape == (73, 240) and held['task_ids'].tolist() == meta['heldout_goals']

    def leak(train, held, meta):
        train['task_ids'][0] = meta['heldout_goals'][0]

    with pytest.raises(DatasetError, match='held-out tasks'):
        load_histories(_rewrite(histories, str(tmp_path / 'leak.npz'), leak))

    def nan(train, held, meta):
        train['rewards'][3, 7] = np.nan

    with pytest.raises(DatasetError, match='non-finite.*history 3, step 7'):
        load_histories(_rewrite(histories, str(tmp_path / 'nan.npz'), nan))
    with pytest.raises(DatasetError, match='python -m impls.envs.darkroom'):
        load_histories(str(tmp_path / 'absent.npz'))


def test_windows_carry_the_previous_action_and_reward(histories):
    train, _, _ = load_histories(histories)
    data = device_histories(train, 5)
    b = jax.device_get(sample_windows(data, jax.random.PRNGKey(0), 16, 30))
    assert b['observations'].shape == (16, 30)
    np.testing.assert_array_equal(b['prev_actions'][:, 1:], b['actions'][:, :-1])
    np.testing.assert_array_equal(b['prev_rewards'][:, 1:], b['rewards'][:, :-1])
    assert int(data['prev_actions'][0, 0]) == 5  # 'none' before a history's first step


def test_label_smoothing_by_hand():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    p = jax.nn.softmax(logits[0])
    eps = 0.3
    target = np.array([1 - eps + eps / 3, eps / 3, eps / 3])
    smoothed, plain, acc = action_loss(logits, jnp.array([0]), eps)
    np.testing.assert_allclose(float(smoothed), -(target * np.log(p)).sum(), rtol=1e-5)
    np.testing.assert_allclose(float(plain), -np.log(p[0]), rtol=1e-5)
    assert float(acc) == 1.0


def _ad_agent(histories, tokens='joint', seq_len=10, obs_encoding='index'):
    train, _, _ = load_histories(histories)
    data = device_histories(train, 5)
    c = ad.get_config()
    c.update(dict(num_observations=81, action_dim=5, horizon=20, seq_len=seq_len, tokens=tokens, tf_n_embd=16,
                  tf_n_head=2, tf_n_layer=2, tf_dropout=0.0, num_warmup_steps=0, eval_keep=0.5,
                  obs_encoding=obs_encoding))
    batch = sample_windows(data, jax.random.PRNGKey(0), 3, 3 * seq_len)
    return ad.ADAgent.create(0, {k: v[:, :seq_len] for k, v in batch.items()}, c), batch


def _stream(agent, batch, steps):
    carry = agent.initial_carry(3)
    carry = dict(carry, prev_action=batch['prev_actions'][:, 0], prev_reward=batch['prev_rewards'][:, 0])
    c, out = agent.config, []
    feed, record = jax.jit(lambda a, c, t: a._feed(c, t)), jax.jit(lambda a, c, x, r: a.record(c, x, r))
    for t in range(steps):
        if t:
            carry = record(agent, carry, batch['actions'][:, t - 1], batch['rewards'][:, t - 1])
        token = state_token(c['tokens'], 81, 5, batch['observations'][:, t], carry['prev_action'], carry['prev_reward'],
                            c['obs_encoding'])
        carry, logits = feed(agent, carry, token)
        out.append(logits)
    return jnp.stack(out, 1)


@pytest.mark.parametrize('tokens,obs_encoding', [('joint', 'index'), ('separate', 'index'), ('joint', 'grid')])
def test_ad_cache_matches_full_passes(histories, tokens, obs_encoding):
    """Token by token through the cache = a full pass over the window; past the context, = a full pass over the
    window that starts where the cache re-anchored (keep = 5 of 10 transitions)."""
    agent, batch = _ad_agent(histories, tokens, obs_encoding=obs_encoding)
    streamed = _stream(agent, batch, 17)
    window = {k: v[:, :10] for k, v in batch.items()}
    full_tokens, read = window_tokens(tokens, 81, 5, window, obs_encoding)
    full = agent.window_logits(full_tokens, jnp.ones(full_tokens.shape[:2], bool))[:, read]
    np.testing.assert_allclose(streamed[:, :10], full, atol=1e-4)
    # steps 10..14 re-anchor at step 5 (the last half); 15.. re-anchor at step 10
    later = {k: v[:, 5:15] for k, v in batch.items()}
    later_tokens, read = window_tokens(tokens, 81, 5, later, obs_encoding)
    full = agent.window_logits(later_tokens, jnp.ones(later_tokens.shape[:2], bool))[:, read]
    np.testing.assert_allclose(streamed[:, 10:15], full[:, 5:10], atol=1e-4)


def _cad_config(**kw):
    c = cad.get_config()
    c.update(dict(num_observations=81, action_dim=5, horizon=20, tf_n_embd=16, tf_n_head=2, tf_n_layer=2, n_latent=3,
                  encoder_n_layer=1, max_compression_depth=2, min_compress_length=3, max_compress_length=5,
                  min_uncompressed_length=2, max_uncompressed_length=8, eval_compress_length=5, tf_dropout=0.0,
                  num_warmup_steps=0))
    c.update(kw)
    return c


@pytest.mark.parametrize('memory', ['recurrent', 'window'])
def test_cad_cache_and_compression_match_full_passes(histories, memory):
    train, _, _ = load_histories(histories)
    data = device_histories(train, 5)
    c = _cad_config(eval_memory=memory)
    W = cad.window_length(c)
    batch = sample_windows(data, jax.random.PRNGKey(0), 3, 30)
    agent = cad.CADAgent.create(0, {k: v[:, :W] for k, v in batch.items()}, c)
    carry = agent.initial_carry(3)
    carry = dict(carry, prev_action=batch['prev_actions'][:, 0], prev_reward=batch['prev_rewards'][:, 0])
    feed = jax.jit(lambda a, c, t: a._feed(c, t))
    full_pass = jax.jit(lambda a, c, v: a.network.apply({'params': a.params}, c['latents'],
                                                        jnp.broadcast_to(c['has'], (3,)), c['tokens'], v)[0])
    for t in range(30):
        if t:
            carry = agent.record(carry, batch['actions'][:, t - 1], batch['rewards'][:, t - 1])
        token = state_token('joint', 81, 5, batch['observations'][:, t], carry['prev_action'], carry['prev_reward'])
        carry, logits = feed(agent, carry, token)
        f = int(carry['fill'])
        valid = jnp.broadcast_to(jnp.arange(8) < f, (3, 8))
        full = full_pass(agent, carry, valid)
        np.testing.assert_allclose(logits, full[:, f - 1], atol=1e-4)
    assert int(carry['rounds']) == 5  # compressions at steps 8, 13, 18, 23, 28, of transitions 0-4, ..., 20-24
    tokens = jnp.stack([state_token('joint', 81, 5, batch['observations'][:, t], batch['prev_actions'][:, 0] if t == 0
                                    else batch['actions'][:, t - 1], batch['prev_rewards'][:, 0] if t == 0
                                    else batch['rewards'][:, t - 1]) for t in range(25)], 1)
    compress = jax.jit(lambda a, z, h, seg: a.network.apply({'params': a.params}, z, h, seg, jnp.ones((3, 5), bool),
                                                            method=cad.CompressedHistoryModel.compress))
    z, has = carry['latents'] * 0, jnp.zeros((3,), bool)
    # recurrent: all five segments folded in turn; window: the last max_compression_depth (2), from the start
    for r in (range(5) if memory == 'recurrent' else (3, 4)):
        z, has = compress(agent, z, has, tokens[:, 5 * r:5 * r + 5]), jnp.ones((3,), bool)
    np.testing.assert_allclose(carry['latents'], z, atol=1e-4)
    np.testing.assert_array_equal(carry['tokens'][:, 0], state_token('joint', 81, 5, batch['observations'][:, 25],
                                                                     batch['actions'][:, 24], batch['rewards'][:, 24]))


def test_cad_window_split():
    c = _cad_config()
    W = cad.window_length(c)
    depth, active, seg_idx, seg_valid, raw_idx, raw_valid = jax.device_get(
        cad.split_window(jax.random.PRNGKey(0), 3000, c))
    assert np.bincount(depth, minlength=3).min() > 900  # balanced over depths 0, 1, 2
    for i in range(50):
        u = raw_valid[i].sum()
        assert 2 <= u <= 8 and raw_idx[i, 0] == W - u
        edge = W - u
        for r in reversed(range(2)):
            n = seg_valid[i, r].sum()
            assert bool(active[i, r]) == (n > 0) and (n == 0 or 3 <= n <= 5)
            if n:  # contiguous, ending where the next part starts
                np.testing.assert_array_equal(seg_idx[i, r, :n], np.arange(edge - n, edge))
                edge -= n
        assert active[i].sum() == depth[i]


@pytest.mark.parametrize('name', ['ad', 'cad'])
def test_loss_falls_on_a_fixed_batch(histories, name):
    train, _, _ = load_histories(histories)
    data = device_histories(train, 5)
    if name == 'ad':
        agent, _ = _ad_agent(histories)
        L = 10
    else:
        c = _cad_config()
        L = cad.window_length(c)
        agent = cad.CADAgent.create(0, jax.device_get(sample_windows(data, jax.random.PRNGKey(0), 1, L)), c)
    batch = sample_windows(data, jax.random.PRNGKey(1), 32, L)
    agent, first = agent.update(batch)
    for _ in range(40):
        agent, info = agent.update(batch)
    assert float(info['actor/ce']) < 0.7 * float(first['actor/ce'])
    assert abs(float(info['actor/chance_loss']) - np.log(5)) < 1e-6


def test_grid_observation_encoding_by_hand():
    """Cell x * 9 + y of Dark Room's 9 x 9 grid -> one-hot x next to one-hot y; cells in one row share features."""
    feats = np.asarray(encode_observation(jnp.array([0, 10, 44, 80]), 81, 'grid'))
    assert feats.shape == (4, 18) and (feats.sum(-1) == 2).all()
    for row, (x, y) in zip(feats, [(0, 0), (1, 1), (4, 8), (8, 8)]):
        assert np.flatnonzero(row).tolist() == [x, 9 + y]
    assert feature_size(81, 5, 'grid') == 18 + 6 + 1 + 3 and feature_size(81, 5) == 81 + 6 + 1 + 3
    token = state_token('joint', 81, 5, jnp.array([10]), jnp.array([5]), jnp.array([1.0]), 'grid')
    assert np.flatnonzero(np.asarray(token[0])).tolist() == [1, 10, 18 + 5, 18 + 6, 18 + 7]


def test_config_errors():
    with pytest.raises(ValueError, match='obs_encoding=.pixels.: choose one of index, grid'):
        c = ad.get_config()
        c.obs_encoding = 'pixels'
        ad.ADAgent.check_config(c)
    with pytest.raises(ValueError, match='square grid .* have 80; use --agent.obs_encoding=index'):
        cad.CADAgent.check_config(_cad_config(obs_encoding='grid', num_observations=80))
    with pytest.raises(ValueError, match='does not fit the raw context'):
        cad.CADAgent.check_config(_cad_config(max_uncompressed_length=5, min_uncompressed_length=2))
    with pytest.raises(ValueError, match='min_compress_length'):
        cad.CADAgent.check_config(_cad_config(min_compress_length=6))
    with pytest.raises(ValueError, match="eval_memory='last'.*'recurrent'.*'window'"):
        cad.CADAgent.check_config(_cad_config(eval_memory='last'))
    with pytest.raises(ValueError, match='joint .* or separate'):
        c = ad.get_config()
        c.tokens = 'triples'
        ad.ADAgent.check_config(c)


def _train(tmp_path, histories, *extra):
    from train import main

    return main(['--algorithm', extra[0], '--dataset_path', histories, '--save_dir', str(tmp_path / 'run'),
                 '--no_progress', '--eval_episodes', '3', '--eval_runs', '1', '--log_interval', '4',
                 '--updates_per_dispatch', '2', *extra[1:]])


def test_train_py_end_to_end_with_resume(histories, tmp_path):
    tiny = ['--agent.tf_n_embd=8', '--agent.tf_n_head=2', '--agent.tf_n_layer=1', '--batch_size', '4',
            '--agent.seq_len=20']
    out = _train(tmp_path, histories, 'AD', '--train_steps', '4', *tiny)
    run = out['run_dir']
    assert os.path.exists(os.path.join(run, 'in_context_curves.png'))
    curves = open(os.path.join(run, 'in_context_curves.csv')).read().splitlines()
    assert curves[0] == 'goal,episode,return' and len(curves) == 1 + 8 * 3
    assert np.isfinite(out['result']['evaluation/return_mean'])
    out = _train(tmp_path, histories, 'AD', '--train_steps', '8', *tiny, '--resume', '--eval_episodes', '0')
    assert int(out['agent'].step) == 8
    steps = [line.split(',')[0] for line in open(os.path.join(run, 'train.csv')).read().splitlines()[1:]]
    assert [float(s) for s in steps] == [4.0, 8.0]


def test_bad_input_messages(histories, tmp_path, capsys):
    from train import main

    with pytest.raises(SystemExit):
        main(['--algorithm', 'ad', '--dataset_path', str(tmp_path / 'none.npz'), '--save_dir', str(tmp_path / 'r'),
              '--no_progress'])
    assert 'python -m impls.envs.darkroom' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['--algorithm', 'ad', '--dataset_path', histories, '--agent.seq_len=400', '--save_dir',
              str(tmp_path / 'r2'), '--no_progress'])
    assert 'histories hold 240' in capsys.readouterr().err

    def edited(train, held, meta):  # a training goal moved into the held-out set (its histories dropped)
        moved, back = meta['train_goals'][0], meta['heldout_goals'][-1]
        keep = train['task_ids'] != moved
        for k in train:
            train[k] = train[k][keep]
        meta['heldout_goals'] = sorted(meta['heldout_goals'][:-1] + [moved])
        meta['train_goals'] = sorted(meta['train_goals'][1:] + [back])

    bad = _rewrite(histories, str(tmp_path / 'edited.npz'), edited)
    with pytest.raises(SystemExit):
        main(['--algorithm', 'ad', '--dataset_path', bad, '--save_dir', str(tmp_path / 'r3'), '--no_progress'])
    assert 'not the split of its seed' in capsys.readouterr().err
    with pytest.warns(UserWarning, match='less than one 20-step episode'):
        main(['--algorithm', 'ad', '--dataset_path', histories, '--agent.seq_len=10', '--train_steps', '2',
              '--agent.tf_n_embd=8', '--agent.tf_n_head=2', '--agent.tf_n_layer=1', '--batch_size', '2',
              '--eval_episodes', '0', '--save_dir', str(tmp_path / 'r4'), '--no_progress'])
    # compressed AD: a raw window of 10 whose compressed segments reach back past an episode (2 x 10 + 10) is fine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        main(['--algorithm', 'cad', '--dataset_path', histories, '--agent.max_uncompressed_length=10',
              '--agent.min_uncompressed_length=5', '--agent.min_compress_length=5', '--agent.max_compress_length=10',
              '--agent.eval_compress_length=5', '--agent.max_compression_depth=2', '--train_steps', '2',
              '--agent.tf_n_embd=8', '--agent.tf_n_head=2', '--agent.tf_n_layer=1', '--agent.encoder_n_layer=1',
              '--agent.n_latent=2', '--batch_size', '2', '--eval_episodes', '0', '--save_dir', str(tmp_path / 'r5'),
              '--no_progress'])
    assert not [w for w in caught if 'less than one' in str(w.message)]
