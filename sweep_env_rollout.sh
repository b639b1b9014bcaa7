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
JOBS=""
DRY_RUN=0
PYTHON=${PYTHON:-python}
EXTRA=()

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
check_common_options

NAMES=()
CMDS=()
for env in $(words "$ENVS"); do
  for shape in $(words "$SHAPES"); do
    if [[ ! $shape =~ ^([1-9][0-9]*)x([1-9][0-9]*)$ ]]; then
      echo "error: --shapes takes N_envxN_rollout like 1000x50, got '$shape'" >&2
      exit 2
    fi
    num_envs=${BASH_REMATCH[1]}
    num_steps=${BASH_REMATCH[2]}
    if ((num_envs * num_steps % MINIBATCH_SIZE != 0)); then
      echo "error: --minibatch-size $MINIBATCH_SIZE does not divide $shape = $((num_envs * num_steps))" >&2
      exit 2
    fi
    for seed in $(words "$SEEDS"); do
      check_int --seeds "$seed"
      add_training_run "$env" "$seed" "$num_envs" "$num_steps" "$MINIBATCH_SIZE"
    done
  done
done
run_sweep
