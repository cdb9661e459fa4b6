"""Networks shared by the agents (OGBench's shapes: GELU MLPs with LayerNorm after each hidden
activation, variance-scaling init, an ensemble via nn.vmap)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from impls.utils.distributions import Categorical, DiagGaussian
from impls.utils.precision import Dense


def default_init(scale: float = 1.0):
    return nn.initializers.variance_scaling(scale, 'fan_avg', 'uniform')


def ensemblize(module_cls, num: int):
    """`num` independent copies of a module evaluated on the same inputs; outputs stacked on axis 0."""
    return nn.vmap(
        module_cls,
        variable_axes={'params': 0},
        split_rngs={'params': True},
        in_axes=None,
        out_axes=0,
        axis_size=num,
    )


class MLP(nn.Module):
    """Dense layers; `activation` (GELU by default) (+ LayerNorm) after every layer but the last unless
    activate_final."""

    hidden_dims: Sequence[int]
    activate_final: bool = False
    layer_norm: bool = False
    kernel_init: Any = default_init()
    activation: Any = nn.gelu

    @nn.compact
    def __call__(self, x):
        for i, size in enumerate(self.hidden_dims):
            x = Dense(size, kernel_init=self.kernel_init)(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                x = self.activation(x)
                if self.layer_norm:
                    x = nn.LayerNorm()(x)
        return x


def _encoder(name):
    from impls.utils.encoders import make_encoder  # late import: encoders build on MLP

    return make_encoder(name)


def early_fusion(observations, goals, encoder: Optional[str]):
    """[s, g] concatenated on the last axis (channels for images), through the image encoder if any."""
    inputs = observations if goals is None else jnp.concatenate([observations, goals], axis=-1)
    return inputs if encoder is None else _encoder(encoder)(inputs)


def one_hot_actions(actions, action_dim: Optional[int]):
    """Discrete actions (B,) int -> (B, A) one-hot; continuous actions pass through."""
    if action_dim is None:
        return actions
    return jnp.eye(action_dim, dtype=jnp.float32)[actions]


class GCActor(nn.Module):
    """pi(a | s, g): a diagonal Gaussian (continuous) or a categorical (discrete, action_dim given
    as `num_discrete`). Constant std 1 by default (OGBench's DDPG+BC setting)."""

    hidden_dims: Sequence[int]
    action_dim: int
    discrete: bool = False
    const_std: bool = True
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    final_fc_init_scale: float = 1e-2
    encoder: Optional[str] = None

    @nn.compact
    def __call__(self, observations, goals=None, temperature=1.0):
        inputs = early_fusion(observations, goals, self.encoder)
        h = MLP(self.hidden_dims, activate_final=True)(inputs)
        head = Dense(self.action_dim, kernel_init=default_init(self.final_fc_init_scale))(h)
        if self.discrete:
            return Categorical(logits=head / jnp.maximum(1e-6, temperature))
        if self.const_std:
            log_std = jnp.zeros_like(head)
        else:
            log_std = self.param('log_stds', nn.initializers.zeros, (self.action_dim,))
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return DiagGaussian(loc=head, scale=jnp.exp(log_std) * temperature * jnp.ones_like(head))


class GCValue(nn.Module):
    """V(s, g) or Q(s, a, g) as an MLP over the concatenated inputs; (E, B) with an ensemble, else (B,)."""

    hidden_dims: Sequence[int]
    layer_norm: bool = True
    num_ensemble: int = 1
    num_discrete: Optional[int] = None
    encoder: Optional[str] = None

    @nn.compact
    def __call__(self, observations, goals=None, actions=None):
        inputs = [early_fusion(observations, goals, self.encoder)]
        if actions is not None:
            inputs.append(one_hot_actions(actions, self.num_discrete))
        mlp = MLP if self.num_ensemble == 1 else ensemblize(MLP, self.num_ensemble)
        return mlp((*self.hidden_dims, 1), layer_norm=self.layer_norm)(jnp.concatenate(inputs, axis=-1))[..., 0]


class GCBilinearValue(nn.Module):
    """Q(s, a, g) = phi(s, a) . psi(g) / sqrt(d) (CRL). Returns (value, phi, psi) with phi, psi of shape
    (E, B, d) for an ensemble of E, else (B, d)."""

    hidden_dims: Sequence[int]
    latent_dim: int
    layer_norm: bool = True
    num_ensemble: int = 2
    num_discrete: Optional[int] = None
    encoder: Optional[str] = None

    @nn.compact
    def __call__(self, observations, goals, actions=None):
        if self.encoder is not None:  # separate state and goal encoders, shared by the ensemble
            observations = _encoder(self.encoder)(observations)
            goals = _encoder(self.encoder)(goals)
        mlp = MLP if self.num_ensemble == 1 else ensemblize(MLP, self.num_ensemble)
        phi_in = observations if actions is None else jnp.concatenate(
            [observations, one_hot_actions(actions, self.num_discrete)], axis=-1
        )
        phi = mlp((*self.hidden_dims, self.latent_dim), layer_norm=self.layer_norm, name='phi')(phi_in)
        psi = mlp((*self.hidden_dims, self.latent_dim), layer_norm=self.layer_norm, name='psi')(goals)
        value = jnp.sum(phi * psi, axis=-1) / jnp.sqrt(self.latent_dim)
        return value, phi, psi
