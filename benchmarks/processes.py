"""Whole-process timing for the benchmarks: launch programs, wait for them, and report the wall time from the
first launch to the last exit and each process's peak resident set size.

os.wait4 gives each child's own rusage, so the peak RSS of concurrent children is known one by one (the figure of
a child is the largest of it and its own waited-for children, e.g. torch.compile's workers, not their sum).
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(ROOT, "ppo_continuous_kl.py")


def run_together(commands, cwd, log_names, env=None):
    """Start every command at once, wait for all; return (seconds from start to the last exit, [peak RSS bytes]).

    Each command's stdout and stderr go to <cwd>/<log_name>; a failure prints the tail of its log and exits.
    """
    logs = [open(os.path.join(cwd, name), "w") for name in log_names]
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
             for cmd, log in zip(commands, logs)]
    peaks, failed = {}, []
    while len(peaks) < len(procs):
        pid, status, usage = os.wait4(-1, 0)
        for i, proc in enumerate(procs):
            if proc.pid == pid:
                proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
                peaks[i] = usage.ru_maxrss * 1024  # Linux reports KiB
                if proc.returncode != 0:
                    failed.append(i)
    seconds = time.perf_counter() - start
    for log in logs:
        log.close()
    for i in failed:
        with open(logs[i].name) as f:
            tail = f.read()[-3000:]
        print(f"error: exit status {procs[i].returncode} of\n  {' '.join(commands[i])}\n{tail}", file=sys.stderr)
    if failed:
        sys.exit(1)
    return seconds, [peaks[i] for i in range(len(procs))]


def run_one(command, cwd, log_name, env=None):
    """(seconds from start to exit, peak RSS bytes) of one command."""
    seconds, peaks = run_together([command], cwd, [log_name], env)
    return seconds, peaks[0]


def ours_command(runs_dir, run_name, num_envs, num_steps, minibatch_size, iterations, extra=()):
    """Our training script on HalfCheetah-v5 at the given size; every other flag at its default unless in extra."""
    return [sys.executable, OURS, "--runs-dir", runs_dir, "--run-name", run_name, "--env-id", "HalfCheetah-v5",
            "--num-envs", str(num_envs), "--num-steps", str(num_steps), "--minibatch-size", str(minibatch_size),
            "--total-timesteps", str(iterations * num_envs * num_steps), *extra]


def cleanrl_command(python, script, num_envs, num_steps, minibatch_size, iterations):
    """CleanRL's ppo_continuous_action.py on HalfCheetah-v4 (its stack's) at the same size, and the environment that
    keeps torch on one thread: with its default threads it is several times slower on a 2-core CPU."""
    batch = num_envs * num_steps
    cmd = [python, script, "--env-id", "HalfCheetah-v4", "--num-envs", str(num_envs), "--num-steps", str(num_steps),
           "--num-minibatches", str(batch // minibatch_size), "--total-timesteps", str(iterations * batch)]
    return cmd, {**os.environ, "OMP_NUM_THREADS": "1"}


def ours_setting(log_path):
    """What our script said it runs (env, device, env backend, sizes, compiled or not), from the first line of its
    log: --env-backend auto and --compile auto are resolved there."""
    with open(log_path) as f:
        line = f.readline().strip()
    start = line.find("HalfCheetah-v5 on ")
    return line[start:] if start >= 0 else line
