"""What every offline goal-conditioned agent shares: its state (rng, network, config), the jitted update
step and action sampling. An agent subclasses GCAgent and defines total_loss, create and get_config."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from impls.utils.encoders import maybe_augment
from impls.utils.flax_utils import nonpytree_field


class GCAgent(flax.struct.PyTreeNode):
    rng: Any
    network: Any
    config: Any = nonpytree_field()

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
