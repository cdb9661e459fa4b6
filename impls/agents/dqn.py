"""DQN (Mnih et al. 2015) with the stabilisers users reach for, each a config key:

  double DQN (van Hasselt et al. 2016): a* = argmax_a Q(s', a; theta), target uses Q(s', a*; theta-)
  dueling heads (Wang et al. 2016): Q = V + A - mean_a A
  n-step returns: y = sum_{k<n} g^k r_{t+k} + g^n (1 - terminated) Q_target(s_{t+n}, a*)  (from the replay buffer)
  prioritized replay weights (Schaul et al. 2016): loss_i scaled by the importance weight w_i
  soft target updates theta- <- tau theta + (1 - tau) theta- plus an optional periodic hard copy
  Huber (delta) or MSE loss; gradient-norm clipping; gradient accumulation over k minibatches
  (optax.MultiSteps; the target moves only when the parameters do); optional target clamping.

Torso: an MLP for vector observations, or the Nature CNN for uint8 frames (normalised inside the jit).
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from impls.utils.flax_utils import nonpytree_field, polyak
from impls.utils.networks import MLP, default_init


class NatureCNN(nn.Module):
    """Mnih et al. (2015): 32x8x8/4, 64x4x4/2, 64x3x3/1, dense 512. (..., 84, 84, C) uint8 -> (..., 512)."""

    @nn.compact
    def __call__(self, x):
        x = x.astype(jnp.float32) / 255.0
        x = nn.relu(nn.Conv(32, (8, 8), strides=(4, 4), padding='VALID')(x))
        x = nn.relu(nn.Conv(64, (4, 4), strides=(2, 2), padding='VALID')(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=(1, 1), padding='VALID')(x))
        return nn.relu(nn.Dense(512)(x.reshape(*x.shape[:-3], -1)))


class QNetwork(nn.Module):
    num_actions: int
    hidden_dims: tuple = (120, 84)
    torso: str = 'mlp'
    dueling: bool = False

    @nn.compact
    def __call__(self, observations):
        if self.torso == 'nature_cnn':
            h = NatureCNN()(observations)
        else:
            h = nn.relu(MLP(self.hidden_dims, activate_final=False)(observations.astype(jnp.float32)))
        if not self.dueling:
            return nn.Dense(self.num_actions, kernel_init=default_init())(h)
        value = nn.Dense(1, kernel_init=default_init())(h)
        advantage = nn.Dense(self.num_actions, kernel_init=default_init())(h)
        return value + advantage - advantage.mean(axis=-1, keepdims=True)


def lr_schedule(config):
    """The learning rate as a function of the optimiser step (constant, or linear to lr_end)."""
    if config['lr_end'] is None:
        return optax.constant_schedule(config['lr'])
    if not config['lr_decay_steps']:
        raise ValueError('lr_end needs lr_decay_steps (the online loop sets it from --train_steps)')
    return optax.linear_schedule(config['lr'], config['lr_end'], int(config['lr_decay_steps']))


def make_optimizer(config):
    chain = []
    if config['max_grad_norm']:
        chain.append(optax.clip_by_global_norm(config['max_grad_norm']))
    chain.append(optax.adam(lr_schedule(config), eps=config['adam_eps']))
    tx = optax.chain(*chain)
    if config['grad_accum'] > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=config['grad_accum'])
    return tx


class DQNAgent(flax.struct.PyTreeNode):
    rng: Any
    params: Any
    target_params: Any
    opt_state: Any
    step: Any  # optimiser steps taken (parameter changes)
    calls: Any  # update() calls (minibatches)
    network: Any = nonpytree_field()
    tx: Any = nonpytree_field()
    config: Any = nonpytree_field()

    def q_values(self, observations, params=None):
        return self.network.apply({'params': self.params if params is None else params}, observations)

    def loss(self, params, batch):
        """Weighted TD loss on an n-step batch; returns (loss, (info, td errors))."""
        q_all = self.q_values(batch['observations'], params)
        q = jnp.take_along_axis(q_all, batch['actions'][:, None].astype(jnp.int32), axis=-1)[:, 0]
        next_target = self.q_values(batch['next_observations'], self.target_params)
        if self.config['double']:
            next_actions = jnp.argmax(self.q_values(batch['next_observations'], params), axis=-1)
        else:
            next_actions = jnp.argmax(next_target, axis=-1)
        next_q = jnp.take_along_axis(next_target, next_actions[:, None], axis=-1)[:, 0]
        target = batch['returns'] + batch['bootstrap_discounts'] * next_q
        if self.config['target_clamp'] is not None:
            low, high = self.config['target_clamp']
            target = jnp.clip(target, low, high)
        td = q - jax.lax.stop_gradient(target)
        if self.config['loss'] == 'huber':
            per_sample = optax.huber_loss(td, delta=self.config['huber_delta'])
        else:
            per_sample = 0.5 * td**2
        loss = jnp.mean(batch['weights'] * per_sample)
        info = {
            'losses/td_loss': loss,
            'q/mean': q.mean(),
            'q/min': q.min(),
            'q/max': q.max(),
            'q/all_max': q_all.max(),
            'target/mean': target.mean(),
            'target/min': target.min(),
            'target/max': target.max(),
            'td/abs_mean': jnp.abs(td).mean(),
        }
        return loss, (info, td)

    @jax.jit
    def update(self, batch):
        """One minibatch: returns (agent, info) with info['td_errors'] (B,) for the priorities."""
        grads, (info, td) = jax.grad(self.loss, has_aux=True)(self.params, batch)
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        norm = optax.tree.norm(grads)
        max_norm = self.config['max_grad_norm']
        changed = jnp.asarray(True)
        if self.config['grad_accum'] > 1:
            changed = opt_state.mini_step == 0  # MultiSteps applied the accumulated step
        step = self.step + changed.astype(jnp.int32)
        target = polyak(params, self.target_params, self.config['tau'])
        if self.config['hard_update_every']:
            hard = (step % self.config['hard_update_every'] == 0) & changed
            target = jax.tree.map(lambda p, t: jnp.where(hard, p, t), params, target)
        target = jax.tree.map(lambda t, old: jnp.where(changed, t, old), target, self.target_params)
        lag = optax.tree.norm(jax.tree.map(jnp.subtract, params, target)) / (optax.tree.norm(params) + 1e-8)
        info = dict(info)
        info.update({
            'grad/norm': norm,
            'grad/norm_clipped': jnp.minimum(norm, max_norm) if max_norm else norm,
            'grad/clipped_fraction': (norm > max_norm).astype(jnp.float32) if max_norm else jnp.zeros(()),
            'target/lag': lag,
            'optim/lr': lr_schedule(self.config)(self.step),
            'td_errors': td,
        })
        agent = self.replace(params=params, target_params=target, opt_state=opt_state, step=step, calls=self.calls + 1)
        return agent, info

    def greedy_actions(self, observations):
        """argmax_a Q(s, a) as (B,) int32; not jitted itself: the online loop jits it over the agent's arrays."""
        return jnp.argmax(self.q_values(observations), axis=-1).astype(jnp.int32)

    @jax.jit
    def sample_actions(self, observations, seed, epsilon=0.0):
        """Epsilon-greedy actions (B,) int32."""
        greedy = self.greedy_actions(observations)
        explore_rng, action_rng = jax.random.split(seed)
        random_actions = jax.random.randint(action_rng, greedy.shape, 0, self.network.num_actions, jnp.int32)
        explore = jax.random.uniform(explore_rng, greedy.shape) < epsilon
        return jnp.where(explore, random_actions, greedy)

    @classmethod
    def create(cls, seed, ex_observations, num_actions, config):
        rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
        network = QNetwork(num_actions, tuple(config['hidden_dims']), config['torso'], config['dueling'])
        params = network.init(init_rng, ex_observations)['params']
        tx = make_optimizer(config)
        return cls(
            rng=rng, params=params, target_params=jax.tree.map(jnp.copy, params), opt_state=tx.init(params),
            step=jnp.zeros((), jnp.int32), calls=jnp.zeros((), jnp.int32), network=network, tx=tx,
            config=flax.core.FrozenDict(**config),
        )


