"""DreamerV3 on CartPole-v1 from 64 x 64 RGB renders (no state), sized for a 2-core CPU (benchmarks/RESULTS.md):

    pip install -e '.[pixels]'   # pygame-ce renders CartPole
    python train.py --preset dreamer_cartpole_pixels --seed 0

The frames are rendered by the environment and resized to 64 x 64 when collected (replay holds uint8 frames; no batch
is resized). One frame shows positions, not velocities: the RSSM's recurrent state carries them. The CNN encoder and
decoder (channels 8 x (2, 3, 4, 4)) cost most of an update, so batches are 8 sequences of 32 steps.
"""

PRESET = dict(
    algorithm='dreamer',
    env_name='CartPole-v1',
    pixels=64,
    train_steps=20_000,
    eval_episodes=5,
    eval_interval=2_000,
    log_interval=1_000,
    learning_starts=1_000,
    buffer_size=100_000,
    train_ratio=64,  # 8 x 32 = 256 replayed steps per update: one update per 4 environment steps
    reward_bound=1.0,
    agent=dict(deter=128, hidden=64, units=64, stoch=8, classes=8, batch_size=8, sequence_length=32, imag_last=16,
               cnn_depth=8, lr=3e-4, warmup_steps=100, encoder='cnn'),
)
