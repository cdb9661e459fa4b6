"""Generate OGBench datasets locally, with no network, by OGBench's own recipe.

    python -m impls.data.generate --env_name pointmaze-medium-navigate-v0 --num_episodes 1000 --save_dir data

writes ``data/pointmaze-medium-navigate-v0.npz`` and ``data/pointmaze-medium-navigate-v0-val.npz`` (the
validation file holds num_episodes // 10 further episodes), in the raw layout that
``ogbench.utils.load_dataset`` reads.

Recipes (OGBench's data_gen_scripts, re-implemented):
  * ``pointmaze-*-navigate-v0``: the maze env with ``terminate_at_goal=False``; each episode starts in a
    random free cell with a goal in a random "vertex" cell (not a straight corridor cell); the action is
    the unit vector towards the maze's BFS subgoal plus N(0, noise=0.5), clipped to [-1, 1]; on success a
    new vertex goal is set. 1001 steps per episode.
  * ``cube-*-play-v0``, ``puzzle-*-play-v0``, ``scene-play-v0``: the manipulation env in
    ``mode='data_collection'`` driven by the plan oracles shipped in the ogbench wheel (noise 0.1,
    smoothing 0.5); a new target is set whenever the oracle finishes. 1001 steps per episode.
Episodes are independent and generated in parallel worker processes. The oracles draw from numpy's
global generator, so each worker seeds it per episode from (seed, episode index): the output depends on
the seed only, not on the number of workers.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from collections import defaultdict

import numpy as np

from impls.data.datasets import save_npz_atomic

NAVIGATE_ENVS = ('pointmaze',)
PLAY_ENVS = ('cube', 'puzzle', 'scene')


def split_dataset_name(name: str):
    """'pointmaze-medium-navigate-v0' -> ('pointmaze-medium-v0', 'navigate')."""
    parts = name.split('-')
    if len(parts) < 3:
        raise ValueError(f'dataset name {name!r} is not of the form ENV-SIZE-TYPE-vN (e.g. pointmaze-medium-navigate-v0).')
    return '-'.join(parts[:-2] + parts[-1:]), parts[-2]


def check_supported(name: str):
    env_id, dataset_type = split_dataset_name(name)
    family = env_id.split('-')[0]
    if family in NAVIGATE_ENVS and dataset_type == 'navigate':
        return env_id, dataset_type
    if family in PLAY_ENVS and dataset_type == 'play':
        return env_id, dataset_type
    raise ValueError(
        f'cannot generate {name!r} locally: supported are pointmaze-*-navigate-v0 and cube-*/puzzle-*/scene-play-v0. '
        f'Ant and humanoid mazes need trained expert policies that OGBench does not ship; download those datasets '
        f'on a machine with network access and pass --dataset_path.'
    )


_WORKER = {}


def _worker_env(env_id, dataset_type, max_episode_steps):
    key = (env_id, dataset_type, max_episode_steps)
    if _WORKER.get('key') != key:
        import gymnasium

        import ogbench  # noqa: F401  (registers the environments)

        kwargs = dict(terminate_at_goal=False, max_episode_steps=max_episode_steps)
        if dataset_type == 'play':
            kwargs['mode'] = 'data_collection'
        _WORKER['env'] = gymnasium.make(env_id, **kwargs)
        _WORKER['key'] = key
    return _WORKER['env']


def _maze_cells(maze_map):
    """All free cells, and the 'vertex' cells (free cells that are not straight corridor cells)."""
    all_cells, vertex_cells = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            all_cells.append((i, j))
            vertical = maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] == 1 and maze_map[i, j + 1] == 1
            horizontal = maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0 and maze_map[i - 1, j] == 1 and maze_map[i + 1, j] == 1
            if not (vertical or horizontal):
                vertex_cells.append((i, j))
    return all_cells, vertex_cells


def _navigate_episode(env, rng, noise):
    unwrapped = env.unwrapped
    all_cells, vertex_cells = _maze_cells(unwrapped.maze_map)
    init_ij = all_cells[rng.integers(len(all_cells))]
    goal_ij = vertex_cells[rng.integers(len(vertex_cells))]
    ob, _ = env.reset(seed=int(rng.integers(2**31)), options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)))
    episode = defaultdict(list)
    done = False
    while not done:
        xy = unwrapped.get_xy()
        subgoal_xy, _ = unwrapped.get_oracle_subgoal(xy, unwrapped.cur_goal_xy)
        direction = subgoal_xy - xy
        action = direction / (np.linalg.norm(direction) + 1e-6)
        action = np.clip(action + rng.normal(0.0, noise, action.shape), -1, 1)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if info['success']:
            unwrapped.set_goal(vertex_cells[rng.integers(len(vertex_cells))])
        episode['observations'].append(ob)
        episode['actions'].append(action)
        episode['terminals'].append(done)
        episode['qpos'].append(info['prev_qpos'])
        episode['qvel'].append(info['prev_qvel'])
        ob = next_ob
    return episode


def _play_oracles(env, env_id, noise, smoothing):
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    kw = dict(env=env, noise=noise, noise_smoothing=smoothing)
    if env_id.startswith('cube'):
        return {'cube': CubePlanOracle(**kw)}
    if env_id.startswith('puzzle'):
        return {'button': ButtonPlanOracle(**kw, gripper_always_closed=True)}
    return {
        'cube': CubePlanOracle(**kw),
        'button': ButtonPlanOracle(**kw),
        'drawer': DrawerPlanOracle(**kw),
        'window': WindowPlanOracle(**kw),
    }


_P_STACK = {'single': (0.0, 0.0), 'double': (0.0, 0.25), 'triple': (0.05, 0.35), 'quadruple': (0.1, 0.5), 'octuple': (0.0, 0.35)}


def _play_episode(env, env_id, rng, noise, smoothing):
    oracles = _play_oracles(env, env_id, noise, smoothing)
    size = env_id.split('-')[1]
    low, high = _P_STACK.get(size, (0.5, 0.5))
    has_buttons = hasattr(env.unwrapped, '_cur_button_states')
    while True:  # Scene: redo episodes where the cube leaves the visible area (OGBench's health check).
        p_stack = rng.uniform(low, high)
        ob, info = env.reset(seed=int(rng.integers(2**31)))
        agent = oracles[info['privileged/target_task']]
        agent.reset(ob, info)
        episode = defaultdict(list)
        done = False
        while not done:
            action = np.clip(np.asarray(agent.select_action(ob, info)), -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if agent.done:
                agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
                agent = oracles[agent_info['privileged/target_task']]
                agent.reset(agent_ob, agent_info)
            episode['observations'].append(ob)
            episode['actions'].append(action)
            episode['terminals'].append(done)
            episode['qpos'].append(info['prev_qpos'])
            episode['qvel'].append(info['prev_qvel'])
            if has_buttons:
                episode['button_states'].append(info['prev_button_states'])
            ob = next_ob
        if not env_id.startswith('scene'):
            return episode
        xyz = np.asarray(episode['qpos'])[:, 14:17]
        too_right = (xyz[:, 1] >= 0.29).any()
        too_left = ((xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any()
        if not (too_right or too_left):
            return episode


def generate_episode(args):
    """One episode (runs in a worker). args = (dataset name, episode index, seed, noise, smoothing, steps)."""
    name, index, seed, noise, smoothing, max_episode_steps = args
    env_id, dataset_type = check_supported(name)
    env = _worker_env(env_id, dataset_type, max_episode_steps)
    rng = np.random.default_rng([seed, index])
    np.random.seed(rng.integers(2**31))  # OGBench's oracles and env resets draw from the global generator.
    if dataset_type == 'navigate':
        episode = _navigate_episode(env, rng, noise)
    else:
        episode = _play_episode(env, env_id, rng, noise, smoothing)
    return index, {k: np.asarray(v) for k, v in episode.items()}


_DTYPES = {'terminals': bool, 'button_states': np.int64}


def _concat(episodes):
    keys = episodes[0].keys()
    return {k: np.concatenate([e[k] for e in episodes]).astype(_DTYPES.get(k, np.float32)) for k in keys}


def generate(
    env_name: str,
    num_episodes: int,
    save_dir: str,
    seed: int = 0,
    noise: float | None = None,
    noise_smoothing: float = 0.5,
    max_episode_steps: int = 1001,
    num_workers: int | None = None,
    progress: bool = True,
):
    """Generate NAME.npz and NAME-val.npz in save_dir; returns (train path, val path, transitions/s)."""
    env_id, dataset_type = check_supported(env_name)
    if num_episodes < 1:
        raise ValueError(f'--num_episodes must be >= 1 (got {num_episodes}).')
    if noise is None:
        noise = 0.5 if dataset_type == 'navigate' else 0.1
    num_val = max(1, num_episodes // 10)
    total = num_episodes + num_val
    num_workers = num_workers or min(os.cpu_count() or 1, total)
    jobs = [(env_name, i, seed, noise, noise_smoothing, max_episode_steps) for i in range(total)]
    start = time.perf_counter()
    results = {}
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f'generating {env_name}', unit='ep', disable=not progress)
    if num_workers == 1:
        for job in jobs:
            index, episode = generate_episode(job)
            results[index] = episode
            bar.update(1)
    else:
        with mp.get_context('spawn').Pool(num_workers) as pool:
            for index, episode in pool.imap_unordered(generate_episode, jobs, chunksize=max(1, total // (num_workers * 20))):
                results[index] = episode
                bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    train = _concat([results[i] for i in range(num_episodes)])
    val = _concat([results[i] for i in range(num_episodes, total)])
    train_path = os.path.join(save_dir, f'{env_name}.npz')
    val_path = os.path.join(save_dir, f'{env_name}-val.npz')
    save_npz_atomic(train_path, train)
    save_npz_atomic(val_path, val)
    transitions = len(train['observations']) + len(val['observations'])
    return train_path, val_path, transitions / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--env_name', required=True, help='Dataset name, e.g. pointmaze-medium-navigate-v0.')
    parser.add_argument('--num_episodes', type=int, default=1000, help='Training episodes (validation adds 10%%).')
    parser.add_argument('--save_dir', default='data', help='Output directory.')
    parser.add_argument('--seed', type=int, default=0, help='Seed; the output depends on it alone.')
    parser.add_argument('--noise', type=float, default=None, help='Action noise (default 0.5 navigate, 0.1 play).')
    parser.add_argument('--noise_smoothing', type=float, default=0.5, help='Plan-oracle noise smoothing.')
    parser.add_argument('--max_episode_steps', type=int, default=1001, help='Steps per episode.')
    parser.add_argument('--num_workers', type=int, default=None, help='Worker processes (default: all cores).')
    args = parser.parse_args(argv)
    try:
        train_path, val_path, rate = generate(
            args.env_name, args.num_episodes, args.save_dir, args.seed, args.noise, args.noise_smoothing,
            args.max_episode_steps, args.num_workers,
        )
    except ValueError as e:
        parser.exit(2, f'error: {e}\n')
    print(f'wrote {train_path} and {val_path} ({rate:.0f} transitions/s)')


if __name__ == '__main__':
    main()
