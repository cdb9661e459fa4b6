"""Dark Room (Laskin et al. 2022, Algorithm Distillation), written in jax, and the learning histories AD trains on.

The room: a 9 x 9 grid; every episode starts at the centre (4, 4) and lasts 20 steps; 5 actions (0 stay, 1 up,
2 down, 3 left, 4 right; a move into a wall stays put); reward 1 for every step that ends on the goal cell. The goal
is not observed: the observation is the agent's cell, as one index x * 9 + y in [0, 81). Every function is pure and
takes the goal as an argument, so one `jax.vmap` runs a batch of rooms with different goals.

The 81 goals are split by a seed into 73 training goals and 8 held-out goals (`split_goals`); the split travels with
the history dataset and is checked when it is loaded, so an evaluation on held-out goals cannot meet a goal the
model was trained on.

Sources of learning histories, each vectorised over goals (one history per goal, `episodes` episodes in a row):
    q_learning    tabular Q-learning, epsilon-greedy with epsilon decaying linearly from eps_start to eps_end
                  over the first eps_decay of the episodes, ties between equal Q-values broken at random
                  (defaults: lr 0.5, gamma 0.9, epsilon 1 -> 0.1; with eps_decay 0.05 of 400 episodes its curve is
                  the published source's: ~2.8 at episode 10, ~10 at episode 60)
    q_optimistic  the same Q-learning exploring by optimism (Q starts at 5, lr 1, epsilon 0.05 -> 0): a faster
                  source (mean ~12 over its first 100 episodes against ~8.5)
    noisy_optimal the optimal policy (shortest path to the goal, then stay) whose action is replaced by a uniform
                  one with probability eps_e, eps_e decaying linearly from 1 to 0 over the first eps_decay of the
                  episodes (the decaying-noise generator of Zisman et al. 2023, AD^epsilon)

Write a dataset (training goals' histories, and held-out goals' histories used only to measure validation accuracy):

    python -m impls.envs.darkroom --out data/darkroom/histories.npz --source q_optimistic --episodes 200
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from impls.data.histories import save_histories

SIZE = 9
HORIZON = 20
NUM_ACTIONS = 5
NUM_CELLS = SIZE * SIZE
NUM_HELDOUT = 8
HISTORIES_PER_GOAL = 10  # source runs per training goal in a written dataset
CENTRE = (SIZE // 2, SIZE // 2)
MOVES = np.array([[0, 0], [0, 1], [0, -1], [-1, 0], [1, 0]], np.int32)  # (dx, dy) per action


def cell(pos):
    """(..., 2) position -> cell index x * SIZE + y (the observation)."""
    return pos[..., 0] * SIZE + pos[..., 1]


def goal_position(goal_index):
    """Cell index -> (x, y)."""
    return jnp.stack([goal_index // SIZE, goal_index % SIZE], -1)


def reset():
    return jnp.asarray(CENTRE, jnp.int32)


def step(pos, action, goal):
    """One step: (pos (2,), action (), goal (2,)) -> (new pos, reward). Reward 1 when the new cell is the goal."""
    new = jnp.clip(pos + jnp.asarray(MOVES)[action], 0, SIZE - 1)
    return new, jnp.all(new == goal).astype(jnp.float32)


def split_goals(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The 81 goals (cell indices) split by `seed` into 73 training and 8 held-out goals, each sorted."""
    perm = np.random.default_rng(seed).permutation(NUM_CELLS)
    return np.sort(perm[NUM_HELDOUT:]), np.sort(perm[:NUM_HELDOUT])


def optimal_return(goal_index) -> int:
    """The best return of one episode toward a goal: the steps that end on it, 21 - d for a goal d moves from the
    centre (20 for the centre itself)."""
    x, y = divmod(int(goal_index), SIZE)
    d = abs(x - CENTRE[0]) + abs(y - CENTRE[1])
    return HORIZON - d + (d > 0)


