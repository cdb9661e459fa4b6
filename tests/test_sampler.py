import numpy as np
import pytest

from impls.agents import get_agent
from impls.data.datasets import DatasetError, dataset_from_arrays
from impls.data.sampler import GoalSampler
from tests.conftest import make_episodes


def sampler_for(algorithm='gciql', frame_stack=None, **data_kwargs):
    ds = dataset_from_arrays(**make_episodes([5, 8, 3, 10, 40], **data_kwargs))
    config = get_agent(algorithm).get_config()
    config.frame_stack = frame_stack
    return ds, GoalSampler(ds, config)


def test_goals_stay_in_their_episode_and_in_the_future():
    ds, sampler = sampler_for('crl')  # CRL: value goals 100% future (geometric), actor goals 100% future (uniform)
    rng = np.random.default_rng(0)
    idxs = ds.sample_valid(rng, 4000)
    batch = sampler.sample(rng, idxs)
    obs = batch['observations']
    for key in ('value_goals', 'actor_goals'):
        goals = batch[key]
        assert np.all(goals[:, 0] == obs[:, 0]), f'{key} crossed an episode boundary'
        final_t = ds.final_state_idxs(idxs) - ds.episode_start_idxs(idxs)
        assert np.all(goals[:, 1] > obs[:, 1]) | np.all((goals[:, 1] == obs[:, 1]) <= (obs[:, 1] == final_t))
        assert np.all(goals[:, 1] <= final_t)


def test_geometric_offsets_have_the_discount_mean():
    ds = dataset_from_arrays(**make_episodes([100_000]))
    config = get_agent('crl').get_config()
    sampler = GoalSampler(ds, config)
    rng = np.random.default_rng(1)
    idxs = rng.integers(0, 1000, size=20_000)
    goals = sampler.sample_goals(rng, idxs, sampler.value_mix)
    # Geometric(p = 1 - 0.99) on {1, 2, ...} has mean 1 / p = 100.
    assert abs(np.mean(goals - idxs) - 100) < 3


def test_mixture_proportions_and_rewards():
    ds, sampler = sampler_for('gciql')  # value goals: 0.2 current / 0.5 future / 0.3 random
    rng = np.random.default_rng(2)
    idxs = ds.sample_valid(rng, 20_000)
    batch = sampler.sample(rng, idxs)
    is_current = np.all(batch['value_goals'] == batch['observations'], axis=1)
    # Current-state goals (p = 0.2) plus the few future/random goals that land on the state itself.
    assert 0.19 < is_current.mean() < 0.26
    np.testing.assert_array_equal(batch['masks'], 1.0 - (batch['rewards'] + 1.0))  # 0/-1 rewards
    assert set(np.unique(batch['rewards'])) == {-1.0, 0.0}
    same_episode = batch['value_goals'][:, 0] == batch['observations'][:, 0]
    # Current (0.2) and future (0.5) goals are in the episode; a random goal (0.3) lands in it with
    # probability sum_e share_e^2 (share_e = the episode's fraction of valid transitions).
    share = (np.diff(np.concatenate([[-1], ds.episode_ends])) - 1) / ds.num_valid
    expected = 0.7 + 0.3 * np.sum(share**2)
    assert abs(same_episode.mean() - expected) < 0.015


def test_same_generator_state_gives_the_same_batch():
    ds, sampler = sampler_for('gciql')
    a = sampler.sample(np.random.default_rng(7), ds.sample_valid(np.random.default_rng(3), 64))
    b = sampler.sample(np.random.default_rng(7), ds.sample_valid(np.random.default_rng(3), 64))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_frame_stack_never_crosses_an_episode_start():
    ds, sampler = sampler_for('crl', frame_stack=3)
    stacked = sampler.observations(np.array([5, 6, 7, 14]))  # rows 5..12 are episode 1, t = 0..7
    # Each stack is [frame t-2, frame t-1, frame t] with frames before the episode start repeated.
    np.testing.assert_array_equal(stacked[0], [1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(stacked[1], [1, 0, 1, 0, 1, 1])
    np.testing.assert_array_equal(stacked[2], [1, 0, 1, 1, 1, 2])
    np.testing.assert_array_equal(stacked[3], [2, 0, 2, 0, 2, 1])  # row 14: episode 2, t = 1


def test_frame_stack_on_a_regular_dataset_is_refused():
    data = make_episodes([4, 4])
    data['next_observations'] = data['observations'] + 1
    ds = dataset_from_arrays(**data)
    config = get_agent('crl').get_config()
    config.frame_stack = 4
    with pytest.raises(DatasetError, match='needs a compact dataset'):
        GoalSampler(ds, config)


def test_goal_probabilities_must_sum_to_one():
    ds, _ = sampler_for('crl')
    config = get_agent('crl').get_config()
    config.value_p_trajgoal = 0.7
    with pytest.raises(ValueError, match='must be >= 0 and sum to 1'):
        GoalSampler(ds, config)
