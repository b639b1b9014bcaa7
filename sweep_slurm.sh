# The SLURM launcher of the sweeps (sourced by sweep_common.sh): the processes of plan_processes as one job
# array, one process per task, requeued on preemption and before the time limit, each resuming from its
# checkpoint.

check_slurm_options() {
  [[ -z $JOBS ]] || check_positive_int --jobs "$JOBS"
  check_positive_int --cpus-per-task "$CPUS_PER_TASK"
  check_positive_int --requeue-before "$REQUEUE_BEFORE"
  # sbatch keeps the --signal lead time in 16 bits
  ((REQUEUE_BEFORE <= 65535)) || error "--requeue-before takes seconds up to 65535, got '$REQUEUE_BEFORE'"
  if [[ -n $PARTITION && ! $PARTITION =~ ^[A-Za-z0-9_.,-]+$ ]]; then
    error "--partition takes a partition name (or a comma-separated list), got '$PARTITION'"
  fi
  if [[ -n $TIME_LIMIT ]]; then
    local limit
    limit=$(slurm_seconds "$TIME_LIMIT") ||
      error "--time takes MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, got '$TIME_LIMIT'"
    # otherwise the warning comes as the run starts, and it is requeued forever
    ((limit > REQUEUE_BEFORE)) || error "--time $TIME_LIMIT must be longer than --requeue-before ($REQUEUE_BEFORE seconds)"
  fi
  if [[ -n $GPUS && ! $GPUS =~ ^([A-Za-z0-9_-]+:)?[1-9][0-9]*$ ]]; then
    error "--gpus takes N or TYPE:N, got '$GPUS'"
  fi
  if [[ -n $MEM && ! $MEM =~ ^[1-9][0-9]*[KMGT]?$ ]]; then
    error "--mem takes a size like 4000M or 4G (units K, M, G, T), got '$MEM'"
  fi
  if [[ $DRY_RUN == 0 ]] && ! command -v sbatch >/dev/null; then
    error "--launcher slurm needs sbatch, which is not on PATH (run on a SLURM login node, or use --launcher local)"
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

# The sweep's processes (its runs not yet completed) as one SLURM job array, one process per task. A task takes
# line SLURM_ARRAY_TASK_ID + 1 of a command list next to the runs: NAME RUN,RUN,... COMMAND (its log's name,
# its runs, its command). A later launch, with other runs left, writes its own list and leaves the one of an
# array still queued alone.
submit_slurm_array() {
  local nprocs=${#PROC_NAMES[@]} resume=0 i
  for i in "${!PROC_NAMES[@]}"; do resume=$((resume + PROC_RESUMES[i])); done
  local skipped=$SKIPPED
  if ((nprocs == 0)); then
    echo "[sweep] all $skipped run(s) completed already in $RUNS_DIR: nothing to submit"
    return 0
  fi
  local sweep base list script
  sweep=$(basename "$0" .sh)
  base=$RUNS_DIR/slurm/$sweep-$(date +%Y%m%d-%H%M%S)-$$
  list=$base.commands
  script=$base.sh
  local array="0-$((nprocs - 1))"
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
    dry_run_notes
    for i in "${!PROC_NAMES[@]}"; do process_note "$i"; done
    local command
    command=$(printf '%q ' "${sbatch[@]}")
    echo "${command% }"
    echo "# $script"
    array_script "$list"
    echo "# $list"
    command_list
    return 0
  fi
  mkdir -p "$RUNS_DIR/slurm" "$RUNS_DIR/logs"
  command_list >"$list"
  array_script "$list" >"$script"
  local out
  if ! out=$("${sbatch[@]}"); then
    rm -f "$list" "$script"
    echo "error: sbatch failed; nothing was submitted" >&2
    return 1
  fi
  local job=${out%%;*}
  ((skipped == 0)) || echo "[sweep] skipped $skipped completed run(s) already in $RUNS_DIR"
  local runs=0
  for i in "${!PROC_NAMES[@]}"; do runs=$((runs + PROC_SIZES[i])); done
  if ((runs == nprocs)); then
    echo "[sweep] submitted $runs run(s) as SLURM job array $job: $script"
  else
    echo "[sweep] submitted $runs run(s) in $nprocs process(es) as SLURM job array $job: $script"
  fi
  ((resume == 0)) || echo "[sweep] $resume process(es) of them resume from their checkpoint"
  echo "[sweep] follow it with: squeue -j $job; tail -f $RUNS_DIR/logs/NAME.log (task i runs line i+1 of $list)"
  echo "[sweep] once the array has ended, the same command again submits what is left (failed or cancelled runs)"
}

# The command list of the array: a line per process, NAME RUN,RUN,... COMMAND.
command_list() {
  local i
  for i in "${!PROC_NAMES[@]}"; do echo "${PROC_NAMES[$i]} ${PROC_MEMBERS[$i]// /,} ${PROC_CMDS[$i]}"; done
}

# The batch script of every array task: runs its line of list $1 to the end, across requeues.
array_script() {
  cat <<'SCRIPT'
#!/usr/bin/env bash
# One process of a sweep per task of a SLURM job array: line SLURM_ARRAY_TASK_ID + 1 of COMMANDS, its name,
# its runs (comma-separated) and its command. Written by the sweep's --launcher slurm.
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
line=${line#* }
IFS=, read -r -a members <<<"${line%% *}"
command=${line#* }
mkdir -p "$RUNS_DIR/logs"
# appended to: a requeued task adds to what its earlier attempts wrote
exec >>"$RUNS_DIR/logs/$name.log" 2>&1
# The time from printf, not from a $(date) subshell: SLURM signals every process of the job, and would kill it.
say() { printf '[slurm] %(%F %T)T %s\n' -1 "$*"; }
say "job ${SLURM_ARRAY_JOB_ID}_$SLURM_ARRAY_TASK_ID (id $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0}) on $(hostname): $name"
completed() {
  local member
  for member in "${members[@]}"; do [[ -f $RUNS_DIR/$member/summary.json ]] || return 1; done
}
if completed; then
  say "already completed, nothing to do"
  exit 0
fi
resuming=0
for member in "${members[@]}"; do
  if [[ -f $RUNS_DIR/$member/checkpoint.pt ]]; then
    resuming=1
  elif [[ ! -f $RUNS_DIR/$member/summary.json ]]; then
    # cut short before its first checkpoint, or never started: start afresh
    rm -rf "${RUNS_DIR:?}/$member"
  fi
done
((resuming == 0)) || say "resuming from its checkpoint"

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
eval "exec $command" &
run=$!
while true; do
  status=0
  wait "$run" || status=$?
  # a trap cuts the wait short while the run goes on
  kill -0 "$run" 2>/dev/null || break
done
say "run exited with status $status"
if ((requeue)) && ! completed; then
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
