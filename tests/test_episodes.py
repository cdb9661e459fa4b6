"""The episode store on hand-built streams: transitions (their n-step targets and prioritized replay are also
tested in test_replay_dqn.py), sequences and hindsight pairs checked row by row.

Two envs; an observation is [counter, episode, step in episode], where the counter counts env e's real steps
from 1000 e, the episode is 100 e + k, and next_observations is [counter + 1, episode, step + 1]. Env 0 plays
episodes of 3 steps, env 1 of 4; even episodes terminate, odd ones are truncated. With `online`, each episode end
is followed by gymnasium's reset step (valid=False, observation -1), as the online loop writes it.
"""

import numpy as np
import pytest

from impls.data.episodes import EpisodeStore

EXAMPLE = dict(observations=np.zeros(3, np.float32), actions=np.int32(0))


def steps(rows, online, lengths=(3, 4)):
    """`rows` add() arguments (transition, valid) for two envs."""
    counter, episode, t, after_end = [0, 0], [0, 0], [0, 0], [False, False]
    for _ in range(rows):
        obs, nxt = np.full((2, 3), -1, np.float32), np.full((2, 3), -1, np.float32)
        actions, rewards = np.zeros(2, np.int32), np.zeros(2, np.float32)
        terminated, done, valid = np.zeros(2, bool), np.zeros(2, bool), np.ones(2, bool)
        for e in range(2):
            if after_end[e]:  # the reset step after an episode end
                valid[e], after_end[e] = False, False
                continue
            c, ep = 1000 * e + counter[e], 100 * e + episode[e]
            obs[e], nxt[e] = [c, ep, t[e]], [c + 1, ep, t[e] + 1]
            actions[e], rewards[e] = counter[e] % 3, counter[e] + 1
            counter[e], t[e] = counter[e] + 1, t[e] + 1
            if t[e] == lengths[e]:
                done[e], terminated[e] = True, episode[e] % 2 == 0
                episode[e], t[e], after_end[e] = episode[e] + 1, 0, online
        yield dict(observations=obs, actions=actions, rewards=rewards, next_observations=nxt, terminated=terminated,
                   done=done), (valid if online else None)


def fill(store, rows, online):
    for transition, valid in steps(rows, online):
        store.add(transition, valid=valid)
    return store


# 11 rows into 8 rows per env: rows 0-2 are overwritten. What each env still holds, as real steps by counter:
HELD = {  # online: env 0 holds reset, c3-5, reset, c6-8; env 1: c3 (episode 0's end), reset, c4-7, reset, c8
    True: dict(env0=[[3, 4, 5], [6, 7, 8]], env1=[[1003], [1004, 1005, 1006, 1007], [1008]]),
    # without reset steps: c3..c10 for each env; the newest episodes are still running
    False: dict(env0=[[3, 4, 5], [6, 7, 8], [9, 10]], env1=[[1003], [1004, 1005, 1006, 1007], [1008, 1009, 1010]]),
}


def test_uniform_transitions_draw_one_integer_per_sample():
    store = fill(EpisodeStore(20, 2, EXAMPLE), 5, False)  # 10 real steps, no wrap: leaves 0..9
    batch = store.sample_transitions(np.random.default_rng(0), 50)
    np.testing.assert_array_equal(batch['indices'], np.random.default_rng(0).integers(0, 10, 50))


def test_three_step_return_by_hand_with_a_termination_inside():
    store = fill(EpisodeStore(40, 2, EXAMPLE, n_step=3, discount=0.5), 8, False)
    batch = store.sample_transitions(np.random.default_rng(0), 2000)
    by_counter = {int(c): i for i, c in enumerate(batch['observations'][:, 0])}
    # Env 0, rewards 1, 2, 3 then episode 0 terminates at c2; episode 1 (c3-5, rewards 4, 5, 6) is truncated.
    i = by_counter[0]
    assert batch['returns'][i] == 1 + 0.5 * 2 + 0.25 * 3 and batch['bootstrap_discounts'][i] == 0.0
    i = by_counter[1]
    assert batch['returns'][i] == 2 + 0.5 * 3 and batch['bootstrap_discounts'][i] == 0.0  # stops at the termination
    i = by_counter[3]
    assert batch['returns'][i] == 4 + 0.5 * 5 + 0.25 * 6 and batch['bootstrap_discounts'][i] == 0.125
    assert batch['next_observations'][i, 0] == 6


@pytest.mark.parametrize('online', [True, False])
def test_sequences_are_consecutive_steps_and_mark_episode_starts(online):
    store = fill(EpisodeStore(16, 2, EXAMPLE), 11, online)  # wrapped: 8 rows per env, 11 written
    batch = store.sample_sequences(np.random.default_rng(0), 2000, 3)
    obs = batch['observations']
    assert obs.shape == (2000, 3, 3) and batch['actions'].shape == batch['rewards'].shape == (2000, 3)
    assert batch['is_first'].shape == batch['terminated'].shape == (2000, 3) and batch['rewards'].dtype == np.float32
    assert (obs >= 0).all()  # no reset step
    np.testing.assert_array_equal(np.diff(obs[..., 0], axis=1), 1)  # consecutive: never across the write position
    np.testing.assert_array_equal(batch['is_first'], obs[..., 2] == 0)  # exactly at episode starts
    np.testing.assert_array_equal(batch['rewards'], obs[..., 0] % 1000 + 1)
    last_step = np.where(obs[..., 1] >= 100, 3, 2)  # env 1's episodes are 4 steps long, env 0's 3
    np.testing.assert_array_equal(batch['terminated'], (obs[..., 2] == last_step) & (obs[..., 1] % 2 == 0))
    held = [c for env in HELD[online].values() for c in sum(env, [])]
    starts = {c for c in held if c + 2 in held}
    assert set(obs[:, 0, 0].astype(int)) == starts  # every window of held rows, uniformly: all of them drawn
    crosses = obs[:, 0, 1] != obs[:, -1, 1]
    assert crosses.any() and batch['is_first'][crosses, 1:].any(axis=1).all()
    assert not batch['is_first'][obs[:, 0, 0] == 1003, 0].any()  # the oldest row of env 1 is an episode's tail


