"""The GCSL-transformer: GCSL's relabelled imitation (impls/agents/gcsl.py) with a causal transformer over the
recent states of the episode, built to avoid the collapse where the policy predicts one action whatever the goal.

Input per sample: the window of the last `context` states up to s_t (fewer at the episode's start; the rest
masked), and the goal g = phi(s_t'). Per sample a random number of the oldest states is dropped (the context start
is drawn per sample, like the goal index).

    fusion='gate' (default): state tokens x_k = E(s_k) + pos_k (E linear, or an MLP with embed_hidden_dims; with
        embed_input='state_goal' E reads [s_k, g], the goal merged into each token as GCSL's MLP merges it);
        goal tokens, one per goal dimension,
        u_j = g_j w_j + e_j; c_k = CrossAttention(LayerNorm(x_k) -> u); merged m_k = x_k + sigmoid(W_z [x_k, c_k]) * c_k
        (the goal merged into every state token before the causal layers; u is not normalised, which would keep
        little more than the sign of each g_j)
    fusion='late': the causal layers see the states only; the goal joins at the head through its own MLP
        (separate processing of state and goal: the variant that collapses)
    h = causal transformer(m); the action is decoded from one token, the one of s_t (the window's last position):
        logits = head(h_t)                                     ('late': head([h_t, MLP(g)]))
        (head = an MLP with hidden layers head_hidden_dims, by default one of width dim)
        (head_input='state_goal': head([h_t, s_t, g]), the token decoded against the raw state and goal too)
    loss = CE(logits, a_t)
         + vicreg_scale * VICReg(z1, z2) on two views of the merged representation of s_t (two context starts),
           z = expander(h_t): lambda * invariance + mu * variance + nu * covariance (lambda = mu = 25, nu = 1)
         + (ema_teacher) teacher_scale * DINO: CE(softmax((T(view2) - centre) / temp_t), log_softmax(S(view1) /
           temp_s)) with the teacher an EMA of the student (teacher_momentum) and the centre an EMA of the teacher's
           outputs (centre_momentum)

Collapse measures as GCSL's (impls/utils/goal_actions.py). Acting carries the window of the current episode.
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
from impls.utils.goal_actions import (SWAP_SAMPLES, check_collection_config, collapse_metrics, collect_actions,
                                      swapped_goals)
from impls.utils.networks import MLP
from impls.utils.optim import lr_schedule, make_optimizer
from impls.utils.precision import Dense
from impls.utils.transformer import Block, causal_mask


class GoalTransformer(nn.Module):
    num_actions: int
    dim: int = 64
    heads: int = 4
    layers: int = 2
    fusion: str = 'gate'
    head_input: str = 'token'
    head_hidden_dims: tuple = ()  # the action head's hidden layers; () = one of width dim
    embed_hidden_dims: tuple = ()  # the token embedding's hidden layers (ReLU); () = one linear map
    embed_input: str = 'state'  # each token embeds 'state' (s_k) or 'state_goal' ([s_k, g])
    expander: int = 128  # VICReg expander width
    prototypes: int = 64  # DINO head outputs

    @nn.compact
    def __call__(self, observations, valid, goals):
        """observations (B, K, D), valid (B, K) bool, goals (B, G) -> dict(logits (B, A), rep (B, dim), z (B, E),
        proto (B, P))."""
        B, K, _ = observations.shape
        goals = goals.astype(jnp.float32)
        x = observations.astype(jnp.float32)
        if self.embed_input == 'state_goal':  # the goal merged into every token by the embedding itself
            x = jnp.concatenate([x, jnp.broadcast_to(goals[:, None], (B, K, goals.shape[-1]))], -1)
        if self.embed_hidden_dims:
            x = MLP((*self.embed_hidden_dims, self.dim), activation=nn.relu, name='state_in')(x)
        else:
            x = Dense(self.dim, name='state_in')(x)
        x = x + self.param('pos', nn.initializers.normal(0.02), (K, self.dim))
        if self.fusion == 'gate':
            # one token per goal dimension, each with its own direction: u_j = g_j w_j + e_j (a direction shared by
            # all dimensions would pass the goal to each head as one weighted average of its coordinates); they are
            # not normalised (a LayerNorm of g_j w_j + e_j keeps little more than the sign of g_j)
            G = goals.shape[-1]
            w = self.param('goal_in', nn.initializers.normal(1.0), (G, self.dim))
            tokens = goals[..., None] * w + self.param('goal_pos', nn.initializers.normal(0.02), (G, self.dim))
            c = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.dim, name='goal_attn')(
                nn.LayerNorm()(x), tokens)
            gate = nn.sigmoid(Dense(self.dim, name='gate')(jnp.concatenate([x, c], -1)))
            x = x + gate * c
        mask = causal_mask(valid)
        for i in range(self.layers):
            x = Block(self.dim, self.heads, name=f'block{i}')(x, mask)
        h = nn.LayerNorm()(x[:, -1])  # the token of s_t
        if self.fusion == 'late':
            head_in = jnp.concatenate([h, MLP((self.dim, self.dim))(goals)], -1)
        elif self.head_input == 'state_goal':  # the token of s_t decoded against (s_t, g) themselves as well
            head_in = jnp.concatenate([h, observations[:, -1].astype(jnp.float32), goals], -1)
        else:
            head_in = h
        hidden = tuple(self.head_hidden_dims) or (self.dim,)
        logits = MLP((*hidden, self.num_actions), activation=nn.relu, name='action_head')(head_in)
        z = MLP((self.expander, self.expander), name='expander')(h)
        proto = MLP((self.dim, self.prototypes), name='dino_head')(h)
        return dict(logits=logits, rep=h, z=z, proto=proto)


def vicreg(z1, z2, lam: float, mu: float, nu: float):
    """VICReg (Bardes et al. 2022) of two (B, E) views: lam * MSE + mu * hinge on each dimension's std (target 1)
    + nu * the squared off-diagonal covariances / E. Returns (loss, parts)."""
    invariance = jnp.mean((z1 - z2) ** 2)

    def var_cov(z):
        z = z - z.mean(0)
        std = jnp.sqrt(z.var(0) + 1e-4)
        cov = (z.T @ z) / (z.shape[0] - 1)
        off = cov - jnp.diag(jnp.diag(cov))
        return jnp.mean(jax.nn.relu(1.0 - std)), jnp.sum(off**2) / z.shape[1]

    v1, c1 = var_cov(z1)
    v2, c2 = var_cov(z2)
    variance, covariance = (v1 + v2) / 2, (c1 + c2) / 2
    loss = lam * invariance + mu * variance + nu * covariance
    return loss, {'vicreg/invariance': invariance, 'vicreg/variance': variance, 'vicreg/covariance': covariance}


def drop_oldest(valid, key):
    """Per sample, a random number of the oldest real tokens masked out (at least the last one kept): the context
    start drawn per sample."""
    real = valid.sum(-1)
    keep = jax.random.randint(key, real.shape, 1, jnp.maximum(real, 1) + 1)
    K = valid.shape[-1]
    return valid & (jnp.arange(K)[None] >= K - keep[:, None])


class GCSLTransformerAgent(flax.struct.PyTreeNode):
    rng: Any
    params: Any
    teacher: Any  # EMA of params (updated with ema_teacher)
    centre: Any  # DINO centre (P,)
    opt_state: Any
    step: Any
    network: Any = nonpytree_field()
    tx: Any = nonpytree_field()
    config: Any = nonpytree_field()
    obs_dim: int = nonpytree_field()

    action_kinds = ('discrete',)

    def forward(self, params, observations, valid, goals):
        return self.network.apply({'params': params}, observations, valid, goals)

    def loss(self, params, batch, key):
        c = self.config
        k1, k2 = jax.random.split(key)
        obs, goals = batch['observations'], batch['goals']
        valid1, valid2 = drop_oldest(batch['valid'], k1), drop_oldest(batch['valid'], k2)
        out1, out2 = self.forward(params, obs, valid1, goals), self.forward(params, obs, valid2, goals)
        actions = batch['actions'].astype(jnp.int32)
        ce = 0.5 * (optax.softmax_cross_entropy_with_integer_labels(out1['logits'], actions).mean()
                    + optax.softmax_cross_entropy_with_integer_labels(out2['logits'], actions).mean())
        vic, vic_info = vicreg(out1['z'], out2['z'], c['vicreg_lambda'], c['vicreg_mu'], c['vicreg_nu'])
        loss = ce + c['vicreg_scale'] * vic
        info = {'actor/loss': ce, 'vicreg/loss': vic, **vic_info,
                'actor/accuracy': (jnp.argmax(out1['logits'], -1) == actions).mean(),
                'actor/entropy': -(jax.nn.softmax(out1['logits']) * jax.nn.log_softmax(out1['logits'])).sum(-1).mean()}
        teacher_out = None
        if c['ema_teacher']:
            teacher_out = jax.lax.stop_gradient(self.forward(self.teacher, obs, valid2, goals)['proto'])
            target = jax.nn.softmax((teacher_out - self.centre) / c['teacher_temp'])
            dino = -(target * jax.nn.log_softmax(out1['proto'] / c['student_temp'])).sum(-1).mean()
            loss = loss + c['teacher_scale'] * dino
            info['teacher/loss'] = dino
        return loss, (info, out1['logits'], teacher_out)

    @jax.jit
    def update(self, batch):
        """One step on a relabelled batch: observations (B, K, D) windows ending at s_t, valid (B, K), goals (B, G),
        actions (B,)."""
        rng, key = jax.random.split(self.rng)
        grads, (info, logits, teacher_out) = jax.grad(self.loss, has_aux=True)(self.params, batch, key)
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        c = self.config
        teacher, centre = self.teacher, self.centre
        if c['ema_teacher']:
            m = c['teacher_momentum']
            teacher = jax.tree.map(lambda t, p: m * t + (1 - m) * p, self.teacher, params)
            centre = c['centre_momentum'] * centre + (1 - c['centre_momentum']) * teacher_out.mean(0)
        n = SWAP_SAMPLES
        swapped = self.forward(self.params, batch['observations'][:n], batch['valid'][:n],
                               swapped_goals(batch['goals']))['logits']
        info = dict(info, **collapse_metrics(logits, swapped, batch['actions'].astype(jnp.int32), c['action_dim']))
        info['grad/norm'] = optax.tree.norm(grads)
        info['optim/lr'] = lr_schedule(c)(self.step)
        return self.replace(rng=rng, params=params, teacher=teacher, centre=centre, opt_state=opt_state,
                            step=self.step + 1), info

    def initial_carry(self, batch_size: int):
        """The window of the episode so far: states (B, K, D) and which are real (B, K)."""
        K, D = self.config['context'], self.obs_dim
        return dict(observations=jnp.zeros((batch_size, K, D), jnp.float32), valid=jnp.zeros((batch_size, K), bool))

    def act(self, carry, observations, goals, key, mode='eval', progress=(0, 1)):
        """Shifts s_t into the carried window and decodes the action at its token. 'eval': greedy; 'explore': as
        GCSL (random first, then greedy or sampled)."""
        window = jnp.concatenate([carry['observations'][:, 1:], observations[:, None].astype(jnp.float32)], 1)
        valid = jnp.concatenate([carry['valid'][:, 1:], jnp.ones((observations.shape[0], 1), bool)], 1)
        carry = dict(observations=window, valid=valid)
        logits = self.forward(self.params, window, valid, goals)['logits']
        if mode == 'eval':
            return jnp.argmax(logits, -1).astype(jnp.int32), carry
        c = self.config
        return collect_actions(logits, key, progress[0], c['random_steps'], c['collect'],
                               c['collect_noise']), carry

    @staticmethod
    def replay(config) -> dict:
        """Whole episodes, relabelled into windows of `context` states ending at s_t, a_t and phi(s_t')."""
        return dict(kind='goal_episodes', relabel_horizon=config['relabel_horizon'], context=config['context'])

    @staticmethod
    def check_config(config):
        if config['fusion'] not in ('gate', 'late'):
            raise ValueError(f"--agent.fusion={config['fusion']!r}: expected gate (goal merged into the state tokens) "
                             "or late (separate processing, goal joined at the head).")
        if config['head_input'] not in ('token', 'state_goal'):
            raise ValueError(f"--agent.head_input={config['head_input']!r}: expected token (the action read from the "
                             "token of s_t) or state_goal (that token with s_t and g themselves).")
        if config['embed_input'] not in ('state', 'state_goal'):
            raise ValueError(f"--agent.embed_input={config['embed_input']!r}: expected state (each token embeds s_k) "
                             "or state_goal (each token embeds [s_k, g]).")
        if config['embed_input'] != 'state' and config['fusion'] == 'late':
            raise ValueError("--agent.embed_input=state_goal needs --agent.fusion=gate: late fusion keeps the goal "
                             "out of the state tokens by definition.")
        if config['head_input'] != 'token' and config['fusion'] == 'late':
            raise ValueError("--agent.head_input=state_goal needs --agent.fusion=gate: with late fusion the head "
                             "already reads the goal through its own MLP.")
        check_collection_config(config)
        if config['context'] < 1:
            raise ValueError('--agent.context must be >= 1 (states in the window, s_t included).')
        if config['dim'] % config['heads']:
            raise ValueError(f"--agent.dim={config['dim']} is not divisible by --agent.heads={config['heads']}.")

    @classmethod
    def create(cls, seed, example_batch, config):
        """example_batch: observations (B, D), goals (B, G); config['action_dim']: the number of actions."""
        c = config
        rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
        obs_dim = int(example_batch['observations'].shape[-1])
        network = GoalTransformer(int(c['action_dim']), c['dim'], c['heads'], c['layers'], c['fusion'],
                                  c['head_input'], tuple(c['head_hidden_dims'] or ()),
                                  tuple(c['embed_hidden_dims'] or ()), c['embed_input'])
        window = jnp.zeros((1, c['context'], obs_dim), jnp.float32)
        params = network.init(init_rng, window, jnp.ones((1, c['context']), bool),
                              jnp.asarray(example_batch['goals'][:1], jnp.float32))['params']
        tx = make_optimizer(c)
        teacher = jax.tree.map(jnp.copy, params)  # kept (and checkpointed) either way; moves only with ema_teacher
        return cls(rng=rng, params=params, teacher=teacher, centre=jnp.zeros((network.prototypes,)),
                   opt_state=tx.init(params), step=jnp.zeros((), jnp.int32), network=network, tx=tx,
                   config=flax.core.FrozenDict(**c), obs_dim=obs_dim)


def get_config():
    return ml_collections.ConfigDict(
        dict(
            agent_name='gcsl_transformer',
            lr=3e-4,  # AdamW-free Adam with warmup.
            warmup_steps=1000,  # Linear learning-rate warmup (optimiser steps).
            batch_size=256,  # Relabelled samples per update.
            context=8,  # States in the window, s_t included.
            dim=64,  # Token width.
            heads=4,  # Attention heads.
            layers=2,  # Causal transformer blocks.
            fusion='gate',  # 'gate' (cross-attention to goal tokens + sigmoid gate) or 'late' (separate processing).
            head_input='token',  # The action head reads 'token' (h_t) or 'state_goal' ([h_t, s_t, g]); gate only.
            # The action head's hidden layers (ReLU), e.g. 400,300 as GCSL's MLP; unset: one layer of width dim.
            head_hidden_dims=ml_collections.config_dict.placeholder(tuple),
            # The token embedding's hidden layers (ReLU), e.g. 400,300 as GCSL's MLP; unset: one linear map.
            embed_hidden_dims=ml_collections.config_dict.placeholder(tuple),
            embed_input='state',  # Each token embeds 'state' (s_k) or 'state_goal' ([s_k, g]).
            vicreg_scale=0.01,  # Weight of the VICReg term against the cross-entropy.
            vicreg_lambda=25.0,  # VICReg invariance (lambda = mu in 10-25).
            vicreg_mu=25.0,  # VICReg variance.
            vicreg_nu=1.0,  # VICReg covariance.
            ema_teacher=False,  # DINO-style EMA teacher on the representation of s_t.
            teacher_scale=0.1,  # Weight of the teacher term.
            teacher_momentum=0.996,  # EMA of the teacher's parameters.
            centre_momentum=0.9,  # EMA of the teacher's outputs (centring).
            teacher_temp=0.04,  # Teacher softmax temperature.
            student_temp=0.1,  # Student softmax temperature.
            action_dim=ml_collections.config_dict.placeholder(int),  # Discrete actions; from the environment.
            action_bins=3,  # Values per dimension when discretising a continuous action space.
            max_actions=256,  # Refuse discretisations with more actions than this.
            random_steps=10_000,  # Environment steps of uniformly random collection first.
            collect='greedy',  # After those: 'greedy' or 'sample'.
            collect_noise=0.0,  # After those, each action uniformly random with this probability (GCSL's expl_noise: 0.1).
            explore_after_goal=0.0,  # Fraction of collection episodes that take random actions once they reach
            # their goal (the loop applies it; see impls/agents/gcsl.py).
            relabel_horizon=0,  # Largest t' - t of a relabelled pair (0: any later state of the episode).
            updates_per_step=1.0,  # Gradient updates per environment step.
        )
    )
