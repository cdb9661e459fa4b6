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
import numpy as np
import optax

from impls.utils.flax_utils import nonpytree_field, polyak
from impls.utils.networks import MLP, default_init
from impls.utils.optim import lr_schedule, make_optimizer
from impls.utils.precision import Conv, Dense
from impls.utils.schedules import linear


class NatureCNN(nn.Module):
    """Mnih et al. (2015): 32x8x8/4, 64x4x4/2, 64x3x3/1, dense 512. (..., 84, 84, C) uint8 -> (..., 512)."""

    @nn.compact
    def __call__(self, x):
        x = x.astype(jnp.float32) / 255.0
        x = nn.relu(Conv(32, (8, 8), strides=(4, 4), padding='VALID')(x))
        x = nn.relu(Conv(64, (4, 4), strides=(2, 2), padding='VALID')(x))
        x = nn.relu(Conv(64, (3, 3), strides=(1, 1), padding='VALID')(x))
        return nn.relu(Dense(512)(x.reshape(*x.shape[:-3], -1)))


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
            return Dense(self.num_actions, kernel_init=default_init())(h)
        value = Dense(1, kernel_init=default_init())(h)
        advantage = Dense(self.num_actions, kernel_init=default_init())(h)
        return value + advantage - advantage.mean(axis=-1, keepdims=True)


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
            'critic/loss': loss,
            'critic/q_mean': q.mean(),
            'critic/q_min': q.min(),
            'critic/q_max': q.max(),
            'critic/q_all_max': q_all.max(),
            'critic/target_mean': target.mean(),
            'critic/target_min': target.min(),
            'critic/target_max': target.max(),
            'critic/td_abs_mean': jnp.abs(td).mean(),
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
            'critic/target_lag': lag,
            'optim/lr': lr_schedule(self.config)(self.step),
            'td_errors': td,
        })
        agent = self.replace(params=params, target_params=target, opt_state=opt_state, step=step, calls=self.calls + 1)
        return agent, info

    def greedy_actions(self, observations):
        """argmax_a Q(s, a) as (B,) int32."""
        return jnp.argmax(self.q_values(observations), axis=-1).astype(jnp.int32)

    def epsilon(self, progress, xp=np):
        """The exploration rate after `progress` = (environment steps done, total): linear from epsilon_start to
        epsilon_end over the first epsilon_fraction of the run."""
        step, total = progress
        c = self.config
        return linear(c['epsilon_start'], c['epsilon_end'], c['epsilon_fraction'], step, total, xp)

    def initial_carry(self, batch_size: int):
        """DQN carries nothing between steps."""
        return ()

    def act(self, carry, observations, goals, key, mode='eval', progress=(0, 1)):
        """Actions (B,) int32 and the carry: greedy ('eval'), or epsilon-greedy ('explore') at the rate of
        `progress` = (environment steps done, total), the total a Python number. goals: unused (None). Pure;
        the loops jit it (with the total fixed).

        The exploration coin and the random action come from split(key, 4)[1] and [2]: the compiled loop keeps
        [0] as its next key and [3] for environment resets (the layout of the runs recorded in RESULTS.md)."""
        greedy = self.greedy_actions(observations)
        if mode == 'eval':
            return greedy, carry
        _, explore_key, action_key, _ = jax.random.split(key, 4)
        explore = jax.random.uniform(explore_key, greedy.shape) < self.epsilon(progress, jnp)
        random_actions = jax.random.randint(action_key, greedy.shape, 0, self.network.num_actions, jnp.int32)
        return jnp.where(explore, random_actions, greedy), carry

    def explore_on_host(self, greedy_fn, observations, rng: np.random.Generator, progress):
        """Epsilon-greedy for the Python-stepped loop, drawn from the host generator `rng`: the network
        (greedy_fn(observations) -> (B,) int32) is called only when some environment exploits."""
        n, num_actions = len(observations), self.network.num_actions
        explore = rng.random(n) < self.epsilon(progress)
        if explore.all():  # no network call on the steps where every env explores
            return rng.integers(0, num_actions, n, dtype=np.int32)
        actions = greedy_fn(observations)
        if explore.any():
            actions[explore] = rng.integers(0, num_actions, int(explore.sum()), dtype=np.int32)
        return actions

    def exploration_info(self, progress) -> dict:
        """What the loop logs under charts/ about exploration."""
        return {'epsilon': self.epsilon(progress)}

    @staticmethod
    def replay(config) -> dict:
        """The replay this agent trains from (impls.data.episodes.EpisodeStore): n-step transitions, uniform or
        proportional prioritized (priorities from info['td_errors'])."""
        c = config
        return dict(kind='transitions', n_step=c['n_step'], discount=c['discount'], prioritized=c['prioritized'],
                    alpha=c['per_alpha'], beta_start=c['per_beta_start'])

    action_kinds = ('discrete',)  # the action spaces DQN can act in

    @staticmethod
    def check_config(config):
        """Refuses settings that cannot work, before anything is built."""
        clamp = config.get('target_clamp')
        if clamp is not None and (len(clamp) != 2 or not clamp[0] < clamp[1]):
            raise ValueError(f'--agent.target_clamp={clamp!r}: expected a range LOW,HIGH with LOW < HIGH (e.g. '
                             f'--agent.target_clamp=-50,50, or 0,200 for CartPole at gamma 0.995); unset it for no '
                             f'clamp.')

    @classmethod
    def create(cls, seed, example_batch, config):
        """example_batch: observations (B, ...); config['action_dim']: the number of actions."""
        ex_observations, num_actions = example_batch['observations'], config['action_dim']
        if ex_observations.ndim == 4 and config['torso'] == 'mlp':
            raise ValueError(
                f'the environment gives image observations {ex_observations.shape[1:]} {ex_observations.dtype}; an '
                f'MLP torso on raw frames will not learn. Use --agent.torso=nature_cnn (or --preset dqn_atari).')
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
            lr_decay_steps=0,  # Optimiser steps of that decay (0: the whole run, from --train_steps).
            adam_eps=1e-8,  # Adam epsilon.
            batch_size=128,  # Minibatch size.
            discount=0.99,  # Discount gamma.
            action_dim=ml_collections.config_dict.placeholder(int),  # Number of actions; from the environment.
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
            epsilon_start=1.0,  # Exploration at the start.
            epsilon_end=0.05,  # Exploration at the end of the schedule.
            epsilon_fraction=0.5,  # Fraction of training over which epsilon decays linearly.
        )
    )
