"""DQN on an Atari game at the Nature-DQN settings (Mnih et al. 2015, as in CleanRL's dqn_atari_jax.py):

    pip install -e '.[atari]' && python train.py --preset dqn_atari --env_name ALE/Breakout-v5

Nature CNN on 4 stacked 84x84 grey frames, batch 32, Adam 1e-4, one update every 4 environment steps,
target copied every 1,000 environment steps (250 updates), epsilon 1 -> 0.01 over the first 10% of the
run, learning starts at 80k steps. The paper's budget is 10M steps (40M frames), a GPU job; the replay
here holds 100k transitions (2.8 GB of uint8 frames) -- raise --buffer_size to 1M where memory
allows (28 GB).
"""

PRESET = dict(
    algorithm='dqn',
    env_name='ALE/Breakout-v5',
    train_steps=10_000_000,
    eval_episodes=10,
    eval_interval=500_000,
    log_interval=10_000,
    ckpt_every=500_000,
    buffer_size=100_000,
    learning_starts=80_000,
    training_steps_per_sample=0.25,
    agent=dict(torso='nature_cnn', lr=1e-4, batch_size=32, hard_update_every=250, tau=0.0,
               epsilon_start=1.0, epsilon_end=0.01, epsilon_fraction=0.1, discount=0.99, loss='mse',
               max_grad_norm=0.0),
)
