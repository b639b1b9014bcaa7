# Shared by sweep_minibatch.sh and sweep_env_rollout.sh (sourced, not run): option parsing, run naming, the
# job runner. The caller sets the defaults and usage(), then fills NAMES and CMDS with add_training_run.

# The value of option $1, or an error when it has none.
value() {
  if (($# < 2)) || [[ $2 == --* ]]; then
    echo "error: $1 needs a value (see --help)" >&2
    exit 2
  fi
  echo "$2"
}

# "a,b c" -> "a b c"
words() { echo "${1//,/ }"; }

# Adds the training run of one setting, named by it: env, seed, N_env, N_rollout, minibatch size.
add_training_run() {
  local env=$1 seed=$2 num_envs=$3 num_steps=$4 size=$5
  local name="${env}__${num_envs}x${num_steps}__mb${size}__s${seed}"
  NAMES+=("$name")
  CMDS+=("$(printf '%q ' "$PYTHON" "$HERE/ppo_continuous_kl.py" --env-id "$env" --seed "$seed" \
    --num-envs "$num_envs" --num-steps "$num_steps" --minibatch-size "$size" \
    --total-timesteps "$TOTAL_TIMESTEPS" --runs-dir "$RUNS_DIR" --run-name "$name" ${EXTRA[@]+"${EXTRA[@]}"})")
}

default_jobs() {
  # One run per core: a run is single-threaded (torch --num-threads 1; the KL worker thread uses the time the
  # update loop leaves), so more runs than cores only slow each other down. With a GPU the env stepping still
  # runs on the CPU, so the cores stay the limit.
  nproc 2>/dev/null || echo 1
}

# What both sweeps do, for their --help.
sweep_description() {
  cat <<TEXT
N runs at a time, each run's output in RUNS_DIR/logs/NAME.log, a line per finished run. Run names are
ENV__{N_env}x{N_rollout}__mb{SIZE}__s{SEED}; a second launch skips runs that completed (their folder holds
summary.json) and starts again those that failed or were cut short. A failed run does not stop the others;
the sweep then exits 1 and lists them.
TEXT
}

# The options both sweeps take, for their --help.
common_usage() {
  cat <<TEXT
  --envs "A B"            envs (default: $ENVS)
  --seeds "1 2"           seeds (default: $SEEDS)
  --total-timesteps N     env steps per run (default: $TOTAL_TIMESTEPS; the paper does not state its own)
  --runs-dir DIR          where the run folders go (default: $RUNS_DIR)
  --jobs N                runs at a time (default: one per core, $(default_jobs) here, since a run is single-threaded)
  --dry-run               print one command per line, run nothing
  -h, --help              this text
TEXT
}

# Parses one option that both sweeps take; sets CONSUMED to the number of words it used.
parse_common_option() {
  case $1 in
    --envs) ENVS=$(value "$@"); CONSUMED=2 ;;
    --seeds) SEEDS=$(value "$@"); CONSUMED=2 ;;
    --total-timesteps) TOTAL_TIMESTEPS=$(value "$@"); CONSUMED=2 ;;
    --runs-dir) RUNS_DIR=$(value "$@"); CONSUMED=2 ;;
    --jobs) JOBS=$(value "$@"); CONSUMED=2 ;;
    --dry-run) DRY_RUN=1; CONSUMED=1 ;;
    -h | --help) usage; exit 0 ;;
    --) CONSUMED=$#; shift; EXTRA=("$@") ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
}

# Checks the options both sweeps take, once parsed.
check_common_options() {
  check_positive_int --total-timesteps "$TOTAL_TIMESTEPS"
  JOBS=${JOBS:-$(default_jobs)}
  check_positive_int --jobs "$JOBS"
}

hms() { printf '%02d:%02d:%02d' $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }

run_sweep() {
  local total=${#NAMES[@]} i
  if [[ $DRY_RUN == 1 ]]; then
    for i in "${!CMDS[@]}"; do echo "${CMDS[$i]% }"; done
    return 0
  fi
  mkdir -p "$RUNS_DIR/logs"
  local start=$SECONDS done=0 failed=() skipped=0 pid status
  local -A running=()
  report() {
    local left=$((total - done - ${#failed[@]} - skipped))
    echo "[sweep] $1 | done $done, failed ${#failed[@]}, skipped $skipped, left $left | elapsed $(hms $((SECONDS - start)))"
  }
  reap() {
    wait -n -p pid || status=$?
    status=${status:-0}
    local name=${running[$pid]}
    unset "running[$pid]"
    if [[ $status == 0 && -f $RUNS_DIR/$name/summary.json ]]; then
      done=$((done + 1))
      report "finished $name"
    else
      failed+=("$name")
      report "FAILED $name (exit $status, log $RUNS_DIR/logs/$name.log)"
    fi
    status=
  }
  for i in "${!NAMES[@]}"; do
    local name=${NAMES[$i]}
    if [[ -f $RUNS_DIR/$name/summary.json ]]; then
      skipped=$((skipped + 1))
      continue
    fi
    # a folder without summary.json is a run that failed or was cut short: start it again
    rm -rf "${RUNS_DIR:?}/$name"
    while ((${#running[@]} >= JOBS)); do reap; done
    eval "${CMDS[$i]}" >"$RUNS_DIR/logs/$name.log" 2>&1 &
    running[$!]=$name
  done
  ((skipped == 0)) || echo "[sweep] skipped $skipped completed run(s) already in $RUNS_DIR"
  while ((${#running[@]} > 0)); do reap; done
  report "sweep over"
  if ((${#failed[@]} > 0)); then
    echo "[sweep] failed runs (logs in $RUNS_DIR/logs):" >&2
    printf '  %s\n' "${failed[@]}" >&2
    return 1
  fi
}

check_int() {
  [[ $2 =~ ^-?[0-9]+$ ]] || { echo "error: $1 takes integers, got '$2'" >&2; exit 2; }
}

check_positive_int() {
  [[ $2 =~ ^[0-9]+$ ]] && (($2 > 0)) || { echo "error: $1 takes positive integers, got '$2'" >&2; exit 2; }
}
