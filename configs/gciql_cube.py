"""GCIQL on cube-single-play at OGBench's full settings (alpha 1.0 for manipulation)."""

PRESET = dict(
    algorithm='gciql',
    env_name='cube-single-play-v0',
    train_steps=1_000_000,
    eval_interval=100_000,
    log_interval=5_000,
    eval_episodes=50,
    agent=dict(alpha=1.0),
)
