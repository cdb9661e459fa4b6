import numpy as np
import pytest

from impls.agents import get_agent
from impls.data.datasets import dataset_from_arrays, load_dataset
from impls.data.loader import BlockShuffleIndices, UniformIndices, make_batch, stacked_batches, step_rng
from impls.data.sampler import GoalSampler
from tests.conftest import make_episodes


def block_loader(ds, shuffle_seed=None, seed=0, **kw):
    kw = {**dict(batch_size=10, block_size=10, chunk_size=30), **kw}
    return BlockShuffleIndices(ds, seed=seed, shuffle_seed=shuffle_seed, **kw)


def epoch_rows(loader, epoch):
    steps = range(epoch * loader.steps_per_epoch, (epoch + 1) * loader.steps_per_epoch)
    return np.concatenate([loader.indices(t, step_rng(0, t))[0] for t in steps])


@pytest.fixture
def ds():
    return dataset_from_arrays(**make_episodes([37, 51, 12, 60, 40]))  # 200 rows, 5 episode ends


def test_fixed_shuffle_seed_gives_the_same_order_every_epoch_and_every_run(ds):
    a, b = block_loader(ds, shuffle_seed=3), block_loader(ds, shuffle_seed=3)
    first = epoch_rows(a, 0)
    np.testing.assert_array_equal(first, epoch_rows(a, 1))
    np.testing.assert_array_equal(first, epoch_rows(a, 4))
    np.testing.assert_array_equal(first, epoch_rows(b, 0))


def test_without_a_fixed_seed_each_epoch_reshuffles_reproducibly(ds):
    a, b = block_loader(ds), block_loader(ds)
    assert not np.array_equal(epoch_rows(a, 0), epoch_rows(a, 1))
    np.testing.assert_array_equal(epoch_rows(a, 1), epoch_rows(b, 1))
    # Epoch e uses seed + e: seed 0's epoch 1 is seed 1's epoch 0.
    np.testing.assert_array_equal(epoch_rows(block_loader(ds, seed=0), 1), epoch_rows(block_loader(ds, seed=1), 0))


