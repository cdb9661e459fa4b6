"""GCSL on the jax point mass (impls.envs.goal_envs: a wall over the lower half, 50-step episodes), 8 seeds vmapped in one
compiled loop, 4 environments per seed; sized for fast many-seed runs on a CPU: an MLP [64, 64] (GCSL's [400, 300]
costs 25x the compute per update), lr 1e-3 and 5k random steps, chosen on seeds 100-101; and two options beyond GCSL,
chosen on seeds 100-123: half the collection episodes explore once they reach their goal, and the MLP also reads the
goal's offset g - s (benchmarks/RESULTS.md, issue 15).

    python train.py --preset gcsl_pointmass
"""

PRESET = dict(
    algorithm='gcsl',
    env_name='point_mass',
    env_backend='jax',
    num_seeds=8,
    num_envs=4,
    train_steps=30_000,
    learning_starts=1_000,
    buffer_size=100_000,
    eval_episodes=100,
    eval_interval=10_000,
    log_interval=5_000,
    agent=dict(hidden_dims=(64, 64), random_steps=5_000, lr=1e-3, explore_after_goal=0.5, goal_offset=True),
)
