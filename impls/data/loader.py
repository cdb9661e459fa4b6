"""Batch streams for offline training: i.i.d. sampling and the streaming block-shuffle loader.

Every batch is a pure function of ``(seed, step)``: batch t is built from a generator seeded with
``[seed, t]`` and, for the block-shuffle loader, from the block order of t's epoch. So a resumed run
sees exactly the batches it would have seen, prefetching cannot change the order, and there is no
loader state to checkpoint beyond the step.

Block-shuffle loader (for datasets that do not fit in RAM, typically memory-mapped):
  * the rows are split into blocks of ``block_size`` consecutive rows; each epoch permutes the blocks;
  * the blocks are read ``chunk_size`` rows at a time (``chunk_size // block_size`` blocks); batches are
    drawn without replacement from the chunk's transitions (a fresh permutation per chunk), about
    ``chunk_size / batch_size`` batches per chunk;
  * an epoch is ``steps_per_epoch`` batches (default: one pass over all chunks); if it needs more
    batches than one pass holds, the next pass uses a new permutation;
  * ``shuffle_seed`` fixed: every epoch sees the same block and transition order. Not fixed: epoch e
    reshuffles from ``seed + e``.
Only the current chunk is held in memory. Goals, next observations and frame stacks are read from
the (memory-mapped) dataset by row, so they are correct at block and chunk edges.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Iterator, Optional

import numpy as np

from impls.data.datasets import Dataset, release_pages, take_rows
from impls.data.sampler import GoalSampler


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator that draws batch `step`: independent of how steps are grouped or resumed."""
    return np.random.default_rng([seed, step])


