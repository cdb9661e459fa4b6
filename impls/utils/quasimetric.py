"""The MRN quasimetric (Liu et al., 2022; as used by CMD, Myers et al., ICML 2024).

A latent vector of size D is split into K components of size D / K. In each component the first half
gives an asymmetric part and the second half a symmetric part:

    d_k(x, y) = max(0, max_h (x_h - y_h)) + ||x_l2 - y_l2||_2,      d(x, y) = mean_k d_k(x, y).

d(x, x) = 0, d >= 0 and the triangle inequality holds, but d(x, y) != d(y, x) in general.

`pairwise_mrn_distance` computes all B x B distances without the (B, B, D) tensor a direct
broadcast builds: the symmetric part through ||x||^2 + ||y||^2 - 2 x.y (a matmul), the asymmetric
part in row blocks with a hand-written gradient that keeps only the (B, B, K) argmax, so forward and
backward hold one (block, B, D/2) slab at a time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from impls.utils.precision import einsum

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
        - 2.0 * einsum('bkh,ckh->bck', xs, ys)
    )
    sym = jnp.sqrt(jnp.maximum(sq, 0.0) + _EPS)  # (B, C, K)

    # Asymmetric part: the max over h of xa_bh - ya_ch has no matmul form (see _pairwise_max_diff).
    block = min(block_size, xa.shape[0])
    asym = jax.nn.relu(_pairwise_max_diff(xa, ya, block))  # (B, C, K)
    return jnp.mean(asym + sym, axis=-1)


def _row_blocks(a, block):
    """(B, ...) -> (B / block, block, ...), zero-padded; and the padding."""
    pad = (-a.shape[0]) % block
    return jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1)).reshape(-1, block, *a.shape[1:]), pad


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _pairwise_max_diff(xa, ya, block):
    """m[b, c, k] = max_h (xa[b, k, h] - ya[c, k, h]) for xa (B, K, h), ya (C, K, h), a block of rows at a
    time. Its gradient is written by hand: autodiff of the max re-reads the whole (block, C, K, h) slab
    through compare-and-select ops, 1.4 s against a 31 ms forward pass here (B = C = 1024, D = 512, K = 8);
    with the argmax kept from the forward pass (_argmax_last) it is two scatter-adds, ~0.1 s."""
    return _max_diff_fwd(xa, ya, block)[0]


def _argmax_last(diff):
    """argmax over the last axis (size h) as one integer max-reduction: each float is mapped to an int32
    with the same order, its lowest ceil(log2 h) bits replaced by (h-1 - position), and the maximum's low
    bits read back. XLA's argmax on CPU (a two-operand reduction) was 7x slower than this here (890 vs
    131 ms with the max). Values that agree in all but those low bits (relative gap < 2^-(23 - log2 h),
    4e-6 for h = 32) count as tied and the first wins: on 8M random entries 19 picks differed from
    jnp.argmax, each a near-tie where either is a valid subgradient."""
    h = diff.shape[-1]
    low = (1 << max(1, (h - 1).bit_length())) - 1
    bits = jax.lax.bitcast_convert_type(diff, jnp.int32)
    ordered = jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)  # float order -> int order
    key = (ordered & jnp.int32(~low)) | (low - jnp.arange(h, dtype=jnp.int32))
    return low - (jnp.max(key, axis=-1) & low)


def _max_diff_fwd(xa, ya, block):
    blocks, pad = _row_blocks(xa, block)

    def one_block(xb):
        diff = xb[:, None] - ya[None]  # (block, C, K, h)
        return jnp.max(diff, axis=-1), _argmax_last(diff)

    m, idx = jax.lax.map(one_block, blocks)
    num_rows = xa.shape[0]
    m = m.reshape(-1, *m.shape[2:])[:num_rows]
    return m, (idx, pad, num_rows, ya.shape[-1])


def _max_diff_bwd(block, residuals, g):
    """d m[b,c,k] / d xa[b,k,h] = [h = argmax], / d ya[c,k,h] = -[h = argmax] (the first maximiser; ties
    have measure zero for real-valued inputs): two scatter-adds of the B*C*K incoming gradients."""
    idx, pad, num_rows, h = residuals
    c, k = idx.shape[2], idx.shape[3]
    idx = idx.reshape(-1, c, k)[:num_rows]  # (B, C, K)
    rows = jnp.arange(num_rows, dtype=jnp.int32)[:, None, None]
    cols = jnp.arange(c, dtype=jnp.int32)[None, :, None]
    comps = jnp.arange(k, dtype=jnp.int32)[None, None, :]
    g = g.astype(jnp.float32)
    dxa = jax.ops.segment_sum(g.ravel(), ((rows * k + comps) * h + idx).ravel(), num_segments=num_rows * k * h)
    dya = jax.ops.segment_sum(-g.ravel(), ((cols * k + comps) * h + idx).ravel(), num_segments=c * k * h)
    return dxa.reshape(num_rows, k, h).astype(g.dtype), dya.reshape(c, k, h).astype(g.dtype)


_pairwise_max_diff.defvjp(_max_diff_fwd, _max_diff_bwd)
