import contextlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import asdict, replace

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "ppo_continuous_kl.py")
sys.path.insert(0, ROOT)
from ppo_kl import vector_envs  # noqa: E402

# Tests build MuJoCo envs in this process too: without the handler the script installs, MuJoCo would write its
# warnings into ./MUJOCO_LOG.TXT of whatever folder pytest runs in.
vector_envs.quiet_mujoco()

# 4 envs x 32 steps, 4 minibatches of 32, 10 epochs: U = 40 updates per iteration, 2 iterations.
TINY = ["--num-envs", "4", "--num-steps", "32", "--minibatch-size", "32", "--total-timesteps", "256"]


def run_script(runs_dir, run_name, *flags, check=True, env=None):
    """Runs the training script as a user would (in `env`, else this environment); returns the finished process
    and its run folder."""
    cmd = [sys.executable, SCRIPT, "--runs-dir", str(runs_dir), "--run-name", run_name, *flags]
    # run from a scratch folder, so that anything written into the working directory shows
    proc = subprocess.run(cmd, cwd=os.path.dirname(str(runs_dir)), capture_output=True, text=True, timeout=600,
                          env=env)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc, os.path.join(str(runs_dir), run_name)


def error_of(call):
    """The one line a refusal prints: call() stops with SystemExit("error: ..."), which Python prints to stderr."""
    with pytest.raises(SystemExit) as exit_info:
        call()
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(parent, name), folder)
                  for parent, dirs, files in os.walk(folder) for name in dirs + files)


def refusal(runs_dir, run_name, *flags):
    """The error line with which the training script refuses a command, from the checks its main block makes
    before anything expensive (parse_flags, resolve_args, then RunSession, which takes the run folders), made
    here in this process as run_script would run them: a new Python costs seconds of imports per command.
    Asserts that the refusal wrote nothing, neither into the scratch folder around runs_dir (where run_script
    runs from) nor to stderr, so the error is the one line the script prints."""
    from ppo_continuous_kl import Args
    from ppo_kl import run_folder
    from ppo_kl.flags import parse_flags, resolve_args
    from ppo_kl.run_session import RunSession
    scratch = os.path.dirname(str(runs_dir))
    before = files_under(scratch)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    stderr = io.StringIO()

    def main():
        argv = ["--runs-dir", str(runs_dir), "--run-name", run_name, *flags]
        with contextlib.chdir(scratch), contextlib.redirect_stderr(stderr):
            args = resolve_args(parse_flags(Args, argv, prog=os.path.basename(SCRIPT)))
            RunSession(args).close()

    try:
        message = error_of(main)
    finally:  # a command let through, or refused after taking its folder: this process holds neither
        for held in list(run_folder._held):
            run_folder.release_run_folder(held)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert stderr.getvalue() == "", stderr.getvalue()
    assert files_under(scratch) == before
    return message


def load_kl(run_dir):
    kl_dir = os.path.join(run_dir, "kl")
    return [dict(np.load(os.path.join(kl_dir, f))) for f in sorted(os.listdir(kl_dir))]


