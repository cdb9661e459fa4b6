"""A train state over a dict of named modules, so a loss can call any module with the parameters
being differentiated (`grad_params`) or with the current ones."""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import optax


def nonpytree_field():
    return flax.struct.field(pytree_node=False)


class ModuleDict(nn.Module):
    """Holds named modules; `name` picks one to call, and init (name=None) initialises all of them."""

    modules: dict

    @nn.compact
    def __call__(self, *args, name=None, **kwargs):
        if name is None:
            # Initialisation: kwargs maps each module name to its example inputs.
            return {key: self.modules[key](*kwargs[key]) for key in self.modules}
        return self.modules[name](*args, **kwargs)


class TrainState(flax.struct.PyTreeNode):
    """Parameters, optimiser state and step of a ModuleDict.

    `state.select('critic')(x, params=p)` calls one module with parameters p (default: the current ones).
    """

    step: Any
    params: Any
    opt_state: Any
    apply_fn: Callable = nonpytree_field()
    model_def: Any = nonpytree_field()
    tx: Any = nonpytree_field()

    @classmethod
    def create(cls, model_def, params, tx):
        return cls(step=1, apply_fn=model_def.apply, model_def=model_def, params=params, tx=tx, opt_state=tx.init(params))

    def select(self, name):
        def call(*args, params=None, **kwargs):
            return self.apply_fn({'params': self.params if params is None else params}, *args, name=name, **kwargs)

        return call

    def apply_loss_fn(self, loss_fn):
        """One optimiser step on loss_fn(params) -> (loss, info); adds grad-norm statistics to info."""
        grads, info = jax.grad(loss_fn, has_aux=True)(self.params)
        updates, new_opt_state = self.tx.update(grads, self.opt_state, self.params)
        new_params = optax.apply_updates(self.params, updates)
        info = dict(info)
        info['grad/norm'] = optax.tree.norm(grads)
        return self.replace(step=self.step + 1, params=new_params, opt_state=new_opt_state), info


def polyak(params, target_params, tau: float):
    """target <- tau * online + (1 - tau) * target (optax.incremental_update)."""
    return optax.incremental_update(params, target_params, tau)
