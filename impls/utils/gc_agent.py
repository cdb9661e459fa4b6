"""What every offline goal-conditioned agent shares: its state (rng, network, config), the jitted update step
and acting. An agent subclasses GCAgent and defines total_loss, create and get_config; the agent contract
(create / update / initial_carry / act) is described in impls/agents/__init__.py."""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp

from impls.utils.encoders import maybe_augment
from impls.utils.flax_utils import ModuleDict, TrainState, nonpytree_field
from impls.utils.optim import make_optimizer


class GCAgent(flax.struct.PyTreeNode):
    rng: Any
    network: Any
    config: Any = nonpytree_field()

    @classmethod
    def from_modules(cls, seed, modules: dict, inputs: dict, config, prepare_params=None):
        """Initialise named modules on their example inputs (module name -> tuple of arrays) under the optimiser
        the config asks for (impls.utils.optim). prepare_params(params) may adjust the initial parameters (e.g.
        copy a target network)."""
        rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
        network_def = ModuleDict(modules)
        params = network_def.init(init_rng, **inputs)['params']
        if prepare_params is not None:
            params = prepare_params(params)
        network = TrainState.create(network_def, params, tx=make_optimizer(config))
        return cls(rng, network=network, config=flax.core.FrozenDict(**config))

    def after_step(self, network):
        """Hook for what follows each optimiser step (e.g. a target-network update)."""
        return network

    @jax.jit
    def update(self, batch):
        """One gradient step on total_loss; returns (new agent, info). Image batches are randomly cropped
        with probability config['p_aug'] first."""
        new_rng, rng, aug_rng = jax.random.split(self.rng, 3)
        batch = maybe_augment(batch, aug_rng, self.config['p_aug'])
        network, info = self.network.apply_loss_fn(lambda p: self.total_loss(batch, p, rng=rng))
        return self.replace(network=self.after_step(network), rng=new_rng), info

    @jax.jit
    def loss_info(self, batch):
        """total_loss's metrics at the current parameters, without a step (validation)."""
        return self.total_loss(batch, self.network.params)[1]

    def policy(self, observations, goals, temperature=1.0):
        """pi(. | s, g) for a batch (a distribution: impls.utils.distributions)."""
        return self.network.select('actor')(observations, goals, temperature=temperature)

    def initial_carry(self, batch_size: int):
        """Feed-forward agents carry nothing between steps."""
        return ()

    @functools.partial(jax.jit, static_argnames='mode')
    def act(self, carry, observations, goals, key, mode='eval'):
        """Actions (B, A) clipped to [-1, 1], or (B,) integers, and the carry. mode 'eval': sampled at temperature
        config['eval_temperature'] (0: the mode); 'explore': at temperature 1."""
        temperature = self.config['eval_temperature'] if mode == 'eval' else 1.0
        actions = self.policy(observations, goals, temperature=temperature).sample(seed=key)
        return (actions if self.config['discrete'] else jnp.clip(actions, -1, 1)), carry
