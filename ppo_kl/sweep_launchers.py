# The two launchers of sweeps.py: local processes, --jobs at a time, with a progress line; or one SLURM job array
# of the processes not yet completed, each task running its process to its end across requeues (array_task).
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from ppo_kl.run_record import hms
from ppo_kl.sweeps import HERE, Process, bash_quote, clear_unstarted_runs, dry_run_notes, has_file, say


# ---- the local launcher


@dataclass
class Job:
    process: Process
    proc: subprocess.Popen
    started: float
    log: str
    offset: int  # the log's size when this launch started it: what it wrote since is this launch's
    signalled: bool = False

    def output(self):
        try:
            with open(self.log, "rb") as f:
                f.seek(self.offset)
                return f.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def progress(self):
        """The last "iter i/n" of this launch, and the iteration its run resumed after; 0 where there is none."""
        i = n = i0 = 0
        for line in self.output():
            if m := re.match(r"iter ([0-9]+)/([0-9]+) ", line):
                i, n = int(m[1]), int(m[2])
            elif m := re.match(r"resuming .* after iteration ([0-9]+)", line):
                i0 = int(m[1])
        return i, n, i0


def run_local(opts, runs, processes, completed):
    """Runs the processes here, --jobs at a time, each one's output appended to RUNS_DIR/logs/NAME.log, with a
    progress line as the sweep starts, as each process starts and ends, and every --progress-every seconds. One
    loop does all of it, polling the processes and handling the signals it was sent: the counters change nowhere
    else, so that a progress line never counts a run twice."""
    runs_dir, jobs = opts["--runs-dir"], opts["--jobs"]
    queue, running, done, failed, stopped, received = list(processes), [], 0, [], [], []
    stop, start = None, time.monotonic()
    walls = []  # the wall times of whole runs, for the estimates: the completed ones' first
    for run in completed:
        try:
            with open(os.path.join(runs_dir, run.name, "summary.json")) as f:
                walls.append(int(json.load(f)["wall_time_s"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue

    def time_left():
        """The work left (each running process's own estimate from its progress, a process not yet started as long
        as the mean run) shared by the processes that run at once; "estimating…" until a run gives a pace."""
        now, paces, left = time.monotonic(), list(walls), {}
        for job in running:
            (i, n, i0), took = job.progress(), int(now - job.started)
            if n > 0 and i > i0:
                left[id(job)] = took * (n - i) // (i - i0)
                paces.append(took * n // (i - i0))
        if not paces:
            return "estimating…"
        mean = sum(paces) // len(paces)
        left = [left.get(id(job), max(mean - int(now - job.started), 0)) for job in running]
        slots = min(len(running) + len(queue), jobs)
        return "~" + hms(max((sum(left) + len(queue) * mean) // slots, max(left, default=0)))

    def report(what):
        line = (f"[sweep] {what} | done {done}, failed {len(failed)}, skipped {len(completed)}, left "
                f"{len(runs) - done - len(failed) - len(completed)} ({sum(len(j.process.runs) for j in running)} "
                f"running) | elapsed {hms(time.monotonic() - start)}")
        say(line + (f" | time left {time_left()}" if stop is None and (running or queue) else ""))

    def launch(process):
        # the training script resumes a run from its checkpoint.pt; a folder without one starts afresh
        clear_unstarted_runs(runs_dir, [r.name for r in process.runs])
        log = os.path.join(runs_dir, "logs", f"{process.name}.log")
        with open(log, "a") as out:  # appended to, so that the log keeps what earlier launches wrote
            out.write(f"[sweep] {time.strftime('%F %T')} {'resuming' if process.resumes else 'starting'} "
                      f"{process.name}\n")
            out.flush()
            # a session of its own: Ctrl-C in a terminal reaches the sweep alone, which passes it on once (a
            # second signal would stop the run before its checkpoint)
            proc = subprocess.Popen(process.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        running.append(Job(process, proc, time.monotonic(), log, os.path.getsize(log)))
        report(f"resuming {process.name} from its checkpoint" if process.resumes else f"started {process.name}")

    def reap(job):
        nonlocal done
        status = job.proc.returncode if job.proc.returncode >= 0 else 128 - job.proc.returncode
        name = job.process.name + (" (resumed)" if job.process.resumes else "")
        missing = [r.name for r in job.process.runs if not has_file(opts, r, "summary.json")]
        done += len(job.process.runs) - len(missing)
        running.remove(job)
        if status == 0 and not missing:
            _, n, i0 = job.progress()  # a whole run's wall time: scaled up when it resumed part-way
            walls.append(int(time.monotonic() - job.started) * n // (n - i0) if n > i0 else
                         int(time.monotonic() - job.started))
            report(f"finished {name}")
        elif stop is not None:
            stopped.extend(missing)
            if missing and os.path.isfile(os.path.join(runs_dir, missing[0], "checkpoint.pt")):
                report(f"stopped {name} at its checkpoint (exit {status})")
            else:
                report(f"stopped {name} before its first checkpoint (exit {status}), it starts afresh on relaunch")
        else:
            failed.extend(missing)
            report(f"FAILED {name} (exit {status}, log {job.log})")
            if said := [line.strip() for line in job.output() if line.strip()]:
                say(f"[sweep]   {job.process.name}: {said[-1]}")  # why, as the run said it last

    def on_signal(signum):
        nonlocal stop
        again, stop = stop is not None, signal.Signals(signum)
        # one TERM to each run: the training script checkpoints and exits on the first; a second signal to the
        # sweep sends a second, which stops the runs at once, back to their previous checkpoint
        for job in running:
            if (again or not job.signalled) and job.proc.poll() is None:
                job.signalled = True
                job.proc.send_signal(signal.SIGTERM)
        say(f"[sweep] got {stop.name} again: stopping the runs at once" if again else
            f"[sweep] got {stop.name}: stopping the {sum(len(j.process.runs) for j in running)} running run(s) at "
            "their next checkpoint (signal again to stop them at once)")

    # only noted by the handler, handled in the loop; a signal ignored on entry (nohup) stays ignored, by the runs too
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, lambda signum, frame: received.append(signum))
    if completed:
        say(f"[sweep] skipped {len(completed)} completed run(s) already in {runs_dir}")
    report(f"sweep starts: {len(processes)} process(es) to run, {jobs} at a time, in {runs_dir}")
    next_tick = time.monotonic() + opts["--progress-every"]
    while running or (queue and stop is None):
        while received:
            on_signal(received.pop(0))
        while queue and stop is None and len(running) < jobs:
            launch(queue.pop(0))
        for job in [job for job in running if job.proc.poll() is not None]:
            reap(job)
        if running and time.monotonic() >= next_tick:
            report("progress")
            next_tick += opts["--progress-every"]
        time.sleep(0.1)
    if stop is not None:
        report("sweep stopped")
        say(f"[sweep] stopped by {stop.name} with {len(stopped)} run(s) cut short; the same command again resumes "
            "them", sys.stderr)
        return 128 + stop.value
    report("sweep over")
    if failed:
        say(f"[sweep] failed runs (logs in {runs_dir}/logs):" + "".join(f"\n  {run}" for run in failed), sys.stderr)
        return 1
    return 0


# ---- the SLURM launcher

def submit_slurm_array(opts, grid, processes, completed):
    """The processes as one SLURM job array, one process per task: task i runs line i + 1 of a command list next to
    the runs (NAME RUN,RUN,... COMMAND: its log's name, its runs, its command) through array_task. A later launch,
    with other runs left, writes its own list and leaves the one of an array still queued alone."""
    runs_dir = opts["--runs-dir"]
    if not processes:
        say(f"[sweep] all {len(completed)} run(s) completed already in {runs_dir}: nothing to submit")
        return 0
    sweep = f"sweep_{grid}"
    base = os.path.join(runs_dir, "slurm", f"{sweep}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    listing, script = f"{base}.commands", f"{base}.sh"
    array = f"0-{len(processes) - 1}" + (f"%{opts['--jobs']}" if opts["--jobs"] else "")
    # --open-mode=append: a requeued task would otherwise truncate its output file
    sbatch = ["sbatch", "--parsable", f"--job-name={sweep}", f"--array={array}", "--requeue", "--open-mode=append",
              f"--output={base}-%a.out", f"--signal=B:USR1@{opts['--requeue-before']}",
              f"--cpus-per-task={opts['--cpus-per-task']}"]
    sbatch += [f"{flag}={opts[flag]}" for flag in ("--partition", "--time", "--gpus", "--mem") if opts[flag]]
    sbatch.append(script)
    lines = "".join(f"{p.name} {','.join(r.name for r in p.runs)} {' '.join(map(bash_quote, p.argv))}\n"
                    for p in processes)
    # the task runs in the Python of the training commands; a bare name is looked up on the node's PATH
    python = os.environ.get("PYTHON", "python")
    text = (f"#!{python if os.path.isabs(python) else '/usr/bin/env ' + python}\n"
            "# One process of a sweep per task of a SLURM job array, written by the sweep's --launcher slurm:\n"
            "# line SLURM_ARRAY_TASK_ID + 1 of the command list, run to its end across requeues\n"
            "# (ppo_kl.sweep_launchers.array_task).\n"
            f"import sys\nsys.path.insert(0, {HERE!r})\nfrom ppo_kl.sweep_launchers import array_task\n"
            f"sys.exit(array_task({listing!r}, {runs_dir!r}))\n")
    if opts["--dry-run"]:
        for note in filter(None, dry_run_notes(opts, completed, processes)):
            say(note)
        print(f"{' '.join(map(bash_quote, sbatch))}\n# {script}\n{text}# {listing}\n{lines}", end="")
        return 0
    os.makedirs(os.path.join(runs_dir, "slurm"), exist_ok=True)
    for path, content in ((listing, lines), (script, text)):
        with open(path, "w") as f:
            f.write(content)
    proc = subprocess.run(sbatch, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        os.remove(listing)
        os.remove(script)
        print("error: sbatch failed; nothing was submitted", file=sys.stderr)
        return 1
    job, runs = proc.stdout.strip().split(";")[0], sum(len(p.runs) for p in processes)
    if completed:
        say(f"[sweep] skipped {len(completed)} completed run(s) already in {runs_dir}")
    say(f"[sweep] submitted {runs} run(s) " + (f"in {len(processes)} process(es) " if runs != len(processes) else "")
        + f"as SLURM job array {job}: {script}")
    if resume := sum(p.resumes for p in processes):
        say(f"[sweep] {resume} process(es) of them resume from their checkpoint")
    say(f"[sweep] follow it with: squeue -j {job}; tail -f {runs_dir}/logs/NAME.log (task i runs line i+1 of "
        f"{listing})\n[sweep] once the array has ended, the same command again submits what is left (failed or "
        "cancelled runs)")
    return 0


def array_task(listing, runs_dir):
    """One task of the array: runs line SLURM_ARRAY_TASK_ID + 1 of the command list to its end, across requeues.
    Near the time limit (sbatch --signal=B:USR1@..., to the task alone) it stops the run while it has time to write
    its checkpoint, and requeues its own task, which gets a fresh time limit and resumes. Preemption, scontrol
    requeue and scancel send TERM to every process of the job, the run included: the task outlives the run, so that
    the run writes its checkpoint; SLURM then runs the task again, or not."""
    task, array = os.environ["SLURM_ARRAY_TASK_ID"], os.environ["SLURM_ARRAY_JOB_ID"]
    with open(listing) as f:
        lines = f.read().splitlines()
    if int(task) >= len(lines):
        print(f"error: {listing} has no line for array task {task}", file=sys.stderr)
        return 1
    name, members, line = lines[int(task)].split(" ", 2)
    members = members.split(",")
    os.makedirs(os.path.join(runs_dir, "logs"), exist_ok=True)
    # appended to: a requeued task adds to what its earlier attempts wrote; the run writes there too
    log = os.open(os.path.join(runs_dir, "logs", f"{name}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)

    def note(text):
        print(f"[slurm] {time.strftime('%F %T')} {text}", flush=True)

    def completed():
        return all(os.path.isfile(os.path.join(runs_dir, m, "summary.json")) for m in members)

    note(f"job {array}_{task} (id {os.environ.get('SLURM_JOB_ID')}, restart "
         f"{os.environ.get('SLURM_RESTART_COUNT', '0')}) on {socket.gethostname()}: {name}")
    if completed():
        note("already completed, nothing to do")
        return 0
    if any(os.path.isfile(os.path.join(runs_dir, m, "checkpoint.pt")) for m in members):
        note("resuming from its checkpoint")
    clear_unstarted_runs(runs_dir, members)  # cut short before their first checkpoint, or never started
    received, requeue = [], False
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: received.append(signum))
    run = subprocess.Popen(shlex.split(line), stdin=subprocess.DEVNULL)
    while True:
        ended = run.poll() is not None
        while received:
            if received.pop(0) == signal.SIGUSR1:
                requeue = True
                note("time limit near: stopping the run, to requeue it")
                if run.poll() is None:
                    run.send_signal(signal.SIGTERM)
            else:
                note("got SIGTERM: waiting for the run to write its checkpoint and exit")
        if ended:
            break
        time.sleep(0.2)
    status = run.returncode if run.returncode >= 0 else 128 - run.returncode
    note(f"run exited with status {status}")
    if requeue and not completed():
        # by task: the job id of the array's last task is the array's own, and would requeue every task. The TERM
        # that SLURM then sends every process of the job can reach scontrol before it exits: it did requeue
        if subprocess.run(["scontrol", "requeue", f"{array}_{task}"], check=False).returncode in (0, -signal.SIGTERM):
            note("requeued")
            return 0
        note("requeue failed: launch the sweep again to resume this run")
    return status
