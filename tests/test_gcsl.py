"""GCSL (impls/agents/gcsl.py), its goal environments (impls/envs/goal_envs.py) and the goal-reaching loop
(impls/runs/goal_online.py): relabelling by hand, the loss on a fixed batch, collapse measures, the environments'
rules, end-to-end runs on both backends with resume, and the refusals."""

import json
import os

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.agents import gcsl
from impls.envs import goal_envs
from impls.runs.goal_online import buffer_add, buffer_init, relabel
from impls.utils.goal_actions import collapse_metrics
from train import main as train_main


def make_agent(obs_dim=2, goal_dim=2, n=9, **overrides):
    config = gcsl.get_config()
    config.action_dim = n
    config.hidden_dims = (32, 32)
    config.update(overrides)
    example = dict(observations=np.zeros((1, obs_dim), np.float32), goals=np.zeros((1, goal_dim), np.float32))
    return gcsl.GCSLAgent.create(0, example, config)


def test_relabel_pairs_are_uniform_later_states_of_one_episode():
    T, E = 4, 3
    buf = buffer_init(E, T, 1, 1)
    # State value = 10 * episode + t, so a pair's episode and indices can be read back.
    obs = (10 * np.arange(E)[:, None] + np.arange(T + 1)[None]).astype(np.float32)[..., None]
    buf = buffer_add(buf, obs, obs + 0.5, np.tile(np.arange(T), (E, 1)))
    batch = jax.device_get(relabel(buf, jax.random.PRNGKey(0), 20_000))
    t = batch['observations'][:, 0] % 10
    goal_t = batch['goals'][:, 0] - 0.5 - 10 * (batch['observations'][:, 0] // 10)
    assert (goal_t > t).all() and (goal_t <= T).all() and (t <= T - 1).all()
    assert (batch['actions'] == t).all()  # the action taken at s_t
    pairs = np.unique(np.stack([t, goal_t], 1), axis=0, return_counts=True)[1]
    assert len(pairs) == T * (T + 1) // 2  # every pair t < t' of the 5 states
    np.testing.assert_allclose(pairs / pairs.sum(), 1 / len(pairs), atol=0.01)  # uniformly
    limited = jax.device_get(relabel(buf, jax.random.PRNGKey(1), 5000, horizon_limit=1))
    gap = (limited['goals'][:, 0] - 0.5) - limited['observations'][:, 0]
    assert (gap == 1).all()


def test_buffer_overwrites_the_oldest_episodes():
    buf = buffer_init(3, 2, 1, 1)
    for e in range(5):
        buf = buffer_add(buf, np.full((1, 3, 1), e, np.float32), np.zeros((1, 3, 1)), np.zeros((1, 2), np.int32))
    assert int(buf['count']) == 3
    assert sorted(np.asarray(buf['observations'][:, 0, 0]).tolist()) == [2, 3, 4]


def test_loss_decreases_on_a_fixed_batch_and_collapse_measures():
    agent = make_agent(lr=1e-3)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(256, 2)).astype(np.float32)
    goals = rng.normal(size=(256, 2)).astype(np.float32)
    actions = (goals[:, 0] > obs[:, 0]).astype(np.int32) * 3  # depends on the goal
    batch = dict(observations=obs, goals=goals, actions=actions)
    first = None
    for _ in range(200):
        agent, info = agent.update(batch)
        first = float(info['actor/loss']) if first is None else first
    assert float(info['actor/loss']) < 0.3 * first
    assert float(info['collapse/goal_invariance']) < 0.8  # the fitted policy reads its goal
    np.testing.assert_allclose(float(info['collapse/data_action_entropy']), np.log(2) / np.log(9), atol=0.01)
    # Hand-made logits: one action everywhere -> zero entropy, full invariance.
    logits = jnp.zeros((8, 9)).at[:, 4].set(5.0)
    m = collapse_metrics(logits, logits, jnp.arange(8) % 9, 9)
    assert float(m['collapse/pred_action_entropy']) == 0.0 and float(m['collapse/goal_invariance']) == 1.0
    np.testing.assert_allclose(float(m['collapse/data_action_entropy']), np.log(8) / np.log(9), rtol=1e-5)


