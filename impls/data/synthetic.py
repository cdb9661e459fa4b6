"""Small synthetic datasets whose right answers are known (for tests, benchmarks and demos)."""

from __future__ import annotations

import numpy as np


def line_world(directional: bool, episodes: int = 200, length: int = 30, seed: int = 0) -> dict:
    """A 1-D line world in OGBench's raw layout; observation [x, 0], one continuous action.

    directional=True: the agent moves x_{t+1} = x_t + 0.1 a with one action per episode (a = +1 or -1),
    so the action is a function of where the future goal lies.
    directional=False: states are i.i.d. uniform on [-3, 3] and the recorded action depends on the state
    alone, a = sin(2x) ("always drives the same way here, wherever it is going"): future goals carry no
    information about the action, and a policy that only imitates ignores its goal.
    """
    rng = np.random.default_rng(seed)
    obs, actions, terms = [], [], []
    for _ in range(episodes):
        direction = rng.choice([-1.0, 1.0])
        x = rng.uniform(-5, 5)
        for t in range(length):
            if not directional:
                x = rng.uniform(-3, 3)
            obs.append([x, 0.0])
            actions.append([direction if directional else np.sin(2 * x)])
            terms.append(t == length - 1)
            x += 0.1 * direction
    return dict(observations=np.asarray(obs, np.float32), actions=np.asarray(actions, np.float32),
                terminals=np.asarray(terms))
