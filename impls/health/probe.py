"""Does a goal-conditioned agent use its goal? Measures shared by test_goal_conditioning.py and the
training-health monitor.

On N states s_i with their own future goals g_i (from the data) and M alternative goals per state
(the goals of other states of the batch):

* action sensitivity -- how much the policy's action changes when only the goal changes, relative to how
  much it varies across (state, goal) pairs (a scale floored at a tenth of the action range):
    continuous: mean_i,m ||mu(s_i, g_i) - mu(s_i, g'_m)|| / mean_i ||mu(s_i, g_i) - mu(s_j, g_j)||  (j a random other row)
    discrete:   the same with the total-variation distance between action distributions; plus the
                agreement of the argmax action under the true and the alternative goals.
  A policy that ignores its goal scores 0; one whose action is set by the goal alone scores about 1.
* value sensitivity -- the spread of Q(s_i, a_i, g) over goals relative to its spread over states, and a
  per-state AUC: the probability that Q(s_i, a_i, g_i) ranks above Q(s_i, a_i, g'_m) (ties count 1/2).
  0.5 means the critic cannot tell the true future goal from random ones.

Verdict from the action sensitivity: >= `uses` threshold -> 'uses the goal', >= `weak` -> 'weakly',
else 'ignores the goal'.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Thresholds:
    uses: float = 0.2  # action sensitivity at or above which the policy uses its goal
    weak: float = 0.05  # below this the policy ignores its goal

    def verdict(self, sensitivity: float) -> str:
        if sensitivity >= self.uses:
            return 'uses the goal'
        if sensitivity >= self.weak:
            return 'weakly uses the goal'
        return 'ignores the goal'


def _policy_outputs(agent, observations, goals):
    """Continuous: mean actions (B, A). Discrete: probabilities (B, A)."""
    dist = agent.policy(observations, goals)
    return dist.probs if agent.config['discrete'] else dist.mode()


def _distance(a, b, discrete):
    if discrete:
        return 0.5 * jnp.sum(jnp.abs(a - b), axis=-1)  # total variation
    return jnp.linalg.norm(a - b, axis=-1)


def goal_sensitivity(agent, batch, num_alt_goals: int = 8, seed: int = 0, thresholds: Thresholds = Thresholds()):
    """Probe an agent on a batch with observations, actions and actor_goals (N rows).

    Returns a dict of floats plus 'verdict' (str)."""
    obs = jnp.asarray(batch['observations'])
    goals = jnp.asarray(batch['actor_goals'])
    actions = jnp.asarray(batch['actions'])
    n = obs.shape[0]
    if n < 2:
        raise ValueError('goal_sensitivity needs at least 2 states.')
    if goals.shape[1:] != obs.shape[1:]:
        raise ValueError(
            f'goals have shape {goals.shape[1:]} but observations {obs.shape[1:]}: a goal must be an observation of '
            f'the same environment.'
        )
    rng = np.random.default_rng(seed)
    discrete = bool(agent.config['discrete'])
    # Alternative goals: the goals of other rows (never the row's own).
    alt_idx = (np.arange(n)[None, :] + rng.integers(1, n, size=(num_alt_goals, 1))) % n  # (M, N)
    other = (np.arange(n) + rng.integers(1, n, size=n)) % n

    base = _policy_outputs(agent, obs, goals)
    alt = jnp.stack([_policy_outputs(agent, obs, goals[idx]) for idx in alt_idx])  # (M, N, A)
    goal_change = float(jnp.mean(_distance(base[None], alt, discrete)))
    across_states = float(jnp.mean(_distance(base, base[other], discrete)))
    # A policy that is nearly constant would make the ratio explode on tiny goal effects: the scale is at
    # least a tenth of the action range (continuous actions in [-1, 1]^A) or a TV distance of 0.1.
    floor = 0.1 if discrete else 0.1 * float(np.sqrt(base.shape[-1]))
    result = {
        'action_change_goal': goal_change,
        'action_change_state': across_states,
        'action_sensitivity': goal_change / max(across_states, floor),
    }
    if discrete:
        result['argmax_agreement'] = float(jnp.mean(jnp.argmax(base, -1)[None] == jnp.argmax(alt, -1)))

    q_true = agent.critic_values(obs, goals, actions)
    q_alt = jnp.stack([agent.critic_values(obs, goals[idx], actions) for idx in alt_idx])  # (M, N)
    q_all = jnp.concatenate([q_true[None], q_alt])  # (M + 1, N)
    auc = jnp.mean((q_true[None] > q_alt) + 0.5 * (q_true[None] == q_alt))
    result.update(
        value_std_over_goals=float(jnp.mean(jnp.std(q_all, axis=0))),
        value_std_over_states=float(jnp.std(q_true)),
        value_sensitivity=float(jnp.mean(jnp.std(q_all, axis=0)) / max(float(jnp.std(q_true)), 1e-8)),
        value_auc=float(auc),
    )
    result['verdict'] = thresholds.verdict(result['action_sensitivity'])
    return result


def probe_batch(sampler, dataset, num_states: int, seed: int = 0):
    """A fixed probe batch: num_states transitions with their actor goals (the agent's own goal mix)."""
    rng = np.random.default_rng([seed, 7])
    idxs = dataset.sample_valid(rng, num_states)
    return sampler.sample(rng, idxs)