def test_an_epoch_visits_every_transition_once_in_block_order(ds):
    loader = block_loader(ds)  # 20 blocks of 10, chunks of 3 blocks, 3 batches of 10 per chunk
    assert loader.num_blocks == 20 and loader.num_chunks == 7 and loader.batches_per_chunk == 3
    rows = epoch_rows(loader, 0)
    valid = ds.valid_to_row(np.arange(ds.num_valid))
    # Every valid transition is seen at least once; a chunk with fewer valid rows than 3 x 10 repeats some.
    assert set(rows.tolist()) == set(valid.tolist())
    assert np.all(ds.is_valid(rows))
    # Each batch comes from the blocks of one chunk.
    order = loader.block_order(0)
    for step in range(loader.steps_per_epoch):
        _, _, chunk, _ = loader.locate(step)
        blocks = set(order[chunk * 3 : chunk * 3 + 3].tolist())
        assert set((loader.indices(step, step_rng(0, step))[0] // 10).tolist()) <= blocks


def test_goals_and_next_observations_are_correct_at_block_edges(ds):
    config = get_agent('crl').get_config()
    sampler = GoalSampler(ds, config)
    loader = block_loader(ds, block_size=7, chunk_size=14)
    for step in range(40):
        batch = make_batch(sampler, loader, seed=0, step=step)
        obs, nxt = batch['observations'], batch['next_observations']
        np.testing.assert_array_equal(nxt[:, 0], obs[:, 0])  # same episode
        np.testing.assert_array_equal(nxt[:, 1], obs[:, 1] + 1)  # the next step, even across a block edge
        goals = batch['value_goals']
        assert np.all(goals[:, 0] == obs[:, 0])
        # A future goal is later in the episode, except at its last transition (OGBench clips there).
        last = ds.final_state_idxs(ds.episode_starts[obs[:, 0].astype(int)]) - ds.episode_starts[obs[:, 0].astype(int)]
        assert np.all((goals[:, 1] > obs[:, 1]) | ((goals[:, 1] == obs[:, 1]) & (obs[:, 1] == last)))


def test_batches_are_a_pure_function_of_seed_and_step(ds):
    sampler = GoalSampler(ds, get_agent('gciql').get_config())
    for source in (UniformIndices(ds, 16), block_loader(ds, batch_size=16)):
        stacked = stacked_batches(sampler, source, seed=5, start=3, n=4)
        again = make_batch(sampler, source, seed=5, step=5)  # the third of steps 3..6
        for k in again:
            np.testing.assert_array_equal(stacked[k][2], again[k])


@pytest.mark.parametrize('regular, frame_stack', [(False, None), (False, 3), (True, None)])  # stacking: compact only
def test_batches_read_from_the_chunk_equal_batches_read_from_the_dataset(ds, regular, frame_stack):
    """The block-shuffle loader's chunk serves the rows it holds (goals, next observations); the batch must be the
    one the sampler builds from the dataset alone, bit for bit, at block edges and for rows outside the chunk."""
    if regular:
        arrays = {k: v for k, v in ds.arrays.items()}
        arrays['next_observations'] = arrays['observations'] + 0.5  # distinguishable from observations[i + 1]
        ds = dataset_from_arrays(**arrays)
    config = get_agent('crl').get_config()
    config.frame_stack = frame_stack
    sampler = GoalSampler(ds, config)
    loader = block_loader(ds, batch_size=32, block_size=7, chunk_size=28)
    misses = 0
    for step in range(30):
        idxs, chunk = loader.indices(step, step_rng(0, step))
        far = np.arange(ds.size)
        misses += (~np.isin(far // 7, chunk.blocks)).sum()
        np.testing.assert_array_equal(chunk.gather('observations', far), ds['observations'][far])
        np.testing.assert_array_equal(chunk.gather('actions', far), ds['actions'][far])
        batch = make_batch(sampler, loader, seed=0, step=step)
        direct = sampler.sample(step_rng(0, step), idxs)
        for k in direct:
            np.testing.assert_array_equal(batch[k], direct[k].astype(batch[k].dtype), err_msg=k)
    assert misses > 0  # rows beyond the chunk were asked for and read from the dataset


def test_steps_per_epoch_and_epoch_index(ds):
    loader = block_loader(ds, steps_per_epoch=50)
    assert loader.epoch_of(49) == 0 and loader.epoch_of(50) == 1
    rows = np.concatenate([loader.indices(t, step_rng(0, t))[0] for t in range(50)])
    assert len(rows) == 500  # more batches than one pass holds: a second pass continues the epoch


def _rss_anon_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('RssAnon:'):
                return int(line.split()[1]) / 1024
    pytest.skip('no /proc/self/status')


def test_memory_stays_bounded_on_a_large_memmapped_dataset(tmp_path):
    """1.2 GB of observations on disk, streamed in chunks: anonymous memory grows by far less."""
    n, dim = 600_000, 512
    path = tmp_path / 'big'
    path.mkdir()
    obs = np.lib.format.open_memmap(path / 'observations.npy', mode='w+', dtype=np.float32, shape=(n, dim))
    obs[::1000] = 1.0  # sparse file: only a few pages are written
    del obs
    np.save(path / 'actions.npy', np.zeros((n, 2), np.float32))
    terminals = np.zeros(n, bool)
    terminals[999::1000] = True
    np.save(path / 'terminals.npy', terminals)
    ds = load_dataset(path, check_finite=False)
    assert isinstance(ds['observations'], np.memmap)
    config = get_agent('crl').get_config()
    sampler = GoalSampler(ds, config)
    loader = block_loader(ds, batch_size=256, block_size=1000, chunk_size=20_000)
    before = _rss_anon_mb()
    for step in range(0, 2000, 20):  # touches 100 chunks = 2M rows = 4 GB of reads in total
        make_batch(sampler, loader, seed=0, step=step)
    grown = _rss_anon_mb() - before
    assert grown < 200, f'anonymous memory grew by {grown:.0f} MB'
