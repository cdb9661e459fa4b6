"""A tiny Dreamer for tests and smoke runs (seconds): CartPole-v1, a few hundred steps.

    python train.py --preset dreamer_debug
"""

PRESET = dict(
    algorithm='dreamer',
    env_name='CartPole-v1',
    train_steps=300,
    eval_episodes=2,
    log_interval=100,
    learning_starts=100,
    buffer_size=10_000,
    train_ratio=32,  # 4 x 8 = 32 replayed steps per update: one update per environment step
    agent=dict(deter=32, hidden=16, units=16, stoch=4, classes=4, batch_size=4, sequence_length=8, imag_horizon=5,
               bins=31, mlp_layers=1, ac_layers=1, lr=1e-3, warmup_steps=0),
)
