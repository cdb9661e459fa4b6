"""The two action distributions our actors need, as small pytrees (no distrax/tfp dependency:
importing them costs seconds and pins a nightly build).

Shapes: batch dims (...) then the action dim A for the Gaussian; logits (..., A) for the categorical.
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)  # a Python float: no jax computation at import


class DiagGaussian(flax.struct.PyTreeNode):
    """N(loc, diag(scale^2)) over the last axis."""

    loc: jax.Array
    scale: jax.Array

    def log_prob(self, x):
        z = (x - self.loc) / self.scale
        return jnp.sum(-0.5 * z**2 - jnp.log(self.scale) - 0.5 * _LOG_2PI, axis=-1)

    def mode(self):
        return self.loc

    def sample(self, seed):
        return self.loc + self.scale * jax.random.normal(seed, self.loc.shape, self.loc.dtype)

    def entropy(self):
        return jnp.sum(0.5 + 0.5 * _LOG_2PI + jnp.log(self.scale) * jnp.ones_like(self.loc), axis=-1)


class Categorical(flax.struct.PyTreeNode):
    """Categorical over the last axis of `logits`."""

    logits: jax.Array

    @property
    def log_probs(self):
        return jax.nn.log_softmax(self.logits, axis=-1)

    @property
    def probs(self):
        return jax.nn.softmax(self.logits, axis=-1)

    def log_prob(self, x):
        return jnp.take_along_axis(self.log_probs, x[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def mode(self):
        return jnp.argmax(self.logits, axis=-1)

    def sample(self, seed):
        return jax.random.categorical(seed, self.logits, axis=-1)

    def entropy(self):
        return -jnp.sum(self.probs * self.log_probs, axis=-1)


def unimix(logits, mix: float):
    """Log-probabilities of (1 - mix) softmax(logits) + mix / K over the last axis (DreamerV3's 1% uniform mix:
    no class's probability reaches 0, so KL terms and log-probabilities stay finite)."""
    if not mix:
        return jax.nn.log_softmax(logits, -1)
    probs = (1.0 - mix) * jax.nn.softmax(logits, -1) + mix / logits.shape[-1]
    return jnp.log(probs)


def categorical_kl(logits_p, logits_q):
    """KL(p || q) over the last axis, from (normalised or not) logits."""
    log_p, log_q = jax.nn.log_softmax(logits_p, -1), jax.nn.log_softmax(logits_q, -1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), -1)


def straight_through_onehot(key, logits):
    """A one-hot sample of Categorical(logits) whose gradient is that of the probabilities (straight-through)."""
    index = jax.random.categorical(key, logits, -1)
    onehot = jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)
    probs = jax.nn.softmax(logits, -1)
    return onehot + probs - jax.lax.stop_gradient(probs)
