"""Pure return and value-target functions (DreamerV3, Hafner et al. 2023), each over explicit time axes.

symlog(x) = sign(x) log(1 + |x|), symexp its inverse. Two-hot targets over bins b_0 < ... < b_{K-1}: a scalar y
between b_k and b_{k+1} puts weight (b_{k+1} - y) / (b_{k+1} - b_k) on bin k and the rest on bin k + 1, and the
prediction is sum_k p_k b_k. lambda_return follows DreamerV3's convention: the return from state t bootstraps from
state t + 1 (R_t = r_{t+1} + ..., never V(s_t)).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def symlog(x):
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x):
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def symexp_bins(num_bins: int = 255, limit: float = 20.0):
    """DreamerV3's reward and value bins: symexp(linspace(-limit, limit, num_bins)), exactly symmetric about 0 (the
    negative half mirrors the positive one: a float32 linspace is not symmetric to the last bit, and at symexp(20) ~
    5e8 one ulp of the grid moves the mean of uniform probabilities by several units)."""
    half = symexp(jnp.linspace(0.0, limit, (num_bins + 1) // 2, dtype=jnp.float32))
    if num_bins % 2:
        return jnp.concatenate([-half[1:][::-1], half])
    return jnp.concatenate([-half[::-1], half])


def twohot(y, bins):
    """(...,) targets -> (..., K) two-hot weights over `bins` (K,), clipped to the outer bins."""
    k = bins.shape[0]
    below = jnp.clip(jnp.sum(bins <= y[..., None], -1) - 1, 0, k - 1)
    above = jnp.clip(k - jnp.sum(bins > y[..., None], -1), 0, k - 1)
    equal = below == above
    to_below = jnp.where(equal, 1.0, jnp.abs(bins[below] - y))
    to_above = jnp.where(equal, 1.0, jnp.abs(bins[above] - y))
    total = to_below + to_above
    return (jax.nn.one_hot(below, k) * (to_above / total)[..., None]
            + jax.nn.one_hot(above, k) * (to_below / total)[..., None])


def twohot_loss(logits, y, bins):
    """Cross-entropy of (..., K) logits against the two-hot encoding of targets y (...,) (no gradient to y)."""
    target = twohot(jax.lax.stop_gradient(y), bins)
    return -jnp.sum(target * jax.nn.log_softmax(logits, -1), -1)


def twohot_mean(logits, bins):
    """sum_k p_k b_k for bins symmetric about 0 (symexp_bins), computed as sum_j (p_{m+j} - p_{m-j}) b_{m+j} over the
    positive half: probabilities are subtracted before they meet the huge outer bins (~5e8), so uniform probabilities
    give exactly 0 -- DreamerV3's zero-initialised heads rely on it -- whatever order the compiler sums in (a plain
    sum, even paired from the middle outwards, left 0.17 under jit)."""
    probs = jax.nn.softmax(logits, -1)
    k = bins.shape[0]
    m = k // 2
    upper, lower = probs[..., k - m:], probs[..., :m][..., ::-1]
    middle = probs[..., m] * bins[m] if k % 2 else 0.0
    return middle + jnp.sum((upper - lower) * bins[k - m:], -1)


def lambda_return(rewards, continues, values, bootstrap, discount: float, lambda_: float, last=None):
    """TD(lambda) returns of (B, T) sequences of states, DreamerV3's `lambda_return`.

    rewards[t] is the reward received on entering state t, continues[t] = 1 - terminal(state t), values[t] and
    bootstrap[t] the value estimates of state t, last[t] marks the last state of an episode (the state after it belongs
    to another episode). For t < T - 1:

        R_t = r_{t+1} + discount c_{t+1} ((1 - lam_{t+1}) boot_{t+1} + lam_{t+1} R_{t+1}),   R_{T-1} = boot_{T-1}

    with lam_{t+1} = lambda_ (1 - last_{t+1}). Returns (B, T - 1): R_0 .. R_{T-2}. (`values` is accepted for the
    shape check and symmetry with DreamerV3; the recursion reads `bootstrap`.)
    """
    chex.assert_rank([rewards, continues, values, bootstrap], 2)
    chex.assert_equal_shape([rewards, continues, values, bootstrap])
    last = jnp.zeros_like(rewards) if last is None else last.astype(rewards.dtype)
    live = continues[:, 1:] * discount
    lam = (1.0 - last[:, 1:]) * lambda_
    interm = rewards[:, 1:] + (1.0 - lam) * live * bootstrap[:, 1:]

    def step(next_return, xs):
        interm_t, live_t, lam_t = xs
        ret = interm_t + live_t * lam_t * next_return
        return ret, ret

    _, rets = jax.lax.scan(step, bootstrap[:, -1], (interm.T, live.T, lam.T), reverse=True)
    return rets.T


def update_percentile_scale(state, x, rate: float, low: float = 5.0, high: float = 95.0, limit: float = 1.0):
    """DreamerV3's return normaliser: EMAs (rate) of the low and high percentiles of x, and the scale
    max(limit, high - low) that returns are divided by. state = (low EMA, high EMA); returns (state, scale)."""
    lo, hi = jnp.percentile(x, low), jnp.percentile(x, high)
    new = ((1 - rate) * state[0] + rate * lo, (1 - rate) * state[1] + rate * hi)
    return new, jnp.maximum(limit, new[1] - new[0])
