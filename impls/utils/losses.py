"""Loss terms shared by the agents: pure functions of explicit arrays (and, for the actor, the critic as a
function of actions), never of an agent. Each returns (loss, info) with unnamespaced info keys; the agent adds
its `critic/`, `value/` or `actor/` prefix (the metric vocabulary: docs/ARCHITECTURE.md)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from impls.utils.precision import einsum


def expectile_loss(diff, expectile):
    """Asymmetric L2: |tau - 1(diff < 0)| * diff^2 (IQL, Kostrikov et al. 2021), elementwise."""
    weight = jnp.where(diff >= 0, expectile, 1.0 - expectile)
    return weight * diff**2


def binary_nce_loss(phi, psi):
    """Binary NCE over all pairs of a batch (CRL).

    phi, psi: (E, B, d) or (B, d). logits[e, i, j] = phi_e[i] . psi_e[j] / sqrt(d); label I[i, j].
    Loss = mean over e, i, j of sigmoid_binary_cross_entropy(logits, I).
    """
    if phi.ndim == 2:
        phi, psi = phi[None], psi[None]
    chex.assert_rank(phi, 3)
    chex.assert_equal_shape([phi, psi])
    return binary_nce_stats(einsum('eik,ejk->eij', phi, psi) / jnp.sqrt(phi.shape[-1]))


def binary_nce_stats(logits):
    """Binary NCE loss and statistics from pairwise logits (E, B, B): positives on the diagonal.

    The loss is the mean sigmoid cross-entropy, written as mean(softplus(logits)) - sum(diagonal) / (E B^2)
    (softplus(x) - x y equals -y log sigmoid(x) - (1 - y) log sigmoid(-x)): one softplus per pair instead of two
    log-sigmoids, and no (B, B) label array. The ensemble axis leads, so every pass over the (E, B, B) logits is
    contiguous (with it last, XLA:CPU spent more time transposing the logits than computing them).
    """
    chex.assert_rank(logits, 3)
    ensemble, batch_size = logits.shape[0], logits.shape[1]
    chex.assert_axis_dimension(logits, 2, batch_size)
    diagonal = jnp.diagonal(logits, axis1=1, axis2=2)  # (E, B)
    loss = jax.nn.softplus(logits).mean() - diagonal.sum() / (ensemble * batch_size * batch_size)
    mean_logits = logits.mean(axis=0)  # (B, B)
    mean_pos = diagonal.mean(axis=0)  # (B,)
    eye = jnp.eye(batch_size, dtype=bool)
    return loss, {
        'loss': loss,
        'binary_accuracy': jnp.mean((mean_logits > 0) == eye),
        # The positive scores highest in its row (argmax == i up to exact ties, without XLA:CPU's slow argmax).
        'categorical_accuracy': jnp.mean(mean_pos >= mean_logits.max(axis=1)),
        'logits_pos': mean_pos.mean(),
        'logits_neg': (mean_logits.sum() - mean_pos.sum()) / (batch_size * (batch_size - 1)),
        'logits': mean_logits.mean(),
    }


def actor_loss(dist, actions, q_fn, *, kind: str, alpha: float, discrete: bool, const_std: bool, rng, v=None):
    """Goal-conditioned actor loss, AWR or DDPG+BC (OGBench's definitions), on a batch of B (state, goal) pairs.

    dist: pi(. | s, g) for the batch (log_prob, mode, sample, entropy; .probs / .logits when discrete, .scale when
      continuous); actions: the data's actions, (B,) int or (B, A) float; q_fn(actions) -> Q(s, actions, g) (B,),
      the critic at the batch's states and goals (min over the ensemble, current parameters); v: V(s, g) (B,),
      for AWR; rng: for sampling the DDPG action of a stochastic actor.

    DDPG+BC: L = -mean(Q(s, a_pi, g)) / stop_grad(mean |Q|) - alpha * mean(log pi(a_data | s, g)), with
      a_pi the clipped mean action (const_std) or a sample; for discrete actions the first term uses
      E_{a ~ pi}[Q(s, a, g)] = sum_a pi(a | s, g) Q(s, a, g), which is differentiable.
    AWR: L = -mean(min(exp(alpha * (Q(s, a_data, g) - V(s, g))), 100) * log pi(a_data | s, g)).
    Returns (loss, info) with unnamespaced keys (the agent adds `actor/`).
    """
    log_prob = dist.log_prob(actions)
    chex.assert_rank(log_prob, 1)
    batch_size = log_prob.shape[0]
    info = {'bc_log_prob': log_prob.mean()}
    if discrete:
        info['accuracy'] = jnp.mean(dist.mode() == actions)
        info['entropy'] = dist.entropy().mean()
    else:
        info['mse'] = jnp.mean((dist.mode() - actions) ** 2)
        info['std'] = jnp.mean(dist.scale)

    if kind == 'awr':
        chex.assert_shape(v, (batch_size,))
        q = q_fn(actions)
        adv = q - v
        weights = jnp.minimum(jnp.exp(adv * alpha), 100.0)
        loss = -(weights * log_prob).mean()
        info.update(loss=loss, adv=adv.mean(), q_mean=q.mean())
        return loss, info

    if kind != 'ddpgbc':
        raise ValueError(f'unknown actor_loss {kind!r}; use "ddpgbc" or "awr".')
    if discrete:
        num_actions = dist.logits.shape[-1]
        all_actions = jnp.broadcast_to(jnp.arange(num_actions), (batch_size, num_actions))
        q_all = jax.vmap(q_fn, in_axes=1, out_axes=1)(all_actions)  # (B, A)
        q = jnp.sum(dist.probs * q_all, axis=-1)
    else:
        q_actions = dist.mode() if const_std else dist.sample(seed=rng)
        q = q_fn(jnp.clip(q_actions, -1, 1))
    chex.assert_shape(q, (batch_size,))
    q_loss = -q.mean() / jax.lax.stop_gradient(jnp.abs(q).mean() + 1e-6)
    bc_loss = -(alpha * log_prob).mean()
    loss = q_loss + bc_loss
    # q_loss is normalised by mean |Q| (~1 by construction); q_loss_raw = -mean(Q) is the term before that
    # scaling, to set beside bc_loss when asking which term drives the actor.
    info.update(loss=loss, q_loss=q_loss, q_loss_raw=-q.mean(), bc_loss=bc_loss, q_mean=q.mean(),
                q_abs_mean=jnp.abs(q).mean())
    return loss, info
