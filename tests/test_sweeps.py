"""The two sweep scripts: exact commands, deterministic names, skip-completed and rerun-failed with real runs, and
a sweep stopped by a signal that resumes its runs when launched again."""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, TINY_MINIBATCH, load_kl, run_sweep


def dry_run(script, *flags):
    proc = run_sweep(script, "--dry-run", *flags)
    assert proc.stderr == ""
    return proc.stdout.splitlines()


def flag(line, name):
    return re.search(rf"--{name} (\S+)", line).group(1)


def test_minibatch_sweep_defaults():
    lines = dry_run("sweep_minibatch.sh")
    assert len(lines) == 4 * 5 * 4
    settings = {(flag(l, "env-id"), flag(l, "minibatch-size"), flag(l, "seed")) for l in lines}
    assert settings == {(e, s, str(seed)) for e in ("Humanoid-v5", "HalfCheetah-v5", "Ant-v5", "Walker2d-v5")
                        for s in ("50", "100", "250", "500", "1000") for seed in range(1, 5)}
    for line in lines:
        assert line.split()[1].endswith("ppo_continuous_kl.py")
        assert (flag(line, "num-envs"), flag(line, "num-steps"), flag(line, "total-timesteps")) == ("500", "100", "5000000")
        assert flag(line, "runs-dir") == "runs/minibatch"
        env, size, seed = flag(line, "env-id"), flag(line, "minibatch-size"), flag(line, "seed")
        assert flag(line, "run-name") == f"{env}__500x100__mb{size}__s{seed}"
    assert dry_run("sweep_minibatch.sh") == lines  # deterministic


def test_env_rollout_sweep_defaults():
    lines = dry_run("sweep_env_rollout.sh")
    assert len(lines) == 4 * 4 * 4
    shapes = {(flag(l, "num-envs"), flag(l, "num-steps")) for l in lines}
    assert shapes == {("1000", "50"), ("500", "100"), ("100", "500"), ("50", "1000")}
    for line in lines:
        assert int(flag(line, "num-envs")) * int(flag(line, "num-steps")) == 50_000
        assert flag(line, "minibatch-size") == "1000" and flag(line, "runs-dir") == "runs/env_rollout"
        shape = f"{flag(line, 'num-envs')}x{flag(line, 'num-steps')}"
        assert flag(line, "run-name") == f"{flag(line, 'env-id')}__{shape}__mb1000__s{flag(line, 'seed')}"
    assert len({flag(l, "run-name") for l in lines}) == len(lines)


def test_flags_override_the_defaults_and_extra_args_pass_through():
    lines = dry_run("sweep_env_rollout.sh", "--envs", "Hopper-v5,Ant-v5", "--seeds", "7", "--shapes", "10x10",
                    "--minibatch-size", "20", "--total-timesteps", "1000", "--runs-dir", "/tmp/x y", "--",
                    "--no-kl", "--learning-rate", "1e-4")
    assert len(lines) == 2
    assert lines[0].endswith("--run-name Hopper-v5__10x10__mb20__s7 --no-kl --learning-rate 1e-4")
    assert r"--runs-dir /tmp/x\ y" in lines[0]  # quoted so that the printed line runs as is
    lines = dry_run("sweep_minibatch.sh", "--sizes", "25", "--num-envs", "10", "--num-steps", "5", "--envs", "Hopper-v5",
                    "--seeds", "1 2")
    assert [flag(l, "run-name") for l in lines] == ["Hopper-v5__10x5__mb25__s1", "Hopper-v5__10x5__mb25__s2"]


