"""CMD on pointmaze-*-navigate at OGBench's full settings (batch 1024, 3x512, 1M steps; alpha as CRL's)."""

PRESET = dict(
    algorithm='cmd',
    env_name='pointmaze-medium-navigate-v0',
    train_steps=1_000_000,
    eval_interval=100_000,
    log_interval=5_000,
    eval_episodes=50,
    agent=dict(alpha=0.03),
)
