"""DreamerV3 on Pendulum-v1 (continuous torque, rescaled to [-1, 1]): the continuous-action path, where the actor
learns by backpropagating imagined returns through the world model (benchmarks/RESULTS.md):

    python train.py --preset dreamer_pendulum --seed 0

Sizes and optimiser as dreamer_cartpole, but DreamerV3's reconstruction weight (1) and a single learning rate:
Pendulum's observation spreads ~0.5-2 per dimension, and at weight 1 the decoder leaves under 6% of any dimension's
variance unexplained from 3k steps on (`world_model/rec_unexplained_worst`; CartPole's small-valued state needed
`rec_scale=100`). Pendulum's episodes are 200 steps; a swing-up and balance scores about -150 to -200, a random
policy about -1200.
"""

PRESET = dict(
    algorithm='dreamer',
    env_name='Pendulum-v1',
    train_steps=15_000,
    eval_episodes=10,
    eval_interval=1_000,
    log_interval=1_000,
    learning_starts=1_000,
    buffer_size=100_000,
    train_ratio=256,
    agent=dict(deter=128, hidden=64, units=64, stoch=8, classes=8, batch_size=16, sequence_length=64, imag_last=16,
               lr=3e-4, warmup_steps=100, encoder='mlp'),
)
