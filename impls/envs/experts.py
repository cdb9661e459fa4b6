"""Expert policies for the expert curriculum of the online loop: built in ('cartpole'), or MODULE:CALLABLE."""

from __future__ import annotations

import numpy as np

from impls.envs.gym import EnvError, load_object


def cartpole_expert(observations):
    """A built-in CartPole-v1 controller (PD on pole angle and angular velocity plus a little cart
    feedback); it balances for the full 500 steps from every start we have tried."""
    x, x_dot, theta, theta_dot = np.asarray(observations, np.float64).T
    return (theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0).astype(np.int64)


BUILTIN_EXPERTS = {'cartpole': cartpole_expert}


def load_expert(spec: str | None):
    """None, 'cartpole', or MODULE:CALLABLE taking a batch of observations and returning actions. (A run
    directory of a trained agent is restored by the run engine: impls.runs.online.load_expert.)"""
    if not spec:
        return None
    if spec in BUILTIN_EXPERTS:
        return BUILTIN_EXPERTS[spec]
    fn = load_object(spec, '--expert')
    if not callable(fn):
        raise EnvError(f'--expert {spec} is not callable.')
    return fn


def check_expert_actions(actions, num_actions: int, n: int, spec: str):
    actions = np.asarray(actions)
    if actions.shape != (n,) or not np.issubdtype(actions.dtype, np.integer) or actions.min() < 0 or actions.max() >= num_actions:
        raise EnvError(
            f'expert {spec} returned {actions!r} for {n} observations; expected {n} integer actions in '
            f'[0, {num_actions}).'
        )
    return actions
