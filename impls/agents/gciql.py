"""Goal-conditioned implicit Q-learning (GCIQL; Kostrikov et al. 2021, goal-conditioned as in OGBench).

Value:  L_V = E[ L2_tau( min_e Qbar_e(s, a, g) - V(s, g) ) ] (expectile tau, target critic Qbar).
Critic: L_Q = E[ sum_e (Q_e(s, a, g) - (r + gamma * m * V(s', g)))^2 ], r in {0, -1}, m = 1 - success.
Target: Qbar <- tau_polyak * Q + (1 - tau_polyak) * Qbar after every step.
Actor:  DDPG+BC or AWR (impls.utils.losses.actor_loss).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from impls.utils.flax_utils import polyak
from impls.utils.gc_agent import GCAgent
from impls.utils.losses import actor_loss, expectile_loss
from impls.utils.networks import GCActor, GCValue


class GCIQLAgent(GCAgent):
    def value_loss(self, batch, grad_params):
        q = self.network.select('target_critic')(batch['observations'], batch['value_goals'], batch['actions']).min(0)
        v = self.network.select('value')(batch['observations'], batch['value_goals'], params=grad_params)
        loss = expectile_loss(q - v, self.config['expectile']).mean()
        return loss, {'loss': loss, 'v_mean': v.mean(), 'v_max': v.max(), 'v_min': v.min()}

    def critic_loss(self, batch, grad_params):
        next_v = self.network.select('value')(batch['next_observations'], batch['value_goals'])
        target = batch['rewards'] + self.config['discount'] * batch['masks'] * next_v
        q = self.network.select('critic')(batch['observations'], batch['value_goals'], batch['actions'], params=grad_params)
        loss = ((q - target[None]) ** 2).sum(axis=0).mean()
        return loss, {
            'loss': loss,
            'q_mean': q.mean(),
            'q_max': q.max(),
            'q_min': q.min(),
            'target_mean': target.mean(),
            'target_max': target.max(),
            'target_min': target.min(),
        }

    def critic_values(self, observations, goals, actions, params=None):
        """min over the ensemble of Q(s, a, g), (B,)."""
        return self.network.select('critic')(observations, goals, actions, params=params).min(axis=0)

    @jax.jit
    def total_loss(self, batch, grad_params, rng=None):
        rng = rng if rng is not None else self.rng
        info = {}
        v_loss, v_info = self.value_loss(batch, grad_params)
        c_loss, c_info = self.critic_loss(batch, grad_params)
        a_loss, a_info = self.actor_loss(batch, grad_params, rng)
        for prefix, part in (('value', v_info), ('critic', c_info), ('actor', a_info)):
            info.update({f'{prefix}/{k}': v for k, v in part.items()})
        return v_loss + c_loss + a_loss, info

    def actor_loss(self, batch, grad_params, rng):
        """DDPG+BC or AWR against the critic (impls.utils.losses.actor_loss)."""
        obs, goals = batch['observations'], batch['actor_goals']
        dist = self.network.select('actor')(obs, goals, params=grad_params)
        v = self.network.select('value')(obs, goals) if self.config['actor_loss'] == 'awr' else None
        c = self.config
        return actor_loss(dist, batch['actions'], lambda a: self.critic_values(obs, goals, a), kind=c['actor_loss'],
                          alpha=c['alpha'], discrete=c['discrete'], const_std=c['const_std'], rng=rng, v=v)

    def after_step(self, network):
        """Polyak-average the target critic towards the critic after every step."""
        params = dict(network.params)
        params['modules_target_critic'] = polyak(
            params['modules_critic'], params['modules_target_critic'], self.config['tau']
        )
        return network.replace(params=params)

    @classmethod
    def create(cls, seed, example_batch, config):
        """example_batch: observations (B, ...) and actions (B, A) float or (B,) int; config['action_dim'] = A or
        the number of discrete actions."""
        ex_observations, ex_actions = example_batch['observations'], example_batch['actions']
        action_dim = config['action_dim']
        num_discrete = action_dim if config['discrete'] else None

        def critic():
            return GCValue(config['value_hidden_dims'], config['layer_norm'], num_ensemble=2, num_discrete=num_discrete,
                           encoder=config['encoder'])

        modules = dict(
            value=GCValue(config['value_hidden_dims'], config['layer_norm'], num_ensemble=1, encoder=config['encoder']),
            critic=critic(),
            target_critic=critic(),
            actor=GCActor(
                hidden_dims=config['actor_hidden_dims'],
                action_dim=action_dim,
                discrete=config['discrete'],
                const_std=config['const_std'],
                encoder=config['encoder'],
            ),
        )
        q_inputs = (ex_observations, ex_observations, ex_actions)
        inputs = dict(
            value=(ex_observations, ex_observations),
            critic=q_inputs,
            target_critic=q_inputs,
            actor=(ex_observations, ex_observations),
        )

        def copy_target(params):  # a copy, not an alias: the fused update donates its input buffers
            return dict(params, modules_target_critic=jax.tree.map(jnp.copy, params['modules_critic']))

        return cls.from_modules(seed, modules, inputs, config, prepare_params=copy_target)


def get_config():
    return ml_collections.ConfigDict(
        dict(
            agent_name='gciql',  # Agent name.
            lr=3e-4,  # Adam learning rate.
            warmup_steps=0,  # Optimiser steps of linear learning-rate warmup (0: none).
            max_grad_norm=0.0,  # Global-norm gradient clipping (0: off).
            batch_size=1024,  # Batch size.
            actor_hidden_dims=(512, 512, 512),  # Actor MLP hidden sizes.
            value_hidden_dims=(512, 512, 512),  # Value and critic MLP hidden sizes.
            layer_norm=True,  # LayerNorm in the value and critic MLPs.
            discount=0.99,  # Discount factor.
            tau=0.005,  # Polyak rate of the target critic.
            expectile=0.9,  # IQL expectile.
            actor_loss='ddpgbc',  # 'ddpgbc' (DDPG+BC) or 'awr'.
            alpha=0.3,  # BC weight in DDPG+BC, or inverse temperature in AWR.
            const_std=True,  # Constant actor std (1); the DDPG term then uses the mean action.
            discrete=False,  # Discrete actions; set from the dataset's action dtype.
            action_dim=ml_collections.config_dict.placeholder(int),  # A, or the number of discrete actions; from the data.
            eval_temperature=0.0,  # Actor temperature in evaluation (0: the mode; --eval_temperature).
            frame_stack=ml_collections.config_dict.placeholder(int),  # Frames to stack (None: no stacking).
            encoder=ml_collections.config_dict.placeholder(str),  # Image encoder (None, 'impala_small', ...).
            p_aug=0.0,  # Probability of random-crop augmentation of an image batch.
            value_p_curgoal=0.2,  # Value goal: probability of the current state.
            value_p_trajgoal=0.5,  # Value goal: probability of a future state of the same episode.
            value_p_randomgoal=0.3,  # Value goal: probability of a random dataset state.
            value_geom_sample=True,  # Value goal: geometric (True) or uniform future offsets.
            actor_p_curgoal=0.0,  # Actor goal: probability of the current state.
            actor_p_trajgoal=1.0,  # Actor goal: probability of a future state of the same episode.
            actor_p_randomgoal=0.0,  # Actor goal: probability of a random dataset state.
            actor_geom_sample=False,  # Actor goal: geometric (True) or uniform future offsets.
            gc_negative=True,  # Rewards 0/-1 (True) or 1/0 (False).
        )
    )
