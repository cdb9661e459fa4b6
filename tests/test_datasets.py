import numpy as np
import ogbench.utils
import pytest

from impls.data.datasets import DatasetError, dataset_from_arrays, load_dataset, write_npy_dir
from tests.conftest import make_episodes


def test_episode_structure_raw_layout(episodes):
    ds = dataset_from_arrays(**episodes)
    assert ds.episode_ends.tolist() == [4, 12, 15, 25]
    assert ds.episode_starts.tolist() == [0, 5, 13, 16]
    assert ds.last_starts.tolist() == [3, 11, 14, 24]  # the final row of an episode is not a transition start
    assert ds.num_valid == 26 - 4
    # The k-th valid row, in order, skips exactly the four episode ends.
    valid_rows = [r for r in range(26) if r not in (4, 12, 15, 25)]
    assert ds.valid_to_row(np.arange(ds.num_valid)).tolist() == valid_rows
    assert ds.is_valid(np.arange(26)).tolist() == [r in valid_rows for r in range(26)]
    np.testing.assert_array_equal(ds.next_observations(np.array([3, 5])), [[0, 4], [1, 1]])


def test_regular_and_compact_forms_match_ogbench_loader(tmp_path, episodes):
    path = tmp_path / 'raw.npz'
    np.savez(path, **episodes)
    regular = ogbench.utils.load_dataset(str(path))
    ds = dataset_from_arrays(**{k: regular[k] for k in ('observations', 'actions', 'terminals', 'next_observations')})
    assert ds.regular and ds.num_valid == 22
    assert ds.final_state_idxs(np.array([0, 4])).tolist() == [3, 10]  # regular rows: 4 + 7 + 2 + 9
    compact = ogbench.utils.load_dataset(str(path), compact_dataset=True)
    ds = dataset_from_arrays(**{k: compact[k] for k in ('observations', 'actions', 'terminals', 'valids')})
    assert ds.episode_ends.tolist() == [4, 12, 15, 25] and ds.num_valid == 22


def test_npz_and_memmapped_directory_load_the_same(tmp_path, episodes):
    np.savez(tmp_path / 'd.npz', **episodes)
    write_npy_dir(episodes, tmp_path / 'd')
    a, b = load_dataset(tmp_path / 'd.npz'), load_dataset(tmp_path / 'd')
    assert isinstance(b['observations'], np.memmap)
    np.testing.assert_array_equal(a['observations'], b['observations'])
    assert a.episode_ends.tolist() == b.episode_ends.tolist()


def test_uint8_observations_and_integer_actions_load(tmp_path):
    data = make_episodes([4, 4], discrete=True)
    data['observations'] = np.zeros((8, 4, 4, 3), np.uint8)
    np.savez(tmp_path / 'px.npz', **data)
    ds = load_dataset(tmp_path / 'px.npz')
    assert ds.pixels and ds.discrete and ds.action_dim() == int(data['actions'].max()) + 1


@pytest.mark.parametrize(
    'mutate, message',
    [
        (lambda d: d.pop('terminals'), "no key(s) ['terminals']"),
        (lambda d: d.update(observations=d['observations'][:, 0]), 'expected (N, obs_dim)'),
        (lambda d: d.update(observations=d['observations'].astype(np.int32)), 'dtype int32'),
        (lambda d: d.update(actions=d['actions'][:, 0]), 'continuous actions have shape'),
        (lambda d: d.update(actions=d['actions'][:-1]), "'actions' has 25 rows"),
        (lambda d: d.update(actions=d['actions'].astype(str)), 'actions have dtype'),
        (lambda d: d['observations'].__setitem__((7, 1), np.nan), 'NaN or inf at rows [7]'),
        (lambda d: d['actions'].__setitem__((3, 0), np.inf), 'actions contains NaN or inf at rows [3]'),
    ],
)
def test_bad_arrays_raise_a_clear_error(tmp_path, episodes, mutate, message):
    mutate(episodes)
    np.savez(tmp_path / 'bad.npz', **episodes)
    with pytest.raises(DatasetError, match=None) as err:
        load_dataset(tmp_path / 'bad.npz')
    assert message in str(err.value)


