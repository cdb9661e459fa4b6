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


def pixel_driving(episodes: int = 40, length: int = 150, size: int = 64, num_actions: int = 5, seed: int = 0) -> dict:
    """Driving-like frames in OGBench's raw layout: uint8 (N, size, size, 3) observations, integer actions
    (N,) in [0, num_actions), terminals (N,); no environment goes with it.

    A car (a bright square) drives on a textured ground towards a target chosen per episode: action 0 keeps
    going, 1-4 steer up / down / left / right (one pixel a step plus drift), with 20% random actions. So the
    action depends on where the future (goal) frame shows the car, and a goal-conditioned agent can learn to
    use its goal. The same layout as a researcher's recorded driving data (frames, discrete actions, episode
    ends), for tests and benchmarks.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    ground = np.stack([(40 + 30 * np.sin(xx / 5.0)), (60 + 20 * np.cos(yy / 7.0)), np.full_like(xx, 50.0)], -1)
    ground = ground.astype(np.uint8)
    moves = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]] + [[0, 0]] * max(0, num_actions - 5))
    frames = np.empty((episodes * length, size, size, 3), np.uint8)
    actions = np.empty(episodes * length, np.int32)
    terminals = np.zeros(episodes * length, bool)
    car = max(2, size // 12)
    for e in range(episodes):
        pos = rng.uniform(car, size - car, 2)
        target = rng.uniform(car, size - car, 2)
        for t in range(length):
            i = e * length + t
            frame = ground.copy()
            r, c = int(pos[0]), int(pos[1])
            frame[max(0, r - car // 2): r + car // 2 + 1, max(0, c - car // 2): c + car // 2 + 1] = (250, 220, 30)
            frames[i] = frame
            delta = target - pos
            if np.abs(delta).max() < 1.5:
                target = rng.uniform(car, size - car, 2)  # reached: a new target
                delta = target - pos
            axis = int(np.argmax(np.abs(delta)))
            action = (1 if delta[0] < 0 else 2) if axis == 0 else (3 if delta[1] < 0 else 4)
            if rng.random() < 0.2:
                action = int(rng.integers(0, min(num_actions, 5)))
            actions[i] = action
            pos = np.clip(pos + moves[action] * 1.5 + rng.normal(0, 0.2, 2), car, size - car - 1)
        terminals[e * length + length - 1] = True
    return dict(observations=frames, actions=actions, terminals=terminals)


def main(argv=None):
    import argparse
    import os

    from impls.data.datasets import save_npz_atomic

    p = argparse.ArgumentParser(description='Write a synthetic pixel driving dataset (OGBench layout) and a -val file.')
    p.add_argument('--out', required=True, help='Path of the .npz to write (PATH-val.npz gets 10%% more episodes).')
    p.add_argument('--episodes', type=int, default=40)
    p.add_argument('--length', type=int, default=150)
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no_val', action='store_true', help='Write no -val file (as a user\'s single file would be).')
    args = p.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_npz_atomic(args.out, pixel_driving(args.episodes, args.length, args.size, seed=args.seed))
    if not args.no_val:
        val = pixel_driving(max(1, args.episodes // 10), args.length, args.size, seed=args.seed + 1)
        save_npz_atomic(args.out[:-4] + '-val.npz', val)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