def _linear_eps(episode, episodes, start, end, decay):
    frac = jnp.clip(episode / jnp.maximum(decay * episodes, 1.0), 0.0, 1.0)
    return start + (end - start) * frac


def q_learning_history(key, goal_index, episodes: int, lr=0.5, gamma=0.9, eps_start=1.0, eps_end=0.1,
                       eps_decay=0.05, q_init=0.0):
    """One Q-learning run toward one goal: observations, actions, rewards, each (episodes * HORIZON,)."""
    goal = goal_position(goal_index)

    def episode_fn(q, inputs):
        e, k = inputs
        eps = _linear_eps(e, episodes, eps_start, eps_end, eps_decay)

        def step_fn(carry, k):
            q, pos = carry
            k_eps, k_rand, k_tie = jax.random.split(k, 3)
            s = cell(pos)
            best = q[s] == q[s].max()
            greedy = jax.random.categorical(k_tie, jnp.where(best, 0.0, -jnp.inf))
            a = jnp.where(jax.random.uniform(k_eps) < eps, jax.random.randint(k_rand, (), 0, NUM_ACTIONS), greedy)
            new, r = step(pos, a, goal)
            target = r + gamma * q[cell(new)].max()
            q = q.at[s, a].add(lr * (target - q[s, a]))
            return (q, new), (s, a, r)

        (q, _), out = jax.lax.scan(step_fn, (q, reset()), jax.random.split(k, HORIZON))
        return q, out

    q0 = jnp.full((NUM_CELLS, NUM_ACTIONS), q_init, jnp.float32)
    _, (obs, actions, rewards) = jax.lax.scan(episode_fn, q0, (jnp.arange(episodes), jax.random.split(key, episodes)))
    return obs.reshape(-1), actions.reshape(-1), rewards.reshape(-1)


def optimal_action(pos, goal, key):
    """A shortest-path action toward the goal (a random one of the moves that reduce the distance), 0 on it."""
    d = goal - pos
    useful = jnp.array([jnp.all(d == 0), d[1] > 0, d[1] < 0, d[0] < 0, d[0] > 0])
    return jax.random.categorical(key, jnp.where(useful, 0.0, -jnp.inf))


def noisy_optimal_history(key, goal_index, episodes: int, eps_decay=0.5, **_):
    """The optimal policy with its action replaced by a uniform one with probability eps_e (1 -> 0 linearly over the
    first eps_decay of the episodes): observations, actions, rewards, each (episodes * HORIZON,)."""
    goal = goal_position(goal_index)

    def episode_fn(_, inputs):
        e, k = inputs
        eps = _linear_eps(e, episodes, 1.0, 0.0, eps_decay)

        def step_fn(pos, k):
            k_eps, k_rand, k_opt = jax.random.split(k, 3)
            a = jnp.where(jax.random.uniform(k_eps) < eps, jax.random.randint(k_rand, (), 0, NUM_ACTIONS),
                          optimal_action(pos, goal, k_opt))
            new, r = step(pos, a, goal)
            return new, (cell(pos), a, r)

        _, out = jax.lax.scan(step_fn, reset(), jax.random.split(k, HORIZON))
        return None, out

    _, (obs, actions, rewards) = jax.lax.scan(episode_fn, None, (jnp.arange(episodes), jax.random.split(key, episodes)))
    return obs.reshape(-1), actions.reshape(-1), rewards.reshape(-1)


def q_optimistic_history(key, goal_index, episodes: int, **kwargs):
    """Q-learning that explores by optimism: Q starts at 5 (above any discounted return of 1-per-step rewards
    reachable early), lr 1 (the room is deterministic), epsilon 0.05 -> 0 over the first 30% of the episodes."""
    kw = dict(lr=1.0, q_init=5.0, eps_start=0.05, eps_end=0.0, eps_decay=0.3)
    kw.update({k: v for k, v in kwargs.items() if k != 'eps_decay' or v is not None})
    return q_learning_history(key, goal_index, episodes, **kw)


SOURCES = {'q_learning': q_learning_history, 'q_optimistic': q_optimistic_history,
           'noisy_optimal': noisy_optimal_history}


