"""The CPU budget used for benchmarks/RESULTS.md (2 cores, no GPU): OGBench's agents and goal sampling
with a smaller network and batch and 30k steps. Combine with an algorithm, env and alpha on the
command line (see benchmarks/offline_gc.sh)."""

PRESET = dict(
    train_steps=30_000,
    batch_size=256,
    eval_interval=10_000,
    log_interval=1_000,
    eval_episodes=20,
    agent=dict(value_hidden_dims=(256, 256), actor_hidden_dims=(256, 256)),
)