def test_act_is_random_first_then_greedy():
    agent = make_agent(random_steps=100)
    obs, goals = jnp.zeros((512, 2)), jnp.ones((512, 2))
    greedy, _ = agent.act((), obs, goals, None, 'eval')
    early, _ = agent.act((), obs, goals, jax.random.PRNGKey(0), 'explore', (50, 1000))
    late, _ = agent.act((), obs, goals, jax.random.PRNGKey(0), 'explore', (100, 1000))
    assert len(np.unique(np.asarray(early))) == 9  # uniform over the 9 actions
    assert (np.asarray(late) == np.asarray(greedy)).all()


def test_collect_noise_replaces_greedy_actions_with_that_probability():
    agent = make_agent(random_steps=100, collect_noise=0.25)
    obs, goals = jnp.zeros((4096, 2)), jnp.ones((4096, 2))
    greedy, _ = agent.act((), obs, goals, None, 'eval')
    late, _ = agent.act((), obs, goals, jax.random.PRNGKey(0), 'explore', (100, 1000))
    changed = (np.asarray(late) != np.asarray(greedy)).mean()
    assert abs(changed - 0.25 * 8 / 9) < 0.03  # a random action is the greedy one 1 time in 9


class _Still:
    """A stand-in policy that always takes action 4 (the point mass's (0, 0): stay)."""

    def initial_carry(self, n):
        return ()

    def act(self, carry, observations, goals, key, mode='eval', progress=(0, 1)):
        return jnp.full((observations.shape[0],), 4, jnp.int32), carry


def _at_goal_env():
    """The point mass with every episode starting on its goal: reached from the first step."""
    pm = goal_envs.POINT_MASS
    return pm._replace(reset=lambda key: (lambda s, g: (g, g))(*pm.reset(key)))


@pytest.mark.parametrize('fraction', [0.0, 0.5, 1.0])
def test_explore_after_goal_takes_random_actions_once_the_goal_is_reached(fraction):
    from impls.runs.goal_online import _jax_rollout

    table = goal_envs.discretize(goal_envs.POINT_MASS.spec.action_space, 3)
    n = 400
    _, _, actions, distance, explored = _jax_rollout(_at_goal_env(), _Still(), jax.random.PRNGKey(0), n, table,
                                                     'explore', 0, 1, fraction)
    actions, explored = np.asarray(actions), np.asarray(explored)
    assert abs(explored.mean() - fraction) < 0.08  # a fraction of the episodes, drawn per episode
    assert (actions[~explored] == 4).all()  # the others keep the policy's action: they hold at the goal
    if explored.any():  # the exploring ones act uniformly from the step they reached the goal (here, the first)
        assert len(np.unique(actions[explored])) == 9 and (actions[explored] == 4).mean() < 0.2
    _, _, eval_actions, _, eval_explored = _jax_rollout(_at_goal_env(), _Still(), jax.random.PRNGKey(0), n, table,
                                                        'eval', 0, 1)
    assert (np.asarray(eval_actions) == 4).all() and not np.asarray(eval_explored).any()  # never in evaluation


class _ThereEnv(gymnasium.Env):
    """A gymnasium goal environment whose info says is_success from the reset on."""
    horizon, threshold = 6, 0.1
    observation_space = gymnasium.spaces.Dict(**{k: gymnasium.spaces.Box(-1, 1, (2,)) for k in
                                                 ('observation', 'achieved_goal', 'desired_goal')})
    action_space = gymnasium.spaces.Discrete(5)

    def _obs(self):
        return {k: np.zeros(2, np.float32) for k in ('observation', 'achieved_goal', 'desired_goal')}

    def reset(self, *, seed=None, options=None):
        return self._obs(), {'is_success': True}

    def step(self, action):
        return self._obs(), 1.0, False, False, {'is_success': True}


