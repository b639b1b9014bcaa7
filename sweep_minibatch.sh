#!/usr/bin/env bash
# Figure 1 (top) and Figure 2: PPO at N_env x N_rollout = 500 x 100 with minibatch sizes 50 ... 1000.
set -euo pipefail

ENVS="Humanoid-v5 HalfCheetah-v5 Ant-v5 Walker2d-v5"
SEEDS="1 2 3 4"
SIZES="50 100 250 500 1000"  # 1000, 500, 200, 100, 50 minibatches of the 50,000-step batch
NUM_ENVS=500
NUM_STEPS=100
TOTAL_TIMESTEPS=5000000
RUNS_DIR=runs/minibatch

usage() {
  cat <<USAGE
usage: $0 [options] [-- extra flags for ppo_continuous_kl.py]

Runs ppo_continuous_kl.py for every env x minibatch size x seed.
$(sweep_description)

  --sizes "50 1000"       minibatch sizes, each dividing N_env x N_rollout (default: $SIZES)
  --num-envs N            N_env (default: $NUM_ENVS)
  --num-steps N           N_rollout (default: $NUM_STEPS)
$(common_usage)
USAGE
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/sweep_common.sh"

while (($#)); do
  case $1 in
    --sizes) SIZES=$(value "$@"); shift 2 ;;
    --num-envs) NUM_ENVS=$(value "$@"); shift 2 ;;
    --num-steps) NUM_STEPS=$(value "$@"); shift 2 ;;
    *) parse_common_option "$@"; shift "$CONSUMED" ;;
  esac
done

check_positive_int --num-envs "$NUM_ENVS"
check_positive_int --num-steps "$NUM_STEPS"
read -r -a LIST <<<"${SIZES//,/ }"
for size in ${LIST[@]+"${LIST[@]}"}; do check_positive_int --sizes "$size"; done
split_list --sizes "$SIZES" "minibatch sizes dividing N_env x N_rollout = $((NUM_ENVS * NUM_STEPS)), like '50 100'"
SIZE_LIST=("${LIST[@]}")
check_common_options
for size in "${SIZE_LIST[@]}"; do
  check_setting "$size" "$NUM_ENVS" "$NUM_STEPS" --sizes \
    "--sizes: $size does not divide N_env x N_rollout = $((NUM_ENVS * NUM_STEPS))"
done

for env in "${ENV_LIST[@]}"; do
  for size in "${SIZE_LIST[@]}"; do
    for seed in "${SEED_LIST[@]}"; do
      add_training_run "$env" "$seed" "$NUM_ENVS" "$NUM_STEPS" "$size"
    done
  done
done
run_sweep
