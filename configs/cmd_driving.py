"""The visual driving setting our first user runs: CMD on an OGBench-layout .npz of uint8 frames with
discrete actions, streamed through the block-shuffle loader. Their command line, plus what their three
problems call for:

    python train.py --preset cmd_driving --dataset_path PATH/driving.npz

* Q-mean drops at every epoch boundary: see benchmarks/RESULTS.md (epoch boundaries) before choosing
  between a new block order per epoch (default) and --shuffle_seed.
* "Always drives forward": alpha=1.0 let the BC term dominate the Q term; 0.1 (CMD's default) here, and
  check with `python test_goal_conditioning.py --checkpoint RUN --algorithm cmd`.
* Their environment runs outside OGBench, so evaluation is off (--eval_episodes 0).
"""

PRESET = dict(
    algorithm='cmd',
    frame_stack=4,
    block_size=150,
    chunk_size=2100,
    batch_size=64,
    steps=100_000,
    epochs=25,
    eval_episodes=0,
    log_interval=1_000,
    ckpt_every=50_000,
    agent=dict(encoder='impala_small', p_aug=0.5, alpha=0.1),
)