def test_missing_file_says_how_to_generate(tmp_path):
    with pytest.raises(DatasetError, match='python -m impls.data.generate --env_name pointmaze-medium-navigate-v0'):
        load_dataset(tmp_path / 'pointmaze-medium-navigate-v0.npz')


def test_corrupt_file_is_reported(tmp_path):
    path = tmp_path / 'broken.npz'
    path.write_bytes(b'PK\x03\x04 this is not a zip archive')
    with pytest.raises(DatasetError, match='corrupt'):
        load_dataset(path)


def test_split_episodes_holds_out_the_last_episodes_as_views():
    from impls.data.datasets import Dataset, DatasetError, split_episodes
    from tests.conftest import make_episodes

    data = make_episodes([5, 8, 3, 10])  # observations[row] = [episode, t]
    ds = Dataset(data, np.flatnonzero(data['terminals']), regular=False, path='d.npz')
    train, val = split_episodes(ds, 0.5)
    assert train.size == 13 and val.size == 13
    assert train.episode_ends.tolist() == [4, 12] and val.episode_ends.tolist() == [2, 12]
    assert set(train['observations'][:, 0]) == {0, 1} and set(val['observations'][:, 0]) == {2, 3}
    assert np.shares_memory(val['observations'], data['observations'])
    assert split_episodes(ds, 0.01)[1].size == 10  # at least one episode
    with pytest.raises(DatasetError, match='--val_fraction 1.0'):
        split_episodes(ds, 1.0)


def test_npy_dir_writer_streams_chunks_and_refuses_an_incomplete_dataset(tmp_path):
    from impls.data.datasets import NpyDirWriter

    specs = dict(observations=((2,), np.float32), actions=((1,), np.float32), terminals=((), bool))
    chunk = dict(observations=np.arange(10, dtype=np.float32).reshape(5, 2), actions=np.zeros((5, 1), np.float32),
                 terminals=np.array([0, 0, 1, 0, 1], bool))
    with NpyDirWriter(tmp_path / 'd', 10, specs) as writer:
        writer.append(**chunk)
        writer.append(**chunk)
    ds = load_dataset(str(tmp_path / 'd'))
    assert ds.size == 10 and isinstance(ds['observations'], np.memmap)
    np.testing.assert_array_equal(ds['observations'][5:], chunk['observations'])
    assert list(ds.episode_ends) == [2, 4, 7, 9]
    with pytest.raises(ValueError, match='3 rows written of the 10 declared'):
        with NpyDirWriter(tmp_path / 'e', 10, specs) as writer:
            writer.append(**{k: v[:3] for k, v in chunk.items()})
            writer.close()
    assert not (tmp_path / 'e').exists()  # only DIR.partial: nothing load_dataset would take for a whole dataset
    with pytest.raises(ValueError, match=r'observations rows have shape \(3,\), declared \(2,\)'):
        with NpyDirWriter(tmp_path / 'f', 10, specs) as writer:
            writer.append(**dict(chunk, observations=np.zeros((5, 3), np.float32)))


def _rss_file_mb():
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('RssFile')) / 1e3


def test_release_pages_drops_a_memory_mapped_scan_from_resident_memory(tmp_path):
    from impls.data.datasets import release_pages

    path = tmp_path / 'big.npy'
    np.save(path, np.ones((64 << 20) // 4, np.float32))  # 64 MB
    arr = np.load(path, mmap_mode='r')
    before = _rss_file_mb()
    assert float(arr.sum()) == len(arr)  # touches every page
    touched = _rss_file_mb()
    release_pages([arr])
    released = _rss_file_mb()
    assert touched - before > 50 and touched - released > 50, (before, touched, released)
    assert float(arr[-1]) == 1.0  # still readable: the pages come back from the page cache
