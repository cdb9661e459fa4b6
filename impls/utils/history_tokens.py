"""Tokens of learning histories for the in-context agents (AD, compressed AD), and what both measure.

A token is one feature vector of F = O + (A + 1) + 1 + 3 numbers: a one-hot observation (O), a one-hot action
(A actions and a 'none' slot for the step before a history's first), a reward, and a one-hot token type.
    'joint':    one token per transition t: (s_t, a_{t-1}, r_{t-1}, type 0); the action a_t is read at that token
    'separate': three tokens per transition: (s_t, type 0), (a_t, type 1), (r_t, type 2); a_t is read at s_t's
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from impls.utils.optim import lr_schedule

TOKEN_LAYOUTS = {'joint': 1, 'separate': 3}  # tokens per transition


def feature_size(num_observations: int, num_actions: int) -> int:
    return num_observations + num_actions + 1 + 1 + 3


def _features(num_observations, num_actions, obs=None, action=None, reward=None, kind=0):
    shape = next(x.shape for x in (obs, action, reward) if x is not None)
    parts = [jax.nn.one_hot(obs, num_observations) if obs is not None else jnp.zeros(shape + (num_observations,)),
             jax.nn.one_hot(action, num_actions + 1) if action is not None else jnp.zeros(shape + (num_actions + 1,)),
             (reward.astype(jnp.float32) if reward is not None else jnp.zeros(shape))[..., None],
             jnp.broadcast_to(jax.nn.one_hot(kind, 3), shape + (3,))]
    return jnp.concatenate(parts, -1)


def state_token(layout, num_observations, num_actions, obs, prev_action, prev_reward):
    """The token carrying s_t (where a_t is read): joint (s_t, a_{t-1}, r_{t-1}); separate (s_t)."""
    if layout == 'joint':
        return _features(num_observations, num_actions, obs, prev_action, prev_reward, 0)
    return _features(num_observations, num_actions, obs=obs, kind=0)


def action_token(num_observations, num_actions, action):
    return _features(num_observations, num_actions, action=action, kind=1)


def reward_token(num_observations, num_actions, reward):
    return _features(num_observations, num_actions, reward=reward, kind=2)


def window_tokens(layout, num_observations, num_actions, window):
    """Tokens (B, L * per, F) of a window of L transitions (observations, actions, rewards, prev_actions,
    prev_rewards (B, L)) and the positions (L,) of the tokens where a_t is read."""
    s = state_token(layout, num_observations, num_actions, window['observations'], window['prev_actions'],
                    window['prev_rewards'])
    L = s.shape[1]
    if layout == 'joint':
        return s, jnp.arange(L)
    a = action_token(num_observations, num_actions, window['actions'])
    r = reward_token(num_observations, num_actions, window['rewards'])
    tokens = jnp.stack([s, a, r], 2).reshape(s.shape[0], 3 * L, s.shape[-1])
    return tokens, 3 * jnp.arange(L)


def chance_loss(num_actions: int) -> float:
    """The cross-entropy of a uniform prediction: ln A (1.609 for Dark Room's 5 actions)."""
    return math.log(num_actions)


def action_loss(logits, actions, label_smoothing: float, weights=None):
    """Mean cross-entropy of (..., A) logits against integer actions with label smoothing (over `weights`' mass when
    given), the unsmoothed cross-entropy, and the accuracy."""
    A = logits.shape[-1]
    target = optax.smooth_labels(jax.nn.one_hot(actions, A), label_smoothing)
    smoothed = optax.softmax_cross_entropy(logits, target)
    plain = optax.softmax_cross_entropy_with_integer_labels(logits, actions)
    correct = (jnp.argmax(logits, -1) == actions).astype(jnp.float32)
    if weights is None:
        return smoothed.mean(), plain.mean(), correct.mean()
    total = jnp.maximum(weights.sum(), 1.0)
    return (smoothed * weights).sum() / total, (plain * weights).sum() / total, (correct * weights).sum() / total


def sample_action(logits, key, temperature: float):
    """Sampled at `temperature` (0: the most likely action)."""
    if temperature == 0:
        return jnp.argmax(logits, -1).astype(jnp.int32)
    return jax.random.categorical(key, logits / temperature).astype(jnp.int32)


def optimizer_config(c) -> dict:
    """The keys of impls/utils/optim.py from the in-context agents' names (num_warmup_steps is warmup_steps)."""
    return dict(lr=c['lr'], warmup_steps=c['num_warmup_steps'], max_grad_norm=c['max_grad_norm'])


def imitation_step(agent, batch):
    """One optimiser step of an in-context agent (fields rng, params, opt_state, step, tx, config; a method
    loss(params, batch, key) -> (loss, info)): the new agent and the info with the gradient norm and the rate."""
    rng, key = jax.random.split(agent.rng)
    grads, info = jax.grad(agent.loss, has_aux=True)(agent.params, batch, key)
    updates, opt_state = agent.tx.update(grads, agent.opt_state, agent.params)
    info = dict(info, **{'grad/norm': optax.tree.norm(grads),
                         'optim/lr': lr_schedule(optimizer_config(agent.config))(agent.step)})
    return agent.replace(rng=rng, params=optax.apply_updates(agent.params, updates), opt_state=opt_state,
                         step=agent.step + 1), info