def get_config():
    return ml_collections.ConfigDict(
        dict(
            agent_name='dqn',  # Agent name.
            lr=2.5e-4,  # Adam learning rate (CleanRL's CartPole setting).
            lr_end=ml_collections.config_dict.placeholder(float),  # Linear decay of lr to this value (None: constant).
            lr_decay_steps=0,  # Optimiser steps of that decay (0: the online loop sets it to the whole run).
            adam_eps=1e-8,  # Adam epsilon.
            batch_size=128,  # Minibatch size.
            discount=0.99,  # Discount gamma.
            hidden_dims=(120, 84),  # MLP torso (ReLU).
            torso='mlp',  # 'mlp' (vector observations) or 'nature_cnn' (uint8 frames).
            double=True,  # Double DQN targets.
            dueling=False,  # Dueling head.
            n_step=1,  # n-step returns.
            loss='mse',  # 'mse' (CleanRL) or 'huber' (with delta 1 it diverged on CartPole here: see RESULTS.md).
            huber_delta=1.0,  # Huber threshold.
            max_grad_norm=10.0,  # Global-norm gradient clipping (0: off).
            grad_accum=1,  # Minibatches per optimiser step (gradient accumulation).
            tau=0.0,  # Soft target rate per optimiser step (0: none); half-life ln 2 / tau optimiser steps.
            hard_update_every=50,  # Hard target copy every N optimiser steps (0: off); 50 = CleanRL's 500 env steps.
            target_clamp=ml_collections.config_dict.placeholder(tuple),  # (low, high) clamp of TD targets.
            prioritized=False,  # Proportional prioritized replay.
            per_alpha=0.6,  # PER priority exponent.
            per_beta_start=0.4,  # PER importance exponent, annealed linearly to 1 over training.
            buffer_size=10_000,  # Replay capacity (transitions).
            learning_starts=10_000,  # Environment steps before the first update.
            training_steps_per_sample=0.1,  # Gradient updates per environment step (replay ratio).
            epsilon_start=1.0,  # Exploration at the start.
            epsilon_end=0.05,  # Exploration at the end of the schedule.
            epsilon_fraction=0.5,  # Fraction of training over which epsilon decays linearly.
            expert_ratio_start=0.0,  # Probability an episode is driven by the expert, at the start.
            expert_ratio_floor=0.0,  # ... and its floor after the decay.
            expert_decay_fraction=0.5,  # Fraction of training over which the expert ratio decays linearly.
        )
    )
