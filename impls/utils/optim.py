"""Every agent's optimiser, built from its config with optax: Adam, or DreamerV3's LaProp-style chain, with an
optional learning-rate schedule (linear warmup, linear decay to `lr_end`), global-norm gradient clipping and
gradient accumulation.

Config keys (an agent declares the ones it uses in its get_config; absent keys take the defaults here):
    lr              peak learning rate
    adam_eps        Adam's epsilon (1e-8)
    warmup_steps    optimiser steps of linear warmup from 0 to lr (0: none)
    lr_end          learning rate at the end of a linear decay after the warmup (None: constant)
    lr_decay_steps  optimiser steps of that decay (the online loop sets it from --train_steps when 0)
    max_grad_norm   clip gradients to this global norm (0: off)
    grad_accum      minibatches per optimiser step (optax.MultiSteps; 1: off)
    optimizer       'adam', or 'laprop': DreamerV3's chain -- per-tensor adaptive gradient clipping (agc),
                    division by the root of an EMA of squared gradients (rms_decay, rms_eps), then momentum
                    (momentum), each EMA bias-corrected (Ziyin et al.'s LaProp order: scale, then average)
    agc             clip each tensor's gradient to agc * max(1e-3, |parameter|) in L2 norm (0: off)
    rms_decay, rms_eps, momentum    the LaProp chain's constants (DreamerV3: 0.999, 1e-20, 0.9)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

DEFAULTS = dict(adam_eps=1e-8, warmup_steps=0, lr_end=None, lr_decay_steps=0, max_grad_norm=0.0, grad_accum=1,
                optimizer='adam', agc=0.0, rms_decay=0.999, rms_eps=1e-20, momentum=0.9)


def _get(config, key):
    value = config.get(key, DEFAULTS[key]) if hasattr(config, 'get') else DEFAULTS[key]
    return DEFAULTS[key] if value is None and DEFAULTS[key] is not None else value


def lr_schedule(config):
    """The learning rate as a function of the optimiser step: constant, or warmup and/or linear decay."""
    lr, warmup, lr_end = config['lr'], int(_get(config, 'warmup_steps')), _get(config, 'lr_end')
    if lr_end is not None and not _get(config, 'lr_decay_steps'):
        raise ValueError('lr_end needs lr_decay_steps (the online loop sets it from --train_steps)')
    decay = optax.linear_schedule(lr, lr_end, int(_get(config, 'lr_decay_steps'))) if lr_end is not None else None
    if not warmup:
        return decay or optax.constant_schedule(lr)
    ramp = optax.linear_schedule(0.0, lr, warmup)
    return optax.join_schedules([ramp, decay or optax.constant_schedule(lr)], [warmup])


def clip_by_agc(clip: float, pmin: float = 1e-3) -> optax.GradientTransformation:
    """Per-tensor adaptive gradient clipping (DreamerV3): each tensor's update is scaled down to at most
    clip * max(pmin, ||param||) in L2 norm. (optax.adaptive_grad_clip clips unit-wise, not per tensor.)"""

    def update_fn(updates, state, params):
        def clip_one(param, update):
            upper = clip * jnp.maximum(pmin, jnp.linalg.norm(param.ravel()))
            return update / jnp.maximum(1.0, jnp.linalg.norm(update.ravel()) / upper)

        return jax.tree.map(clip_one, params, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_optimizer(config) -> optax.GradientTransformation:
    """The optimiser an agent's config asks for (see the module docstring for the keys)."""
    schedule = lr_schedule(config)
    constant = not _get(config, 'warmup_steps') and _get(config, 'lr_end') is None
    # A constant rate is passed as a number: the optimiser state then holds no step count for a schedule.
    rate = config['lr'] if constant else schedule
    kind = _get(config, 'optimizer')
    if kind == 'adam':
        parts = [optax.adam(rate, eps=_get(config, 'adam_eps'))]
    elif kind == 'laprop':
        parts = [optax.scale_by_rms(_get(config, 'rms_decay'), _get(config, 'rms_eps'), eps_in_sqrt=False,
                                    bias_correction=True),
                 optax.ema(_get(config, 'momentum'), debias=True), optax.scale_by_learning_rate(rate)]
        if _get(config, 'agc'):
            parts.insert(0, clip_by_agc(_get(config, 'agc')))
    else:
        raise ValueError(f'optimizer {kind!r}: expected adam or laprop')
    max_norm = _get(config, 'max_grad_norm')
    tx = optax.chain(*([optax.clip_by_global_norm(max_norm)] if max_norm else []), *parts)
    tx = tx if len(parts) > 1 or max_norm else parts[0]
    if _get(config, 'grad_accum') > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=int(_get(config, 'grad_accum')))
    return tx
