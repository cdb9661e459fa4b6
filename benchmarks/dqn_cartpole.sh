#!/bin/bash
# DQN on CartPole-v1, 50k environment steps, the tuned configuration of benchmarks/health_dqn.sh, 5 seeds:
# prints the greedy evaluation (10 episodes) and the mean return of the last 10 training episodes per seed.
#   bash benchmarks/dqn_cartpole.sh [RUNS_DIR]
RUNS=${1:-runs/dqn_cartpole}
for seed in 0 1 2 3 4; do
  python train.py --algorithm dqn --env_name CartPole-v1 --train_steps 50000 --eval_episodes 10 --log_interval 5000 \
    --seed $seed --save_dir $RUNS/s$seed --wandb_mode disabled --no_progress --agent.learning_starts=1000 \
    --agent.buffer_size=50000 --agent.hidden_dims=256,256 --agent.epsilon_fraction=0.2 --agent.batch_size=64 \
    --agent.lr=5e-4 --agent.hard_update_every=500 --agent.training_steps_per_sample=1 2>&1 \
    | grep -E "greedy return|Last 10" | tail -2 | sed "s/^/seed $seed: /"
done
