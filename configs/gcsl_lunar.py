"""GCSL on GCSL's goal-conditioned LunarLander (impls/LunarLanderGoal-v0, box2d: pip install -e '.[lunar]'), with the
paper's settings: 10k random steps, then greedy collection, one update per environment step, batch 256, lr 5e-4, an
MLP [400, 300] over [s, g], 50 greedy evaluation episodes (benchmarks/RESULTS.md, issue 15).

    python train.py --preset gcsl_lunar --seed 0
"""

PRESET = dict(
    algorithm='gcsl',
    env_name='impls/LunarLanderGoal-v0',
    train_steps=200_000,
    learning_starts=1_000,  # GCSL's start_policy_timesteps
    buffer_size=1_000_000,  # environment steps (20k episodes of 50, GCSL's buffer): every episode of the run
    eval_episodes=50,
    eval_interval=10_000,
    log_interval=5_000,
    agent=dict(),
)
