"""What a trained Dreamer's world model and critic say along its own greedy CartPole episodes (issue 14): per band of
|cart position|, the continue head's probability and the critic's value, the last steps of each episode, and the
continue probability at the terminal observation itself (its training target there is 0), with the cart position
the decoder reconstructs from that state (does the state hold what ends the episode?).

    python benchmarks/dreamer_terminal_probe.py RUN_DIR/checkpoints/STEP [--episodes 4]
"""

from __future__ import annotations

import argparse
import os
import sys

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from impls.runs.restore import load_agent  # noqa: E402
from impls.utils.returns import symexp  # noqa: E402


@jax.jit
def filter_step(agent, carry, obs, key):
    """The agent's greedy action on obs, and the continue probability and value of the state that has seen obs."""
    action, carry = agent.act(carry, obs, None, key, 'eval')
    feat = agent.features(carry['deter'], carry['stoch'])
    cont = jax.nn.sigmoid(agent._call(agent.params['wm'], 'cont', None, feat)[..., 0])
    _, value = agent.value(agent.params['critic'], feat)
    decoded = symexp(agent._call(agent.params['wm'], 'decoder', None, feat))
    return action, carry, cont, value, decoded


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('checkpoint')
    p.add_argument('--episodes', type=int, default=4)
    args = p.parse_args()
    agent, record, step = load_agent(args.checkpoint)
    env = gym.make(record.get('env_name') or 'CartPole-v1')
    rows, at_terminal = [], []
    for ep in range(args.episodes):
        obs, _ = env.reset(seed=1000 + ep)
        carry, key, t, done, term = agent.initial_carry(1), jax.random.PRNGKey(ep), 0, False, False
        while not done:
            key, k = jax.random.split(key)
            action, carry, cont, value, _ = filter_step(agent, carry, jnp.asarray(obs[None], jnp.float32), k)
            rows.append((ep, t, obs[0], obs[2], float(cont[0]), float(value[0])))
            obs, _, term, trunc, _ = env.step(int(action[0]))
            t, done = t + 1, term or trunc
        if term:  # feed the terminal observation too: the continue head should say ~0 there
            _, _, cont, value, decoded = filter_step(agent, carry, jnp.asarray(obs[None], jnp.float32), key)
            at_terminal.append(dict(x=round(float(obs[0]), 3), decoded_x=round(float(decoded[0, 0]), 3),
                                    angle=round(float(obs[2]), 3), decoded_angle=round(float(decoded[0, 2]), 3),
                                    cont=round(float(cont[0]), 3), value=round(float(value[0]), 1)))
        print(f'episode {ep}: {t} steps, final x {obs[0]:.2f}, angle {obs[2]:.3f}, terminated {term}')
    print(f'step {step}; at each terminal observation (x, angle; decoded; continue probability; value):')
    for row in at_terminal:
        print('  ', row)
    rows = np.array(rows)
    for lo, hi in [(0, .5), (.5, 1), (1, 1.5), (1.5, 2), (2, 2.2), (2.2, 2.5)]:
        m = (np.abs(rows[:, 2]) >= lo) & (np.abs(rows[:, 2]) < hi)
        if m.any():
            print(f'|x| in [{lo}, {hi}): {m.sum():4d} steps, continue {rows[m, 4].mean():.4f} (min '
                  f'{rows[m, 4].min():.3f}), value {rows[m, 5].mean():7.1f}')
    for ep in range(args.episodes):
        e = rows[rows[:, 0] == ep][-6:]
        print(f'episode {ep}, last 6 steps: x {np.round(e[:, 2], 2)}, continue {np.round(e[:, 4], 3)}, '
              f'value {np.round(e[:, 5], 1)}')


if __name__ == '__main__':
    main()
