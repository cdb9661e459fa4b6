"""Learning-history datasets for in-context RL (Algorithm Distillation): the layout, an atomic writer, a loader that
checks everything a run relies on, and window sampling on the device.

One .npz file holds
    observations (N, H) integer observation index s_t, in [0, num_observations)
    actions      (N, H) integer action a_t, in [0, num_actions)
    rewards      (N, H) float r_t (after a_t)
    task_ids     (N,)   the task of each history (Dark Room: the goal cell)
for the N training histories, the same four with a `heldout_` prefix for histories of held-out tasks (used only to
measure validation accuracy, never trained on), and `meta` (a JSON string): env, horizon, num_observations,
num_actions, split_seed, train_goals, heldout_goals, source, episodes.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from impls.data.datasets import DatasetError

FIELDS = ('observations', 'actions', 'rewards', 'task_ids')
META_KEYS = ('env', 'horizon', 'num_observations', 'num_actions', 'split_seed', 'train_goals', 'heldout_goals')


def save_histories(path: str, train: dict, heldout: dict, meta: dict):
    """Writes the dataset atomically (a temporary file renamed into place)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    arrays = {k: np.asarray(train[k]) for k in FIELDS}
    arrays.update({f'heldout_{k}': np.asarray(heldout[k]) for k in FIELDS})
    tmp = path + '.tmp.npz'
    np.savez(tmp, meta=np.asarray(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


def _check_part(name: str, part: dict, meta: dict, path: str):
    obs, actions, rewards, tasks = (part[k] for k in FIELDS)
    if obs.ndim != 2 or actions.shape != obs.shape or rewards.shape != obs.shape or tasks.shape != obs.shape[:1]:
        raise DatasetError(f'{path}: {name} histories have shapes observations {obs.shape}, actions {actions.shape}, '
                           f'rewards {rewards.shape}, task_ids {tasks.shape}; expected (N, H) x 3 and (N,). Rewrite '
                           f'it with python -m impls.envs.darkroom.')
    for key, arr, top in (('observations', obs, meta['num_observations']), ('actions', actions, meta['num_actions'])):
        if not np.issubdtype(arr.dtype, np.integer):
            raise DatasetError(f'{path}: {name} {key} have dtype {arr.dtype}; expected integer indices.')
        if arr.size and (arr.min() < 0 or arr.max() >= top):
            raise DatasetError(f'{path}: {name} {key} fall outside [0, {top}) (min {arr.min()}, max {arr.max()}).')
    if not np.isfinite(rewards).all():
        bad = np.argwhere(~np.isfinite(rewards))[0]
        raise DatasetError(f'{path}: {name} rewards hold a non-finite value (history {bad[0]}, step {bad[1]}); '
                           f'replace or drop that history.')
    if obs.shape[1] % meta['horizon']:
        raise DatasetError(f'{path}: {name} histories hold {obs.shape[1]} steps, not a whole number of '
                           f'{meta["horizon"]}-step episodes.')


def load_histories(path: str) -> tuple[dict, dict, dict]:
    """(train, heldout, meta) of a history dataset, checked: fields, shapes, dtypes, ranges, finite rewards, whole
    episodes, and that no training history's task is a held-out one (an evaluation on held-out tasks would leak)."""
    if not os.path.exists(path):
        raise DatasetError(f'history dataset {path} does not exist. Write it with `python -m impls.envs.darkroom '
                           f'--out {path}`, or point --dataset_path at one.')
    try:
        with np.load(path, allow_pickle=False) as f:
            files = dict(f)
    except Exception as e:  # a truncated or foreign file
        raise DatasetError(f'{path} is not a readable .npz history dataset ({type(e).__name__}: {e}); write it '
                           f'again with python -m impls.envs.darkroom.') from e
    missing = [k for k in ('meta', *FIELDS, *(f'heldout_{k}' for k in FIELDS)) if k not in files]
    if missing:
        raise DatasetError(f'{path} lacks {missing}: not a learning-history dataset (python -m impls.envs.darkroom '
                           f'writes one).')
    meta = json.loads(str(files['meta']))
    absent = [k for k in META_KEYS if k not in meta]
    if absent:
        raise DatasetError(f'{path}: its meta lacks {absent}; write it again with python -m impls.envs.darkroom.')
    train = {k: files[k] for k in FIELDS}
    heldout = {k: files[f'heldout_{k}'] for k in FIELDS}
    _check_part('training', train, meta, path)
    _check_part('held-out', heldout, meta, path)
    held = set(int(g) for g in meta['heldout_goals'])
    overlap = sorted(held & set(int(t) for t in train['task_ids']))
    if overlap:
        raise DatasetError(f'{path}: training histories include the held-out tasks {overlap} of split seed '
                           f'{meta["split_seed"]}; an evaluation on those tasks would measure memorisation, not '
                           f'in-context learning. Write the dataset again with its split (python -m '
                           f'impls.envs.darkroom --split_seed {meta["split_seed"]}).')
    return train, heldout, meta


def previous(actions, rewards, none_action: int):
    """(..., H) actions and rewards -> a_{t-1}, r_{t-1} (the history's first step gets none_action and 0)."""
    pad_a = jnp.full(actions.shape[:-1] + (1,), none_action, actions.dtype)
    pad_r = jnp.zeros(rewards.shape[:-1] + (1,), rewards.dtype)
    return (jnp.concatenate([pad_a, actions[..., :-1]], -1), jnp.concatenate([pad_r, rewards[..., :-1]], -1))


def sample_windows(data: dict, key, batch_size: int, length: int) -> dict:
    """A batch of `length`-step windows of training histories, each from one history at a uniform start: observations,
    actions, rewards, prev_actions, prev_rewards (B, length), as int32 / float32. data: device arrays with
    prev_actions and prev_rewards added (`device_histories`). Jittable."""
    N, H = data['observations'].shape
    k_row, k_start = jax.random.split(key)
    rows = jax.random.randint(k_row, (batch_size,), 0, N)
    starts = jax.random.randint(k_start, (batch_size,), 0, H - length + 1)
    cols = starts[:, None] + jnp.arange(length)[None]
    return {k: data[k][rows[:, None], cols] for k in ('observations', 'actions', 'rewards', 'prev_actions',
                                                      'prev_rewards')}


def device_histories(part: dict, num_actions: int) -> dict:
    """A part of the dataset on the device, int32 / float32, with a_{t-1} and r_{t-1} (the 'none' action is
    num_actions)."""
    obs = jnp.asarray(part['observations'], jnp.int32)
    actions = jnp.asarray(part['actions'], jnp.int32)
    rewards = jnp.asarray(part['rewards'], jnp.float32)
    prev_a, prev_r = previous(actions, rewards, num_actions)
    return dict(observations=obs, actions=actions, rewards=rewards, prev_actions=prev_a, prev_rewards=prev_r)
