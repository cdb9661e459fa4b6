"""Tokens of learning histories for the in-context agents (AD, compressed AD), and what both measure.

A token is one feature vector of F = O + (A + 1) + 1 + 3 numbers: the observation (O), a one-hot action (A actions and
a 'none' slot for the step before a history's first), a reward, and a one-hot token type. The observation index
(`obs_encoding`):
    'index': one-hot over the num_observations indices (O = num_observations); nothing shared between cells
    'grid':  the index of a square n x n grid, x * n + y, as one-hot x next to one-hot y (O = 2n): cells in a row or
             column share features, so what is learned about one cell carries over to its neighbours
The token layout (`tokens`):
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
OBS_ENCODINGS = ('index', 'grid')


def grid_side(num_observations: int) -> int:
    """n of an n x n grid of `num_observations` cells; a ValueError naming the fix when it is not a square."""
    n = math.isqrt(num_observations)
    if n * n != num_observations:
        raise ValueError(f"--agent.obs_encoding=grid needs a square grid of observations (x * n + y), but the data "
                         f"have {num_observations}; use --agent.obs_encoding=index.")
    return n


def observation_size(num_observations: int, obs_encoding: str = 'index') -> int:
    if obs_encoding not in OBS_ENCODINGS:
        raise ValueError(f'--agent.obs_encoding={obs_encoding!r}: choose one of {", ".join(OBS_ENCODINGS)}.')
    return 2 * grid_side(num_observations) if obs_encoding == 'grid' else num_observations


def check_obs_encoding(c) -> None:
    """A ValueError naming the fix for an unknown `obs_encoding`, or 'grid' on observations that are not a square."""
    observation_size(c.get('num_observations') or 1, c['obs_encoding'])


def encode_observation(obs, num_observations: int, obs_encoding: str = 'index'):
    """(...) integer observations -> (..., observation_size) features."""
    if obs_encoding == 'grid':
        n = grid_side(num_observations)
        return jnp.concatenate([jax.nn.one_hot(obs // n, n), jax.nn.one_hot(obs % n, n)], -1)
    return jax.nn.one_hot(obs, num_observations)


def feature_size(num_observations: int, num_actions: int, obs_encoding: str = 'index') -> int:
    return observation_size(num_observations, obs_encoding) + num_actions + 1 + 1 + 3


def _features(num_observations, num_actions, obs=None, action=None, reward=None, kind=0, obs_encoding='index'):
    shape = next(x.shape for x in (obs, action, reward) if x is not None)
    O = observation_size(num_observations, obs_encoding)
    parts = [encode_observation(obs, num_observations, obs_encoding) if obs is not None else jnp.zeros(shape + (O,)),
             jax.nn.one_hot(action, num_actions + 1) if action is not None else jnp.zeros(shape + (num_actions + 1,)),
             (reward.astype(jnp.float32) if reward is not None else jnp.zeros(shape))[..., None],
             jnp.broadcast_to(jax.nn.one_hot(kind, 3), shape + (3,))]
    return jnp.concatenate(parts, -1)


def state_token(layout, num_observations, num_actions, obs, prev_action, prev_reward, obs_encoding='index'):
    """The token carrying s_t (where a_t is read): joint (s_t, a_{t-1}, r_{t-1}); separate (s_t)."""
    if layout == 'joint':
        return _features(num_observations, num_actions, obs, prev_action, prev_reward, 0, obs_encoding)
    return _features(num_observations, num_actions, obs=obs, kind=0, obs_encoding=obs_encoding)


def action_token(num_observations, num_actions, action, obs_encoding='index'):
    return _features(num_observations, num_actions, action=action, kind=1, obs_encoding=obs_encoding)


def reward_token(num_observations, num_actions, reward, obs_encoding='index'):
    return _features(num_observations, num_actions, reward=reward, kind=2, obs_encoding=obs_encoding)


def window_tokens(layout, num_observations, num_actions, window, obs_encoding='index'):
    """Tokens (B, L * per, F) of a window of L transitions (observations, actions, rewards, prev_actions,
    prev_rewards (B, L)) and the positions (L,) of the tokens where a_t is read."""
    s = state_token(layout, num_observations, num_actions, window['observations'], window['prev_actions'],
                    window['prev_rewards'], obs_encoding)
    L = s.shape[1]
    if layout == 'joint':
        return s, jnp.arange(L)
    a = action_token(num_observations, num_actions, window['actions'], obs_encoding)
    r = reward_token(num_observations, num_actions, window['rewards'], obs_encoding)
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
