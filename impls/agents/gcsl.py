"""GCSL, goal-conditioned supervised learning (Ghosh et al. 2021, "Learning to Reach Goals via Iterated Supervised
Learning"): imitate your own relabelled experience.

    data:  episodes collected toward sampled goals (uniformly random actions for the first `random_steps`
           environment steps, then the policy's greedy actions)
    relabel: a pair t < t' of one episode, drawn per sample, uniformly (or t' - t <= relabel_horizon);
           the goal becomes the goal-space point of s_{t'} (hindsight: a_t did lead there)
    loss:  -log pi(a_t | s_t, g = phi(s_{t'}))   (cross-entropy over the discretised actions)

Network: an MLP over [s, g] (hidden_dims, ReLU; GCSL: [400, 300]) to one logit per discrete action. Continuous
actions are discretised by the environment layer (impls.envs.goal_envs.discretize, 3 values per dimension).

Two options beyond GCSL, off by default (the gcsl_pointmass preset turns both on; benchmarks/RESULTS.md, issue 15):
    goal_offset:        the MLP also reads g - s[goal_index], the goal's offset from the state's own goal-space
                        point (the environment names goal_index, the observation dimensions its goal reads).
    explore_after_goal: the fraction of collection episodes that, once they reach their goal, take uniformly random
                        actions for the rest of the episode (impls.runs.goal_online applies it). The path the policy
                        knows, then a random walk on from its end: relabelled, the new states teach the way past
                        where the policy can already go. The other episodes hold at their goals (the data that
                        teaches stopping, which final-state success needs).

Collapse, measured on every batch (the failure where the policy predicts one action whatever the goal and its own
data then confirm it): the entropy of the histogram of predicted (argmax) actions, the fraction of states whose
argmax is unchanged when their goal is swapped for another sample's, and the entropy of the data's actions; each as
a fraction of log(number of actions) (impls/utils/goal_actions.py). impls.health's `action_collapse` detector
reads them.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from impls.utils.flax_utils import nonpytree_field
from impls.utils.goal_actions import (GOAL_OFFSET_NEEDS_INDEX, SWAP_SAMPLES, check_collection_config, collapse_metrics,
                                      collect_actions, swapped_goals)
from impls.utils.networks import MLP
from impls.utils.optim import lr_schedule, make_optimizer


class GoalPolicy(nn.Module):
    """Logits over `num_actions` from [observation, goal] (early fusion: state and goal merged at the input); with
    `goal_index` (the observation dimensions the goal space reads) also the goal's offset g - s[goal_index]."""

    num_actions: int
    hidden_dims: tuple = (400, 300)
    goal_index: tuple | None = None

    @nn.compact
    def __call__(self, observations, goals):
        observations, goals = observations.astype(jnp.float32), goals.astype(jnp.float32)
        x = jnp.concatenate([observations, goals], -1)
        if self.goal_index is not None:
            x = jnp.concatenate([x, goals - observations[..., jnp.asarray(self.goal_index)]], -1)
        return MLP((*self.hidden_dims, self.num_actions), activation=nn.relu)(x)


