"""Contrastive Metric Distillation (CMD; Myers et al., ICML 2024).

Critic: a quasimetric distance d(s, a, g) = MRN(phi(s, a), psi(g)) (impls.utils.quasimetric), an
ensemble of 2, trained with binary NCE over all pairs of the batch with logits -d / sqrt(D) + b:
    L = mean_{i,j,e} BCE(sigmoid(-d_e(s_i, a_i, g_j) / sqrt(D) + b), I_ij),
where g_i is a future state of s_i (geometric offsets). The actor uses Q(s, a, g) = min_e -d_e(s, a, g)
in DDPG+BC: L = -mean(Q(s, mu(s, g), g)) / stop_grad(mean |Q|) - alpha * mean(log pi(a | s, g)).

goal_action (how psi sees the goal):
  * 'none' (default): an action-free goal network psi(g), so the distance is a function of (s, a, g)
    alone and is the same in training, acting and analysis.
  * 'roll': the fork users know (vivekmyers/ogbench cmd.py): one shared (state, action) network for both
    sides, the goal fed the batch's actions rolled by one row. The goal's representation then depends
    on an unrelated transition's action; analysis uses the same rolled actions as training.
logit_bias (default on): logits are -d / sqrt(D) + b with a learned scalar b that starts at the base rate
log(1 / (B - 1)). Without it (the fork's form), reaching the base rate needs d ~ sqrt(D) log(B - 1) (~94 at
D = 512, B = 64), and with separate phi and psi the quickest way there is a goal-independent offset between
their asymmetric halves. The max in MRN's asymmetric part then picks the same coordinate for every pair,
each row's gradient through it sums to (p - 1) + (B - 1) p = 0 at p = 1 / B, and the critic sits at the
constant, goal-blind solution (loss flat, categorical accuracy 1 / B, equal positive and negative distances)
until noise pushes it off: 2.5k steps on pointmaze at B = 64, against 250 with the bias (benchmarks/cmd_critic.py). The shared network of 'roll' cancels such an offset, which is why the fork learns.

The pairwise distances are computed blockwise (no (E, B, B, D) tensor); the symmetric part adds 1e-8
inside the square root, where the fork adds 1e-8 to each coordinate difference (a difference below
float32 resolution).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from impls.utils.encoders import make_encoder
from impls.utils.gc_agent import GCAgent
from impls.utils.losses import actor_loss, binary_nce_stats
from impls.utils.networks import MLP, GCActor, ensemblize, one_hot_actions
from impls.utils.quasimetric import mrn_distance, pairwise_mrn_distance

GOAL_ACTION_MODES = ('none', 'roll')


class Representation(nn.Module):
    """x (B, ...) [+ action] -> (E, B, D): an ensemble of MLPs after an optional image encoder."""

    hidden_dims: tuple
    latent_dim: int
    layer_norm: bool = True
    num_ensemble: int = 2
    num_discrete: int | None = None
    encoder: str | None = None

    @nn.compact
    def __call__(self, x, actions=None):
        if self.encoder is not None:
            x = make_encoder(self.encoder)(x)
        if actions is not None:
            x = jnp.concatenate([x, one_hot_actions(actions, self.num_discrete)], axis=-1)
        mlp = ensemblize(MLP, self.num_ensemble)((*self.hidden_dims, self.latent_dim), layer_norm=self.layer_norm)
        return mlp(x)


class LogitBias(nn.Module):
    """A learned scalar b added to every logit, initialised at the base rate log(1 / (B - 1)) of one positive
    among B - 1 negatives per row."""

    init_value: float

    @nn.compact
    def __call__(self):
        return self.param('bias', nn.initializers.constant(self.init_value), ())


class CMDAgent(GCAgent):
    def representations(self, observations, goals, actions, goal_actions=None, params=None):
        """phi(s, a), psi(g), each (E, B, D). goal_actions: the actions paired with goals in 'roll' mode
        (default: `actions` rolled by one row, as in training)."""
        phi = self.network.select('phi')(observations, actions, params=params)
        if self.config['goal_action'] == 'roll':
            if goal_actions is None:
                goal_actions = jnp.roll(actions, shift=1, axis=0)
            psi = self.network.select('phi')(goals, goal_actions, params=params)
        else:
            psi = self.network.select('psi')(goals, params=params)
        return phi, psi

    def distance(self, observations, goals, actions, goal_actions=None, params=None):
        """d(s, a, g) per ensemble member, (E, B)."""
        phi, psi = self.representations(observations, goals, actions, goal_actions, params)
        return mrn_distance(phi, psi, self.config['mrn_components'])

    def critic_values(self, observations, goals, actions, params=None, goal_actions=None):
        """Q = min over the ensemble of -d(s, a, g), (B,)."""
        return (-self.distance(observations, goals, actions, goal_actions, params)).min(axis=0)

    def contrastive_loss(self, batch, grad_params):
        phi, psi = self.representations(batch['observations'], batch['value_goals'], batch['actions'], params=grad_params)
        k = self.config['mrn_components']
        dist = jax.vmap(lambda p, q: pairwise_mrn_distance(p, q, k))(phi, psi)  # (E, B, B)
        logits = -dist / jnp.sqrt(phi.shape[-1])  # (E, B, B)
        if self.config['logit_bias']:
            logits = logits + self.network.select('logit_bias')(params=grad_params)
        loss, info = binary_nce_stats(logits)
        eye = jnp.eye(dist.shape[-1])
        mean_dist = dist.mean(axis=0)
        info.update(
            dist_mean=mean_dist.mean(),
            dist_pos=jnp.sum(mean_dist * eye) / eye.shape[0],
            dist_neg=jnp.sum(mean_dist * (1 - eye)) / (eye.shape[0] * (eye.shape[0] - 1)),
            dist_max=mean_dist.max(),
        )
        return loss, info

    @jax.jit
    def total_loss(self, batch, grad_params, rng=None):
        rng = rng if rng is not None else self.rng
        c_loss, c_info = self.contrastive_loss(batch, grad_params)
        a_loss, a_info = self.actor_loss(batch, grad_params, rng)
        info = {f'critic/{k}': v for k, v in c_info.items()}
        info.update({f'actor/{k}': v for k, v in a_info.items()})
        return c_loss + a_loss, info

    def actor_loss(self, batch, grad_params, rng):
        """DDPG+BC against Q = -d (impls.utils.losses.actor_loss). In 'roll' mode the goal side sees the data's
        rolled actions, as in training (not the actor's actions)."""
        obs, goals = batch['observations'], batch['actor_goals']
        goal_actions = jnp.roll(batch['actions'], shift=1, axis=0)
        dist = self.network.select('actor')(obs, goals, params=grad_params)
        c = self.config
        q_fn = lambda a: self.critic_values(obs, goals, a, goal_actions=goal_actions)  # noqa: E731
        return actor_loss(dist, batch['actions'], q_fn,
                          kind=c['actor_loss'], alpha=c['alpha'], discrete=c['discrete'], const_std=c['const_std'],
                          rng=rng)

    @staticmethod
    def check_config(config):
        """Refuses settings CMD cannot train with, before anything is built."""
        if config['goal_action'] not in GOAL_ACTION_MODES:
            raise ValueError(f'--agent.goal_action={config["goal_action"]!r}; use one of {GOAL_ACTION_MODES}.')
        if config['actor_loss'] != 'ddpgbc':
            raise ValueError('CMD trains its actor with DDPG+BC only (--agent.actor_loss=ddpgbc).')
        if config['latent_dim'] % (2 * config['mrn_components']):
            raise ValueError(
                f'--agent.latent_dim={config["latent_dim"]} must be divisible by 2 x mrn_components '
                f'({2 * config["mrn_components"]}).'
            )

    @classmethod
    def create(cls, seed, example_batch, config):
        """example_batch: observations (B, ...) and actions (B, A) float or (B,) int; config['action_dim'] = A or
        the number of discrete actions."""
        cls.check_config(config)
        ex_observations, ex_actions = example_batch['observations'], example_batch['actions']
        action_dim = config['action_dim']
        num_discrete = action_dim if config['discrete'] else None

        def representation():
            return Representation(
                tuple(config['value_hidden_dims']), config['latent_dim'], config['layer_norm'], 2, num_discrete,
                config['encoder'],
            )

        modules = dict(
            phi=representation(),
            actor=GCActor(
                hidden_dims=config['actor_hidden_dims'], action_dim=action_dim, discrete=config['discrete'],
                const_std=config['const_std'], encoder=config['encoder'],
            ),
        )
        inputs = dict(phi=(ex_observations, ex_actions), actor=(ex_observations, ex_observations))
        if config['logit_bias']:
            modules['logit_bias'] = LogitBias(-float(np.log(max(config['batch_size'] - 1, 1))))
            inputs['logit_bias'] = ()
        if config['goal_action'] != 'roll':
            modules['psi'] = Representation(
                tuple(config['value_hidden_dims']), config['latent_dim'], config['layer_norm'], 2, None, config['encoder']
            )
            inputs['psi'] = (ex_observations,)
        return cls.from_modules(seed, modules, inputs, config)


def get_config():
    return ml_collections.ConfigDict(
        dict(
            agent_name='cmd',  # Agent name.
            lr=3e-4,  # Adam learning rate.
            warmup_steps=0,  # Optimiser steps of linear learning-rate warmup (0: none).
            max_grad_norm=0.0,  # Global-norm gradient clipping (0: off).
            batch_size=1024,  # Batch size.
            actor_hidden_dims=(512, 512, 512),  # Actor MLP hidden sizes.
            value_hidden_dims=(512, 512, 512),  # phi and psi MLP hidden sizes.
            latent_dim=512,  # Size D of phi and psi (divisible by 2 x mrn_components).
            mrn_components=8,  # MRN components K.
            layer_norm=True,  # LayerNorm in phi and psi.
            discount=0.99,  # Discount; geometric goal offsets have success probability 1 - discount.
            logit_bias=True,  # Learned logit offset b (-d / sqrt(D) + b), starting at log(1 / (B - 1)); see above.
            goal_action='none',  # 'none': action-free psi(g); 'roll': shared phi with rolled batch actions.
            actor_loss='ddpgbc',  # DDPG+BC (the only actor loss CMD uses).
            alpha=0.1,  # BC weight.
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
            gc_negative=True,  # Rewards 0/-1 (True) or 1/0 (False); unused by CMD's loss.
        )
    )
