"""Datasets in OGBench's layout: loading, validation and episode structure.

An OGBench file holds one row per environment step::

    observations (N, *obs_shape)   float or uint8
    actions      (N, action_dim)   float (continuous) or (N,) integer (discrete)
    terminals    (N,)              1 on the last row of each episode (episode end, not MDP termination)

and optionally ``next_observations`` (the "regular" form, one row per transition), ``valids`` (the
"compact" form produced by ``ogbench.utils.load_dataset(compact_dataset=True)``), ``qpos``, ``qvel``,
``button_states``. Files are ``NAME.npz`` (loaded into memory) or a directory of ``KEY.npy`` files,
which are memory-mapped so that datasets larger than RAM can be streamed (see ``write_npy_dir``).

We never copy or re-expand the data: a :class:`Dataset` keeps the arrays as stored plus the sorted
episode-end rows, from which everything else (valid transition starts, the last transition of each
episode, episode starts) is derived in O(number of episodes) memory.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import zipfile
from typing import Mapping

import numpy as np

REQUIRED_KEYS = ('observations', 'actions', 'terminals')
OPTIONAL_KEYS = ('next_observations', 'valids', 'qpos', 'qvel', 'button_states')
# Rows per slice when scanning a memory-mapped dataset for NaNs (bounded memory).
_SCAN_ROWS = 1 << 16


def take_rows(array, idxs) -> np.ndarray:
    """array[idxs] along the first axis, as a plain ndarray. np.take gathers rows several times faster than fancy
    indexing on 2-D arrays (and on memory-maps)."""
    return np.asarray(np.take(array, idxs, axis=0))


class DatasetError(ValueError):
    """A dataset that cannot be used as given. The message names the problem and the fix."""


@dataclasses.dataclass(eq=False)
class Dataset:
    """Arrays in OGBench's layout plus the episode structure.

    Attributes:
        arrays: key -> array (numpy array or read-only memmap), all with the same leading length N.
        episode_ends: sorted rows that end an episode (int64, length = number of episodes).
        regular: True when ``next_observations`` is stored (every row is a transition); False for
            the raw/compact form (the row at an episode end is a final state, not a transition start,
            and the next observation of row i is row i + 1).
        path: where it came from (for messages).
    """

    arrays: dict
    episode_ends: np.ndarray
    regular: bool
    path: str = '<memory>'

    def __post_init__(self):
        self.size = len(self.arrays['observations'])
        self.episode_starts = np.concatenate([[0], self.episode_ends[:-1] + 1]).astype(np.int64)
        # Last transition start of each episode: goals "from the same trajectory" are clipped here,
        # exactly as in OGBench's GCDataset (its final state index).
        self.last_starts = self.episode_ends if self.regular else self.episode_ends - 1
        # Number of valid transition starts before each episode end (for O(E) uniform sampling).
        if self.regular:
            self.num_valid = self.size
        else:
            self.num_valid = self.size - len(self.episode_ends)
        if self.num_valid <= 0:
            raise DatasetError(f'{self.path}: no transitions (every episode has a single step); nothing to train on.')
        # Valid transition starts before each episode end (valid_to_row's table, built once).
        self._valid_before_end = self.episode_ends - np.arange(len(self.episode_ends))

    def __getitem__(self, key):
        return self.arrays[key]

    def __contains__(self, key):
        return key in self.arrays

    @property
    def observation_shape(self):
        return tuple(self.arrays['observations'].shape[1:])

    @property
    def discrete(self) -> bool:
        return np.issubdtype(self.arrays['actions'].dtype, np.integer)

    @property
    def pixels(self) -> bool:
        return self.arrays['observations'].dtype == np.uint8

    def action_dim(self) -> int:
        """Number of actions (discrete: max action + 1, scanned in slices) or the action vector size."""
        actions = self.arrays['actions']
        if not self.discrete:
            return int(actions.shape[-1])
        return int(max(int(actions[i : i + _SCAN_ROWS].max()) for i in range(0, len(actions), _SCAN_ROWS))) + 1

    def episode_of(self, idxs):
        """Episode number of each row."""
        return np.searchsorted(self.episode_ends, idxs)

    def final_state_idxs(self, idxs):
        """Last transition start of the episode holding each row (future goals are clipped here)."""
        return self.last_starts[self.episode_of(idxs)]

    def episode_start_idxs(self, idxs):
        return self.episode_starts[self.episode_of(idxs)]

    def is_valid(self, idxs):
        """Whether each row starts a transition (has a next observation in the same episode)."""
        if self.regular:
            return np.ones(np.shape(idxs), dtype=bool)
        pos = np.searchsorted(self.episode_ends, idxs)
        pos = np.minimum(pos, len(self.episode_ends) - 1)
        return self.episode_ends[pos] != idxs

    def valid_to_row(self, k):
        """Map the k-th valid transition start (0 <= k < num_valid) to its row, in O(log E)."""
        if self.regular:
            return np.asarray(k, dtype=np.int64)
        # Before episode e there are e end rows; the valid rows of episode e are
        # [start_e, end_e) and the k-th valid row overall is k + (number of ends before it).
        return np.asarray(k, dtype=np.int64) + np.searchsorted(self._valid_before_end, k, side='right')

    def sample_valid(self, rng: np.random.Generator, n: int):
        """n uniform transition starts."""
        return self.valid_to_row(rng.integers(0, self.num_valid, size=n))

    def next_observations(self, idxs):
        if self.regular:
            return take_rows(self.arrays['next_observations'], idxs)
        return take_rows(self.arrays['observations'], idxs + 1)


def _episode_ends(arrays, path):
    n = len(arrays['observations'])
    if 'valids' in arrays:
        valids = np.asarray(arrays['valids'])
        ends = np.flatnonzero(valids <= 0)
    else:
        ends = _flatnonzero_sliced(arrays['terminals'])
    if len(ends) == 0 or ends[-1] != n - 1:
        # The file stops mid-episode (a generator killed early, say): the last row ends that episode.
        ends = np.concatenate([ends, [n - 1]])
    return ends.astype(np.int64)


def _flatnonzero_sliced(arr):
    return np.concatenate([np.flatnonzero(arr[i : i + _SCAN_ROWS]) + i for i in range(0, len(arr), _SCAN_ROWS)] or [[]])


def validate_arrays(arrays: Mapping[str, np.ndarray], path: str = '<memory>', check_finite: bool = True):
    """Check keys, shapes, dtypes and finiteness; raise DatasetError naming the problem and the fix."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DatasetError(
            f'dataset {path} has no key(s) {missing}; found {sorted(arrays)}. Expected OGBench layout '
            f'observations/actions/terminals (see impls.data.generate for a generator that writes it).'
        )
    obs, actions, terminals = arrays['observations'], arrays['actions'], arrays['terminals']
    n = len(obs)
    if n < 2:
        raise DatasetError(f'dataset {path} has {n} rows; need at least one transition (2 rows).')
    for key in arrays:
        if len(arrays[key]) != n:
            raise DatasetError(
                f'dataset {path}: key {key!r} has {len(arrays[key])} rows but observations has {n}; '
                f'every key must have one row per step.'
            )
    if obs.ndim < 2:
        raise DatasetError(
            f'dataset {path}: observations has shape {obs.shape}; expected (N, obs_dim) or (N, H, W, C). '
            f'Reshape scalar observations to (N, 1).'
        )
    if not (np.issubdtype(obs.dtype, np.floating) or obs.dtype == np.uint8):
        raise DatasetError(
            f'dataset {path}: observations have dtype {obs.dtype}; expected a float type (states) or uint8 '
            f'(pixels). Convert with observations.astype(np.float32).'
        )
    if np.issubdtype(actions.dtype, np.floating):
        if actions.ndim != 2:
            raise DatasetError(
                f'dataset {path}: continuous actions have shape {actions.shape}; expected (N, action_dim). '
                f'Discrete actions must be stored as integers of shape (N,).'
            )
    elif np.issubdtype(actions.dtype, np.integer):
        if actions.ndim != 1:
            raise DatasetError(
                f'dataset {path}: integer (discrete) actions have shape {actions.shape}; expected (N,). '
                f'Store continuous actions as float32 of shape (N, action_dim).'
            )
    else:
        raise DatasetError(f'dataset {path}: actions have dtype {actions.dtype}; expected float or integer.')
    if terminals.ndim != 1:
        raise DatasetError(f'dataset {path}: terminals has shape {terminals.shape}; expected (N,).')
    if 'next_observations' in arrays and arrays['next_observations'].shape != obs.shape:
        raise DatasetError(
            f'dataset {path}: next_observations has shape {arrays["next_observations"].shape} but observations '
            f'has {obs.shape}.'
        )
    if check_finite:
        for key in ('observations', 'actions', 'next_observations'):
            arr = arrays.get(key)
            if arr is None or not np.issubdtype(arr.dtype, np.floating):
                continue
            for start in range(0, len(arr), _SCAN_ROWS):
                part = np.asarray(arr[start : start + _SCAN_ROWS])
                if start % (64 * _SCAN_ROWS) == 0:
                    release_pages([arr])  # a memory-mapped dataset larger than RAM: keep the scan's footprint flat
                bad = ~np.isfinite(part)
                if bad.any():
                    rows = np.flatnonzero(bad.reshape(len(part), -1).any(axis=1)) + start
                    total = rows.size if start + _SCAN_ROWS >= len(arr) else f'{rows.size}+'
                    raise DatasetError(
                        f'dataset {path}: {key} contains NaN or inf at rows {rows[:5].tolist()} '
                        f'({total} rows in the first slice that has any). Clean or drop those episodes.'
                    )
        if np.issubdtype(actions.dtype, np.integer) and np.asarray(actions[: _SCAN_ROWS]).min() < 0:
            raise DatasetError(f'dataset {path}: discrete actions must be >= 0.')