def make_histories(key, goal_indices, episodes: int, source: str = 'q_learning', **kwargs) -> dict:
    """One history per goal (vmapped): observations (uint8), actions (uint8), rewards (float32), each
    (len(goals), episodes * HORIZON), and task_ids (the goal cell of each history)."""
    if source not in SOURCES:
        raise ValueError(f'unknown history source {source!r}; available: {", ".join(SOURCES)}')
    fn = jax.jit(jax.vmap(lambda k, g: SOURCES[source](k, g, episodes, **kwargs)))
    goal_indices = np.asarray(goal_indices, np.int32)
    obs, actions, rewards = jax.device_get(fn(jax.random.split(key, len(goal_indices)), jnp.asarray(goal_indices)))
    return dict(observations=obs.astype(np.uint8), actions=actions.astype(np.uint8), rewards=rewards.astype(np.float32),
                task_ids=goal_indices.astype(np.int32))


def episode_returns(rewards, horizon: int = HORIZON) -> np.ndarray:
    """(..., T) rewards -> (..., T // horizon) per-episode returns."""
    rewards = np.asarray(rewards)
    return rewards.reshape(*rewards.shape[:-1], -1, horizon).sum(-1)


def write_dataset(out: str, episodes: int = 200, source: str = 'q_learning', split_seed: int = 0, seed: int = 0,
                  histories_per_goal: int = HISTORIES_PER_GOAL, **source_kwargs) -> dict:
    """Writes the history dataset (training goals, and held-out goals for validation accuracy only); returns it."""
    train_goals, heldout_goals = split_goals(split_seed)
    key = jax.random.PRNGKey(seed)
    k_train, k_held = jax.random.split(key)
    train = make_histories(k_train, np.repeat(train_goals, histories_per_goal), episodes, source, **source_kwargs)
    heldout = make_histories(k_held, heldout_goals, episodes, source, **source_kwargs)
    meta = dict(env='darkroom', horizon=HORIZON, num_observations=NUM_CELLS, num_actions=NUM_ACTIONS,
                split_seed=split_seed, train_goals=train_goals.tolist(), heldout_goals=heldout_goals.tolist(),
                source=source, episodes=episodes, seed=seed, source_kwargs=source_kwargs)
    save_histories(out, train, heldout, meta)
    return dict(train=train, heldout=heldout, meta=meta)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='data/darkroom/histories.npz')
    p.add_argument('--source', default='q_learning', choices=sorted(SOURCES))
    p.add_argument('--episodes', type=int, default=200, help='Episodes per history.')
    p.add_argument('--histories_per_goal', type=int, default=HISTORIES_PER_GOAL, help='Histories (source runs) per training goal.')
    p.add_argument('--split_seed', type=int, default=0, help='Seed of the 73 / 8 goal split.')
    p.add_argument('--seed', type=int, default=0, help='Seed of the source runs.')
    p.add_argument('--eps_decay', type=float, default=None,
                   help='Fraction of the episodes over which the exploration noise decays (default: the source\'s; '
                   'q_learning 0.05, q_optimistic 0.3, noisy_optimal 0.5).')
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    kwargs = {} if args.eps_decay is None else dict(eps_decay=args.eps_decay)
    data = write_dataset(args.out, args.episodes, args.source, args.split_seed, args.seed, args.histories_per_goal,
                         **kwargs)
    returns = episode_returns(data['train']['rewards']).mean(0)
    marks = [e for e in (1, 10, 60, 100, args.episodes) if e <= args.episodes]
    curve = ', '.join(f'episode {e}: {returns[e - 1]:.2f}' for e in marks)
    print(f'wrote {args.out}: {len(data["train"]["task_ids"])} training histories x {args.episodes} episodes '
          f'({args.source}), held-out goals {data["meta"]["heldout_goals"]}, in {time.perf_counter() - t0:.1f} s')
    print(f'source return per episode (mean over training goals): {curve}')


if __name__ == '__main__':
    main()
