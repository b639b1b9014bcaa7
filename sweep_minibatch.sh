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
JOBS=""
DRY_RUN=0
PYTHON=${PYTHON:-python}
EXTRA=()

usage() {
  cat <<USAGE
usage: $0 [options] [-- extra flags for ppo_continuous_kl.py]

Runs ppo_continuous_kl.py for every env x minibatch size x seed, N at a time, each run's output in
RUNS_DIR/logs/NAME.log. Run names are ENV__{N_env}x{N_rollout}__mb{SIZE}__s{SEED}; a second launch skips
runs that completed (their folder holds summary.json) and starts again those that failed or were cut short.
Exits non-zero, listing them, if any run failed.

  --envs "A B"          envs (default: $ENVS)
  --seeds "1 2"         seeds (default: $SEEDS)
  --sizes "50 1000"     minibatch sizes, each dividing N_env x N_rollout (default: $SIZES)
  --num-envs N          N_env (default: $NUM_ENVS)
  --num-steps N         N_rollout (default: $NUM_STEPS)
  --total-timesteps N   env steps per run (default: $TOTAL_TIMESTEPS; the paper does not state its own)
  --runs-dir DIR        where the run folders go (default: $RUNS_DIR)
  --jobs N              runs at a time (default: the number of cores, $(nproc 2>/dev/null || echo 1) here:
                        one single-threaded run per core)
  --dry-run             print one command per line, run nothing
  -h, --help            this text
USAGE
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/sweep_common.sh"

while (($#)); do
  case $1 in
    --envs) ENVS=$(value "$@"); shift 2 ;;
    --seeds) SEEDS=$(value "$@"); shift 2 ;;
    --sizes) SIZES=$(value "$@"); shift 2 ;;
    --num-envs) NUM_ENVS=$(value "$@"); shift 2 ;;
    --num-steps) NUM_STEPS=$(value "$@"); shift 2 ;;
    --total-timesteps) TOTAL_TIMESTEPS=$(value "$@"); shift 2 ;;
    --runs-dir) RUNS_DIR=$(value "$@"); shift 2 ;;
    --jobs) JOBS=$(value "$@"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

check_positive_int --num-envs "$NUM_ENVS"
check_positive_int --num-steps "$NUM_STEPS"
check_positive_int --total-timesteps "$TOTAL_TIMESTEPS"
JOBS=${JOBS:-$(default_jobs)}
check_positive_int --jobs "$JOBS"

NAMES=()
CMDS=()
for env in $(words "$ENVS"); do
  for size in $(words "$SIZES"); do
    check_positive_int --sizes "$size"
    if ((NUM_ENVS * NUM_STEPS % size != 0)); then
      echo "error: --sizes: $size does not divide N_env x N_rollout = $((NUM_ENVS * NUM_STEPS))" >&2
      exit 2
    fi
    for seed in $(words "$SEEDS"); do
      check_int --seeds "$seed"
      name="${env}__${NUM_ENVS}x${NUM_STEPS}__mb${size}__s${seed}"
      add_run "$name" "$PYTHON" "$HERE/ppo_continuous_kl.py" --env-id "$env" --seed "$seed" \
        --num-envs "$NUM_ENVS" --num-steps "$NUM_STEPS" --minibatch-size "$size" \
        --total-timesteps "$TOTAL_TIMESTEPS" --runs-dir "$RUNS_DIR" --run-name "$name" ${EXTRA[@]+"${EXTRA[@]}"}
    done
  done
done
run_sweep