@pytest.mark.parametrize("script,flags,message", [
    ("sweep_minibatch.sh", ["--sizes", "7"], "--sizes: 7 does not divide N_env x N_rollout = 50000"),
    ("sweep_minibatch.sh", ["--sizes", "0"], "--sizes takes positive integers"),
    ("sweep_minibatch.sh", ["--jobs", "0"], "--jobs takes positive integers"),
    ("sweep_minibatch.sh", ["--num-envs", "many"], "--num-envs takes positive integers"),
    ("sweep_minibatch.sh", ["--seeds", "one"], "--seeds takes integers"),
    ("sweep_minibatch.sh", ["--envs"], "--envs needs a value"),
    ("sweep_minibatch.sh", ["--bogus"], "unknown option --bogus"),
    ("sweep_env_rollout.sh", ["--shapes", "10by10"], "--shapes takes N_envxN_rollout like 1000x50"),
    ("sweep_env_rollout.sh", ["--minibatch-size", "3000"], "--minibatch-size 3000 does not divide 1000x50 = 50000"),
    ("sweep_minibatch.sh", ["--launcher", "pbs"], "--launcher takes local or slurm, got 'pbs'"),
    ("sweep_minibatch.sh", ["--partition", "gpu"], "--partition needs --launcher slurm"),
    ("sweep_env_rollout.sh", ["--time", "10", "--launcher", "local"], "--time needs --launcher slurm"),
    ("sweep_minibatch.sh", ["--launcher", "slurm", "--time", "soon"],
     "--time takes MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, got 'soon'"),
    ("sweep_minibatch.sh", ["--launcher", "slurm", "--time", "4:59"],
     "--time 4:59 must be longer than --requeue-before (300 seconds)"),
    ("sweep_minibatch.sh", ["--launcher", "slurm", "--requeue-before", "0"],
     "--requeue-before takes positive integers"),
    ("sweep_minibatch.sh", ["--launcher", "slurm", "--cpus-per-task", "half"],
     "--cpus-per-task takes positive integers"),
    ("sweep_minibatch.sh", ["--launcher", "slurm", "--gpus", "two"], "--gpus takes N or TYPE:N, got 'two'"),
    ("sweep_env_rollout.sh", ["--launcher", "slurm", "--mem", "lots"], "--mem takes a size like 4000M or 4G"),
    ("sweep_env_rollout.sh", ["--launcher", "slurm", "--jobs", "-1"], "--jobs takes positive integers"),
])
def test_bad_flags(script, flags, message):
    proc = run_sweep(script, *flags, "--dry-run", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"error: {message}" or proc.stderr.startswith(f"error: {message}"), proc.stderr


def test_help():
    for script in ("sweep_minibatch.sh", "sweep_env_rollout.sh"):
        proc = run_sweep(script, "--help")
        assert "--dry-run" in proc.stdout and "--jobs" in proc.stdout and "usage:" in proc.stdout
        for option in ("--launcher local|slurm", "--partition", "--time", "--cpus-per-task", "--gpus", "--mem",
                       "--requeue-before"):
            assert f"\n  {option} " in proc.stdout, option
        assert "resumes those that hold a checkpoint.pt" in proc.stdout


def test_relaunch_skips_completed_and_reruns_cut_short(tiny_sweeps, tmp_path):
    runs = tmp_path / "minibatch"
    shutil.copytree(tiny_sweeps[0], runs)
    names = sorted(n for n in os.listdir(runs) if n != "logs")
    assert names == [f"InvertedPendulum-v5__4x32__mb{s}__s{seed}" for s in (32, 64) for seed in (1, 2)]
    proc = run_sweep("sweep_minibatch.sh", *TINY_MINIBATCH, "--runs-dir", str(runs))
    assert "skipped 4 completed run(s)" in proc.stdout and "finished" not in proc.stdout
    # one run cut short before its first checkpoint: its folder lacks summary.json and checkpoint.pt
    cut = runs / names[1]
    os.remove(cut / "summary.json")
    os.remove(cut / "checkpoint.pt")
    kept_events = {n: sorted(os.listdir(runs / n)) for n in names if n != names[1]}
    proc = run_sweep("sweep_minibatch.sh", *TINY_MINIBATCH, "--runs-dir", str(runs))
    assert "skipped 3 completed run(s)" in proc.stdout
    assert f"finished {names[1]} | done 1, failed 0, skipped 3, left 0" in proc.stdout
    assert (cut / "summary.json").exists() and len([f for f in os.listdir(cut) if f.startswith("events")]) == 1
    assert {n: sorted(os.listdir(runs / n)) for n in kept_events} == kept_events


def test_a_failed_run_does_not_stop_the_others(tmp_path):
    flags = [*TINY_MINIBATCH, "--runs-dir", str(tmp_path), "--sizes", "64", "--seeds", "1"]
    flags[1] = "NoSuchEnv-v0 InvertedPendulum-v5"
    proc = run_sweep("sweep_minibatch.sh", *flags, check=False)
    assert proc.returncode == 1
    assert "FAILED NoSuchEnv-v0__4x32__mb64__s1" in proc.stdout
    assert "finished InvertedPendulum-v5__4x32__mb64__s1" in proc.stdout
    assert proc.stderr.splitlines()[-1].strip() == "NoSuchEnv-v0__4x32__mb64__s1"
    log = (tmp_path / "logs" / "NoSuchEnv-v0__4x32__mb64__s1.log").read_text()
    assert "error: --env-id 'NoSuchEnv-v0' is not a registered Gymnasium env" in log


# Long enough (20 iterations of a few tenths of a second) for a signal to land mid-run.
LONG_MINIBATCH = ["--envs", "InvertedPendulum-v5", "--sizes", "32", "--num-envs", "4", "--num-steps", "32",
                  "--total-timesteps", str(20 * 128), "--jobs", "2"]


@contextlib.contextmanager
def running_sweep(runs, *flags, **popen):
    """A sweep started in the background; one still running at the end is stopped, its runs with it."""
    proc = subprocess.Popen(["bash", os.path.join(ROOT, "sweep_minibatch.sh"), *LONG_MINIBATCH, "--runs-dir", str(runs),
                             *flags], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHON": sys.executable}, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def wait_for_kl_files(proc, run_dirs, count, timeout=120):
    deadline = time.monotonic() + timeout
    while not all((d / "kl").is_dir() and len(os.listdir(d / "kl")) >= count for d in run_dirs):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {count} KL files in {run_dirs} after {timeout} s"
        time.sleep(0.05)


def test_a_sweep_stopped_by_sigterm_resumes_its_runs_when_launched_again(tmp_path):
    names = [f"InvertedPendulum-v5__4x32__mb32__s{seed}" for seed in (1, 2, 3)]
    # the reference: seeds 1 and 2 uninterrupted; seed 1 is then the completed run of the sweep that is stopped
    ref, runs = tmp_path / "ref", tmp_path / "runs"
    run_sweep("sweep_minibatch.sh", *LONG_MINIBATCH, "--runs-dir", str(ref), "--seeds", "1 2")
    shutil.copytree(ref / names[0], runs / names[0])

    with running_sweep(runs, "--seeds", "1 2 3") as proc:
        wait_for_kl_files(proc, [runs / names[1], runs / names[2]], 3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert err.strip() == "[sweep] stopped by SIGTERM with 2 run(s) cut short; the same command again resumes them"
    assert "[sweep] got SIGTERM: stopping the 2 running run(s) at their next checkpoint" in out
    for name in names[1:]:
        assert re.search(rf"stopped {name} at its checkpoint \(exit 143\)", out), out
        assert (runs / name / "checkpoint.pt").exists() and not (runs / name / "summary.json").exists()
    first_logs = {n: (runs / "logs" / f"{n}.log").read_text() for n in names[1:]}

    proc = run_sweep("sweep_minibatch.sh", *LONG_MINIBATCH, "--runs-dir", str(runs), "--seeds", "1 2 3")
    assert "skipped 1 completed run(s)" in proc.stdout
    for name in names[1:]:
        assert f"[sweep] resuming {name} from its checkpoint" in proc.stdout
        assert f"finished {name} (resumed) | " in proc.stdout
        log = (runs / "logs" / f"{name}.log").read_text()
        assert log.startswith(first_logs[name])  # appended to, not truncated
        assert re.search(rf"^resuming \S*{name} after iteration [1-9]", log, re.M), log
        assert re.search(rf"^\[sweep\] \S+ \S+ resuming {name}$", log, re.M), log
    assert "done 2, failed 0, skipped 1, left 0" in proc.stdout.splitlines()[-1]

    # the resumed run ends exactly as the uninterrupted one
    for name in names:
        assert len(os.listdir(runs / name / "kl")) == 20
        assert json.loads((runs / name / "summary.json").read_text())["iterations"] == 20
    kl_ref, kl_resumed = load_kl(str(ref / names[1])), load_kl(str(runs / names[1]))
    for x, y in zip(kl_ref, kl_resumed, strict=True):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    final = [json.loads((d / names[1] / "summary.json").read_text())["final_returns"] for d in (ref, runs)]
    assert final[0] == final[1]


def test_ctrl_c_reaches_each_run_once_as_sigterm(tmp_path):
    """Ctrl-C in a terminal signals the sweep's whole process group. The runs, in sessions of their own, get one
    TERM from the sweep: a second signal would stop them before their checkpoint."""
    name = "InvertedPendulum-v5__4x32__mb32__s1"
    with running_sweep(tmp_path, "--seeds", "1", start_new_session=True) as proc:
        wait_for_kl_files(proc, [tmp_path / name], 2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, (out, err)
    assert err.strip() == "[sweep] stopped by SIGINT with 1 run(s) cut short; the same command again resumes them"
    assert f"stopped {name} at its checkpoint (exit 143)" in out
    log = (tmp_path / "logs" / f"{name}.log").read_text()
    assert "SIGTERM" in log and "SIGINT" not in log and "Traceback" not in log, log
    assert (tmp_path / name / "checkpoint.pt").exists()