class UniformIndices:
    """I.i.d. uniform transition starts (OGBench's sampling). Epochs are nominal: steps_per_epoch steps."""

    def __init__(self, dataset: Dataset, batch_size: int, steps_per_epoch: Optional[int] = None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch or max(1, dataset.num_valid // batch_size)

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def indices(self, step: int, rng: np.random.Generator):
        return self.dataset.sample_valid(rng, self.batch_size), None


class BlockShuffleIndices:
    """Transition starts from permuted blocks of consecutive rows, a chunk in memory at a time."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        block_size: int,
        chunk_size: int,
        seed: int,
        shuffle_seed: Optional[int] = None,
        steps_per_epoch: Optional[int] = None,
        frame_stack: Optional[int] = None,
    ):
        if block_size < 2:
            raise ValueError(f'--block_size must be >= 2 (got {block_size}).')
        if chunk_size < block_size:
            raise ValueError(f'--chunk_size ({chunk_size}) must be >= --block_size ({block_size}).')
        self.dataset = dataset
        self.batch_size = batch_size
        self.block_size = block_size
        self.blocks_per_chunk = chunk_size // block_size
        self.seed = seed
        self.shuffle_seed = shuffle_seed
        self.num_blocks = -(-dataset.size // block_size)
        self.num_chunks = -(-self.num_blocks // self.blocks_per_chunk)
        self.batches_per_chunk = max(1, round(self.blocks_per_chunk * block_size / batch_size))
        self.steps_per_epoch = steps_per_epoch or self.num_chunks * self.batches_per_chunk
        self.frame_stack = frame_stack
        self._cache_key = None
        self._cache = None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def _order_seed(self, epoch: int):
        return [self.shuffle_seed] if self.shuffle_seed is not None else [self.seed + epoch]

    def block_order(self, epoch: int, pass_idx: int = 0):
        """The permutation of blocks used in a pass of an epoch."""
        return np.random.default_rng(self._order_seed(epoch) + [pass_idx]).permutation(self.num_blocks)

    def locate(self, step: int):
        """(epoch, pass, chunk, batch-in-chunk) of a step."""
        epoch, s = divmod(step, self.steps_per_epoch)
        chunk, j = divmod(s, self.batches_per_chunk)
        pass_idx, chunk = divmod(chunk, self.num_chunks)
        return epoch, pass_idx, chunk, j

    def _load_chunk(self, epoch: int, pass_idx: int, chunk: int):
        """The chunk's blocks (read block by block, sequentially) as ChunkRows, and a permutation of its valid
        transition starts (positions in the chunk)."""
        order = self.block_order(epoch, pass_idx)
        blocks = np.sort(order[chunk * self.blocks_per_chunk : (chunk + 1) * self.blocks_per_chunk])
        ranges = [(b * self.block_size, min((b + 1) * self.block_size, self.dataset.size)) for b in blocks]
        rows = np.concatenate([np.arange(a, b) for a, b in ranges])
        valid = self.dataset.is_valid(rows)
        keys = ['actions', 'next_observations'] if self.dataset.regular else ['actions']
        if self.frame_stack is None:
            keys.append('observations')
        data = {k: np.concatenate([self.dataset[k][a:b] for a, b in ranges]) for k in keys}
        release_pages(self.dataset.arrays.values())  # the previous chunk's pages and goal rows: bounded footprint
        positions = np.flatnonzero(valid)
        if len(positions) == 0:  # A chunk made only of episode ends; fall back to its rows' neighbours.
            positions = np.arange(len(rows) - 1)
        perm_rng = np.random.default_rng(self._order_seed(epoch) + [pass_idx, chunk, 1])
        return ChunkRows(self.dataset, rows, blocks, self.block_size, data), positions[perm_rng.permutation(len(positions))]

    def indices(self, step: int, rng: np.random.Generator):
        epoch, pass_idx, chunk, j = self.locate(step)
        key = (epoch if self.shuffle_seed is None else 0, pass_idx, chunk)
        if key != self._cache_key:
            self._cache = self._load_chunk(epoch, pass_idx, chunk)
            self._cache_key = key
        held, perm = self._cache
        take = perm[(j * self.batch_size + np.arange(self.batch_size)) % len(perm)]  # wraps as a cycle of perm
        return held.rows[take], held


class ChunkRows:
    """The rows of the block-shuffle loader's current chunk, held in memory, as a row source for the sampler:
    `gather(key, idxs)` equals dataset[key][idxs], reading rows whose block is in the chunk from memory and only
    the others (goals and next observations beyond the chunk's blocks) from the (memory-mapped) dataset. With a
    discount of 0.99 most future goals lie in their start's block, so this saves most of the page faults that
    reading them from the mapping costs."""

    def __init__(self, dataset: Dataset, rows, blocks, block_size: int, data: dict):
        self.dataset, self.rows, self.blocks, self.block_size, self.data = dataset, rows, blocks, block_size, data
        self.offsets = np.searchsorted(rows, blocks * block_size)  # where each block starts in the chunk

    def gather(self, key: str, idxs):
        source = self.dataset[key]
        if key not in self.data:
            return take_rows(source, idxs)
        block = idxs // self.block_size
        i = np.minimum(np.searchsorted(self.blocks, block), len(self.blocks) - 1)
        hit = self.blocks[i] == block
        out = take_rows(self.data[key], np.where(hit, self.offsets[i] + idxs - block * self.block_size, 0))
        if not hit.all():
            miss = ~hit
            out[miss] = take_rows(source, idxs[miss])
        return out


def make_batch(sampler: GoalSampler, index_source, seed: int, step: int):
    rng = step_rng(seed, step)
    idxs, chunk = index_source.indices(step, rng)
    batch = sampler.sample(rng, idxs, chunk)
    for k, v in batch.items():
        if v.dtype == np.float64:
            batch[k] = v.astype(np.float32)
    return batch


def stacked_batches(sampler: GoalSampler, index_source, seed: int, start: int, n: int):
    """Batches for steps [start, start + n), stacked on a leading axis (n, B, ...)."""
    batches = [make_batch(sampler, index_source, seed, t) for t in range(start, start + n)]
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


class Prefetcher:
    """Builds the stacked batches of a fixed plan of (start, n) segments in a background thread,
    `depth` segments ahead, so the next batches are ready while the current ones train.

    numpy releases the GIL in its gathers, so on two cores the sampler overlaps with XLA's update.
    """

    def __init__(self, make_segment, plan, depth: int = 2):
        self._make = make_segment
        self._plan = list(plan)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.wait_seconds = 0.0  # time the consumer spent blocked on the next item (the loop waiting on data)
        self._thread = threading.Thread(target=self._run, daemon=True, name='impls-prefetch')
        self._thread.start()

    def _run(self):
        try:
            for start, n in self._plan:
                item = (start, n, self._make(start, n))
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as e:  # Surface loader errors in the training thread.
            self._queue.put(e)

    def __iter__(self) -> Iterator:
        for _ in self._plan:
            start = time.perf_counter()
            item = self._queue.get()
            self.wait_seconds += time.perf_counter() - start
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
