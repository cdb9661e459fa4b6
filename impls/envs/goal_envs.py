"""Goal-reaching environments for online goal-conditioned agents (GCSL): fixed-length episodes that never end early,
a goal space, and success when the episode's final state is within `threshold` of the goal.

Two, with one interface (`GoalEnvSpec`: observation and goal sizes, horizon, threshold, action space):

- `LunarLanderGoal`, GCSL's goal-conditioned LunarLander (Ghosh et al. 2021) on gymnasium 1.x with box2d, registered
  as the gymnasium id `impls/LunarLanderGoal-v0`: flat terrain, the lander starting at the top centre with
  LunarLander's usual random initial force, 4 discrete actions, 2 physics steps per action, 50 actions per episode,
  no termination (a crash or a flight off-screen continues to the 50th step). Observation: LunarLander's 8-dim state.
  Goal: (x, y, angle, left leg contact, right leg contact) of a state, drawn as GCSL does: x ~ 0.3 N(0, 1) on the
  ground (y = 0), upright with both legs down, or, half the time, legs up and angle ~ 0.2 N(0, 1). Success: the final
  (x, y) within 0.08 of the goal's.
- `point_mass`, a point in the arena [-0.5, 0.5]^2 with a wall along x = 0 over its lower half (y < 0), written in
  jax (vmapped over environments and seeds in one compiled loop): observation = goal space = its (x, y); actions in
  [-1, 1]^2 move it 0.05 per unit; the part of a move that would cross the wall is refused; start near
  (-0.3, -0.3), goals uniform over the arena (those in the lower right need the detour over the wall); 50 steps;
  success within 0.08.

Continuous action spaces are discretised per dimension (`discretize`), as GCSL does; the agent sees an index.
"""

from __future__ import annotations

import itertools
from typing import Callable, NamedTuple

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np


class GoalEnvError(ValueError):
    pass


class GoalEnvSpec(NamedTuple):
    obs_dim: int
    goal_dim: int
    horizon: int
    threshold: float
    action_space: gymnasium.spaces.Space
    goal_index: tuple | None = None  # the observation dimensions the goal space reads, when it is a slice of them


def discretize(action_space, bins: int, max_actions: int = 256) -> np.ndarray:
    """The discrete actions of an environment as a table (n, action_dim) of environment actions: a Discrete space
    gives its indices (n, 0 columns); a Box space `bins` evenly spaced values per dimension between its bounds,
    every combination (bins ** dims actions), refused when that exceeds `max_actions`."""
    if isinstance(action_space, gymnasium.spaces.Discrete):
        return np.zeros((int(action_space.n), 0), np.float32)
    if not isinstance(action_space, gymnasium.spaces.Box):
        raise GoalEnvError(f'cannot discretise an action space of type {type(action_space).__name__}; goal-conditioned '
                           'supervised learning takes Discrete or Box actions.')
    dims = int(np.prod(action_space.shape))
    if bins < 2:
        raise GoalEnvError(f'--agent.action_bins={bins}: at least 2 values per action dimension are needed.')
    count = bins**dims
    if count > max_actions:
        raise GoalEnvError(
            f'discretising {dims} action dimensions into {bins} values each gives {count} actions, more than '
            f'--agent.max_actions={max_actions}; lower --agent.action_bins (GCSL uses 3) or raise max_actions.')
    low, high = np.broadcast_to(action_space.low, (dims,)), np.broadcast_to(action_space.high, (dims,))
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise GoalEnvError('the action space has infinite bounds; it cannot be discretised. Wrap the environment '
                           'with bounded actions.')
    values = [np.linspace(lo, hi, bins) for lo, hi in zip(low, high)]
    return np.array(list(itertools.product(*values)), np.float32)


# ---- LunarLander with goals (gymnasium, box2d) ---------------------------------------------------------------------
class LunarLanderGoal(gymnasium.Env):
    """GCSL's goal-conditioned LunarLander (see the module docstring). Dict observations: observation (8,),
    achieved_goal (5,), desired_goal (5,); info['is_success'] at every step, info['distance'] the (x, y) distance."""

    metadata = {'render_modes': ['rgb_array'], 'render_fps': 25}
    horizon, threshold, frame_skip = 50, 0.08, 2
    goal_index = (0, 1, 4, 6, 7)  # x, y, angle, leg contacts of the 8-dim state

    def __init__(self, render_mode: str | None = None):
        try:
            from gymnasium.envs.box2d.lunar_lander import LunarLander
        except (ImportError, gymnasium.error.DependencyNotInstalled) as e:
            raise GoalEnvError(f'LunarLanderGoal needs box2d: pip install -e ".[lunar]" ({e}).') from e
        self.inner = LunarLander(render_mode=render_mode)
        self.render_mode = render_mode
        box = lambda n: gymnasium.spaces.Box(-np.inf, np.inf, (n,), np.float32)  # noqa: E731
        self.observation_space = gymnasium.spaces.Dict(observation=box(8), achieved_goal=box(5), desired_goal=box(5))
        self.action_space = gymnasium.spaces.Discrete(4)
        self.goal = np.zeros(5, np.float32)
        self.t = 0

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        goal = np.array([0.3 * rng.normal(), 0.0, 0.0, 1.0, 1.0], np.float32)
        if rng.random() < 0.5:  # legs up, tilted
            goal[2] += 0.2 * rng.normal()
            goal[3:] = 0.0
        return goal

    def _flatten_terrain(self):
        from Box2D.b2 import edgeShape
        from gymnasium.envs.box2d.lunar_lander import SCALE, VIEWPORT_H, VIEWPORT_W

        inner = self.inner.unwrapped
        W, H, y = VIEWPORT_W / SCALE, VIEWPORT_H / SCALE, inner.helipad_y
        inner.world.DestroyBody(inner.moon)
        inner.moon = inner.world.CreateStaticBody(shapes=edgeShape(vertices=[(0, 0), (W, 0)]))
        inner.moon.CreateEdgeFixture(vertices=[(0, y), (W, y)], density=0, friction=0.1)
        inner.moon.color1 = inner.moon.color2 = (0.0, 0.0, 0.0)
        inner.sky_polys = [[(0, y), (W, y), (W, H), (0, H)]]

    def _obs(self, state):
        state = np.asarray(state, np.float32)
        return dict(observation=state, achieved_goal=state[list(self.goal_index)], desired_goal=self.goal.copy())

    def _info(self, obs):
        distance = float(np.linalg.norm(obs['achieved_goal'][:2] - self.goal[:2]))
        return dict(is_success=distance < self.threshold, distance=distance)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        state, _ = self.inner.reset(seed=int(self.np_random.integers(2**31)))
        self._flatten_terrain()  # before the lander can touch anything: it starts at the top
        self.goal = self.sample_goal(self.np_random)
        self.t = 0
        obs = self._obs(state)
        return obs, self._info(obs)

    def step(self, action):
        for _ in range(self.frame_skip):
            state, _, _, _, _ = self.inner.step(int(action))
        self.t += 1
        obs = self._obs(state)
        info = self._info(obs)
        return obs, float(info['is_success']), False, self.t >= self.horizon, info

    def render(self):
        return self.inner.render()

    def close(self):
        self.inner.close()