class GCSLAgent(flax.struct.PyTreeNode):
    rng: Any
    params: Any
    opt_state: Any
    step: Any
    network: Any = nonpytree_field()
    tx: Any = nonpytree_field()
    config: Any = nonpytree_field()

    action_kinds = ('discrete',)  # continuous spaces arrive discretised (impls.envs.goal_envs.discretize)

    def logits(self, observations, goals, params=None):
        return self.network.apply({'params': self.params if params is None else params}, observations, goals)

    def loss(self, params, batch):
        logits = self.logits(batch['observations'], batch['goals'], params)
        actions = batch['actions'].astype(jnp.int32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, actions).mean()
        probs = jax.nn.softmax(logits)
        info = {
            'actor/loss': loss,
            'actor/accuracy': (jnp.argmax(logits, -1) == actions).mean(),
            'actor/entropy': -(probs * jax.nn.log_softmax(logits)).sum(-1).mean(),
        }
        return loss, (info, logits)

    @jax.jit
    def update(self, batch):
        """One step on a relabelled batch: observations (B, D), goals (B, G), actions (B,) int."""
        grads, (info, logits) = jax.grad(self.loss, has_aux=True)(self.params, batch)
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        swapped = self.logits(batch['observations'][:SWAP_SAMPLES], swapped_goals(batch['goals']))
        info = dict(info, **collapse_metrics(logits, swapped, batch['actions'].astype(jnp.int32),
                                             self.config['action_dim']))
        info['grad/norm'] = optax.tree.norm(grads)
        info['optim/lr'] = lr_schedule(self.config)(self.step)
        return self.replace(params=params, opt_state=opt_state, step=self.step + 1), info

    def initial_carry(self, batch_size: int):
        """GCSL carries nothing between steps."""
        return ()

    def act(self, carry, observations, goals, key, mode='eval', progress=(0, 1)):
        """Action indices (B,) int32. 'eval': greedy. 'explore': uniformly random while progress[0] (environment
        steps done) < random_steps, then greedy (GCSL collects greedily), or sampled from the policy when
        collect='sample' (explore_after_goal is applied by the collection loop). Pure and jittable (progress[0] may
        be traced)."""
        logits = self.logits(observations, goals)
        if mode == 'eval':
            return jnp.argmax(logits, -1).astype(jnp.int32), carry
        c = self.config
        return collect_actions(logits, key, progress[0], c['random_steps'], c['collect'],
                               c['collect_noise']), carry

    @staticmethod
    def replay(config) -> dict:
        """Whole episodes, relabelled by the loop (impls.runs.goal_online) into (s_t, a_t, phi(s_t')) pairs."""
        return dict(kind='goal_episodes', relabel_horizon=config['relabel_horizon'])

    check_config = staticmethod(check_collection_config)

    @classmethod
    def create(cls, seed, example_batch, config):
        """example_batch: observations (B, D), goals (B, G); config['action_dim']: the number of actions."""
        rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
        goal_index = None
        if config['goal_offset']:
            if config['goal_index'] is None:
                raise ValueError(GOAL_OFFSET_NEEDS_INDEX)
            goal_index = tuple(int(i) for i in config['goal_index'])
        network = GoalPolicy(int(config['action_dim']), tuple(config['hidden_dims']), goal_index)
        params = network.init(init_rng, example_batch['observations'], example_batch['goals'])['params']
        tx = make_optimizer(config)
        return cls(rng=rng, params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32), network=network,
                   tx=tx, config=flax.core.FrozenDict(**config))


def get_config():
    return ml_collections.ConfigDict(
        dict(
            agent_name='gcsl',
            lr=5e-4,  # Adam (GCSL).
            warmup_steps=0,  # Linear learning-rate warmup (optimiser steps).
            batch_size=256,  # Relabelled pairs per update (GCSL).
            hidden_dims=(400, 300),  # MLP over [s, g] (GCSL's, ReLU).
            action_dim=ml_collections.config_dict.placeholder(int),  # Discrete actions; from the environment.
            action_bins=3,  # Values per dimension when discretising a continuous action space (GCSL: 3).
            max_actions=256,  # Refuse discretisations with more actions than this.
            random_steps=10_000,  # Environment steps of uniformly random collection first (GCSL: 10k).
            collect='greedy',  # After those: 'greedy' (GCSL) or 'sample' (from the policy).
            collect_noise=0.0,  # After those, each action uniformly random with this probability (GCSL's expl_noise: 0.1).
            relabel_horizon=0,  # Largest t' - t of a relabelled pair (0: any later state of the episode).
            explore_after_goal=0.0,  # Fraction of collection episodes that take random actions once they reach
            # their goal (the loop applies it; the rest hold at the goal). 0: GCSL.
            goal_offset=False,  # Also feed g - s[goal_index] to the MLP (needs an environment with a goal_index).
            goal_index=ml_collections.config_dict.placeholder(tuple),  # From the environment when goal_offset.
            updates_per_step=1.0,  # Gradient updates per environment step (GCSL: 1).
        )
    )
