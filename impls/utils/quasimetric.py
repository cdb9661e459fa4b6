"""The MRN quasimetric (Liu et al., 2022; as used by CMD, Myers et al., ICML 2024).

A latent vector of size D is split into K components of size D / K. In each component the first half
gives an asymmetric part and the second half a symmetric part:

    d_k(x, y) = max(0, max_h (x_h - y_h)) + ||x_l2 - y_l2||_2,      d(x, y) = mean_k d_k(x, y).

d(x, x) = 0, d >= 0 and the triangle inequality holds, but d(x, y) != d(y, x) in general.

`pairwise_mrn_distance` computes all B x B distances without the (B, B, D) tensor a direct
broadcast builds: the symmetric part through ||x||^2 + ||y||^2 - 2 x.y (a matmul), the asymmetric
part in row blocks under `jax.checkpoint`, so forward and backward hold one (block, B, D/2) slab.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_EPS = 1e-8


def _split(x, num_components):
    """(..., D) -> asymmetric part (..., K, D/2K) and symmetric part (..., K, D/2K)."""
    d = x.shape[-1]
    if d % (2 * num_components):
        raise ValueError(f'latent size {d} must be divisible by 2 x mrn_components = {2 * num_components}.')
    x = x.reshape(*x.shape[:-1], num_components, d // num_components)
    half = x.shape[-1] // 2
    return x[..., :half], x[..., half:]


def mrn_distance(x, y, num_components: int):
    """Elementwise distance between matching rows: x, y (..., D) -> (...)."""
    xa, xs = _split(x, num_components)
    ya, ys = _split(y, num_components)
    asym = jax.nn.relu(jnp.max(xa - ya, axis=-1))
    sym = jnp.sqrt(jnp.sum((xs - ys) ** 2, axis=-1) + _EPS)
    return jnp.mean(asym + sym, axis=-1)


def pairwise_mrn_distance_direct(x, y, num_components: int):
    """Reference all-pairs distance by broadcasting: x (B, D), y (C, D) -> (B, C). Memory O(B C D)."""
    return mrn_distance(x[:, None, :], y[None, :, :], num_components)


@functools.partial(jax.jit, static_argnames=('num_components', 'block_size'))
def pairwise_mrn_distance(x, y, num_components: int, block_size: int = 16):
    """All-pairs distance x (B, D), y (C, D) -> (B, C) in O(B C K + block C D) memory."""
    xa, xs = _split(x, num_components)  # (B, K, h)
    ya, ys = _split(y, num_components)  # (C, K, h)
    # Symmetric part: ||xs - ys||^2 = ||xs||^2 + ||ys||^2 - 2 xs.ys, per component.
    sq = (
        jnp.sum(xs**2, axis=-1)[:, None, :]
        + jnp.sum(ys**2, axis=-1)[None, :, :]
        - 2.0 * jnp.einsum('bkh,ckh->bck', xs, ys)
    )
    sym = jnp.sqrt(jnp.maximum(sq, 0.0) + _EPS)  # (B, C, K)

    # Asymmetric part: the max over h of xa_bh - ya_ch has no matmul form; compute it a block of rows at
    # a time and recompute in the backward pass instead of storing (block, C, K, h) residuals.
    num_rows = xa.shape[0]
    block = min(block_size, num_rows)
    pad = (-num_rows) % block
    xa_blocks = jnp.pad(xa, ((0, pad), (0, 0), (0, 0))).reshape(-1, block, *xa.shape[1:])

    @jax.checkpoint
    def one_block(xb):
        return jax.nn.relu(jnp.max(xb[:, None] - ya[None], axis=-1))  # (block, C, K)

    asym = jax.lax.map(one_block, xa_blocks).reshape(-1, ya.shape[0], xa.shape[1])[:num_rows]
    return jnp.mean(asym + sym, axis=-1)
