"""Checkpoint and resume: a run stopped by a real signal and resumed ends exactly as an uninterrupted run; bad
checkpoints, changed flags and a full disk fail with one clear line."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from conftest import SCRIPT, load_kl, refusal, run_script

# Ant and Humanoid fall within a few dozen steps of a fresh policy, so episodes end, reset and get logged
# on both sides of the stop.
LONG = ["--num-envs", "4", "--num-steps", "32", "--minibatch-size", "32", "--total-timesteps", str(12 * 128)]


def start_and_stop(runs_dir, run_name, flags, signum, after_kl_files):
    """Starts a run as a user would and sends it `signum` once `after_kl_files` iterations are logged."""
    cmd = [sys.executable, SCRIPT, "--runs-dir", str(runs_dir), "--run-name", run_name, *flags]
    proc = subprocess.Popen(cmd, cwd=os.path.dirname(str(runs_dir)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    kl_dir = os.path.join(str(runs_dir), run_name, "kl")
    deadline = time.time() + 300
    while not (os.path.isdir(kl_dir) and len(os.listdir(kl_dir)) >= after_kl_files):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def scalars(run_dir):
    """Every logged scalar as tag -> [(step, value)], read as TensorBoard reads it (purged steps dropped)."""
    events = EventAccumulator(run_dir, size_guidance={SCALARS: 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def run_whole_and_stopped_then_resume(tmp_path, flags, signum, stop_after):
    """Runs `flags` uninterrupted beside a copy stopped by `signum` once `stop_after` iterations are logged, checks
    the stop, resumes the stopped run to its end; returns both run folders and the resumed session's process."""
    runs = tmp_path / "runs"
    # the uninterrupted run beside the one that gets stopped: one core each
    whole_proc = subprocess.Popen([sys.executable, SCRIPT, "--runs-dir", str(runs), "--run-name", "whole", *flags],
                                  cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, out, err = start_and_stop(runs, "cut", flags, signum, stop_after)
    whole_out, whole_err = whole_proc.communicate(timeout=600)
    assert whole_proc.returncode == 0, whole_out + whole_err

    assert code == 128 + signum, (code, out, err)
    assert err.strip().splitlines()[-1].startswith(f"stopped by {signal.Signals(signum).name}; ")
    cut = os.path.join(runs, "cut")
    stopped_at = torch.load(os.path.join(cut, "checkpoint.pt"), weights_only=False)["iteration"]
    assert stop_after <= stopped_at and not os.path.exists(os.path.join(cut, "summary.json"))
    kl_mtimes = {f: os.stat(os.path.join(cut, "kl", f)).st_mtime_ns for f in os.listdir(os.path.join(cut, "kl"))}

    proc, _ = run_script(runs, "cut", *flags)
    assert f"resuming {cut} after iteration {stopped_at}" in proc.stdout
    # the stopped session's KL files stay as they were written
    assert {f: os.stat(os.path.join(cut, "kl", f)).st_mtime_ns for f in kl_mtimes} == kl_mtimes
    return os.path.join(runs, "whole"), cut, proc


def assert_same_run(whole, cut):
    """Parameters, Adam state, returns, KL files and every logged scalar but SPS equal; no step logged twice."""
    a, b = (torch.load(os.path.join(d, "checkpoint.pt"), weights_only=False) for d in (whole, cut))
    assert a["iteration"] == b["iteration"] == a["args"]["num_iterations"]
    for name in a["agent"]:
        assert torch.equal(a["agent"][name], b["agent"][name]), name
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert a["recent_returns"] == b["recent_returns"] and len(a["recent_returns"]) > 0
    for x, y in zip(load_kl(whole), load_kl(cut), strict=True):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)

    logged_whole, logged_cut = scalars(whole), scalars(cut)
    assert logged_whole.keys() == logged_cut.keys() and "charts/episodic_return" in logged_cut
    for tag in logged_whole:
        steps = [step for step, _ in logged_cut[tag]]
        assert steps == sorted(steps) and (tag.startswith("charts/episodic") or len(set(steps)) == len(steps)), tag
        if tag != "charts/SPS":
            assert logged_cut[tag] == logged_whole[tag], tag


