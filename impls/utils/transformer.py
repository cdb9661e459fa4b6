"""Transformer pieces shared by the sequence agents: a pre-LayerNorm block (self-attention under a mask, then an
MLP, each residual) and the masks. flax's MultiHeadDotProductAttention does the attention."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from impls.utils.precision import Dense, DenseGeneral, dot_general, einsum

def causal_mask(valid):
    """(B, T) bool of real tokens -> (B, 1, T, T) attention mask: a token attends to itself and earlier real
    tokens."""
    T = valid.shape[-1]
    causal = jnp.tril(jnp.ones((T, T), bool))
    return (causal[None] & valid[:, None, :])[:, None] | jnp.eye(T, dtype=bool)[None, None]


class Block(nn.Module):
    """x + Attn(LN(x)); x + MLP(LN(x)). mask: (B, 1, Tq, Tk) or None; context: keys/values (cross-attention) or
    None (self-attention)."""

    dim: int
    heads: int
    mlp_ratio: int = 4
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, mask=None, context=None, deterministic: bool = True):
        h = nn.LayerNorm()(x)
        kv = h if context is None else context
        h = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.dim, dropout_rate=self.dropout,
                                            deterministic=deterministic, qkv_dot_general=dot_general,
                                            out_dot_general=dot_general)(h, kv, mask=mask)
        x = x + h
        h = Dense(self.mlp_ratio * self.dim)(nn.LayerNorm()(x))
        h = Dense(self.dim)(nn.gelu(h))
        return x + nn.Dropout(self.dropout, deterministic=deterministic)(h)


# ---- a causal transformer with an explicit key-value cache (the in-context agents: AD, compressed AD) ---------------
def attention_mask(valid_q, valid_k, causal: bool = True, offset=0):
    """(B, Tq) and (B, Tk) bool of real tokens -> (B, 1, Tq, Tk): query i (at position offset + i) sees real keys
    j <= offset + i (causal) or every real key; a query always sees itself when it is real."""
    Tq, Tk = valid_q.shape[-1], valid_k.shape[-1]
    mask = valid_q[:, :, None] & valid_k[:, None, :]
    if causal:
        mask = mask & (jnp.arange(Tk)[None, :] <= offset + jnp.arange(Tq)[:, None])[None]
    return mask[:, None]


class CachedBlock(nn.Module):
    """Pre-LayerNorm block whose self-attention returns its keys and values, and can attend over a cache instead:
    x + Attn(LN(x)); x + MLP(LN(x)).

    Full pass: `cache=None`; the keys/values of x come back, (B, T, H, Dh) each, to fill a cache.
    Decoding: `cache=(k, v)` of (B, S, H, Dh); x's keys and values are written at `index` (x's first position in
    the cache) and x attends over the cache under `mask` (B, 1, T, S). Returns (x, (k, v))."""

    dim: int
    heads: int
    mlp_ratio: int = 4
    dropout: float = 0.0
    attn_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, mask, cache=None, index=0, deterministic: bool = True):
        head_dim = self.dim // self.heads
        h = nn.LayerNorm()(x)
        q, k, v = (DenseGeneral((self.heads, head_dim), name=n)(h) for n in ('query', 'key', 'value'))
        if cache is not None:
            k = jax.lax.dynamic_update_slice_in_dim(cache[0], k.astype(cache[0].dtype), index, axis=1)
            v = jax.lax.dynamic_update_slice_in_dim(cache[1], v.astype(cache[1].dtype), index, axis=1)
        logits = einsum('bqhd,bkhd->bhqk', q, k) / jnp.sqrt(head_dim).astype(q.dtype)
        weights = jax.nn.softmax(jnp.where(mask, logits, jnp.finfo(logits.dtype).min), -1)
        weights = nn.Dropout(self.attn_dropout, deterministic=deterministic)(weights)
        out = DenseGeneral(self.dim, axis=(-2, -1), name='out')(einsum('bhqk,bkhd->bqhd', weights, v))
        x = x + nn.Dropout(self.dropout, deterministic=deterministic)(out)
        h = Dense(self.mlp_ratio * self.dim)(nn.LayerNorm()(x))
        h = Dense(self.dim)(nn.gelu(h))
        return x + nn.Dropout(self.dropout, deterministic=deterministic)(h), (k, v)


class CausalTransformer(nn.Module):
    """Learned positions + `layers` CachedBlocks + a final LayerNorm over embedded tokens x (B, T, dim) at integer
    `positions` (B, T) < max_len. `caches`: None (a full pass) or one (k, v) per layer (decoding at `index`).
    Returns (hidden (B, T, dim), one (k, v) per layer)."""

    dim: int
    heads: int
    layers: int
    max_len: int
    dropout: float = 0.0
    attn_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, positions, mask, caches=None, index=0, deterministic: bool = True):
        x = x + nn.Embed(self.max_len, self.dim, embedding_init=nn.initializers.normal(0.02), name='pos')(positions)
        x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
        new = []
        for i in range(self.layers):
            x, kv = CachedBlock(self.dim, self.heads, dropout=self.dropout, attn_dropout=self.attn_dropout,
                                name=f'block{i}')(x, mask, None if caches is None else caches[i], index, deterministic)
            new.append(kv)
        return nn.LayerNorm()(x), new


def pad_cache(kvs, size: int):
    """Keys/values of a full pass over T tokens -> a cache of `size` positions (zeros after T)."""
    return [tuple(jnp.pad(a, ((0, 0), (0, size - a.shape[1]), (0, 0), (0, 0))) for a in kv) for kv in kvs]
