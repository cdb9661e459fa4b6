#!/bin/bash
# DQN on CartPole-v1 (issue 4's target: >= 475 on every seed at 50k environment steps): the dqn_cartpole
# preset, 5 seeds, two at a time; prints the greedy evaluation (10 episodes) and the mean return of the
# last 10 training episodes per seed.
#   bash benchmarks/dqn_cartpole.sh [RUNS_DIR] [extra train.py flags...]
RUNS=${1:-runs/dqn_cartpole}; shift
one() {
  python train.py --preset dqn_cartpole --seed $1 --save_dir $RUNS/s$1 --wandb_mode disabled --no_progress "${@:2}" \
    > $RUNS/s$1.log 2>&1
  echo "seed $1: $(grep -E 'greedy return' $RUNS/s$1.log | tail -1)"
}
mkdir -p $RUNS
for pair in "0 1" "2 3" "4"; do
  for seed in $pair; do one $seed "$@" & done
  wait
done
