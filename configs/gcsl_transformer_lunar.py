"""The GCSL-transformer on GCSL's goal-conditioned LunarLander (impls/LunarLanderGoal-v0; pip install -e '.[lunar]'):
GCSL's data, relabelling and budget (preset gcsl_lunar), the policy a causal transformer over the last 8 states with
the goal merged into every state token (cross-attention to per-dimension goal tokens and a sigmoid gate), VICReg on
the representation of s_t, warmup (benchmarks/RESULTS.md, issue 15).

    python train.py --preset gcsl_transformer_lunar --seed 0
    python train.py --preset gcsl_transformer_lunar --agent.fusion=late   # separate processing: the collapse case
"""

PRESET = dict(
    algorithm='gcsl_transformer',
    env_name='impls/LunarLanderGoal-v0',
    train_steps=200_000,
    learning_starts=1_000,
    buffer_size=1_000_000,
    eval_episodes=50,
    eval_interval=10_000,
    log_interval=5_000,
    agent=dict(context=8, dim=64, heads=4, layers=2, fusion='gate'),
)
