# Shared by sweep_minibatch.sh and sweep_env_rollout.sh (sourced, not run): option parsing, run naming, the
# local runner and the SLURM launcher. The caller sets its defaults and usage(), then fills NAMES and CMDS with
# add_training_run and calls run_sweep.

# The launcher flags, the same in both sweeps.
LAUNCHER=local
PARTITION=""
TIME_LIMIT=""
CPUS_PER_TASK=1
GPUS=""
MEM=""
REQUEUE_BEFORE=300
SLURM_FLAGS_GIVEN=()

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
ENV__{N_env}x{N_rollout}__mb{SIZE}__s{SEED}. SIGTERM, Ctrl-C or SIGHUP stops the sweep: its runs write a
checkpoint and exit, and so does the sweep (exit 128 + the signal's number). A second launch skips runs that
completed (their folder holds summary.json), resumes those that hold a checkpoint.pt and starts again the
others. A failed run does not stop the others; the sweep then exits 1 and lists them.
TEXT
}

# The options both sweeps take, for their --help.
common_usage() {
  cat <<TEXT
  --envs "A B"            envs (default: $ENVS)
  --seeds "1 2"           seeds (default: $SEEDS)
  --total-timesteps N     env steps per run (default: $TOTAL_TIMESTEPS; the paper does not state its own)
  --runs-dir DIR          where the run folders go (default: $RUNS_DIR)
  --jobs N                runs at a time (default: one per core, $(default_jobs) here, since a run is single-threaded;
                          under slurm: array tasks at a time, default no limit)
  --launcher local|slurm  local runs them here (default); slurm submits the runs not yet completed as one SLURM
                          job array, one run per task, requeued on preemption and before its time limit, each
                          resuming from its checkpoint. Its scripts go to RUNS_DIR/slurm/
  --partition P           slurm: partition (default: the cluster's)
  --time T                slurm: time limit of each run, as sbatch takes it: MM, HH:MM:SS, D-HH:MM
                          (default: the partition's); a longer run is requeued and resumes
  --cpus-per-task N       slurm: cores per run (default: $CPUS_PER_TASK; a run is single-threaded)
  --gpus G                slurm: GPUs per run, N or TYPE:N (default: none)
  --mem M                 slurm: memory per run, like 4G (default: the partition's)
  --requeue-before S      slurm: this many seconds before its time limit a run is stopped (it checkpoints) and
                          requeued with a fresh limit (default: $REQUEUE_BEFORE; longer than one iteration)
  --dry-run               print one command per line, run nothing; slurm: the sbatch command, the array
                          script and its command list, submit nothing
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
    --launcher) LAUNCHER=$(value "$@"); CONSUMED=2 ;;
    --partition) PARTITION=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --time) TIME_LIMIT=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --cpus-per-task) CPUS_PER_TASK=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --gpus) GPUS=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --mem) MEM=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --requeue-before) REQUEUE_BEFORE=$(value "$@"); CONSUMED=2; SLURM_FLAGS_GIVEN+=("$1") ;;
    --dry-run) DRY_RUN=1; CONSUMED=1 ;;
    -h | --help) usage; exit 0 ;;
    --) CONSUMED=$#; shift; EXTRA=("$@") ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
}

# Checks the options both sweeps take, once parsed.
check_common_options() {
  check_positive_int --total-timesteps "$TOTAL_TIMESTEPS"
  case $LAUNCHER in
    local)
      if ((${#SLURM_FLAGS_GIVEN[@]} > 0)); then
        echo "error: ${SLURM_FLAGS_GIVEN[0]} needs --launcher slurm (see --help)" >&2
        exit 2
      fi
      JOBS=${JOBS:-$(default_jobs)}
      check_positive_int --jobs "$JOBS"
      ;;
    slurm) check_slurm_options ;;
    *) echo "error: --launcher takes local or slurm, got '$LAUNCHER'" >&2; exit 2 ;;
  esac
}

