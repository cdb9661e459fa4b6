"""Algorithm Distillation on Dark Room, sized for a 2-core CPU (benchmarks/RESULTS.md, issue 16):

    python train.py --preset ad_darkroom --seed 0

On first use writes data/darkroom/histories.npz (python -m impls.envs.darkroom: 10 runs of optimistic tabular
Q-learning per training goal, 200 episodes each; the 8 held-out goals of split seed 0 never appear in training), then
trains on windows of 80 transitions (4 episodes) and evaluates in context on the held-out goals: 4 fresh contexts per
goal, 100 episodes each, actions sampled at the agent's eval_temperature (0.3). Observations enter as one-hot x next
to one-hot y (`obs_encoding='grid'`): chosen on the goal split of seed 1 (held-out mean 11.6 against 6.1 with a
one-hot cell index; benchmarks/RESULTS.md), since what the model learns about the 73 training goals' cells then
carries over to the held-out cells.
"""

PRESET = dict(
    algorithm='ad',
    env_name='darkroom',
    train_steps=6_000,
    log_interval=500,
    eval_interval=2_000,
    eval_episodes=100,
    eval_runs=4,
    generate_episodes=200,
    history_source='q_optimistic',
    updates_per_dispatch=50,
    agent=dict(seq_len=80, tf_n_embd=64, tf_n_layer=4, tf_n_head=4, tf_dropout=0.1, tf_attn_dropout=0.0,
               batch_size=64, lr=1e-3, num_warmup_steps=500, label_smoothing=0.05, obs_encoding='grid'),
)
