# Shared by sweep_minibatch.sh and sweep_env_rollout.sh (sourced, not run): the job runner.
# The caller fills NAMES (run names) and CMDS (one shell-quoted command each), and sets RUNS_DIR, JOBS, DRY_RUN.

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

# Adds one run: run name, then the command's words.
add_run() {
  local name=$1
  shift
  NAMES+=("$name")
  CMDS+=("$(printf '%q ' "$@")")
}

default_jobs() {
  # One run per core: a run is single-threaded (torch --num-threads 1; the KL worker thread uses the time the
  # update loop leaves), so more runs than cores only slow each other down.
  nproc 2>/dev/null || echo 1
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
