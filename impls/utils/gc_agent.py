"""What every offline goal-conditioned agent shares: its state (rng, network, config), the jitted update
step and action sampling. An agent subclasses GCAgent and defines total_loss, create and get_config."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from impls.utils.encoders import maybe_augment
from impls.utils.flax_utils import ModuleDict, TrainState, nonpytree_field


class GCAgent(flax.struct.PyTreeNode):
    rng: Any
    network: Any
    config: Any = nonpytree_field()

    @classmethod
    def from_modules(cls, seed, modules: dict, inputs: dict, config, prepare_params=None):
        """Initialise named modules on their example inputs (module name -> tuple of arrays) under one Adam
        optimiser. prepare_params(params) may adjust the initial parameters (e.g. copy a target network)."""
        rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
        network_def = ModuleDict(modules)
        params = network_def.init(init_rng, **inputs)['params']
        if prepare_params is not None:
            params = prepare_params(params)
        network = TrainState.create(network_def, params, tx=optax.adam(learning_rate=config['lr']))
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
    def sample_actions(self, observations, goals, seed, temperature=1.0):
        """Actions (B, A) clipped to [-1, 1], or (B,) integers; temperature 0 gives the mode."""
        dist = self.network.select('actor')(observations, goals, temperature=temperature)
        actions = dist.sample(seed=seed)
        return actions if self.config['discrete'] else jnp.clip(actions, -1, 1)
