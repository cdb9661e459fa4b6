"""Transformer pieces shared by the sequence agents: a pre-LayerNorm block (self-attention under a mask, then an
MLP, each residual) and the masks. flax's MultiHeadDotProductAttention does the attention."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


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
                                            deterministic=deterministic)(h, kv, mask=mask)
        x = x + h
        h = nn.Dense(self.mlp_ratio * self.dim)(nn.LayerNorm()(x))
        h = nn.Dense(self.dim)(nn.gelu(h))
        return x + nn.Dropout(self.dropout, deterministic=deterministic)(h)
