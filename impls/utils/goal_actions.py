"""Shared pieces of discrete goal-conditioned policies trained by supervised learning (GCSL and the GCSL-transformer):
their collection schedule and their collapse measures."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def collect_actions(logits, key, step, random_steps: int, collect: str, noise: float = 0.0):
    """(B,) int32 actions for collection: uniformly random while `step` (environment steps done, may be traced) <
    random_steps, then greedy ('greedy') or sampled from the policy ('sample'), each replaced by a uniformly random
    action with probability `noise` (GCSL's epsilon-greedy `expl_noise`, 0.1)."""
    greedy = jnp.argmax(logits, -1).astype(jnp.int32)
    k_random, k_sample, k_noise = jax.random.split(key, 3)
    random = jax.random.randint(k_random, greedy.shape, 0, logits.shape[-1], jnp.int32)
    policy = jax.random.categorical(k_sample, logits).astype(jnp.int32) if collect == 'sample' else greedy
    explore = (step < random_steps) | (jax.random.uniform(k_noise, greedy.shape) < noise)
    return jnp.where(explore, random, policy)


GOAL_OFFSET_NEEDS_INDEX = (
    '--agent.goal_offset feeds the policy g - s[goal_index], so it needs the environment to name the observation '
    'dimensions its goal space reads (a `goal_index` attribute on the environment; the point mass and '
    'LunarLanderGoal have one). This environment has none: add it, or set --agent.goal_offset=False.')


def check_collection_config(config):
    """The collection and relabelling keys both goal policies share; ValueError names the bad one."""
    if config['collect'] not in ('greedy', 'sample'):
        raise ValueError(f"--agent.collect={config['collect']!r}: expected greedy (GCSL) or sample.")
    if not 0.0 <= config['collect_noise'] <= 1.0:
        raise ValueError(f"--agent.collect_noise={config['collect_noise']}: a probability in [0, 1] is needed (GCSL: 0.1).")
    if not 0.0 <= config['explore_after_goal'] <= 1.0:
        raise ValueError(f"--agent.explore_after_goal={config['explore_after_goal']}: the fraction of collection "
                         'episodes that explore once they reach their goal, in [0, 1] (0: GCSL).')
    if config['relabel_horizon'] < 0:
        raise ValueError('--agent.relabel_horizon must be >= 0 (0: any later state of the episode).')


def histogram_entropy(indices, n: int):
    """Entropy (nats) of the empirical distribution of integer `indices` over n values."""
    p = jnp.bincount(indices.reshape(-1), length=n) / indices.size
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


SWAP_SAMPLES = 64  # states of each batch re-evaluated under another goal (a quarter of the forward of a 256 batch)


def swapped_goals(goals):
    """The first SWAP_SAMPLES goals of a batch, each moved to another sample (rolled by one)."""
    return jnp.roll(goals[:SWAP_SAMPLES], 1, axis=0)


def collapse_metrics(logits, swapped_logits, actions, n: int) -> dict:
    """A batch's collapse measures, as fractions of log(n): the entropy of the histogram of predicted (argmax)
    actions, the share of states whose argmax is unchanged when their goal is swapped for another sample's
    (`swapped_logits`: the logits of the first len(swapped_logits) states under swapped_goals), and the entropy of
    the data's actions. impls.health's action_collapse detector reads them."""
    pred, pred_swapped = jnp.argmax(logits, -1), jnp.argmax(swapped_logits, -1)
    scale = jnp.log(n)
    return {
        'collapse/pred_action_entropy': histogram_entropy(pred, n) / scale,
        'collapse/goal_invariance': (pred[:pred_swapped.shape[0]] == pred_swapped).mean(),
        'collapse/data_action_entropy': histogram_entropy(actions, n) / scale,
    }
