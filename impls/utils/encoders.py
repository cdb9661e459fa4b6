"""Image encoders (OGBench's IMPALA shapes). uint8 frames (stacked on the channel axis) are scaled to
[0, 1] inside the network, so batches travel as uint8 and are normalised inside the jit."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from impls.utils.networks import MLP
from impls.utils.precision import conv_operands

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _conv(x, kernel, padding):
    x, kernel, accumulate = conv_operands(x, kernel)
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_NHWC,
                                        preferred_element_type=accumulate)


@jax.custom_vjp
def conv2d_same(x, kernel):
    """Stride-1 'SAME' convolution, x (B, H, W, Cin), kernel (kh, kw, Cin, Cout) -> (B, H, W, Cout), whose
    gradients are written as convolutions in the same canonical NHWC/HWIO layout.

    Why: jax's own transpose rules give the backward convolutions swapped kernel and batch dimensions
    (dim_labels b01f_01oi and f01b_i01o). Outside loops XLA:CPU rewrites them into its fast library
    convolution; inside a while loop (a `lax.scan` of fused updates) it does not, and falls back to a
    naive loop that made a scanned IMPALA update 30-40x slower than the same update called alone.
    Spelling the gradients out in the canonical layout keeps every convolution on the fast path."""
    return _conv(x, kernel, 'SAME')


def _conv2d_same_fwd(x, kernel):
    return _conv(x, kernel, 'SAME'), (x, kernel)


def _conv2d_same_bwd(residuals, dy):
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    # dL/dx: the output gradient convolved with the spatially flipped kernel, in and out channels swapped.
    # 'SAME' pads (k - 1) // 2 before and k // 2 after; the flipped kernel needs them the other way round.
    dx = _conv(dy, jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2)), ((kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2)))
    # dL/dkernel[a, b, i, o] = sum_{n, h, w} x_pad[n, h + a, w + b, i] dy[n, h, w, o]: a convolution of x with
    # channels as its batch over dy with the batch as its input channels.
    pad = ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
    dk = _conv(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dy, (1, 2, 0, 3)), pad)  # (Cin, kh, kw, Cout)
    return dx, jnp.transpose(dk, (1, 2, 0, 3))


conv2d_same.defvjp(_conv2d_same_fwd, _conv2d_same_bwd)


class Conv(nn.Module):
    """A stride-1 'SAME' convolution with a bias (the parameters and outputs of `nn.Conv(features, kernel_size,
    padding='SAME')`), differentiated through `conv2d_same` on the CPU. Other backends use lax's own rule."""

    features: int
    kernel_size: tuple = (3, 3)
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        kernel = self.param('kernel', self.kernel_init, (*self.kernel_size, x.shape[-1], self.features))
        bias = self.param('bias', nn.initializers.zeros, (self.features,))
        batch_shape = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        conv = conv2d_same if jax.default_backend() == 'cpu' else (lambda a, k: _conv(a, k, 'SAME'))
        y = conv(x, kernel.astype(x.dtype)) + bias
        return y.reshape(*batch_shape, *y.shape[1:])


class ResnetStack(nn.Module):
    num_features: int
    num_blocks: int

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.xavier_uniform()
        x = Conv(self.num_features, (3, 3), kernel_init=init)(x)
        x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding='SAME')
        for _ in range(self.num_blocks):
            residual = x
            x = Conv(self.num_features, (3, 3), kernel_init=init)(nn.relu(x))
            x = Conv(self.num_features, (3, 3), kernel_init=init)(nn.relu(x))
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
