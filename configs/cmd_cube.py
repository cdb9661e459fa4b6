"""CMD on cube-single-play at OGBench's full settings (alpha as CRL's manipulation setting)."""

PRESET = dict(
    algorithm='cmd',
    env_name='cube-single-play-v0',
    train_steps=1_000_000,
    eval_interval=100_000,
    log_interval=5_000,
    eval_episodes=50,
    agent=dict(alpha=3.0),
)