check_slurm_options() {
  [[ -z $JOBS ]] || check_positive_int --jobs "$JOBS"
  check_positive_int --cpus-per-task "$CPUS_PER_TASK"
  check_positive_int --requeue-before "$REQUEUE_BEFORE"
  # sbatch keeps the --signal lead time in 16 bits
  ((REQUEUE_BEFORE <= 65535)) || { echo "error: --requeue-before takes seconds up to 65535, got '$REQUEUE_BEFORE'" >&2; exit 2; }
  if [[ -n $PARTITION && ! $PARTITION =~ ^[A-Za-z0-9_.,-]+$ ]]; then
    echo "error: --partition takes a partition name (or a comma-separated list), got '$PARTITION'" >&2
    exit 2
  fi
  if [[ -n $TIME_LIMIT ]]; then
    local limit
    limit=$(slurm_seconds "$TIME_LIMIT") || {
      echo "error: --time takes MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, got '$TIME_LIMIT'" >&2
      exit 2
    }
    # otherwise the warning comes as the run starts, and it is requeued forever
    if ((limit <= REQUEUE_BEFORE)); then
      echo "error: --time $TIME_LIMIT must be longer than --requeue-before ($REQUEUE_BEFORE seconds)" >&2
      exit 2
    fi
  fi
  if [[ -n $GPUS && ! $GPUS =~ ^([A-Za-z0-9_-]+:)?[1-9][0-9]*$ ]]; then
    echo "error: --gpus takes N or TYPE:N, got '$GPUS'" >&2
    exit 2
  fi
  if [[ -n $MEM && ! $MEM =~ ^[1-9][0-9]*[KMGT]?$ ]]; then
    echo "error: --mem takes a size like 4000M or 4G (units K, M, G, T), got '$MEM'" >&2
    exit 2
  fi
  if [[ $DRY_RUN == 0 ]] && ! command -v sbatch >/dev/null; then
    echo "error: --launcher slurm needs sbatch, which is not on PATH (run on a SLURM login node, or use --launcher local)" >&2
    exit 2
  fi
  # the tasks start on other machines, perhaps in another folder
  RUNS_DIR=$(realpath -m -- "$RUNS_DIR")
}

