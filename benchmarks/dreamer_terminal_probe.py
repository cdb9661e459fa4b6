"""What a trained Dreamer's world model and critic say along its own greedy CartPole episodes (issue 14): per band of
|cart position|, the continue head's probability and the critic's value, the last steps of each episode, and the
continue probability at the terminal observation itself (its training target there is 0).

    python benchmarks/dreamer_terminal_probe.py RUN_DIR/checkpoints/STEP
"""
import sys, numpy as np, jax, jax.numpy as jnp, gymnasium as gym
from impls.runs.restore import load_agent
path = sys.argv[1]
agent, record, step = load_agent(path)
wm = agent.params['wm']
@jax.jit
def step_fn(agent, carry, obs, key):
    a, carry = agent.act(carry, obs, None, key, 'eval')
    feat = agent.features(carry['deter'], carry['stoch'])
    cont = jax.nn.sigmoid(agent._call(agent.params['wm'], 'cont', None, feat)[..., 0])
    _, v = agent.value(agent.params['critic'], feat)
    return a, carry, cont, v
env = gym.make('CartPole-v1')
rows = []
rows_term = []
for ep in range(4):
    obs, _ = env.reset(seed=1000 + ep)
    carry = agent.initial_carry(1); key = jax.random.PRNGKey(ep); t = 0; done = False
    while not done:
        key, k = jax.random.split(key)
        a, carry, cont, v = step_fn(agent, carry, jnp.asarray(obs[None], jnp.float32), k)
        rows.append((ep, t, obs[0], obs[2], float(cont[0]), float(v[0])))
        obs, r, term, trunc, _ = env.step(int(a[0])); t += 1; done = term or trunc
    if term:
        _, _, cterm, vterm = step_fn(agent, carry, jnp.asarray(obs[None], jnp.float32), key)
        rows_term.append((float(cterm[0]), float(vterm[0])))
    print(f'episode {ep}: {t} steps, final x {obs[0]:.2f} angle {obs[2]:.3f}, terminated {term}')
rows = np.array(rows)
print('cont / value at the terminal observation itself:', np.round(rows_term, 3).tolist())
for lo, hi in [(0, .5), (.5, 1), (1, 1.5), (1.5, 2), (2, 2.2), (2.2, 2.5)]:
    m = (np.abs(rows[:, 2]) >= lo) & (np.abs(rows[:, 2]) < hi)
    if m.any():
        print(f'|x| in [{lo}, {hi}): n={m.sum():4d} cont {rows[m, 4].mean():.4f} (min {rows[m, 4].min():.3f}) value {rows[m, 5].mean():7.1f}')
# last 10 steps of each terminated episode
for ep in range(4):
    e = rows[rows[:, 0] == ep]
    print(f'ep {ep} last steps: x', np.round(e[-6:, 2], 2), 'cont', np.round(e[-6:, 4], 3), 'value', np.round(e[-6:, 5], 1))