def test_explore_after_goal_on_the_gymnasium_loop():
    from impls.runs.goal_online import _gym_episodes

    envs = [_ThereEnv() for _ in range(64)]
    spec, table = goal_envs.gym_goal_spec(envs[0]), goal_envs.discretize(envs[0].action_space, 3)
    act = lambda o, g, c: (np.zeros(len(o), np.int32), c)  # noqa: E731
    *_, actions, _, _, explored = _gym_episodes(envs, act, spec, table, np.arange(64), 0.5)
    assert 0.2 < explored.mean() < 0.8 and (actions[~explored] == 0).all()
    assert len(np.unique(actions[explored])) == 5
    *_, actions, _, _, explored = _gym_episodes(envs, act, spec, table, np.arange(64))
    assert not explored.any() and (actions == 0).all()  # off by default: GCSL's collection


def test_goal_offset_feeds_the_goal_relative_to_the_state():
    agent = make_agent(obs_dim=3, goal_offset=True, goal_index=(2, 0))
    obs, goals = np.array([[1.0, 5.0, 2.0]], np.float32), np.array([[3.0, 4.0]], np.float32)
    # g - s[goal_index] = (3 - 2, 4 - 1): the same logits as the plain MLP with the offset appended to its input.
    plain = gcsl.GoalPolicy(9, (32, 32)).apply({'params': agent.params}, obs, np.array([[3.0, 4.0, 1.0, 3.0]]))
    np.testing.assert_allclose(np.asarray(agent.logits(obs, goals)), np.asarray(plain), rtol=1e-5)
    with pytest.raises(ValueError, match='goal_index'):
        make_agent(goal_offset=True)


def test_discretize():
    box = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    table = goal_envs.discretize(box, 3)
    assert table.shape == (9, 2) and {tuple(r) for r in table} >= {(-1.0, -1.0), (0.0, 0.0), (1.0, 1.0)}
    assert goal_envs.discretize(gymnasium.spaces.Discrete(4), 3).shape == (4, 0)
    with pytest.raises(goal_envs.GoalEnvError, match=r'3 values each gives 59049 actions.*action_bins'):
        goal_envs.discretize(gymnasium.spaces.Box(-1.0, 1.0, (10,)), 3)