# Seconds in a SLURM time limit; fails on anything else.
slurm_seconds() {
  local d=0 h=0 m=0 s=0
  if [[ $1 =~ ^([0-9]+)-([0-9]+)(:([0-9]+)(:([0-9]+))?)?$ ]]; then
    d=${BASH_REMATCH[1]} h=${BASH_REMATCH[2]} m=${BASH_REMATCH[4]:-0} s=${BASH_REMATCH[6]:-0}
  elif [[ $1 =~ ^([0-9]+):([0-9]+):([0-9]+)$ ]]; then
    h=${BASH_REMATCH[1]} m=${BASH_REMATCH[2]} s=${BASH_REMATCH[3]}
  elif [[ $1 =~ ^([0-9]+)(:([0-9]+))?$ ]]; then
    m=${BASH_REMATCH[1]} s=${BASH_REMATCH[3]:-0}
  else
    return 1
  fi
  # 10#: "08" is a number, not bad octal
  echo $((((10#$d * 24 + 10#$h) * 60 + 10#$m) * 60 + 10#$s))
}

hms() { printf '%02d:%02d:%02d' $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }

run_sweep() {
  if [[ $LAUNCHER == slurm ]]; then
    submit_slurm_array
    return
  fi
  local total=${#NAMES[@]} i
  if [[ $DRY_RUN == 1 ]]; then
    for i in "${!CMDS[@]}"; do echo "${CMDS[$i]% }"; done
    return 0
  fi
  mkdir -p "$RUNS_DIR/logs"
  local start=$SECONDS done=0 failed=() stopped=() skipped=0 pid status stop=""
  local -A running=() resumed=() signalled=()
  report() {
    local left=$((total - done - ${#failed[@]} - skipped))
    echo "[sweep] $1 | done $done, failed ${#failed[@]}, skipped $skipped, left $left | elapsed $(hms $((SECONDS - start)))"
  }
  # One TERM to every run not yet told: the training script checkpoints and exits on the first, and stops at once
  # on a second.
  stop_runs() {
    local p
    for p in "${!running[@]}"; do
      if [[ -z ${signalled[$p]:-} ]]; then
        signalled[$p]=1
        kill -TERM "$p" 2>/dev/null || true
      fi
    done
  }
  # The runs first, the message after: with its terminal gone (HUP), the sweep may not be able to print.
  on_signal() {
    local again=$stop
    [[ -z $again ]] || signalled=()
    stop=$1
    stop_runs
    if [[ -z $again ]]; then
      echo "[sweep] got SIG$1: stopping the ${#running[@]} running run(s) at their next checkpoint (signal again to stop them at once)"
    else
      echo "[sweep] got SIG$1 again: stopping the runs at once"
    fi
  }
  trap 'on_signal INT' INT
  trap 'on_signal TERM' TERM
  trap 'on_signal HUP' HUP
  reap() {
    wait -n -p pid || status=$?
    # a signal cut the wait short (and unset pid): no run has ended
    if [[ -z ${pid:-} ]]; then
      status=
      return 0
    fi
    status=${status:-0}
    local name=${running[$pid]} how=""
    unset "running[$pid]"
    [[ -z ${resumed[$name]:-} ]] || how=" (resumed)"
    if [[ $status == 0 && -f $RUNS_DIR/$name/summary.json ]]; then
      done=$((done + 1))
      report "finished $name$how"
    elif [[ -n $stop && -f $RUNS_DIR/$name/checkpoint.pt ]]; then
      stopped+=("$name")
      report "stopped $name$how at its checkpoint (exit $status)"
    elif [[ -n $stop ]]; then
      stopped+=("$name")
      report "stopped $name$how before its first checkpoint (exit $status), it starts afresh on relaunch"
    else
      failed+=("$name")
      report "FAILED $name$how (exit $status, log $RUNS_DIR/logs/$name.log)"
    fi
    status=
  }
  for i in "${!NAMES[@]}"; do
    local name=${NAMES[$i]} how=starting
    if [[ -f $RUNS_DIR/$name/summary.json ]]; then
      skipped=$((skipped + 1))
      continue
    fi
    while [[ -z $stop ]] && ((${#running[@]} >= JOBS)); do reap; done
    [[ -z $stop ]] || break
    if [[ -f $RUNS_DIR/$name/checkpoint.pt ]]; then
      # cut short after a checkpoint: the training script resumes from it
      how=resuming
      resumed[$name]=1
      echo "[sweep] resuming $name from its checkpoint"
    else
      # no summary.json and no checkpoint.pt: a run that failed or was cut short before its first checkpoint
      rm -rf "${RUNS_DIR:?}/$name"
    fi
    # appended to, so that the log keeps what earlier launches wrote
    printf '[sweep] %(%F %T)T %s %s\n' -1 "$how" "$name" >>"$RUNS_DIR/logs/$name.log"
    # exec: the job is the training script itself, so that stop_runs signals it. setsid: Ctrl-C in a terminal
    # reaches the sweep alone, which passes it on once (a second signal would stop the run before its checkpoint).
    eval "exec setsid ${CMDS[$i]}" >>"$RUNS_DIR/logs/$name.log" 2>&1 &
    running[$!]=$name
  done
  # a signal that came between starting a run and noting its pid has not reached that run
  [[ -z $stop ]] || stop_runs
  ((skipped == 0)) || echo "[sweep] skipped $skipped completed run(s) already in $RUNS_DIR"
  while ((${#running[@]} > 0)); do reap; done
  trap - INT TERM HUP
  if [[ -n $stop ]]; then
    report "sweep stopped"
    echo "[sweep] stopped by SIG$stop with ${#stopped[@]} run(s) cut short; the same command again resumes them" >&2
    return $((128 + $(kill -l "$stop")))
  fi
  report "sweep over"
  if ((${#failed[@]} > 0)); then
    echo "[sweep] failed runs (logs in $RUNS_DIR/logs):" >&2
    printf '  %s\n' "${failed[@]}" >&2
    return 1
  fi
}

# The sweep's runs not yet completed as one SLURM job array, one run per task. A task takes line
# SLURM_ARRAY_TASK_ID + 1 of a command list next to the runs, so a later launch, with other runs left, writes
# its own list and leaves the one of an array still queued alone.
submit_slurm_array() {
  local todo=() resume=0 i
  for i in "${!NAMES[@]}"; do
    [[ -f $RUNS_DIR/${NAMES[$i]}/summary.json ]] && continue
    todo+=("$i")
    [[ ! -f $RUNS_DIR/${NAMES[$i]}/checkpoint.pt ]] || resume=$((resume + 1))
  done
  local skipped=$((${#NAMES[@]} - ${#todo[@]}))
  if ((${#todo[@]} == 0)); then
    echo "[sweep] all $skipped run(s) completed already in $RUNS_DIR: nothing to submit"
    return 0
  fi
  local sweep base list script
  sweep=$(basename "$0" .sh)
  base=$RUNS_DIR/slurm/$sweep-$(date +%Y%m%d-%H%M%S)-$$
  list=$base.commands
  script=$base.sh
  local array="0-$((${#todo[@]} - 1))"
  [[ -z $JOBS ]] || array+="%$JOBS"
  # --open-mode=append: a requeued task would otherwise truncate its output file
  local sbatch=(sbatch --parsable --job-name="$sweep" --array="$array" --requeue --open-mode=append
    --output="$base-%a.out" --signal="B:USR1@$REQUEUE_BEFORE" --cpus-per-task="$CPUS_PER_TASK")
  [[ -z $PARTITION ]] || sbatch+=(--partition="$PARTITION")
  [[ -z $TIME_LIMIT ]] || sbatch+=(--time="$TIME_LIMIT")
  [[ -z $GPUS ]] || sbatch+=(--gpus="$GPUS")
  [[ -z $MEM ]] || sbatch+=(--mem="$MEM")
  sbatch+=("$script")
  if [[ $DRY_RUN == 1 ]]; then
    local command
    command=$(printf '%q ' "${sbatch[@]}")
    echo "${command% }"
    echo "# $script"
    array_script "$list"
    echo "# $list"
    for i in "${todo[@]}"; do echo "${NAMES[$i]} ${CMDS[$i]% }"; done
    return 0
  fi
  mkdir -p "$RUNS_DIR/slurm" "$RUNS_DIR/logs"
  for i in "${todo[@]}"; do echo "${NAMES[$i]} ${CMDS[$i]% }"; done >"$list"
  array_script "$list" >"$script"
  local out
  if ! out=$("${sbatch[@]}"); then
    rm -f "$list" "$script"
    echo "error: sbatch failed; nothing was submitted" >&2
    return 1
  fi
  local job=${out%%;*}
  ((skipped == 0)) || echo "[sweep] skipped $skipped completed run(s) already in $RUNS_DIR"
  echo "[sweep] submitted ${#todo[@]} run(s) as SLURM job array $job: $script"
  ((resume == 0)) || echo "[sweep] $resume of them resume from their checkpoint"
  echo "[sweep] follow it with: squeue -j $job; tail -f $RUNS_DIR/logs/NAME.log (task i runs line i+1 of $list)"
  echo "[sweep] once the array has ended, the same command again submits what is left (failed or cancelled runs)"
}

# The batch script of every array task: runs its line of list $1 to the end, across requeues.
array_script() {
  cat <<'SCRIPT'
#!/usr/bin/env bash
# One run of a sweep per task of a SLURM job array: line SLURM_ARRAY_TASK_ID + 1 of COMMANDS, its name then its
# command. Written by the sweep's --launcher slurm.
set -euo pipefail
SCRIPT
  printf 'COMMANDS=%q\nRUNS_DIR=%q\n' "$1" "$RUNS_DIR"
  cat <<'SCRIPT'
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$COMMANDS")
if [[ -z $line ]]; then
  echo "error: $COMMANDS has no line for array task $SLURM_ARRAY_TASK_ID" >&2
  exit 1
fi
name=${line%% *}
mkdir -p "$RUNS_DIR/logs"
# appended to: a requeued task adds to what its earlier attempts wrote
exec >>"$RUNS_DIR/logs/$name.log" 2>&1
# The time from printf, not from a $(date) subshell: SLURM signals every process of the job, and would kill it.
say() { printf '[slurm] %(%F %T)T %s\n' -1 "$*"; }
say "job ${SLURM_ARRAY_JOB_ID}_$SLURM_ARRAY_TASK_ID (id $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0}) on $(hostname): $name"
if [[ -f $RUNS_DIR/$name/summary.json ]]; then
  say "already completed, nothing to do"
  exit 0
fi
if [[ -f $RUNS_DIR/$name/checkpoint.pt ]]; then
  say "resuming from its checkpoint"
else
  # cut short before its first checkpoint, or never started: start afresh
  rm -rf "${RUNS_DIR:?}/$name"
fi

requeue=0
# Near the time limit (sbatch --signal=B:USR1@...): stop the run now, while it has time to write its checkpoint,
# and requeue the task once it has exited; the rerun gets a fresh time limit and resumes.
on_usr1() {
  requeue=1
  say "time limit near: stopping the run, to requeue it"
  [[ -z ${run:-} ]] || kill -TERM "$run" 2>/dev/null || true
}
# Preemption, scontrol requeue and scancel send TERM to every process of the job, the run included: the shell
# must outlive the run, or the run is killed before its checkpoint is written.
on_term() {
  [[ -n ${run:-} ]] || exit 143
  say "got SIGTERM: waiting for the run to write its checkpoint and exit"
}
trap on_usr1 USR1
trap on_term TERM
# In the background: a shell waits for a foreground child before it runs any trap.
eval "exec ${line#* }" &
run=$!
while true; do
  status=0
  wait "$run" || status=$?
  # a trap cuts the wait short while the run goes on
  kill -0 "$run" 2>/dev/null || break
done
say "run exited with status $status"
if ((requeue)) && [[ ! -f $RUNS_DIR/$name/summary.json ]]; then
  # by task: the job id of the array's last task is the array's own, and would requeue every task
  if scontrol requeue "${SLURM_ARRAY_JOB_ID}_$SLURM_ARRAY_TASK_ID"; then
    say "requeued"
    exit 0
  fi
  say "requeue failed: launch the sweep again to resume this run"
fi
exit "$status"
SCRIPT
}

check_int() {
  [[ $2 =~ ^-?[0-9]+$ ]] || { echo "error: $1 takes integers, got '$2'" >&2; exit 2; }
}

check_positive_int() {
  [[ $2 =~ ^[0-9]+$ ]] && (($2 > 0)) || { echo "error: $1 takes positive integers, got '$2'" >&2; exit 2; }
}
