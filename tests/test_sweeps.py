"""The two sweep scripts: exact commands, deterministic names, skip-completed and rerun-failed with real runs."""
import os
import re
import shutil

import pytest

from conftest import TINY_MINIBATCH, run_sweep


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
])
def test_bad_flags(script, flags, message):
    proc = run_sweep(script, *flags, "--dry-run", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"error: {message}" or proc.stderr.startswith(f"error: {message}"), proc.stderr


def test_help():
    for script in ("sweep_minibatch.sh", "sweep_env_rollout.sh"):
        proc = run_sweep(script, "--help")
        assert "--dry-run" in proc.stdout and "--jobs" in proc.stdout and "usage:" in proc.stdout


def test_relaunch_skips_completed_and_reruns_cut_short(tiny_sweeps, tmp_path):
    runs = tmp_path / "minibatch"
    shutil.copytree(tiny_sweeps[0], runs)
    names = sorted(n for n in os.listdir(runs) if n != "logs")
    assert names == [f"InvertedPendulum-v5__4x32__mb{s}__s{seed}" for s in (32, 64) for seed in (1, 2)]
    proc = run_sweep("sweep_minibatch.sh", *TINY_MINIBATCH, "--runs-dir", str(runs))
    assert "skipped 4 completed run(s)" in proc.stdout and "finished" not in proc.stdout
    # one run cut short: its folder lacks summary.json
    cut = runs / names[1]
    os.remove(cut / "summary.json")
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
