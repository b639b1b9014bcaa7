"""The two sweeps (sweeps.py behind sweep_minibatch.sh and sweep_env_rollout.sh): exact commands, deterministic names,
bad options, every command checked by the training script before anything starts, runs on disk of other flags
refused and seeds grouped into processes, in this process; through the scripts, skip-completed and rerun-failed
with real runs, a failed run's error on the console, progress lines, and a sweep stopped by a signal that resumes its
runs when launched again."""
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ppo_kl import sweeps
from conftest import ROOT, TINY_MINIBATCH, fake_runs, load_kl, run_sweep, sweep


@pytest.fixture(autouse=True)
def scratch_folder(tmp_path, monkeypatch):
    """The sweeps run in this process from a folder of their own: their default runs folders are relative."""
    monkeypatch.chdir(tmp_path)


def dry_run(script, *flags):
    proc = sweep(script, "--dry-run", *flags)
    assert proc.stderr == ""
    return proc.stdout.splitlines()


def flag(line, name):
    return re.search(rf"--{name} (\S+)", line).group(1)


def test_minibatch_sweep_defaults():
    lines = dry_run("sweep_minibatch.sh")
    assert len(lines) == 4 * 5 * 4
    settings = {(flag(line, "env-id"), flag(line, "minibatch-size"), flag(line, "seed")) for line in lines}
    assert settings == {(e, s, str(seed)) for e in ("Humanoid-v5", "HalfCheetah-v5", "Ant-v5", "Walker2d-v5")
                        for s in ("50", "100", "250", "500", "1000") for seed in range(1, 5)}
    for line in lines:
        assert line.split()[1].endswith("ppo_continuous_kl.py")
        assert (flag(line, "num-envs"), flag(line, "num-steps"),
                flag(line, "total-timesteps")) == ("500", "100", "5000000")
        assert flag(line, "runs-dir") == "runs/minibatch"
        env, size, seed = flag(line, "env-id"), flag(line, "minibatch-size"), flag(line, "seed")
        assert flag(line, "run-name") == f"{env}__500x100__mb{size}__s{seed}"
    assert dry_run("sweep_minibatch.sh") == lines  # deterministic


def test_env_rollout_sweep_defaults():
    lines = dry_run("sweep_env_rollout.sh")
    assert len(lines) == 4 * 4 * 4
    shapes = {(flag(line, "num-envs"), flag(line, "num-steps")) for line in lines}
    assert shapes == {("1000", "50"), ("500", "100"), ("100", "500"), ("50", "1000")}
    for line in lines:
        assert int(flag(line, "num-envs")) * int(flag(line, "num-steps")) == 50_000
        assert flag(line, "minibatch-size") == "1000" and flag(line, "runs-dir") == "runs/env_rollout"
        shape = f"{flag(line, 'num-envs')}x{flag(line, 'num-steps')}"
        assert flag(line, "run-name") == f"{flag(line, 'env-id')}__{shape}__mb1000__s{flag(line, 'seed')}"
    assert len({flag(line, "run-name") for line in lines}) == len(lines)


