"""Contrastive RL (CRL; Eysenbach et al., 2022), as defined in OGBench.

Critic: Q(s, a, g) = phi(s, a) . psi(g) / sqrt(d), an ensemble of 2, trained with binary NCE over the
batch: for each pair (i, j) the logit Q(s_i, a_i, g_j) with label 1 iff i == j (g_i is a future state
of s_i, geometric offsets), i.e.
    L = mean_{i,j,e} BCE(sigmoid(phi_e(s_i, a_i) . psi_e(g_j) / sqrt(d)), I_ij).
Actor: DDPG+BC, L = -Q(s, mu(s, g), g) / stop_grad(mean |Q|) - alpha * log pi(a | s, g), with
Q = min over the ensemble; or AWR with a separate contrastive V(s, g) (actor_loss='awr').
Discrete actions: the critic takes one-hot actions; the DDPG term uses E_{a ~ pi}[Q(s, a, g)].
"""

from __future__ import annotations

import jax
import ml_collections

from impls.utils.gc_agent import GCAgent
from impls.utils.losses import actor_loss, binary_nce_loss
from impls.utils.networks import GCActor, GCBilinearValue


class CRLAgent(GCAgent):
    def contrastive_loss(self, batch, grad_params, module_name='critic'):
        """Binary NCE over all (state-action, goal) pairs of the batch."""
        actions = batch['actions'] if module_name == 'critic' else None
        _, phi, psi = self.network.select(module_name)(
            batch['observations'], batch['value_goals'], actions, params=grad_params
        )
        return binary_nce_loss(phi, psi)

    def critic_values(self, observations, goals, actions, params=None):
        """min over the ensemble of Q(s, a, g), (B,)."""
        q, _, _ = self.network.select('critic')(observations, goals, actions, params=params)
        return q.min(axis=0)

    @jax.jit
    def total_loss(self, batch, grad_params, rng=None):
        rng = rng if rng is not None else self.rng
        info = {}
        loss, critic_info = self.contrastive_loss(batch, grad_params, 'critic')
        info.update({f'critic/{k}': v for k, v in critic_info.items()})
        if self.config['actor_loss'] == 'awr':
            value_loss, value_info = self.contrastive_loss(batch, grad_params, 'value')
            info.update({f'value/{k}': v for k, v in value_info.items()})
            loss = loss + value_loss
        a_loss, a_info = self.actor_loss(batch, grad_params, rng)
        info.update({f'actor/{k}': v for k, v in a_info.items()})
        return loss + a_loss, info

    def actor_loss(self, batch, grad_params, rng):
        """DDPG+BC or AWR against the critic (impls.utils.losses.actor_loss)."""
        obs, goals = batch['observations'], batch['actor_goals']
        dist = self.network.select('actor')(obs, goals, params=grad_params)
        v = None
        if self.config['actor_loss'] == 'awr':
            v, _, _ = self.network.select('value')(obs, goals)
        c = self.config
        return actor_loss(dist, batch['actions'], lambda a: self.critic_values(obs, goals, a), kind=c['actor_loss'],
                          alpha=c['alpha'], discrete=c['discrete'], const_std=c['const_std'], rng=rng, v=v)

    @classmethod
    def create(cls, seed, example_batch, config):
        """example_batch: observations (B, ...) and actions (B, A) float or (B,) int; config['action_dim'] = A or
        the number of discrete actions."""
        ex_observations, ex_actions = example_batch['observations'], example_batch['actions']
        action_dim = config['action_dim']
        num_discrete = action_dim if config['discrete'] else None
        critic = GCBilinearValue(
            hidden_dims=config['value_hidden_dims'],
            latent_dim=config['latent_dim'],
            layer_norm=config['layer_norm'],
            num_ensemble=2,
            num_discrete=num_discrete,
            encoder=config['encoder'],
        )
        actor = GCActor(
            hidden_dims=config['actor_hidden_dims'],
            action_dim=action_dim,
            discrete=config['discrete'],
            const_std=config['const_std'],
            encoder=config['encoder'],
        )
        modules = dict(critic=critic, actor=actor)
        inputs = dict(critic=(ex_observations, ex_observations, ex_actions), actor=(ex_observations, ex_observations))
        if config['actor_loss'] == 'awr':
            modules['value'] = GCBilinearValue(
                hidden_dims=config['value_hidden_dims'],
                latent_dim=config['latent_dim'],
                layer_norm=config['layer_norm'],
                num_ensemble=1,
                encoder=config['encoder'],
            )
            inputs['value'] = (ex_observations, ex_observations)
        return cls.from_modules(seed, modules, inputs, config)


def get_config():
    return ml_collections.ConfigDict(
        dict(
            agent_name='crl',  # Agent name.
            lr=3e-4,  # Adam learning rate.
            warmup_steps=0,  # Optimiser steps of linear learning-rate warmup (0: none).
            max_grad_norm=0.0,  # Global-norm gradient clipping (0: off).
            batch_size=1024,  # Batch size.
            actor_hidden_dims=(512, 512, 512),  # Actor MLP hidden sizes.
            value_hidden_dims=(512, 512, 512),  # phi and psi MLP hidden sizes.
            latent_dim=512,  # Dimension d of phi and psi.
            layer_norm=True,  # LayerNorm in the critic MLPs.
            discount=0.99,  # Discount; geometric goal offsets have success probability 1 - discount.
            actor_loss='ddpgbc',  # 'ddpgbc' (DDPG+BC) or 'awr'.
            alpha=0.1,  # BC weight in DDPG+BC, or inverse temperature in AWR.
            const_std=True,  # Constant actor std (1); the DDPG term then uses the mean action.
            discrete=False,  # Discrete actions; set from the dataset's action dtype.
            action_dim=ml_collections.config_dict.placeholder(int),  # A, or the number of discrete actions; from the data.
            eval_temperature=0.0,  # Actor temperature in evaluation (0: the mode; --eval_temperature).
            frame_stack=ml_collections.config_dict.placeholder(int),  # Frames to stack (None: no stacking).
            encoder=ml_collections.config_dict.placeholder(str),  # Image encoder (None, 'impala_small', ...).
            p_aug=0.0,  # Probability of random-crop augmentation of an image batch.
            value_p_curgoal=0.0,  # Value goal: probability of the current state.
            value_p_trajgoal=1.0,  # Value goal: probability of a future state of the same episode.
            value_p_randomgoal=0.0,  # Value goal: probability of a random dataset state.
            value_geom_sample=True,  # Value goal: geometric (True) or uniform future offsets.
            actor_p_curgoal=0.0,  # Actor goal: probability of the current state.
            actor_p_trajgoal=1.0,  # Actor goal: probability of a future state of the same episode.
            actor_p_randomgoal=0.0,  # Actor goal: probability of a random dataset state.
            actor_geom_sample=False,  # Actor goal: geometric (True) or uniform future offsets.
            gc_negative=True,  # Rewards 0/-1 (True) or 1/0 (False); unused by CRL's loss.
        )
    )