LUNAR_ID = 'impls/LunarLanderGoal-v0'
if LUNAR_ID not in gymnasium.registry:
    gymnasium.register(LUNAR_ID, entry_point=LunarLanderGoal, max_episode_steps=LunarLanderGoal.horizon)


def gym_goal_spec(env) -> GoalEnvSpec:
    """The GoalEnvSpec of a gymnasium goal environment: Dict observations with observation / achieved_goal /
    desired_goal, and `horizon` and `threshold` attributes on the unwrapped environment (optionally `goal_index`,
    the observation dimensions the goal space reads)."""
    space = env.observation_space
    keys = ('observation', 'achieved_goal', 'desired_goal')
    if not isinstance(space, gymnasium.spaces.Dict) or any(k not in space.spaces for k in keys):
        raise GoalEnvError(f'{env.spec.id if env.spec else env} is not a goal environment: its observations must be a '
                           f'Dict with {", ".join(keys)} (gymnasium-robotics layout).')
    achieved, desired = space['achieved_goal'].shape, space['desired_goal'].shape
    if achieved != desired:
        raise GoalEnvError(f'the goal space does not match the environment: achieved_goal has shape {achieved}, '
                           f'desired_goal {desired}; they must be the same space.')
    inner = env.unwrapped
    for attr in ('horizon', 'threshold'):
        if not hasattr(inner, attr):
            raise GoalEnvError(f'the goal environment has no `{attr}` attribute (episode length / success distance).')
    obs_dim, goal_dim = int(np.prod(space['observation'].shape)), int(np.prod(desired))
    goal_index = getattr(inner, 'goal_index', None)
    if goal_index is not None:
        goal_index = tuple(int(i) for i in goal_index)
        if len(goal_index) != goal_dim or not all(0 <= i < obs_dim for i in goal_index):
            raise GoalEnvError(f'the environment\'s goal_index {goal_index} must name {goal_dim} observation '
                               f'dimensions (of {obs_dim}), one per goal dimension.')
    return GoalEnvSpec(obs_dim, goal_dim, int(inner.horizon), float(inner.threshold), env.action_space, goal_index)


# ---- point mass with a wall (jax) ----------------------------------------------------------------------------------
class JaxGoalEnv(NamedTuple):
    """A goal environment in jax. reset(key) -> (state, goal); step(state, action) -> state; observe(state) and
    achieved(state) the agent's observation and the goal-space point of a state."""
    spec: GoalEnvSpec
    reset: Callable
    step: Callable
    observe: Callable
    achieved: Callable


_PM_SPEED, _PM_HALF, _PM_GAP = 0.05, 0.5, 0.0  # step per unit action; arena [-0.5, 0.5]^2; wall x = 0 below y = 0


def _pm_free(key, n):
    """Uniform points of the arena's free space (the wall is a line: everything is free)."""
    return jax.random.uniform(key, (n, 2), minval=-_PM_HALF, maxval=_PM_HALF)


def _pm_reset(key):
    k1, k2 = jax.random.split(key)
    start = jnp.array([-0.3, -0.3]) + jax.random.uniform(k1, (2,), minval=-0.03, maxval=0.03)
    return start, _pm_free(k2, 1)[0]


def _pm_step(pos, action):
    new = jnp.clip(pos + _PM_SPEED * jnp.clip(action, -1.0, 1.0), -_PM_HALF, _PM_HALF)
    crosses = (jnp.sign(pos[0]) != jnp.sign(new[0])) & (jnp.maximum(pos[1], new[1]) < _PM_GAP)
    return jnp.where(crosses, jnp.array([pos[0], new[1]]), new)  # the wall stops the horizontal part


POINT_MASS = JaxGoalEnv(
    spec=GoalEnvSpec(2, 2, 50, 0.08, gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32), goal_index=(0, 1)),
    reset=_pm_reset, step=_pm_step, observe=lambda s: s, achieved=lambda s: s)

JAX_GOAL_ENVS = {'point_mass': POINT_MASS}


def make_jax_goal_env(name: str) -> JaxGoalEnv:
    if name not in JAX_GOAL_ENVS:
        raise GoalEnvError(f'no jax goal environment {name!r}; available: {", ".join(JAX_GOAL_ENVS)}.')
    return JAX_GOAL_ENVS[name]
