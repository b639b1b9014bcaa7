#!/usr/bin/env bash
# Figure 1 (bottom) and Figure 3: PPO at N_env x N_rollout = 1000 x 50, 500 x 100, 100 x 500, 50 x 1000
# (a 50,000-step batch each) with one fixed minibatch size.
set -euo pipefail

ENVS="Humanoid-v5 HalfCheetah-v5 Ant-v5 Walker2d-v5"
SEEDS="1 2 3 4"
SHAPES="1000x50 500x100 100x500 50x1000"
MINIBATCH_SIZE=1000
TOTAL_TIMESTEPS=5000000
RUNS_DIR=runs/env_rollout

usage() {
  cat <<USAGE
usage: $0 [options] [-- extra flags for ppo_continuous_kl.py]

Runs ppo_continuous_kl.py for every env x (N_env x N_rollout) shape x seed.
$(sweep_description)

  --shapes "1000x50 ..."  N_env x N_rollout settings (default: $SHAPES)
  --minibatch-size N      the fixed minibatch size (default: $MINIBATCH_SIZE, i.e. 50 minibatches of a 50,000
                          batch. The paper does not print it for this study; 1000 is the largest size of its
                          minibatch study, whose 500 x 100 : 50 x 1000 setting this sweep then shares)
$(common_usage)
USAGE
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/sweep_common.sh"

while (($#)); do
  case $1 in
    --shapes) SHAPES=$(value "$@"); shift 2 ;;
    --minibatch-size) MINIBATCH_SIZE=$(value "$@"); shift 2 ;;
    *) parse_common_option "$@"; shift "$CONSUMED" ;;
  esac
done

check_positive_int --minibatch-size "$MINIBATCH_SIZE"
read -r -a LIST <<<"${SHAPES//,/ }"
for shape in ${LIST[@]+"${LIST[@]}"}; do
  [[ $shape =~ ^[1-9][0-9]{0,8}x[1-9][0-9]{0,8}$ ]] ||
    error "--shapes takes N_envxN_rollout like 1000x50 (positive integers), got '$shape'"
done
split_list --shapes "$SHAPES" "N_envxN_rollout settings, like '1000x50 500x100'"
SHAPE_LIST=("${LIST[@]}")
check_common_options
for shape in "${SHAPE_LIST[@]}"; do
  check_setting "$MINIBATCH_SIZE" "${shape%x*}" "${shape#*x}" --minibatch-size \
    "--minibatch-size $MINIBATCH_SIZE does not divide $shape = $((${shape%x*} * ${shape#*x}))"
done

for env in "${ENV_LIST[@]}"; do
  for shape in "${SHAPE_LIST[@]}"; do
    for seed in "${SEED_LIST[@]}"; do
      add_training_run "$env" "$seed" "${shape%x*}" "${shape#*x}" "$MINIBATCH_SIZE"
    done
  done
done
run_sweep
