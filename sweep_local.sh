# The local runner of the sweeps (sourced by sweep_common.sh): the processes of plan_processes, JOBS at a time,
# each one's output appended to RUNS_DIR/logs/NAME.log, and a progress line as the sweep starts, as each
# process starts and ends, and every PROGRESS_EVERY seconds while they run.

# Sets IT_I and IT_N from the last "iter i/n" line that log $1 got after its first $2 bytes, and IT_0 to the
# iteration its run resumed after (0 when it started afresh); 0 where there is no such line yet.
read_progress() {
  IT_I=0 IT_N=0 IT_0=0
  local line
  while IFS= read -r line; do
    if [[ $line =~ ^iter\ ([0-9]+)/([0-9]+) ]]; then
      IT_I=${BASH_REMATCH[1]} IT_N=${BASH_REMATCH[2]}
    elif [[ $line =~ after\ iteration\ ([0-9]+) ]]; then
      IT_0=${BASH_REMATCH[1]}
    fi
  done < <(tail -c "+$(($2 + 1))" -- "$1" 2>/dev/null | grep -aE '^(iter [0-9]+/[0-9]+ |resuming .* after iteration [0-9]+)' || true)
}

# Sets ETA to the time the sweep has left: the work left (each running process's own estimate from its
# progress, a process not yet started as long as the mean run) shared by the processes that run at once.
# The mean run is taken over the completed runs' wall times and the running processes' pace; until there is
# one, "estimating…".
estimate_left() {
  local now=$SECONDS sum=$FIN_SUM count=$FIN_COUNT p el rem work=0 longest=0 slots
  local -A rems=()
  for p in "${!running[@]}"; do
    read_progress "$RUNS_DIR/logs/${PROC_NAMES[${running[$p]}]}.log" "${log_offset[$p]}"
    el=$((now - started[$p]))
    if ((IT_N > 0 && IT_I > IT_0)); then
      rems[$p]=$((el * (IT_N - IT_I) / (IT_I - IT_0)))
      sum=$((sum + el * IT_N / (IT_I - IT_0)))
      count=$((count + 1))
    fi
  done
  if ((count == 0)); then
    ETA="estimating…"
    return 0
  fi
  local mean=$((sum / count))
  for p in "${!running[@]}"; do
    el=$((now - started[$p]))
    rem=${rems[$p]:-$((mean > el ? mean - el : 0))}
    work=$((work + rem))
    ((rem <= longest)) || longest=$rem
  done
  work=$((work + queued * mean))
  slots=$((${#running[@]} + queued))
  ((slots <= JOBS)) || slots=$JOBS
  rem=$((work / slots))
  ((rem >= longest)) || rem=$longest
  ETA="~$(hms "$rem")"
}

# One progress line: what happened ($1), the runs done, failed, skipped and left (running among them), the
# time elapsed and, while runs go, the time left.
report() {
  local p running_runs=0 left line
  for p in "${!running[@]}"; do running_runs=$((running_runs + PROC_SIZES[${running[$p]}])); done
  left=$((total - done - ${#failed[@]} - skipped))
  line="[sweep] $1 | done $done, failed ${#failed[@]}, skipped $skipped, left $left ($running_runs running)"
  line+=" | elapsed $(hms $((SECONDS - start)))"
  if [[ -z $stop ]] && ((${#running[@]} + queued > 0)); then
    estimate_left
    line+=" | time left $ETA"
  fi
  echo "$line" || true  # a terminal gone (SIGHUP) must not stop the sweep
}

# A run's full wall time, for the estimates: the time process $1 took, scaled up when it resumed part-way.
note_finished() {
  local log=$RUNS_DIR/logs/${PROC_NAMES[${running[$1]}]}.log took=$((SECONDS - started[$1]))
  read_progress "$log" "${log_offset[$1]}"
  if ((IT_N > IT_0)); then took=$((took * IT_N / (IT_N - IT_0))); fi
  FIN_SUM=$((FIN_SUM + took))
  FIN_COUNT=$((FIN_COUNT + 1))
}

# The wall times of the runs completed before this launch, from their summary.json, for the estimates.
note_completed_runs() {
  local run
  for run in "${RUN_NAMES[@]}"; do
    if [[ -f $RUNS_DIR/$run/summary.json && $(<"$RUNS_DIR/$run/summary.json") =~ \"wall_time_s\":\ ([0-9]+) ]]; then
      FIN_SUM=$((FIN_SUM + BASH_REMATCH[1]))
      FIN_COUNT=$((FIN_COUNT + 1))
    fi
  done
}

# Starts process $1 in the background.
start_process() {
  local i=$1 name=${PROC_NAMES[$1]} how=starting
  local log=$RUNS_DIR/logs/$name.log
  ((PROC_RESUMES[i] == 0)) || how=resuming
  # the training script resumes a run from its checkpoint.pt; a folder without one starts afresh
  clear_unstarted_runs "$i"
  # appended to, so that the log keeps what earlier launches wrote
  printf '[sweep] %(%F %T)T %s %s\n' -1 "$how" "$name" >>"$log"
  local offset
  offset=$(stat -c %s -- "$log")
  # exec: the job is the training script itself, so that stop_runs signals it. setsid: Ctrl-C in a terminal
  # reaches the sweep alone, which passes it on once (a second signal would stop the run before its checkpoint).
  eval "exec setsid ${PROC_CMDS[$i]}" >>"$log" 2>&1 &
  running[$!]=$i
  started[$!]=$SECONDS
  log_offset[$!]=$offset
  queued=$((queued - 1))
  if [[ $how == resuming ]]; then
    report "resuming $name from its checkpoint"
  else
    report "started $name"
  fi
}

# Waits for a process to end, and reports how it ended.
reap() {
  pid=
  wait -n -p pid "${!running[@]}" || status=$?
  # a signal cut the wait short (and unset pid): no process has ended
  if [[ -z ${pid:-} ]]; then
    status=
    return 0
  fi
  status=${status:-0}
  local i=${running[$pid]} how="" run missing=()
  local name=${PROC_NAMES[$i]}
  for run in ${PROC_MEMBERS[$i]}; do [[ -f $RUNS_DIR/$run/summary.json ]] || missing+=("$run"); done
  done=$((done + PROC_SIZES[i] - ${#missing[@]}))
  ((PROC_RESUMES[i] == 0)) || how=" (resumed)"
  if [[ $status == 0 ]] && ((${#missing[@]} == 0)); then
    note_finished "$pid"
    unset "running[$pid]"
    report "finished $name$how"
  elif [[ -n $stop && -f $RUNS_DIR/${missing[0]}/checkpoint.pt ]]; then
    unset "running[$pid]"
    stopped+=("${missing[@]}")
    report "stopped $name$how at its checkpoint (exit $status)"
  elif [[ -n $stop ]]; then
    unset "running[$pid]"
    stopped+=("${missing[@]}")
    report "stopped $name$how before its first checkpoint (exit $status), it starts afresh on relaunch"
  else
    unset "running[$pid]"
    failed+=("${missing[@]}")
    report "FAILED $name$how (exit $status, log $RUNS_DIR/logs/$name.log)"
  fi
  status=
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
  local again=$stop p runs=0
  [[ -z $again ]] || signalled=()
  stop=$1
  stop_runs
  if [[ -z $again ]]; then
    for p in "${!running[@]}"; do runs=$((runs + PROC_SIZES[${running[$p]}])); done
    echo "[sweep] got SIG$1: stopping the $runs running run(s) at their next checkpoint (signal again to stop them at once)"
  else
    echo "[sweep] got SIG$1 again: stopping the runs at once"
  fi
}

# A process of its own that sends the sweep USR1 every PROGRESS_EVERY seconds (its trap prints a progress
# line), and ends when the sweep is gone or sends it TERM, its sleep with it. Its output goes nowhere, so that
# nothing waits for it.
start_ticker() {
  local sweep=$$
  (
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    while true; do
      sleep "$PROGRESS_EVERY" &
      nap=$!
      wait "$nap"
      kill -USR1 "$sweep" 2>/dev/null || exit 0
    done
  ) </dev/null >/dev/null 2>&1 &
  ticker=$!
}

run_local() {
  local i
  if [[ $DRY_RUN == 1 ]]; then
    dry_run_notes
    for i in "${!PROC_CMDS[@]}"; do
      process_note "$i"
      echo "${PROC_CMDS[$i]}"
    done
    return 0
  fi
  local total=${#RUN_NAMES[@]} skipped=$SKIPPED queued=${#PROC_NAMES[@]} start=$SECONDS done=0 failed=() stopped=()
  local pid status stop="" ticker ETA IT_I IT_N IT_0 FIN_SUM=0 FIN_COUNT=0
  local -A running=() started=() log_offset=() signalled=()
  note_completed_runs
  trap 'on_signal INT' INT
  trap 'on_signal TERM' TERM
  trap 'on_signal HUP' HUP
  trap 'report progress' USR1
  ((skipped == 0)) || echo "[sweep] skipped $skipped completed run(s) already in $RUNS_DIR"
  report "sweep starts: ${#PROC_NAMES[@]} process(es) to run, $JOBS at a time, in $RUNS_DIR"
  start_ticker
  for i in "${!PROC_NAMES[@]}"; do
    while [[ -z $stop ]] && ((${#running[@]} >= JOBS)); do reap; done
    [[ -z $stop ]] || break
    start_process "$i"
  done
  # a signal that came between starting a process and noting its pid has not reached that process
  [[ -z $stop ]] || stop_runs
  while ((${#running[@]} > 0)); do reap; done
  kill "$ticker" 2>/dev/null || true
  trap - INT TERM HUP USR1
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