# Ant's and Humanoid's rewards start from body positions, which are no integration state; the per-env statistics
# live in per-env wrappers; the second case is stopped between checkpoints, so it finishes its iteration first.
@pytest.mark.parametrize("flags,signum,stop_after", [
    (["--env-id", "Ant-v5", "--norm-stats", "per-env"], signal.SIGTERM, 3),
    (["--env-id", "Humanoid-v5", "--env-backend", "mujoco-batch", "--checkpoint-every", "3"], signal.SIGINT, 4),
    # the compiled update steps the optimiser's state tensors in place; the resumed session compiles afresh
    (["--env-id", "Hopper-v5", "--compile", "on"], signal.SIGTERM, 2),
], ids=["Ant-gymnasium-per-env-SIGTERM", "Humanoid-mujoco-batch-every-3-SIGINT", "Hopper-compiled-SIGTERM"])
def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path, flags, signum, stop_after):
    whole, cut, _ = run_whole_and_stopped_then_resume(tmp_path, [*LONG, *flags], signum, stop_after)
    assert_same_run(whole, cut)


TINY_LONG = ["--num-envs", "4", "--num-steps", "32", "--minibatch-size", "32", "--total-timesteps", "2560"]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A 20-iteration run stopped by SIGTERM after its first iteration; tests work on copies of its folder."""
    runs = tmp_path_factory.mktemp("stopped") / "runs"
    code, out, err = start_and_stop(runs, "r", TINY_LONG, signal.SIGTERM, 1)
    assert code == 128 + signal.SIGTERM, (out, err)
    return runs / "r"


def copy_of(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "runs" / "r")
    return tmp_path / "runs", "r"


def test_resume_refuses_other_flags_and_lists_them(stopped_run, tmp_path):
    runs, name = copy_of(stopped_run, tmp_path)
    flags = [*TINY_LONG[:-1], "256", "--learning-rate", "0.001", "--num-threads", "2"]
    line = refusal(runs, name, *flags)
    assert line.startswith("error: cannot resume") and "--learning-rate 0.001 (checkpoint: 0.0003)" in line
    assert "--total-timesteps 256 (checkpoint: 2560)" in line and "--num-threads" not in line


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_checkpoint_is_refused_not_restarted(stopped_run, tmp_path, damage):
    runs, name = copy_of(stopped_run, tmp_path)
    path = runs / name / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint" * 100)
    damaged, before = path.read_bytes(), sorted(os.listdir(runs / name))
    line = refusal(runs, name, *TINY_LONG)
    assert line.startswith(f"error: checkpoint {path} is unreadable, probably truncated or corrupt"), line
    assert path.read_bytes() == damaged and sorted(os.listdir(runs / name)) == before


def test_finished_run_is_not_rerun_and_resume_needs_a_checkpoint(tiny_run, tmp_path):
    runs_dir, name = os.path.split(tiny_run)
    assert "holds a finished run (summary.json)" in refusal(runs_dir, name, "--num-envs", "4")
    run_dir = tmp_path / "runs" / "none"
    assert refusal(tmp_path / "runs", "none", "--resume") == (
        f"error: --resume: {run_dir} holds no checkpoint.pt to resume from")
    assert not os.path.exists(run_dir)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size in KiB, for a disk that fills up; skipped where mounting is not allowed."""
    mounts = []

    def mount(kib):
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs to fill up here: {proc.stderr.strip()}")
        mounts.append(point)
        return point
    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], check=False)


def test_full_disk_fails_before_training(small_disk):
    tiny = ["--num-envs", "4", "--num-steps", "32", "--minibatch-size", "32"]
    # too small for the first checkpoint
    disk = small_disk(64)
    proc, run_dir = run_script(disk / "runs", "r", *tiny, "--total-timesteps", "256", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and lines[-1].startswith(
        f"error: cannot write the checkpoint {run_dir}/checkpoint.pt (No space left"), proc.stderr
    assert not os.listdir(os.path.join(run_dir, "kl")) and not any(f.startswith("events") for f in os.listdir(run_dir))
    # room for the first checkpoint, not for the KL files of 200 iterations
    disk = small_disk(512)
    proc, run_dir = run_script(disk / "runs", "r", *tiny, "--total-timesteps", str(200 * 128), check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: --runs-dir {disk / 'runs'}: the run needs about") and "MiB are free" in lines[0]
    assert not os.listdir(os.path.join(run_dir, "kl")) and not any(f.startswith("events") for f in os.listdir(run_dir))
