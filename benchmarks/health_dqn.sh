#!/bin/bash
# Issue 5 reproduction: DQN on CartPole with the user's aggressive settings (lr 3e-3, soft target tau 0.012
# and no hard copies, n-step 8, 8 updates per environment step, gamma 0.995) and with a tuned configuration.
# The health monitor's warnings land in each run's health.json / health.md.
#   bash benchmarks/health_dqn.sh [RUNS_DIR]
set -e
RUNS=${1:-runs/health_dqn}
COMMON="--algorithm dqn --env_name CartPole-v1 --eval_interval 10000 --eval_episodes 10 --log_interval 2000 \
  --reward_bound 1 --wandb_mode disabled --no_progress --learning_starts=1000 --buffer_size=50000 \
  --agent.hidden_dims=256,256 --agent.epsilon_fraction=0.2 --agent.batch_size=64"
python train.py $COMMON --save_dir $RUNS/aggressive --train_steps 30000 --agent.lr=3e-3 --agent.tau=0.012 \
  --agent.hard_update_every=0 --agent.n_step=8 --training_steps_per_sample=8 --agent.discount=0.995
python train.py $COMMON --save_dir $RUNS/tuned --train_steps 50000 --agent.lr=5e-4 --agent.hard_update_every=500 \
  --training_steps_per_sample=1
