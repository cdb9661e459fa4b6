"""Compressed Algorithm Distillation on Dark Room with a raw window of at most 60 transitions (issue 16):

    python train.py --preset cad_darkroom --seed 0

The same histories and evaluation as ad_darkroom. A training window: 0-3 compressed segments of 20-40 transitions
(depth drawn uniformly), each folded into 16 latent tokens by a 2-block encoder, then 20-60 raw transitions; at
evaluation the oldest 40 raw transitions are compressed whenever the raw context reaches 60. Cells enter as one-hot x
next to one-hot y (`obs_encoding='grid'`), as in ad_darkroom (seed 0: 11.2 held-out mean against 7.0 with one-hot
cells; benchmarks/RESULTS.md).
"""

PRESET = dict(
    algorithm='cad',
    env_name='darkroom',
    train_steps=6_000,
    log_interval=500,
    eval_interval=2_000,
    eval_episodes=100,
    eval_runs=4,
    generate_episodes=200,
    history_source='q_optimistic',
    updates_per_dispatch=50,
    agent=dict(tf_n_embd=64, tf_n_layer=4, tf_n_head=4, n_latent=16, encoder_n_layer=2, max_compression_depth=3,
               min_compress_length=20, max_compress_length=40, min_uncompressed_length=20,
               max_uncompressed_length=60, eval_compress_length=40, tf_dropout=0.1, tf_attn_dropout=0.0,
               batch_size=64, lr=1e-3, num_warmup_steps=500, label_smoothing=0.05, obs_encoding='grid'),
)
