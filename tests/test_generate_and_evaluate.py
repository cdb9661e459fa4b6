"""Local dataset generation (OGBench's recipes, no network) and batched evaluation on the real envs."""

import numpy as np
import ogbench.utils
import pytest

from impls.data.generate import check_supported, generate
from impls.runs.evaluation import RandomPolicy, evaluate


def test_pointmaze_generation_loads_with_ogbench_and_depends_only_on_the_seed(tmp_path):
    a, a_val, _ = generate('pointmaze-medium-navigate-v0', 3, str(tmp_path / 'a'), seed=4, max_episode_steps=60,
                           num_workers=1, progress=False)
    b, _, _ = generate('pointmaze-medium-navigate-v0', 3, str(tmp_path / 'b'), seed=4, max_episode_steps=60,
                       num_workers=2, progress=False)
    data = ogbench.utils.load_dataset(a)
    assert data['observations'].shape == (3 * 59, 2) and data['actions'].shape == (3 * 59, 2)
    raw = np.load(a)
    assert raw['terminals'].sum() == 3 and raw['terminals'][59] and set(raw.files) >= {'qpos', 'qvel'}
    assert np.abs(raw['actions']).max() <= 1.0
    assert len(np.load(a_val)['observations']) == 60  # max(1, 3 // 10) validation episode
    np.testing.assert_array_equal(raw['observations'], np.load(b)['observations'])  # 1 or 2 workers: same data


def test_cube_play_generation_uses_the_plan_oracle(tmp_path):
    path, _, _ = generate('cube-single-play-v0', 1, str(tmp_path), max_episode_steps=40, num_workers=1, progress=False)
    raw = np.load(path)
    assert raw['observations'].shape[0] == 40 and raw['actions'].shape == (40, 5)
    assert np.abs(np.diff(raw['observations'][:, :3], axis=0)).sum() > 0  # the arm moves


def test_unsupported_datasets_are_refused_with_the_reason():
    with pytest.raises(ValueError, match='need trained expert policies'):
        check_supported('antmaze-medium-navigate-v0')
    with pytest.raises(ValueError, match='not of the form'):
        check_supported('pointmaze')


class GoalSeeker:
    """Moves straight towards the goal: solves the open parts of pointmaze, unlike a random policy."""

    def initial_carry(self, batch_size):
        return ()

    def act(self, carry, observations, goals, key=None, mode='eval'):
        d = goals[:, :2] - observations[:, :2]
        return np.clip(d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-6), -1, 1), carry


def test_evaluation_repeats_exactly():
    """Same seed, same episodes: OGBench's resets draw start and goal noise from numpy's global generator, which
    evaluate seeds per episode (and gives back to the caller as it found it)."""
    class Recorder(GoalSeeker):
        def __init__(self):
            self.seen = []

        def act(self, carry, observations, goals, key=None, mode='eval'):
            self.seen.append(np.concatenate([observations, goals], axis=-1))
            return super().act(carry, observations, goals, key, mode)

    first, again, results = Recorder(), Recorder(), []
    for agent, global_seed in ((first, 1), (again, 2)):  # whatever state numpy's global generator is in
        np.random.seed(global_seed)
        before = np.random.get_state()[1].copy()
        results.append(evaluate(agent, 'pointmaze-medium-navigate-v0', 2, seed=3, task_ids=[1, 2]))
        results[-1].pop('seconds')
        np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert results[0] == results[1] and 0 < results[0]['episode_length'] < 1000
    assert len(first.seen) == len(again.seen)
    for x, y in zip(first.seen, again.seen):
        np.testing.assert_array_equal(x, y)


def test_batched_evaluation_scores_policies_per_task():
    random_result = evaluate(RandomPolicy(2, False, seed=0), 'pointmaze-medium-navigate-v0', 2, seed=0)
    assert set(random_result) >= {'overall_success', 'episode_length'} | {f'task{i}_success' for i in range(1, 6)}
    assert random_result['overall_success'] == 0.0 and random_result['episode_length'] == 1000.0
    seeker = evaluate(GoalSeeker(), 'pointmaze-medium-navigate-v0', 1, seed=0, task_ids=[1])
    assert seeker['task1_success'] == 1.0 and seeker['episode_length'] < 1000


def test_unknown_env_name_is_reported():
    with pytest.raises(ValueError, match='--eval_episodes 0 to skip evaluation'):
        evaluate(RandomPolicy(2, False), 'pointmaze-tiny-navigate-v0', 1)