def test_sequence_terminations_and_first_steps_by_hand():
    store = fill(EpisodeStore(16, 2, EXAMPLE), 11, True)
    six = store.sample_sequences(np.random.default_rng(0), 50, 6)  # the one window of each env: all 6 real steps
    env0 = six['observations'][:, 0, 0] == 3
    np.testing.assert_array_equal(six['observations'][env0][0, :, 0], [3, 4, 5, 6, 7, 8])
    np.testing.assert_array_equal(six['is_first'][env0][0], [1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(six['terminated'][env0][0], [0, 0, 0, 0, 0, 1])  # episode 1 truncated, 2 terminates
    env1 = six['observations'][:, 0, 0] == 1003
    assert env0.sum() + env1.sum() == 50
    np.testing.assert_array_equal(six['is_first'][env1][0], [0, 1, 0, 0, 0, 1])  # c1003 ends an earlier episode
    with pytest.raises(ValueError, match='sequence length 7 is longer than the 6 consecutive steps'):
        store.sample_sequences(np.random.default_rng(0), 4, 7)


@pytest.mark.parametrize('online', [True, False])
def test_pairs_stay_in_their_episode_and_in_the_held_rows(online):
    store = fill(EpisodeStore(16, 2, EXAMPLE), 11, online)
    batch = store.sample_pairs(np.random.default_rng(0), 4000)
    obs, goals, horizon = batch['observations'], batch['goals'], batch['horizon']
    assert obs.shape == goals.shape == (4000, 3) and batch['actions'].shape == (4000,) and horizon.dtype == np.int32
    np.testing.assert_array_equal(goals[:, 1], obs[:, 1])  # same episode: never across a done
    np.testing.assert_array_equal(horizon, goals[:, 0] - obs[:, 0])
    np.testing.assert_array_equal(batch['actions'], obs[:, 0] % 1000 % 3)
    # A state's goals are the next states of it and every later held step of its episode, all of them drawn;
    # env 1's oldest held step (c1003) ended its episode, so it only reaches c1004, never the newer data.
    expected = {(t, g) for env in HELD[online].values() for episode in env for t in episode
                for g in range(t + 1, episode[-1] + 2)}
    assert set(zip(obs[:, 0].astype(int).tolist(), goals[:, 0].astype(int).tolist())) == expected
    share = np.mean(obs[:, 0] == 1003)  # t is uniform over the held real steps
    assert abs(share - 1 / sum(len(e) for env in HELD[online].values() for e in env)) < 0.015


def test_a_dropped_step_inside_an_episode_starts_a_new_one():
    store = EpisodeStore(8, 1, EXAMPLE)
    for c, valid in enumerate([True, True, False, True, True]):  # one step dropped, no done anywhere
        store.add(dict(observations=np.full((1, 3), c, np.float32), actions=np.zeros(1, np.int32), rewards=np.ones(1),
                       next_observations=np.full((1, 3), c + 1, np.float32), terminated=np.zeros(1, bool),
                       done=np.zeros(1, bool)), valid=np.array([valid]))
    np.testing.assert_array_equal(store.is_first[:5, 0], [1, 0, 0, 1, 0])
    seq = store.sample_sequences(np.random.default_rng(0), 200, 2)
    assert {tuple(w) for w in seq['observations'][:, :, 0].astype(int).tolist()} == {(0, 1), (1, 3), (3, 4)}
    np.testing.assert_array_equal(seq['is_first'][:, 1], seq['observations'][:, 1, 0] == 3)
    pairs = store.sample_pairs(np.random.default_rng(0), 400)
    expected = {(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)}
    drawn = zip(pairs['observations'][:, 0].astype(int).tolist(), pairs['goals'][:, 0].astype(int).tolist())
    assert set(drawn) == expected


def test_empty_store_and_store_states():
    store = EpisodeStore(16, 2, EXAMPLE)
    rng = np.random.default_rng(0)
    for sample in (lambda: store.sample_transitions(rng, 4), lambda: store.sample_sequences(rng, 4, 2),
                   lambda: store.sample_pairs(rng, 4)):
        with pytest.raises(ValueError, match='empty episode store; add'):
            sample()
    fill(store, 11, True)
    restored = EpisodeStore(16, 2, EXAMPLE)
    restored.load_state_dict(store.state_dict())
    for sample in ('sample_sequences', 'sample_pairs'):
        a = getattr(store, sample)(np.random.default_rng(1), 32, *([4] if sample == 'sample_sequences' else []))
        b = getattr(restored, sample)(np.random.default_rng(1), 32, *([4] if sample == 'sample_sequences' else []))
        assert all(np.array_equal(a[k], b[k]) for k in a)
    # A checkpoint written before episode starts were stored: they are derived from done and valid.
    young = fill(EpisodeStore(40, 2, EXAMPLE), 11, True)
    legacy = {k: v for k, v in young.state_dict().items() if k != 'is_first_rows'}
    derived = EpisodeStore(40, 2, EXAMPLE)
    derived.load_state_dict(legacy)
    np.testing.assert_array_equal(derived.is_first, young.is_first)
