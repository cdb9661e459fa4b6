"""DQN on CartPole-v1: at 50k environment steps, >= 475 on 36 of 38 seeds run (greedy; 38 of 38 for the last-10
training mean), 500 on seeds 0-4 (benchmarks/RESULTS.md):

    python train.py --preset dqn_cartpole --seed 0

CleanRL's defaults (the agent's defaults) reach 263 +- 68 at 50k. What changed and why: 2 updates per
environment step from step 1k (not one per 10 from 10k), batch 64, lr 5e-4, 256-256 MLP, a 50k buffer that
keeps every early failure, epsilon 1 -> 0.01 over the first 20%, 3-step returns, gamma 0.995, a soft target
(tau 0.005 per update) instead of hard copies, and TD targets clamped to [0, 200], the range CartPole's
values can take (reward 1 per step, 1 / (1 - 0.995) = 200).

  - gamma and n-step: with gamma 0.99 the greedy policy kept the pole up but let the cart drift out of
    bounds after 350-480 steps, an end too far ahead to be seen in the values.
  - the soft target: hard copies every 500 updates left the policy oscillating (5 of 8 held-out seeds at
    >= 475); the doubled replay ratio gives back the speed of learning the soft target costs.
  - the clamp: with those two, Q's batch maximum climbed past the 200 bound to 400-650 late in training on
    most seeds, and the training returns fell on some; clamped, it stays at 200-230.
Chosen on seeds 100-107, checked on seeds 0-4; the sweep is in RESULTS.md. reward_bound turns on the
health monitor's value-divergence check (bound 200).
"""

PRESET = dict(
    algorithm='dqn',
    env_name='CartPole-v1',
    train_steps=50_000,
    eval_episodes=10,
    eval_interval=10_000,
    log_interval=5_000,
    reward_bound=1.0,
    learning_starts=1_000,
    buffer_size=50_000,
    training_steps_per_sample=2.0,
    agent=dict(hidden_dims=(256, 256), batch_size=64, lr=5e-4, tau=0.005, hard_update_every=0, epsilon_end=0.01,
               epsilon_fraction=0.2, n_step=3, discount=0.995, target_clamp=(0.0, 200.0)),
)
