"""Dreamer's networks (DreamerV3, Hafner et al. 2023): the recurrent state-space model, the observation encoder and
decoder, and the MLP heads. The algorithm (losses, imagination, acting) is in impls/agents/dreamer.py.

State: deter h (B, D) and stoch z (B, S, C), S categorical latents of C classes, sampled one-hot with
straight-through gradients from logits mixed with 1% uniform. Features fed to the heads: concat(h, flat z).

    core:      h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1})           (block-diagonal GRU, DreamerV3's `_core`)
    prior:     p(z_t | h_t)                                    (2 layers, predicts the latent without the observation)
    posterior: q(z_t | h_t, e_t), e_t = encoder(o_t)           (1 layer)
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from impls.utils.distributions import unimix
from impls.utils.precision import Conv, Dense, einsum
from impls.utils.returns import symlog


def dense(features: int, scale: float = 1.0, name: str | None = None):
    """Dense layer with DreamerV3's truncated-normal fan-in init scaled by `scale` (0: zeros, for the output layers
    of the reward and value heads, so they predict exactly 0 at the start)."""
    if scale == 0:
        return Dense(features, kernel_init=nn.initializers.zeros, name=name)
    init = nn.initializers.variance_scaling(scale, 'fan_in', 'truncated_normal')
    return Dense(features, kernel_init=init, name=name)


class Block(nn.Module):
    """Dense -> RMSNorm -> SiLU."""

    features: int

    @nn.compact
    def __call__(self, x):
        return nn.silu(nn.RMSNorm(epsilon=1e-4)(dense(self.features)(x)))


class MLP(nn.Module):
    layers: int
    units: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.layers):
            x = Block(self.units)(x)
        return x


class BlockLinear(nn.Module):
    """A block-diagonal linear map: (..., G, I) -> (..., G * O / G), one (I, O / G) kernel per group."""

    features: int
    groups: int

    @nn.compact
    def __call__(self, x):
        g, i = x.shape[-2:]
        kernel = self.param('kernel', nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal', in_axis=1,
                                                                      out_axis=2, batch_axis=(0,)),
                            (g, i, self.features // g))
        bias = self.param('bias', nn.initializers.zeros, (self.features,))
        y = einsum('ngi,gio->ngo', x.reshape(-1, g, i), kernel)
        return y.reshape(*x.shape[:-2], self.features) + bias


class RSSM(nn.Module):
    deter: int
    hidden: int
    stoch: int
    classes: int
    blocks: int = 1
    unimix: float = 0.01

    def setup(self):
        self.in_deter, self.in_stoch, self.in_action = Block(self.hidden), Block(self.hidden), Block(self.hidden)
        self.gru_hidden = BlockLinear(self.deter, self.blocks)
        self.gru_hidden_norm = nn.RMSNorm(epsilon=1e-4)
        self.gru = BlockLinear(3 * self.deter, self.blocks)
        self.prior_layers = [Block(self.hidden), Block(self.hidden)]
        self.prior_logits = dense(self.stoch * self.classes)
        self.post_layer = Block(self.hidden)
        self.post_logits = dense(self.stoch * self.classes)

    def core(self, deter, stoch, action):
        """(B, D), (B, S, C), (B, A) -> next deter (B, D). Continuous actions are scaled into [-1, 1]."""
        action = action / jax.lax.stop_gradient(jnp.maximum(1.0, jnp.abs(action)))
        g = self.blocks
        x = jnp.concatenate([self.in_deter(deter), self.in_stoch(stoch.reshape(*stoch.shape[:-2], -1)),
                             self.in_action(action)], -1)
        grouped = lambda v: v.reshape(*v.shape[:-1], g, v.shape[-1] // g)  # noqa: E731
        x = jnp.concatenate([grouped(deter), jnp.repeat(x[..., None, :], g, -2)], -1)
        x = nn.silu(self.gru_hidden_norm(self.gru_hidden(x)))
        reset, cand, update = jnp.split(grouped(self.gru(grouped(x))), 3, -1)
        flat = lambda v: v.reshape(*v.shape[:-2], -1)  # noqa: E731
        reset, cand, update = flat(reset), flat(cand), flat(update)
        cand = jnp.tanh(jax.nn.sigmoid(reset) * cand)
        update = jax.nn.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * deter

    def _logits(self, layer, x):
        x = layer(x).reshape(*x.shape[:-1], self.stoch, self.classes)
        return unimix(x, self.unimix)

    def prior(self, deter):
        """(..., D) -> unimixed log-probabilities (..., S, C) of z without the observation."""
        x = deter
        for layer in self.prior_layers:
            x = layer(x)
        return self._logits(self.prior_logits, x)

    def posterior(self, deter, embed):
        """(..., D), (..., E) -> unimixed log-probabilities (..., S, C) of z given the observation."""
        return self._logits(self.post_logits, self.post_layer(jnp.concatenate([deter, embed], -1)))

    def __call__(self, deter, stoch, action, embed):  # touches every layer, for init
        deter = self.core(deter, stoch, action)
        return self.prior(deter), self.posterior(deter, embed)


class VectorEncoder(nn.Module):
    layers: int
    units: int

    @nn.compact
    def __call__(self, obs):
        return MLP(self.layers, self.units)(symlog(obs.astype(jnp.float32)))


class VectorDecoder(nn.Module):
    """Predicts symlog(observation); its loss is the squared error summed over dimensions."""

    layers: int
    units: int
    size: int

    @nn.compact
    def __call__(self, feat):
        return dense(self.size)(MLP(self.layers, self.units)(feat))


class ImageEncoder(nn.Module):
    """(..., 64, 64, C) uint8 -> flat features: stride-2 4x4 convolutions down to 4x4, RMSNorm and SiLU."""

    depth: int
    mults: Sequence[int] = (2, 3, 4, 4)

    @nn.compact
    def __call__(self, obs):
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).astype(jnp.float32) / 255.0 - 0.5
        for mult in self.mults:
            x = Conv(self.depth * mult, (4, 4), strides=(2, 2), padding='SAME')(x)
            x = nn.silu(nn.RMSNorm(epsilon=1e-4)(x))
        return x.reshape(*lead, -1)


class ImageDecoder(nn.Module):
    """Features -> (..., 64, 64, C) predictions of frame / 255 - 0.5 (squared error summed over pixels)."""

    depth: int
    shape: Sequence[int]
    mults: Sequence[int] = (2, 3, 4, 4)

    @nn.compact
    def __call__(self, feat):
        lead = feat.shape[:-1]
        h, w, c = self.shape
        down = 2 ** len(self.mults)
        channels = [self.depth * m for m in self.mults][::-1]
        x = dense(h // down * w // down * channels[0])(feat.reshape(-1, feat.shape[-1]))
        x = x.reshape(-1, h // down, w // down, channels[0])
        for ch in channels[1:]:
            x = nn.ConvTranspose(ch, (4, 4), strides=(2, 2), padding='SAME')(x)
            x = nn.silu(nn.RMSNorm(epsilon=1e-4)(x))
        x = nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding='SAME')(x)
        return x.reshape(*lead, h, w, c)


class Head(nn.Module):
    """MLP with an output layer of `size` units initialised at scale `outscale` (0: zeros)."""

    layers: int
    units: int
    size: int
    outscale: float = 1.0

    @nn.compact
    def __call__(self, feat):
        return dense(self.size, self.outscale)(MLP(self.layers, self.units)(feat))


class Actor(nn.Module):
    """Discrete: logits (..., A). Continuous: (mean, raw std) (..., A) each, DreamerV3's bounded normal."""

    layers: int
    units: int
    action_dim: int
    discrete: bool

    @nn.compact
    def __call__(self, feat):
        x = MLP(self.layers, self.units)(feat)
        if self.discrete:
            return dense(self.action_dim, 0.01)(x)
        return dense(self.action_dim, 0.01, name='mean')(x), dense(self.action_dim, 0.01, name='std')(x)
