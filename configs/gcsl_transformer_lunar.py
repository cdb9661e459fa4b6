"""The GCSL-transformer on GCSL's goal-conditioned LunarLander (impls/LunarLanderGoal-v0; pip install -e '.[lunar]'):
GCSL's data, relabelling and budget (preset gcsl_lunar), the policy a causal transformer over the last 4 states with
the goal merged into every state token (cross-attention to per-dimension goal tokens and a sigmoid gate), VICReg on
the representation of s_t, warmup (benchmarks/RESULTS.md, issue 15). Sized for a CPU: width 32, one layer, 4 states
(11 ms per update on 2 cores, ~37 minutes of updates for the 2e5-step budget; width 64, 2 layers, 8 states costs
40 ms per update, 2.2 hours).

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
    agent=dict(context=4, dim=32, heads=2, layers=1, fusion='gate', warmup_steps=1000),
)