def test_flags_override_the_defaults_and_extra_args_pass_through():
    lines = dry_run("sweep_env_rollout.sh", "--envs", "Hopper-v5,Ant-v5", "--seeds", "7", "--shapes", "10x10",
                    "--minibatch-size", "20", "--total-timesteps", "1000", "--runs-dir", "/tmp/x y", "--",
                    "--no-kl", "--learning-rate", "1e-4")
    assert len(lines) == 2
    assert lines[0].endswith("--run-name Hopper-v5__10x10__mb20__s7 --no-kl --learning-rate 1e-4")
    assert r"--runs-dir /tmp/x\ y" in lines[0]  # quoted so that the printed line runs as is
    lines = dry_run("sweep_minibatch.sh", "--sizes", "25", "--num-envs", "10", "--num-steps", "5",
                    "--envs", "Hopper-v5", "--seeds", "1 2")
    assert [flag(line, "run-name") for line in lines] == ["Hopper-v5__10x5__mb25__s1", "Hopper-v5__10x5__mb25__s2"]


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
    proc = sweep(script, *flags, "--dry-run", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"error: {message}" or proc.stderr.startswith(f"error: {message}"), proc.stderr


# Each bad value ends the sweep before any run with one line "error: ..." that names the flag and what it takes.
@pytest.mark.parametrize("script,flags,message", [
    # empty lists
    ("sweep_minibatch.sh", ["--seeds", ""], "--seeds needs a value, got an empty one"),
    ("sweep_minibatch.sh", ["--seeds", ","], "--seeds takes integers from 0 to 2147483647, like '1 2 3', got none"),
    ("sweep_minibatch.sh", ["--sizes", " "], "--sizes takes minibatch sizes dividing N_env x N_rollout = 50000"),
    ("sweep_env_rollout.sh", ["--envs", ","], "--envs takes Gymnasium env ids, like 'Hopper-v5 Ant-v5', got none"),
    ("sweep_env_rollout.sh", ["--shapes", ","],
     "--shapes takes N_envxN_rollout settings, like '1000x50 500x100', got none"),
    # a value twice: two runs of one name
    ("sweep_minibatch.sh", ["--seeds", "1 2 1"], "--seeds gives '1' twice"),
    ("sweep_minibatch.sh", ["--sizes", "50,50"], "--sizes gives '50' twice"),
    ("sweep_env_rollout.sh", ["--shapes", "4x32 4x32", "--minibatch-size", "32"], "--shapes gives '4x32' twice"),
    ("sweep_env_rollout.sh", ["--envs", "Ant-v5 Ant-v5"], "--envs gives 'Ant-v5' twice"),
    ("sweep_env_rollout.sh", ["--envs", "ALE/Pong-v5"], "--envs takes Gymnasium env ids without '/' (a run's folder"),
    # not integers, or not as the training script takes them
    ("sweep_minibatch.sh", ["--seeds", "-1"], "--seeds takes integers from 0 to 2147483647, like '1 2 3', got '-1'"),
    ("sweep_minibatch.sh", ["--seeds", "01"], "--seeds takes integers from 0 to 2147483647, like '1 2 3', got '01'"),
    ("sweep_minibatch.sh", ["--seeds", "4294967296"], "--seeds takes integers from 0 to 2147483647"),
    ("sweep_minibatch.sh", ["--sizes", "050"], "--sizes takes positive integers, got '050'"),
    ("sweep_minibatch.sh", ["--num-envs", "08"], "--num-envs takes positive integers, got '08'"),
    ("sweep_env_rollout.sh", ["--minibatch-size", "0100"], "--minibatch-size takes positive integers, got '0100'"),
    ("sweep_minibatch.sh", ["--jobs", "99999999999999999999"], "--jobs takes positive integers"),
    # malformed shapes
    ("sweep_env_rollout.sh", ["--shapes", "10x"],
     "--shapes takes N_envxN_rollout like 1000x50 (positive integers), got '10x'"),
    ("sweep_env_rollout.sh", ["--shapes", "0x50"],
     "--shapes takes N_envxN_rollout like 1000x50 (positive integers), got '0x50'"),
    ("sweep_env_rollout.sh", ["--shapes", "10x10x10"], "--shapes takes N_envxN_rollout like 1000x50"),
    # settings every run would fail on
    ("sweep_minibatch.sh", ["--total-timesteps", "1000"],
     "--total-timesteps takes at least one iteration, N_env x N_rollout = 500 x 100 = 50000 steps, got 1000"),
    ("sweep_env_rollout.sh", ["--shapes", "4x32", "--minibatch-size", "1"],
     "--minibatch-size takes sizes of 2 or more"),
    # empty values, bad values of the new options
    ("sweep_minibatch.sh", ["--jobs", ""], "--jobs needs a value, got an empty one"),
    ("sweep_minibatch.sh", ["--runs-dir", ""], "--runs-dir needs a value, got an empty one"),
    ("sweep_minibatch.sh", ["--norm-stats", "global"], "--norm-stats takes per-env or shared, got 'global'"),
    ("sweep_env_rollout.sh", ["--eval-every", "-1"],
     "--eval-every takes an integer >= 0 (iterations; 0: no evaluation), got '-1'"),
    ("sweep_env_rollout.sh", ["--eval-every", "often"],
     "--eval-every takes an integer >= 0 (iterations; 0: no evaluation), got 'often'"),
    ("sweep_minibatch.sh", ["--seeds-per-process", "0"],
     "--seeds-per-process takes a positive integer, all or auto, got '0'"),
    ("sweep_minibatch.sh", ["--seeds-per-process", "most"],
     "--seeds-per-process takes a positive integer, all or auto, got 'most'"),
    ("sweep_minibatch.sh", ["--progress-every", "0"], "--progress-every takes positive integers, got '0'"),
    ("sweep_minibatch.sh", ["--launcher", "slurm", "--progress-every", "5"], "--progress-every needs --launcher local"),
    # flags after -- that would override the sweep's own
    ("sweep_minibatch.sh", ["--", "--seed", "5"],
     "the flags after -- may not set --seed, which the sweep sets for each run"),
    ("sweep_env_rollout.sh", ["--", "--run-name=x"], "the flags after -- may not set --run-name"),
    ("sweep_minibatch.sh", ["--", "--no-kl", "--total_timesteps", "9"],
     "the flags after -- may not set --total_timesteps"),
    # unknown options, named with the known ones
    ("sweep_minibatch.sh", ["--size", "50"],
     "unknown option --size; the options are --sizes --num-envs --num-steps --envs"),
    ("sweep_env_rollout.sh", ["50x100"], "unknown option 50x100; the options are --shapes --minibatch-size --envs"),
])
def test_bad_values(script, flags, message, tmp_path):
    proc = sweep(script, "--runs-dir", str(tmp_path / "runs"), "--dry-run", *flags, check=False)
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert proc.stderr.startswith(f"error: {message}") and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_runs_dir_must_be_a_writable_folder(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for runs_dir, message in [
            (afile, f"--runs-dir takes a folder, got '{afile}', which is a file"),
            (afile / "runs", f"--runs-dir takes a folder, got '{afile}/runs', which lies under the file {afile}"),
            # mkdir fails there, for root too
            ("/proc/sweep-runs", "--runs-dir takes a folder this user can write into, got '/proc/sweep-runs'")]:
        for dry_run in ([], ["--dry-run"]) if runs_dir != "/proc/sweep-runs" else ([],):
            proc = sweep("sweep_minibatch.sh", "--runs-dir", str(runs_dir), *dry_run, check=False)
            assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
            assert proc.stderr.startswith(f"error: {message}") and proc.stderr.count("\n") == 1, proc.stderr
    assert afile.read_text() == ""


def test_paper_defaults_and_their_flags():
    for script in ("sweep_minibatch.sh", "sweep_env_rollout.sh"):
        lines = dry_run(script, "--envs", "Ant-v5", "--seeds", "1")
        assert all(" --norm-stats per-env --eval-every 2 --runs-dir " in line for line in lines)
        assert "--num-seeds" not in " ".join(lines)
        line, = dry_run(script, "--envs", "Ant-v5", "--seeds", "1", "--norm-stats", "shared", "--eval-every", "0",
                        "--runs-dir", "r", "--total-timesteps", "100000", *(("--sizes", "50") if "minibatch" in script
                                                                            else ("--shapes", "500x100")))
        assert flag(line, "norm-stats") == "shared" and flag(line, "eval-every") == "0"
        text = sweep(script, "--help").stdout
        assert ("--norm-stats MODE       per-env or shared" in text
                and "(default:\n                          per-env, one running" in text)
        assert "which is what the paper\n                          ran" in text
        assert ("--eval-every N          evaluate each run every N iterations" in text
                and "(default: 2, i.e. every 100,000" in text)
        assert "every setting is evaluated at the same env steps" in text
        assert ("--seeds-per-process K" in text
                and "Default: auto, all when\n                          the runs get a GPU" in text)
        assert "--progress-every S      local: a progress line every S seconds" in text


def test_help():
    for script in ("sweep_minibatch.sh", "sweep_env_rollout.sh"):
        proc = run_sweep(script, "--help")
        assert "--dry-run" in proc.stdout and "--jobs" in proc.stdout and "usage:" in proc.stdout
        for option in ("--launcher local|slurm", "--partition", "--time", "--cpus-per-task", "--gpus", "--mem",
                       "--requeue-before"):
            assert f"\n  {option} " in proc.stdout, option
        assert "resumes those that hold a checkpoint.pt" in proc.stdout


# What the training script refuses, the sweep refuses before anything starts, dry-run included: one line naming the
# run (or the process of seeds) and the training script's reason.
@pytest.mark.parametrize("flags,run,reason", [
    (["--envs", "Halfcheetah-v5"], "Halfcheetah-v5__500x100__mb50__s1",
     "--env-id 'Halfcheetah-v5' is not a registered Gymnasium env; close matches: HalfCheetah-v5"),
    (["--envs", "NoSuchEnv-v0"], "NoSuchEnv-v0__500x100__mb50__s1",
     "--env-id 'NoSuchEnv-v0' is not a registered Gymnasium env"),
    (["--", "--total-timestep", "10"], "Ant-v5__500x100__mb50__s1",
     "Unrecognized options: --total-timestep, 10 (see --help)"),
    (["--", "--learning-rate", "abc"], "Ant-v5__500x100__mb50__s1",
     "Value error: Error parsing --learning-rate: could not convert string to float: 'abc' (see --help)"),
    (["--", "--gamma", "2"], "Ant-v5__500x100__mb50__s1", "--gamma must be in [0, 1], got 2.0"),
    (["--", "--help"], "Ant-v5__500x100__mb50__s1", "the flags after -- ask for its --help"),
    # a process of several seeds has checks of its own
    (["--seeds-per-process", "2", "--", "--target-kl", "0.02"], "Ant-v5__500x100__mb50__s1-2",
     "--target-kl stops a single run's epochs; with --num-seeds > 1 it is not offered"),
])
@pytest.mark.parametrize("launch", [["--dry-run"], [], ["--launcher", "slurm", "--dry-run"]])
def test_every_command_is_checked_by_the_training_script(flags, run, reason, launch, tmp_path):
    envs = [] if flags[0] == "--envs" else ["--envs", "Ant-v5"]
    proc = sweep("sweep_minibatch.sh", "--runs-dir", str(tmp_path / "runs"), "--sizes", "50", "--seeds", "1 2", *envs,
                 *launch, *flags, check=False)
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert proc.stderr.startswith(f"error: ppo_continuous_kl.py refuses run {run}: {reason}"), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_the_scripts_are_the_module(tmp_path):
    """The entry scripts pass their options through as they are: same text, same exit status."""
    for script in ("sweep_minibatch.sh", "sweep_env_rollout.sh"):
        proc = run_sweep(script, "--help")
        assert proc.stdout == sweep(script, "--help").stdout and proc.stdout.startswith(f"usage: {ROOT}/{script} ")
        proc = run_sweep(script, "--seeds", "x y", check=False)
        assert (proc.returncode, proc.stdout) == (2, "") and proc.stderr.startswith("error: --seeds takes integers")
    flags = ["--envs", "Hopper-v5", "--shapes", "10x10 20x5", "--minibatch-size", "20", "--total-timesteps", "1000",
             "--runs-dir", str(tmp_path / "r s"), "--dry-run", "--", "--exp-name", "it's {here}"]
    assert run_sweep("sweep_env_rollout.sh", *flags).stdout == sweep("sweep_env_rollout.sh", *flags).stdout


@pytest.mark.parametrize("word", ["plain", "", "a b", "~x", "x~", "a=~b", "a:~b", "#x", "x#", "it's", 'a"b', "{seed}",
                                  "x,y", "-=+%@.:/_", "a!b", "*?[]", "^`|&;<>()$\\", "é"])
def test_commands_are_quoted_as_bash_quotes_them(word):
    """A printed command reads as the shell sweeps printed it, and runs as is."""
    quoted = subprocess.run(["bash", "-c", 'printf %q "$1"', "-", word], capture_output=True, text=True).stdout
    assert sweeps.bash_quote(word) == quoted and shlex.split(quoted) == [word]


def processes(lines):
    """(first seed, --num-seeds, --run-name) of each command of a --dry-run."""
    commands = [shlex.split(line) for line in lines if not line.startswith("#")]
    return [(int(c[c.index("--seed") + 1]), int(c[c.index("--num-seeds") + 1]) if "--num-seeds" in c else None,
             c[c.index("--run-name") + 1]) for c in commands]


def test_seeds_per_process_auto_groups_the_seeds_only_for_a_gpu(tmp_path):
    """By default a setting's seeds share a process when the runs get a GPU, and on a CPU each runs alone."""
    flags = ["--envs", "Ant-v5", "--sizes", "50", "--seeds", "1 2 3", "--runs-dir", str(tmp_path / "runs"), "--dry-run"]
    name = "Ant-v5__500x100__mb50__s{}"
    singles, population = [(s, None, name.format(s)) for s in (1, 2, 3)], [(1, 3, name.format("{seed}"))]
    machines = {}
    for machine, script in (("cpu", "echo 'NVIDIA-SMI has failed' >&2; exit 9"),
                            ("gpu", "echo 'GPU 0: NVIDIA H200 (UUID: GPU-0)'")):
        machines[machine] = tmp_path / machine
        machines[machine].mkdir()
        (machines[machine] / "nvidia-smi").write_text(f"#!/bin/sh\n{script}\n")
        (machines[machine] / "nvidia-smi").chmod(0o755)

    def plan(machine, *extra):
        with pytest.MonkeyPatch.context() as m:
            m.setenv("PATH", f"{machines[machine]}:{os.environ['PATH']}")
            return sweep("sweep_minibatch.sh", *flags, *extra).stdout.splitlines()

    assert processes(plan("cpu")) == singles
    assert processes(plan("gpu")) == population
    assert processes(plan("cpu", "--seeds-per-process", "all")) == population
    assert processes(plan("gpu", "--seeds-per-process", "1")) == singles
    # under slurm the task's --gpus decides, not the submitting machine
    assert "--array=0-0 " in plan("cpu", "--launcher", "slurm", "--gpus", "1")[0]
    assert "--array=0-2 " in plan("gpu", "--launcher", "slurm")[0]


def test_seeds_per_process_groups_consecutive_seeds(tmp_path):
    runs = tmp_path / "runs"
    flags = ["--envs", "Ant-v5", "--sizes", "50", "--runs-dir", str(runs)]
    name = "Ant-v5__500x100__mb50__s{}"
    assert processes(dry_run("sweep_minibatch.sh", *flags, "--seeds", "1 2 3 4 5", "--seeds-per-process", "2")) == [
        (1, 2, name.format("{seed}")), (3, 2, name.format("{seed}")), (5, None, name.format(5))]
    # non-consecutive seeds split into consecutive groups, in order
    assert processes(dry_run("sweep_minibatch.sh", *flags, "--seeds", "9 1 2 5 6 7", "--seeds-per-process", "3")) == [
        (1, 2, name.format("{seed}")), (5, 3, name.format("{seed}")), (9, None, name.format(9))]
    assert [p[:2] for p in processes(dry_run("sweep_minibatch.sh", *flags, "--seeds", "1 2 3"))] == [
        (1, None), (2, None), (3, None)]

    # under slurm: one array task per process, its runs listed for the task
    lines = dry_run("sweep_minibatch.sh", *flags, "--seeds", "1 2 3 4 5", "--seeds-per-process", "2")
    out = sweep("sweep_minibatch.sh", *flags, "--seeds", "1 2 3 4 5", "--seeds-per-process", "2", "--launcher",
                "slurm", "--dry-run").stdout.splitlines()
    assert "--array=0-2 " in out[0]
    listed = out[next(i for i, line in enumerate(out)
                      if line.startswith("# ") and line.endswith(".commands")) + 1:]
    assert [line.split()[:2] for line in listed] == [[name.format("1-2"), f"{name.format(1)},{name.format(2)}"],
                                                     [name.format("3-4"), f"{name.format(3)},{name.format(4)}"],
                                                     [name.format(5), name.format(5)]]
    assert [line.split(" ", 2)[2] for line in listed] == lines

    # seed 2 completed, seeds 5 and 6 cut short after a checkpoint, as one process of 2: a relaunch trains the
    # others, and resumes 5 and 6 together
    fake_runs(dry_run("sweep_minibatch.sh", *flags, "--seeds", "2"), finished=True)
    fake_runs(dry_run("sweep_minibatch.sh", *flags, "--seeds", "5 6", "--seeds-per-process", "2"), finished=False)
    lines = dry_run("sweep_minibatch.sh", *flags, "--seeds", "1 2 3 4 5 6 7", "--seeds-per-process", "4")
    assert processes(lines) == [(1, None, name.format(1)), (3, 2, name.format("{seed}")), (5, 2, name.format("{seed}")),
                                (7, None, name.format(7))]
    assert lines[0] == f"# skipped, completed already with the same flags: {name.format(2)}"
    assert lines[lines.index(next(line for line in lines if "--seed 5 " in line)) - 1] == \
        f"# resumes from its checkpoint: {name.format(5)} {name.format(6)}"

    # runs cut short at another iteration than their neighbours' resume apart
    torch.save({"iteration": 2}, runs / name.format(6) / "checkpoint.pt")
    assert processes(dry_run("sweep_minibatch.sh", *flags, "--seeds", "5 6 7", "--seeds-per-process", "4")) == [
        (5, None, name.format(5)), (6, None, name.format(6)), (7, None, name.format(7))]
    # a folder cut short before its first checkpoint starts afresh, and the dry-run says so
    (runs / name.format(7)).mkdir()
    lines = dry_run("sweep_minibatch.sh", *flags, "--seeds", "7 8", "--seeds-per-process", "2")
    assert lines == [f"# starts afresh, deleting the folder cut short before its first checkpoint: {name.format(7)}",
                     lines[1]] and processes(lines) == [(7, 2, name.format("{seed}"))]


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


def test_runs_of_other_flags_are_refused(tiny_sweeps, tmp_path):
    runs = tmp_path / "minibatch"
    shutil.copytree(tiny_sweeps[0], runs)
    names = sorted(n for n in os.listdir(runs) if n != "logs")
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*")}
    # the paper's defaults are what the runs of the tiny sweep recorded
    assert all(json.loads((runs / n / "args.json").read_text())["norm_stats"] == "per-env" for n in names)
    assert all(json.loads((runs / n / "args.json").read_text())["eval_every"] == 2 for n in names)

    flags = [*TINY_MINIBATCH, "--runs-dir", str(runs)]
    flags[flags.index("--total-timesteps") + 1] = "512"
    proc = sweep("sweep_minibatch.sh", *flags, "--norm-stats", "shared", "--", "--learning-rate", "1e-3", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == (f"these runs in {runs} ran with other flags than this sweep's "
                        "(this sweep's value, then the run's):")
    assert lines[1:5] == [f"  {n}: --learning-rate 0.001 (run: 0.0003), --norm-stats shared (run: per-env), "
                          "--total-timesteps 512 (run: 384)" for n in names]
    assert lines[5] == (f"error: 4 run(s) in {runs} (listed above) ran with other flags than this sweep's; nothing was "
                        "started. Launch with their flags, or pick another --runs-dir, or delete those run folders to "
                        "run them again with these flags")
    assert len(lines) == 6
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*")} == before  # nothing touched

    # --dry-run and slurm say the same; a run without its args.json is refused too
    os.remove(runs / names[0] / "args.json")
    proc = sweep("sweep_minibatch.sh", *flags, "--launcher", "slurm", "--dry-run", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[1].startswith(f"  {names[0]}: no readable args.json (")
    assert lines[2:5] == [f"  {n}: --total-timesteps 512 (run: 384)" for n in names[1:]]
    assert lines[5].startswith(f"error: 4 run(s) in {runs} (listed above) ran with other flags")
    assert not (runs / "slurm").exists()


def test_a_failed_run_does_not_stop_the_others(tmp_path):
    """A run that fails at launch (its checkpoint is unreadable: every check before the launch passed) fails alone,
    its last error line on the console; the progress lines never count a run as both ended and running."""
    flags = [*TINY_MINIBATCH, "--runs-dir", str(tmp_path), "--sizes", "64", "--progress-every", "1"]
    name = "InvertedPendulum-v5__4x32__mb64__s{}"
    fake_runs(dry_run("sweep_minibatch.sh", *flags, "--seeds", "1"), finished=False)
    (tmp_path / name.format(1) / "checkpoint.pt").write_bytes(b"not a checkpoint")
    proc = run_sweep("sweep_minibatch.sh", *flags, check=False)
    assert proc.returncode == 1
    # progress: at the start (no basis for an estimate yet), at each start and end, and every second
    out = proc.stdout.splitlines()
    assert out[0] == (f"[sweep] sweep starts: 2 process(es) to run, 2 at a time, in {tmp_path} | done 0, failed 0, "
                      "skipped 0, left 2 (0 running) | elapsed 0:00:00 | time left estimating…")
    assert out[1].startswith(f"[sweep] resuming {name.format(1)} from its checkpoint | done 0, failed 0, skipped 0, "
                             "left 2 (1 running)")
    assert out[2].startswith(f"[sweep] started {name.format(2)} | done 0, failed 0, skipped 0, left 2 (2 running)")
    ticks = [line for line in out if line.startswith("[sweep] progress | ")]
    # the times themselves depend on the machine's load: only their format is checked
    assert ticks and all(re.fullmatch(r"\[sweep\] progress \| done [01], failed [01], skipped 0, left [12] "
                                      r"\([12] running\) \| elapsed \d+:[0-5]\d:[0-5]\d \| "
                                      r"time left (estimating…|~\d+:[0-5]\d:[0-5]\d)", t)
                         for t in ticks), ticks
    # every line's counts add up: a run is done, failed or left, and only a run left can be running
    for line in out:
        if counts := re.search(r"\| done (\d+), failed (\d+), skipped 0, left (\d+) \((\d+) running\)", line):
            done, failed, left, running = map(int, counts.groups())
            assert done + failed + left == 2 and running <= left, line
    log = tmp_path / "logs" / f"{name.format(1)}.log"
    assert f"FAILED {name.format(1)} (resumed) (exit 1, log {log})" in proc.stdout
    error = (f"error: checkpoint {tmp_path / name.format(1) / 'checkpoint.pt'} is unreadable, probably truncated "
             "or corrupt")
    assert error in log.read_text()
    assert re.search(rf"^\[sweep\]   {name.format(1)}: {re.escape(error)} \(", proc.stdout, re.M), proc.stdout
    assert f"finished {name.format(2)}" in proc.stdout
    assert proc.stderr.splitlines()[-1].strip() == name.format(1)


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

    proc = run_sweep("sweep_minibatch.sh", *LONG_MINIBATCH, "--runs-dir", str(runs), "--seeds", "1 2 3",
                     "--progress-every", "1")
    assert "skipped 1 completed run(s)" in proc.stdout
    # an estimate from the start: the completed run's wall time is its basis
    out = proc.stdout.splitlines()
    assert re.fullmatch(rf"\[sweep\] sweep starts: 2 process\(es\) to run, 2 at a time, in {runs} \| done 0, failed 0, "
                        r"skipped 1, left 2 \(0 running\) \| elapsed 0:00:0\d \| time left ~0:0\d:\d\d", out[1]), out
    assert [line for line in out
            if line.startswith("[sweep] progress | done 0, failed 0, skipped 1, left 2 (2 running)")]
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
    # 400 iterations: the run must still be going when the signal reaches it, however fast this machine is. SIGINT
    # as in a terminal: a shell without job control starts background jobs with it ignored, and they pass that on
    with running_sweep(tmp_path, "--seeds", "1", "--total-timesteps", str(400 * 128), start_new_session=True,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as proc:
        wait_for_kl_files(proc, [tmp_path / name], 2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, (out, err)
    assert err.strip() == "[sweep] stopped by SIGINT with 1 run(s) cut short; the same command again resumes them"
    assert f"stopped {name} at its checkpoint (exit 143)" in out
    log = (tmp_path / "logs" / f"{name}.log").read_text()
    assert "SIGTERM" in log and "SIGINT" not in log and "Traceback" not in log, log
    assert (tmp_path / name / "checkpoint.pt").exists()
