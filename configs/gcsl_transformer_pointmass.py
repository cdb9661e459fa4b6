"""The GCSL-transformer on the jax point mass, 8 seeds vmapped (as gcsl_pointmass), sized for a CPU: width 32, one
causal layer, windows of 4 states (benchmarks/RESULTS.md, issue 15).

    python train.py --preset gcsl_transformer_pointmass
    python train.py --preset gcsl_transformer_pointmass --agent.fusion=late   # separate processing of state and goal
"""

PRESET = dict(
    algorithm='gcsl_transformer',
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
    agent=dict(dim=32, heads=2, layers=1, context=4, random_steps=5_000, warmup_steps=200, lr=1e-3),
)