def test_point_mass_wall_and_gap():
    step = goal_envs.POINT_MASS.step
    below = step(jnp.array([-0.02, -0.2]), jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(below, [-0.02, -0.2])  # the wall stops it
    above = step(jnp.array([-0.02, 0.4]), jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(above, [0.03, 0.4], atol=1e-6)  # through the gap
    edge = step(jnp.array([0.49, 0.49]), jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(edge, [0.5, 0.5])


def test_lunar_lander_goal_env():
    env = gymnasium.make(goal_envs.LUNAR_ID)
    spec = goal_envs.gym_goal_spec(env)
    assert spec == goal_envs.GoalEnvSpec(8, 5, 50, 0.08, env.action_space, (0, 1, 4, 6, 7))
    obs, info = env.reset(seed=0)
    inner = env.unwrapped.inner.unwrapped
    ys = {round(v[1], 6) for f in inner.moon.fixtures for v in f.shape.vertices}
    assert ys <= {0.0, round(inner.helipad_y, 6)}  # flat terrain
    assert obs['desired_goal'][1] == 0.0 and obs['observation'][1] > 1.0  # goal on the ground, start at the top
    for t in range(50):
        obs, _, terminated, truncated, info = env.step(2)  # main engine only: flies off, never terminates early
        assert not terminated and truncated == (t == 49)
    distance = np.linalg.norm(obs['achieved_goal'][:2] - obs['desired_goal'][:2])
    assert info['distance'] == pytest.approx(distance) and info['is_success'] == (distance < 0.08)


class MismatchedGoalEnv(goal_envs.LunarLanderGoal):
    """Achieved goals of 5 numbers, desired goals of 2: a goal space that does not match the environment."""

    def __init__(self):
        super().__init__()
        box = lambda n: gymnasium.spaces.Box(-np.inf, np.inf, (n,), np.float32)  # noqa: E731
        self.observation_space = gymnasium.spaces.Dict(observation=box(8), achieved_goal=box(5), desired_goal=box(2))


class UnnamedGoalEnv(goal_envs.LunarLanderGoal):
    """A goal environment that does not say which observation dimensions its goal reads (no goal_index)."""

    goal_index = None

    def _obs(self, state):
        state = np.asarray(state, np.float32)
        return dict(observation=state, achieved_goal=state[[0, 1, 4, 6, 7]], desired_goal=self.goal.copy())


def run_train(tmp_path, name, *flags):
    argv = ['--algorithm', 'GCSL', '--save_dir', str(tmp_path / name), '--no_progress', '--wandb_mode', 'disabled',
            '--agent.hidden_dims=32,32', '--agent.batch_size=32', *flags]
    return train_main(argv)


def test_jax_backend_vmaps_seeds_and_resumes(tmp_path):
    flags = ['--env_backend', 'jax', '--env_name', 'point_mass', '--num_seeds', '2', '--num_envs', '2',
             '--learning_starts', '100', '--buffer_size', '2000', '--log_interval', '200', '--eval_episodes', '8',
             '--agent.random_steps=200']
    out = run_train(tmp_path, 'pm', *flags, '--train_steps', '400')
    assert 0.0 <= out['success'] <= 1.0
    rows = open(tmp_path / 'pm' / 'eval.csv').read().splitlines()
    assert 'evaluation/success_seed0' in rows[0] and 'evaluation/success_seed1' in rows[0]
    again = run_train(tmp_path, 'pm', *flags, '--train_steps', '600', '--resume')
    assert np.asarray(again['agent'].step).tolist() == [500, 500]  # 100 updates per iteration (2 envs x 50 steps)
    config = json.load(open(tmp_path / 'pm' / 'config.json'))
    assert config['num_seeds'] == 2 and len(config['action_table']) == 9


def test_gymnasium_backend_on_lunar_lander(tmp_path, capsys):
    out = run_train(tmp_path, 'lunar', '--env_name', goal_envs.LUNAR_ID, '--train_steps', '200', '--learning_starts',
                    '100', '--eval_episodes', '2', '--log_interval', '100', '--buffer_size', '1000')
    assert out['agent'].step == 100 and os.path.exists(tmp_path / 'lunar' / 'checkpoints')
    train = open(tmp_path / 'lunar' / 'train.csv').read().splitlines()
    assert 'training/collapse/goal_invariance' in train[0]
    # The next tool in the chain: the offline goal-use diagnostic says where this agent's goal use is measured.
    import test_goal_conditioning as tgc

    assert tgc.main(['--checkpoint', str(tmp_path / 'lunar'), '--env_name', 'none']) == 2
    assert 'training/collapse/goal_invariance' in capsys.readouterr().err


@pytest.mark.parametrize('flags, message', [
    (['--agent.relabel_horizon=60'], 'longer than the episodes'),
    (['--agent.action_bins=40'], 'more than --agent.max_actions'),
    (['--agent.collect_noise=1.5'], 'a probability in [0, 1]'),
    (['--agent.explore_after_goal=2'], 'the fraction of collection episodes'),
    (['--env_backend', 'gymnasium', '--env_name', 'CartPole-v1'], 'not a goal environment'),
    (['--env_backend', 'gymnasium', '--env_entry_point', 'tests.test_gcsl:MismatchedGoalEnv'], 'goal space does not match'),
    (['--env_backend', 'gymnasium', '--num_seeds', '2'], '--num_seeds > 1 needs --env_backend jax'),
    (['--env_backend', 'gymnasium', '--env_entry_point', 'tests.test_gcsl:UnnamedGoalEnv', '--agent.goal_offset=True'],
     'needs the environment to name the observation dimensions'),
])
def test_bad_input_is_refused_before_training(tmp_path, capsys, flags, message):
    base = ['--env_backend', 'jax', '--env_name', 'point_mass', '--train_steps', '100']
    with pytest.raises(SystemExit):
        run_train(tmp_path, 'bad', *base, *flags)
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / 'bad' / 'checkpoints')


# ---- the GCSL-transformer -------------------------------------------------------------------------------------------
from impls.agents import gcsl_transformer as gt  # noqa: E402


def make_transformer(**overrides):
    config = gt.get_config()
    config.update(dict(action_dim=5, dim=16, heads=2, layers=1, context=4, warmup_steps=0, lr=1e-3, **overrides))
    example = dict(observations=np.zeros((1, 3), np.float32), goals=np.zeros((1, 2), np.float32))
    return gt.GCSLTransformerAgent.create(0, example, config)


def goal_moves_logits_without_cross_attention(agent):
    """Whether the goal changes the logits with the gate's cross-attention to the goal tokens zeroed."""
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.zeros_like(x) if 'goal_attn' in jax.tree_util.keystr(p) else x, agent.params)
    obs = np.random.default_rng(0).normal(size=(3, 4, 3)).astype(np.float32)
    a, b = (agent.forward(params, obs, np.ones((3, 4), bool), np.full((3, 2), v, np.float32))['logits']
            for v in (0.0, 1.0))
    return np.abs(np.asarray(a - b)).max() > 1e-3


def test_relabel_windows_end_at_s_t_and_mask_the_episode_start():
    T = 5
    buf = buffer_init(1, T, 1, 1)
    obs = np.arange(T + 1, dtype=np.float32)[None, :, None] + 1  # state value t + 1
    buf = buffer_add(buf, obs, obs, np.arange(T)[None].astype(np.int32))
    batch = jax.device_get(relabel(buf, jax.random.PRNGKey(0), 500, context=3))
    t = batch['actions']
    window = batch['observations'][..., 0]
    np.testing.assert_array_equal(window[:, -1], t + 1)  # the last token is s_t
    np.testing.assert_array_equal(batch['valid'], (t[:, None] - 2 + np.arange(3)[None]) >= 0)
    assert (window[~batch['valid']] == 0).all() and (np.diff(window, axis=1)[batch['valid'][:, :-1]] == 1).all()


def test_the_action_is_read_at_the_token_of_s_t():
    agent = make_transformer()
    rng = np.random.default_rng(0)
    obs, goals = rng.normal(size=(6, 4, 3)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)
    valid = np.array([[False, False, True, True]] * 6)
    forward = jax.jit(lambda o, v, g: agent.forward(agent.params, o, v, g)['logits'])
    logits = forward(obs, valid, goals)
    padded = obs.copy()
    padded[:, :2] = 100.0  # masked positions (before the episode) do not matter
    np.testing.assert_allclose(forward(padded, valid, goals), logits, atol=1e-5)
    moved = obs.copy()
    moved[:, -1] += 1.0  # s_t does
    assert np.abs(forward(moved, valid, goals) - logits).max() > 1e-3
    # Acting shifts s_t into the carried window and decodes the same token as a batch window ending at s_t.
    carry = agent.initial_carry(6)
    act = jax.jit(lambda c, o: agent.act(c, o, goals, None, 'eval'))
    for k in range(4):
        actions, carry = act(carry, obs[:, k])
    np.testing.assert_array_equal(carry['observations'], obs)
    full = forward(obs, np.ones((6, 4), bool), goals)
    np.testing.assert_array_equal(actions, np.argmax(full, -1))


def test_state_goal_head_reads_the_raw_goal():
    """head_input='state_goal' decodes the token of s_t against (s_t, g) too: the head's first layer takes
    dim + obs_dim + goal_dim inputs, and with the goal path's cross-attention zeroed the goal still moves the logits."""
    agent = make_transformer(head_input='state_goal')
    kernel = agent.params['action_head']['Dense_0']['kernel']
    assert kernel.shape[0] == 16 + 3 + 2
    assert goal_moves_logits_without_cross_attention(agent)
    with pytest.raises(ValueError, match='head_input'):
        gt.GCSLTransformerAgent.check_config({**gt.get_config(), 'head_input': 'goal'})
    with pytest.raises(ValueError, match='fusion=gate'):
        gt.GCSLTransformerAgent.check_config({**gt.get_config(), 'head_input': 'state_goal', 'fusion': 'late'})


def test_head_hidden_dims_size_the_action_head():
    """--agent.head_hidden_dims sets the action head's hidden layers (GCSL's MLP is 400, 300); unset, one layer of
    width dim, and the command-line text parses to a tuple."""
    from impls.utils.config import apply_overrides
    default = make_transformer(head_input='state_goal').params['action_head']
    assert [default[k]['kernel'].shape for k in sorted(default)] == [(21, 16), (16, 5)]
    config = apply_overrides(gt.get_config(), {'head_hidden_dims': '40,30'})
    assert config['head_hidden_dims'] == (40, 30)
    wide = make_transformer(head_input='state_goal', head_hidden_dims=(40, 30)).params['action_head']
    assert [wide[k]['kernel'].shape for k in sorted(wide)] == [(21, 40), (40, 30), (30, 5)]


def test_state_goal_embedding_merges_the_goal_into_every_token():
    """embed_input='state_goal' with embed_hidden_dims: each token is an MLP of [s_k, g] (GCSL's MLP as the token
    embedding): its first layer takes obs_dim + goal_dim inputs, and with the cross-attention zeroed the goal still
    moves the logits."""
    agent = make_transformer(embed_input='state_goal', embed_hidden_dims=(40, 30))
    embed = agent.params['state_in']
    assert [embed[k]['kernel'].shape for k in sorted(embed)] == [(3 + 2, 40), (40, 30), (30, 16)]
    assert goal_moves_logits_without_cross_attention(agent)
    plain = make_transformer()
    assert plain.params['state_in']['kernel'].shape == (3, 16)  # the default: one linear map of s_k
    assert not goal_moves_logits_without_cross_attention(plain)  # whose goal path is the cross-attention alone
    with pytest.raises(ValueError, match='embed_input'):
        gt.GCSLTransformerAgent.check_config({**gt.get_config(), 'embed_input': 'goal'})
    with pytest.raises(ValueError, match='fusion=gate'):
        gt.GCSLTransformerAgent.check_config({**gt.get_config(), 'embed_input': 'state_goal', 'fusion': 'late'})


def test_gated_goal_tokens_carry_the_goal_magnitude():
    """The gate sees how far along each goal dimension the goal lies, not only its sign: with the per-dimension
    goal embeddings e_j zeroed, goals g and 3g still give different actions' logits (a LayerNorm on the goal
    tokens made them equal)."""
    agent = make_transformer(fusion='gate')
    params = dict(agent.params, goal_pos=jnp.zeros_like(agent.params['goal_pos']))
    obs = np.random.default_rng(0).normal(size=(3, 4, 3)).astype(np.float32)
    goals = np.array([[0.3, 0.7]] * 3, np.float32)
    valid = np.ones((3, 4), bool)
    near, far = (agent.forward(params, obs, valid, g)['logits'] for g in (goals, 3 * goals))
    assert np.abs(np.asarray(near - far)).max() > 1e-3


def test_gate_learns_actions_that_compare_goal_coordinates():
    """Reaching a goal means comparing its coordinates (x_g against x_s, ...): on a fixed batch whose action is
    (g0 > g1) + 2 (g2 > g3), one attention head learns it in 100 updates (a goal embedding direction shared by all
    dimensions passed each head one weighted average of the coordinates: loss ~0.85 after 100)."""
    config = gt.get_config()
    config.update(dict(action_dim=4, dim=16, heads=1, layers=1, context=4, warmup_steps=0, lr=1e-3))
    agent = gt.GCSLTransformerAgent.create(0, dict(observations=np.zeros((1, 3), np.float32),
                                                   goals=np.zeros((1, 4), np.float32)), config)
    rng = np.random.default_rng(1)
    goals = rng.normal(size=(128, 4)).astype(np.float32)
    batch = dict(observations=rng.normal(size=(128, 4, 3)).astype(np.float32), valid=np.ones((128, 4), bool),
                 goals=goals, actions=(goals[:, 0] > goals[:, 1]).astype(np.int32) + 2 * (goals[:, 2] > goals[:, 3]))
    for _ in range(100):
        agent, info = agent.update(batch)
    assert float(info['actor/loss']) < 0.3


def test_vicreg_by_hand():
    z1 = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z2 = z1 + 0.5
    loss, parts = gt.vicreg(z1, z2, 25.0, 25.0, 1.0)
    std = np.sqrt(np.var(np.asarray(z1), 0, ddof=0) + 1e-4)
    cov = np.cov(np.asarray(z1).T)  # ddof 1
    np.testing.assert_allclose(parts['vicreg/invariance'], 0.25, rtol=1e-6)
    np.testing.assert_allclose(parts['vicreg/variance'], np.mean(np.maximum(0, 1 - std)), rtol=1e-5)
    np.testing.assert_allclose(parts['vicreg/covariance'], 2 * cov[0, 1] ** 2 / 2, rtol=1e-5)
    np.testing.assert_allclose(loss, 25 * 0.25 + 25 * parts['vicreg/variance'] + parts['vicreg/covariance'], rtol=1e-6)


@pytest.mark.parametrize('fusion, teacher, head_input', [('gate', False, 'token'), ('late', True, 'token'),
                                                         ('gate', False, 'state_goal')])
def test_transformer_loss_decreases_on_a_fixed_batch(fusion, teacher, head_input):
    agent = make_transformer(fusion=fusion, ema_teacher=teacher, head_input=head_input)
    rng = np.random.default_rng(1)
    goals = rng.normal(size=(64, 2)).astype(np.float32)
    obs = rng.normal(size=(64, 4, 3)).astype(np.float32)
    # the action depends on how far the goal lies along one dimension, not only on its side of zero
    batch = dict(observations=obs, valid=np.ones((64, 4), bool), goals=goals,
                 actions=(np.abs(goals[:, 0]) > 0.7).astype(np.int32) + 2 * (obs[:, -1, 0] > 0))
    first, initial = None, agent.params
    for _ in range(150):
        agent, info = agent.update(batch)
        first = float(info['actor/loss']) if first is None else first
    assert float(info['actor/loss']) < 0.5 * first
    assert ('teacher/loss' in info) == teacher
    unmoved = jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), agent.teacher, initial))
    assert unmoved != teacher  # the EMA teacher moves only when enabled


def test_gcsl_transformer_trains_on_the_point_mass(tmp_path):
    out = train_main(['--algorithm', 'gcsl_transformer', '--env_backend', 'jax', '--env_name', 'point_mass',
                      '--num_envs', '2', '--train_steps', '300', '--learning_starts', '100', '--buffer_size', '2000',
                      '--eval_episodes', '4', '--save_dir', str(tmp_path / 'gt'), '--no_progress', '--wandb_mode',
                      'disabled', '--agent.dim=16', '--agent.heads=2', '--agent.layers=1', '--agent.batch_size=16',
                      '--agent.random_steps=100'])
    assert int(out['agent'].step[0]) == 200
    assert 'training/vicreg/loss' in open(tmp_path / 'gt' / 'train.csv').readline()