def load_args(run_dir):
    with open(os.path.join(run_dir, "args.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny real HalfCheetah-v5 run with snapshots and a saved model, shared by the tests that read it."""
    scratch = tmp_path_factory.mktemp("scratch")
    proc, run_dir = run_script(scratch / "runs", "tiny", *TINY, "--kl-save-snapshots", "--save-model",
                               "--eval-episodes", "1", "--eval-every", "1")
    (scratch / "console.txt").write_text(proc.stdout + proc.stderr)
    return run_dir


# A tiny real Hopper-v5 run whose hoppers fall within a few dozen steps: episodes end and get logged, and the reset
# steps after them leave the batch, so minibatches are padded. A fixed seed, the reference backend and the CPU
# (--no-cuda), so that tests/replay.py can train it again in the test process, bit for bit.
HOPPER_RUN = [*TINY, "--env-id", "Hopper-v5", "--env-backend", "gymnasium", "--seed", "3", "--no-cuda",
              "--kl-save-snapshots", "--save-model", "--eval-every", "1", "--eval-episodes", "2"]


@pytest.fixture(scope="session")
def hopper_run(tmp_path_factory):
    _, run_dir = run_script(tmp_path_factory.mktemp("hopper") / "runs", "hopper", *HOPPER_RUN)
    return run_dir


@pytest.fixture(scope="session")
def hopper_replay(hopper_run):
    """hopper_run's iterations trained again in this process (tests/replay.py)."""
    from replay import replay
    return replay(hopper_run)


def run_sweep(script, *flags, check=True):
    """A sweep script run as a user runs it."""
    proc = subprocess.run(["bash", os.path.join(ROOT, script), *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHON": sys.executable})
    if check:
        assert proc.returncode == 0, f"{script} {flags} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def sweep(script, *flags, check=True):
    """What run_sweep returns, from sweeps.main in this process: for the sweeps' options, plans and refusals, which
    launch nothing (a new Python costs seconds of imports each). The commands start with this Python, as
    run_sweep's do."""
    from ppo_kl import sweeps
    out, err = io.StringIO(), io.StringIO()
    python = os.environ.get("PYTHON")
    os.environ["PYTHON"] = sys.executable
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = sweeps.main([script.removeprefix("sweep_").removesuffix(".sh"), *flags], os.path.join(ROOT, script))
    except SystemExit as e:
        code = e.code
    finally:
        if python is None:
            del os.environ["PYTHON"]
        else:
            os.environ["PYTHON"] = python
    proc = subprocess.CompletedProcess([script, *flags], code or 0, out.getvalue(), err.getvalue())
    if check:
        assert proc.returncode == 0, f"{script} {flags} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


# Tiny real sweeps on InvertedPendulum-v5 (episodes of a few steps, so returns get logged): 3 iterations each.
TINY_MINIBATCH = ["--envs", "InvertedPendulum-v5", "--sizes", "32 64", "--seeds", "1 2", "--num-envs", "4",
                  "--num-steps", "32", "--total-timesteps", "384", "--jobs", "2"]
TINY_ENV_ROLLOUT = ["--envs", "InvertedPendulum-v5", "--shapes", "4x32 8x16", "--minibatch-size", "32",
                    "--seeds", "1 2", "--total-timesteps", "384", "--jobs", "2"]


@pytest.fixture(scope="session")
def tiny_sweeps(tmp_path_factory):
    """Both sweeps run for real at a tiny scale; returns their runs folders."""
    root = tmp_path_factory.mktemp("sweeps")
    run_sweep("sweep_minibatch.sh", *TINY_MINIBATCH, "--runs-dir", str(root / "minibatch"))
    run_sweep("sweep_env_rollout.sh", *TINY_ENV_ROLLOUT, "--runs-dir", str(root / "env_rollout"))
    return root / "minibatch", root / "env_rollout"


def fake_runs(dry_run_lines, *, finished):
    """The run folders that the commands of a sweep's --dry-run leave, without training them: args.json as the
    training script writes it (one per seed of a --num-seeds process), and summary.json (finished) or a
    checkpoint.pt (cut short, of which the sweeps read only the iteration). For the sweeps' checks of the runs
    already on disk."""
    import torch
    import tyro
    from ppo_continuous_kl import Args, resolve_args
    for line in dry_run_lines:
        if line.startswith("#"):
            continue
        args = resolve_args(tyro.cli(Args, args=shlex.split(line)[2:]))
        for seed in range(args.seed, args.seed + args.num_seeds):
            name = args.run_name.replace("{seed}", str(seed))
            run_dir = os.path.join(args.runs_dir, name)
            os.makedirs(run_dir)
            with open(os.path.join(run_dir, "args.json"), "w") as f:
                json.dump(asdict(replace(args, seed=seed)) | {"run_name": name}, f, indent=2)
            if finished:
                with open(os.path.join(run_dir, "summary.json"), "w") as f:
                    json.dump({"wall_time_s": 10.0}, f)
            else:
                torch.save({"iteration": 1}, os.path.join(run_dir, "checkpoint.pt"))


def in_process(monkeypatch, *flags):
    """plot_kl.main() in this process with its figures captured instead of rendered (rendering is the slow
    part); returns {name: figure}."""
    import matplotlib.pyplot as plt
    import plot_kl
    drawn = {}

    def keep(fig, out, name, formats):
        drawn[name] = fig
        plt.close(fig)  # still readable, no longer held by pyplot

    monkeypatch.setattr(plot_kl, "save", keep)
    monkeypatch.setattr(sys, "argv", ["plot_kl.py", *flags])
    plot_kl.main()
    return drawn


def texts(fig):
    """Every title, suptitle, legend and caption text of a figure and its subfigures."""
    found = []
    for f in [fig, *fig.subfigs]:
        found += [t.get_text() for t in (f._suptitle, f._supxlabel) if t is not None]
        found += [t.get_text() for legend in f.legends for t in legend.get_texts()]
    return found + [ax.get_title() for ax in fig.get_axes()]
