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

Runs ppo_continuous_kl.py for every env x (N_env x N_rollout) shape x seed, N at a time, each run's output in
RUNS_DIR/logs/NAME.log. Run names are ENV__{N_env}x{N_rollout}__mb{SIZE}__s{SEED}; a second launch skips
runs that completed (their folder holds summary.json) and starts again those that failed or were cut short.
Exits non-zero, listing them, if any run failed.

  --envs "A B"            envs (default: $ENVS)
  --seeds "1 2"           seeds (default: $SEEDS)
  --shapes "1000x50 ..."  N_env x N_rollout settings (default: $SHAPES)
  --minibatch-size N      the fixed minibatch size (default: $MINIBATCH_SIZE, i.e. 50 minibatches of a 50,000
                          batch. The paper does not print it for this study; 1000 is the largest size of its
                          minibatch study, whose 500 x 100 : 50 x 1000 setting this sweep then shares)
  --total-timesteps N     env steps per run (default: $TOTAL_TIMESTEPS; the paper does not state its own)
  --runs-dir DIR          where the run folders go (default: $RUNS_DIR)
  --jobs N                runs at a time (default: the number of cores, $(nproc 2>/dev/null || echo 1) here:
                          one single-threaded run per core)
  --dry-run               print one command per line, run nothing
  -h, --help              this text
USAGE
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/sweep_common.sh"

while (($#)); do
  case $1 in
    --envs) ENVS=$(value "$@"); shift 2 ;;
    --seeds) SEEDS=$(value "$@"); shift 2 ;;
    --shapes) SHAPES=$(value "$@"); shift 2 ;;
    --minibatch-size) MINIBATCH_SIZE=$(value "$@"); shift 2 ;;
    --total-timesteps) TOTAL_TIMESTEPS=$(value "$@"); shift 2 ;;
    --runs-dir) RUNS_DIR=$(value "$@"); shift 2 ;;
    --jobs) JOBS=$(value "$@"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

check_positive_int --minibatch-size "$MINIBATCH_SIZE"
check_positive_int --total-timesteps "$TOTAL_TIMESTEPS"
JOBS=${JOBS:-$(default_jobs)}
check_positive_int --jobs "$JOBS"

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
      name="${env}__${shape}__mb${MINIBATCH_SIZE}__s${seed}"
      add_run "$name" "$PYTHON" "$HERE/ppo_continuous_kl.py" --env-id "$env" --seed "$seed" \
        --num-envs "$num_envs" --num-steps "$num_steps" --minibatch-size "$MINIBATCH_SIZE" \
        --total-timesteps "$TOTAL_TIMESTEPS" --runs-dir "$RUNS_DIR" --run-name "$name" ${EXTRA[@]+"${EXTRA[@]}"}
    done
  done
done
run_sweep