def load_dataset(path: str, check_finite: bool = True) -> Dataset:
    """Load an OGBench-layout dataset from ``NAME.npz`` (into memory) or a directory of ``KEY.npy``
    files (memory-mapped). Raises DatasetError with the fix for every kind of bad input."""
    path = os.fspath(path)
    if not os.path.exists(path):
        hint = ''
        if path.endswith('.npz'):
            name = os.path.basename(path)[: -len('.npz')].removesuffix('-val')
            hint = (
                f' Generate one with: python -m impls.data.generate --env_name {name} '
                f'--save_dir {os.path.dirname(path) or "."}'
            )
        raise DatasetError(f'dataset file {path} does not exist.{hint}')
    keys = REQUIRED_KEYS + OPTIONAL_KEYS
    if os.path.isdir(path):
        arrays = {}
        for key in keys:
            file = os.path.join(path, f'{key}.npy')
            if os.path.exists(file):
                try:
                    arrays[key] = np.load(file, mmap_mode='r')
                except (ValueError, OSError) as e:
                    raise DatasetError(f'dataset {file} is corrupt or not a .npy file ({e}); re-create it.') from e
    else:
        try:
            with np.load(path) as file:
                arrays = {key: file[key] for key in keys if key in file.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise DatasetError(
                f'dataset {path} is corrupt or not an .npz file ({type(e).__name__}: {e}); delete it and '
                f'regenerate or re-download it.'
            ) from e
    validate_arrays(arrays, path, check_finite=check_finite)
    episode_ends = _episode_ends(arrays, path)
    release_pages(arrays.values())
    return Dataset(arrays=arrays, episode_ends=episode_ends, regular='next_observations' in arrays, path=path)


def dataset_from_arrays(check_finite: bool = True, **arrays) -> Dataset:
    """Build a Dataset from in-memory arrays (tests, generated data)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    validate_arrays(arrays, check_finite=check_finite)
    return Dataset(arrays=arrays, episode_ends=_episode_ends(arrays, '<memory>'), regular='next_observations' in arrays)


def split_episodes(dataset: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    """Hold out the last `fraction` of a dataset's episodes (at least one) as validation data; both parts are
    views of the same arrays (no copy, so memory-mapped data stays on disk)."""
    num_episodes = len(dataset.episode_ends)
    held = max(1, int(round(fraction * num_episodes)))
    if not 0 < fraction < 1 or held >= num_episodes:
        raise DatasetError(
            f'--val_fraction {fraction}: {dataset.path} has {num_episodes} episodes, so a held-out fraction must leave '
            f'at least one for training and hold at least one; use a value in (0, 1) such as 0.05, or '
            f'--val_dataset_path.'
        )
    cut = int(dataset.episode_ends[num_episodes - held - 1]) + 1  # first row of the first held-out episode
    train = Dataset({k: v[:cut] for k, v in dataset.arrays.items()}, dataset.episode_ends[: num_episodes - held],
                    dataset.regular, dataset.path)  # same path: config.json records the file trained on
    val = Dataset({k: v[cut:] for k, v in dataset.arrays.items()}, dataset.episode_ends[num_episodes - held:] - cut,
                  dataset.regular, f'{dataset.path} (last {held} episodes)')
    return train, val


def val_path_for(path: str) -> str:
    """OGBench's convention: NAME.npz -> NAME-val.npz; a directory DIR -> DIR-val."""
    path = os.fspath(path).rstrip('/')
    return path[: -len('.npz')] + '-val.npz' if path.endswith('.npz') else path + '-val'


class NpyDirWriter:
    """Writes an OGBench-layout dataset as a directory of KEY.npy files, chunk by chunk, so that data larger than
    RAM never has to be held at once; load_dataset memory-maps the result.

        with NpyDirWriter(directory, rows, dict(observations=((29,), np.float32), actions=((8,), np.float32),
                                                terminals=((), bool))) as writer:
            for chunk in chunks:
                writer.append(**chunk)   # consecutive rows, every key at once

    The files are written under DIRECTORY.partial and renamed into place only when every key holds exactly
    `rows` rows, so a killed writer leaves no directory that load_dataset would take for a whole dataset.
    """

    def __init__(self, directory: str, rows: int, specs: Mapping[str, tuple]):
        self.directory = os.fspath(directory).rstrip('/')
        self.partial = self.directory + '.partial'
        self.rows, self.written = int(rows), 0
        os.makedirs(self.partial, exist_ok=True)
        self.files, self.specs = {}, {}
        for key, (tail, dtype) in specs.items():
            dtype = np.dtype(dtype)
            f = open(os.path.join(self.partial, f'{key}.npy'), 'wb')
            header = dict(descr=np.lib.format.dtype_to_descr(dtype), fortran_order=False, shape=(self.rows, *tail))
            np.lib.format.write_array_header_2_0(f, header)
            self.files[key], self.specs[key] = f, (tuple(tail), dtype)

    def append(self, **arrays):
        if set(arrays) != set(self.files):
            raise ValueError(f'append() needs every key {sorted(self.files)} at once, got {sorted(arrays)}.')
        n = {len(v) for v in arrays.values()}
        if len(n) != 1:
            raise ValueError(f'append(): keys have different row counts {sorted(n)}.')
        n = n.pop()
        if self.written + n > self.rows:
            raise ValueError(f'append() would write {self.written + n} rows into a dataset declared with {self.rows}.')
        for key, value in arrays.items():
            tail, dtype = self.specs[key]
            value = np.ascontiguousarray(value, dtype=dtype)
            if value.shape[1:] != tail:
                raise ValueError(f'append(): {key} rows have shape {value.shape[1:]}, declared {tail}.')
            self.files[key].write(value.tobytes())
        self.written += n

    def close(self):
        for f in self.files.values():
            f.close()
        if self.written != self.rows:
            raise ValueError(f'{self.partial}: {self.written} rows written of the {self.rows} declared; the dataset '
                             f'is incomplete and was not moved to {self.directory}.')
        if os.path.isdir(self.directory):
            for name in os.listdir(self.partial):  # replace the keys written now, keep any others
                os.replace(os.path.join(self.partial, name), os.path.join(self.directory, name))
            os.rmdir(self.partial)
        else:
            os.replace(self.partial, self.directory)

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        if kind is None:
            self.close()
        else:
            for f in self.files.values():
                f.close()


def write_npy_dir(arrays: Mapping[str, np.ndarray], directory: str):
    """Write in-memory arrays as a directory of .npy files that load_dataset memory-maps."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    rows = len(next(iter(arrays.values())))
    with NpyDirWriter(directory, rows, {k: (v.shape[1:], v.dtype) for k, v in arrays.items()}) as writer:
        writer.append(**arrays)


def release_pages(arrays) -> None:
    """Drop the pages of memory-mapped arrays from this process's resident set (MADV_DONTNEED). The data stays
    in the page cache and is re-read on the next access, so nothing changes but the process's footprint: without
    this, every page a scan or a sampler ever touched would stay mapped, and a 20 GB dataset read once would count
    20 GB towards the process's resident memory."""
    for arr in arrays:
        base = arr
        while base is not None and not isinstance(base, mmap.mmap):
            base = getattr(base, '_mmap', None) if isinstance(base, np.memmap) else getattr(base, 'base', None)
        if isinstance(base, mmap.mmap) and hasattr(mmap, 'MADV_DONTNEED'):
            base.madvise(mmap.MADV_DONTNEED)


def save_npz_atomic(path: str, arrays: Mapping[str, np.ndarray]):
    """np.savez_compressed through a temporary file and a rename, so a kill never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp'
    with open(tmp, 'wb') as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
