"""Shared fixtures: a tiny hand-readable dataset (observation = [episode id, time step]) and tiny
agent configs, so tests run in seconds and their expected values can be derived by hand."""

import os

import numpy as np
import pytest

# Tests run on the CPU with a single device unless a test asks otherwise.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('WANDB_MODE', 'disabled')


def make_episodes(lengths, action_dim=2, discrete=False, seed=0):
    """Raw OGBench layout: episode e has lengths[e] rows; observations[row] = [e, t]."""
    rng = np.random.default_rng(seed)
    obs, terms = [], []
    for e, n in enumerate(lengths):
        for t in range(n):
            obs.append([e, t])
            terms.append(t == n - 1)
    n = len(obs)
    if discrete:
        actions = rng.integers(0, 3, size=n).astype(np.int64)
    else:
        actions = rng.uniform(-1, 1, size=(n, action_dim)).astype(np.float32)
    return dict(
        observations=np.asarray(obs, dtype=np.float32), actions=actions, terminals=np.asarray(terms, dtype=bool)
    )


@pytest.fixture
def episodes():
    return make_episodes([5, 8, 3, 10])


@pytest.fixture
def npz_dataset(tmp_path, episodes):
    path = tmp_path / 'toy-maze-navigate-v0.npz'
    np.savez(path, **episodes)
    np.savez(tmp_path / 'toy-maze-navigate-v0-val.npz', **make_episodes([6, 6], seed=1))
    return str(path)


TINY = dict(value_hidden_dims=(16, 16), actor_hidden_dims=(16, 16), batch_size=8)


def tiny_config(spec, **overrides):
    config = spec.get_config()
    for k, v in {**TINY, **overrides}.items():
        if k in config:
            config[k] = v
    if 'latent_dim' in config:
        config.latent_dim = overrides.get('latent_dim', 8)
    return config


def restored_leaves(ckpt_dir, step):
    """The arrays of a checkpoint's agent state, restored without a template (for exact comparisons)."""
    import jax
    import orbax.checkpoint as ocp

    from impls.utils.checkpoints import Checkpointer

    manager = Checkpointer(ckpt_dir).manager
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def rewind_online_run(full_dir, copy_dir, drop_step):
    """A copy of an online run as if it had stopped before its checkpoint at `drop_step` (that checkpoint and
    its loop state removed), for resume tests."""
    import os
    import shutil

    shutil.copytree(full_dir, copy_dir)
    shutil.rmtree(os.path.join(copy_dir, 'checkpoints', str(drop_step)))
    os.remove(os.path.join(copy_dir, 'checkpoints', f'loop_{drop_step}.pkl'))


def assert_same_checkpoint(ckpt_dir_a, ckpt_dir_b, step):
    """The two checkpoints at `step` hold bit-identical agent arrays."""
    a, b = restored_leaves(ckpt_dir_a, step), restored_leaves(ckpt_dir_b, step)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
