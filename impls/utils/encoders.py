"""Image encoders (OGBench's IMPALA shapes). uint8 frames (stacked on the channel axis) are scaled to
[0, 1] inside the network, so batches travel as uint8 and are normalised inside the jit."""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from impls.utils.networks import MLP


class ResnetStack(nn.Module):
    num_features: int
    num_blocks: int

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.xavier_uniform()
        x = nn.Conv(self.num_features, (3, 3), strides=1, padding='SAME', kernel_init=init)(x)
        x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding='SAME')
        for _ in range(self.num_blocks):
            residual = x
            x = nn.Conv(self.num_features, (3, 3), padding='SAME', kernel_init=init)(nn.relu(x))
            x = nn.Conv(self.num_features, (3, 3), padding='SAME', kernel_init=init)(nn.relu(x))
            x = x + residual
        return x


class ImpalaEncoder(nn.Module):
    """(..., H, W, C) uint8 or float images -> (..., mlp_hidden_dims[-1]) features."""

    stack_sizes: Sequence[int] = (16, 32, 32)
    num_blocks: int = 2
    mlp_hidden_dims: Sequence[int] = (512,)

    @nn.compact
    def __call__(self, x):
        x = x.astype(jnp.float32) / 255.0
        for size in self.stack_sizes:
            x = ResnetStack(size, self.num_blocks)(x)
        x = nn.relu(x).reshape(*x.shape[:-3], -1)
        return MLP(self.mlp_hidden_dims, activate_final=True)(x)


ENCODERS = {
    'impala': ImpalaEncoder,
    'impala_small': functools.partial(ImpalaEncoder, num_blocks=1),
    'impala_debug': functools.partial(ImpalaEncoder, stack_sizes=(4, 4), num_blocks=1, mlp_hidden_dims=(32,)),
}


def make_encoder(name, **kwargs):
    if name is None:
        return None
    if name not in ENCODERS:
        raise ValueError(f'unknown encoder {name!r}; available: {", ".join(ENCODERS)}.')
    return ENCODERS[name](**kwargs)


def random_crop(images, rng, padding: int = 3):
    """Random shifts (DrQ / OGBench): pad by `padding` with edge values and crop back, one offset per
    image. images (B, H, W, C)."""
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)), mode='edge')
    offsets = jax.random.randint(rng, (b, 2), 0, 2 * padding + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


IMAGE_KEYS = ('observations', 'next_observations', 'value_goals', 'actor_goals')


def maybe_augment(batch, rng, p_aug: float):
    """With probability p_aug, random-crop every image key of the batch with the same offsets (as
    OGBench does); a no-op for state batches or p_aug = 0. Runs inside the jitted update."""
    if not p_aug or batch['observations'].ndim != 4:
        return batch
    apply_rng, crop_rng = jax.random.split(rng)
    apply = jax.random.uniform(apply_rng) < p_aug
    out = dict(batch)
    for key in IMAGE_KEYS:
        if key in batch:
            out[key] = jnp.where(apply, random_crop(batch[key], crop_rng), batch[key])
    return out
