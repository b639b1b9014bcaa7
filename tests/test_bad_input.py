"""Bad flags fail at once with one line that names the flag and what is allowed, before any run folder or env."""
import os

import pytest

from conftest import run_script

CASES = [
    (["--minibatch-size", "33"], "--minibatch-size must be a positive divisor of num_envs x num_steps = 128"),
    (["--minibatch-size", "0"], "--minibatch-size must be a positive divisor"),
    (["--minibatch-size", "-32"], "--minibatch-size must be a positive divisor"),
    (["--num-minibatches", "3"], "--num-minibatches must be a positive divisor of num_envs x num_steps = 128"),
    (["--num-minibatches", "0"], "--num-minibatches must be a positive divisor"),
    (["--minibatch-size", "32", "--num-minibatches", "2"], "--minibatch-size 32 and --num-minibatches 2 disagree"),
    (["--num-envs", "0"], "--num-envs must be a positive integer"),
    (["--num-steps", "-1"], "--num-steps must be a positive integer"),
    (["--update-epochs", "0"], "--update-epochs must be a positive integer"),
    (["--total-timesteps", "100"], "--total-timesteps 100 is less than one iteration"),
    (["--env-id", "HalfCheetah-v9"],
     "--env-id 'HalfCheetah-v9' is not a registered Gymnasium env; close matches: HalfCheetah-v5"),
    (["--env-id", "nosuchmodule:Foo-v0"], "--env-id 'nosuchmodule:Foo-v0': cannot import 'nosuchmodule'"),
    (["--kl-num-states", "129"], "--kl-num-states must be in [0, num_envs x num_steps = 128]"),
    (["--kl-num-states", "-1"], "--kl-num-states must be in [0, num_envs x num_steps = 128]"),
    (["--kl-every", "0"], "--kl-every must be a positive integer"),
    (["--gamma", "1.5"], "--gamma must be in [0, 1]"),
    (["--learning-rate", "0"], "--learning-rate must be > 0"),
    (["--target-kl", "-0.1"], "--target-kl must be > 0"),
    (["--minibatch-size", "1"], "--minibatch-size must be >= 2 with --norm-adv"),
    (["--env-backend", "mujoco-batch", "--env-id", "Swimmer-v5"],
     "--env-backend mujoco-batch supports --env-id HalfCheetah-v5, Hopper-v5, Walker2d-v5, Ant-v5, Humanoid-v5 "
     "(Gymnasium's defaults), got 'Swimmer-v5'"),
    (["--env-backend", "warp", "--env-id", "Ant-v5"],
     "--env-backend warp refuses --env-id Ant-v5: MuJoCo Warp 4.0.0 orients plane-capsule contact frames "
     "unlike MuJoCo"),
    (["--env-backend", "warp", "--env-id", "Swimmer-v5"],
     "--env-backend warp supports --env-id HalfCheetah-v5, Hopper-v5, Walker2d-v5, Humanoid-v5 (Gymnasium's defaults), "
     "got 'Swimmer-v5'"),
    (["--env-threads", "-1"], "--env-threads must be a non-negative integer (0: one per core)"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be a non-negative integer"),
    (["--resume"], "--resume: "),  # nothing to resume in a fresh folder
]


@pytest.mark.parametrize("flags,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_flag_fails_fast_with_one_clear_line(tmp_path, flags, message):
    base = ["--num-envs", "4", "--num-steps", "32", "--total-timesteps", "256"]
    proc, run_dir = run_script(tmp_path, "bad", *base, *flags, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert not os.path.exists(run_dir)  # nothing was set up


def test_unknown_choice_names_the_allowed_values(tmp_path):
    proc, run_dir = run_script(tmp_path, "bad", "--norm-stats", "global", check=False)
    assert proc.returncode != 0
    assert "--norm-stats" in proc.stderr and "'shared'" in proc.stderr and "'per-env'" in proc.stderr
    assert not os.path.exists(run_dir)


def test_existing_run_folder_is_not_overwritten(tmp_path):
    # a logged iteration, no checkpoint to continue from (a folder with no finished iteration starts over instead)
    os.makedirs(tmp_path / "taken" / "kl")
    (tmp_path / "taken" / "args.json").write_text("{}")
    (tmp_path / "taken" / "kl" / "iter_00001.npz").write_text("")
    proc, _ = run_script(tmp_path, "taken", "--num-envs", "4", "--num-steps", "32", "--total-timesteps", "256",
                         check=False)
    assert proc.returncode != 0 and "already holds a run" in proc.stderr
    assert (tmp_path / "taken" / "args.json").read_text() == "{}"


def test_unwritable_runs_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc, _ = run_script(blocker, "x", "--env-id", "InvertedPendulum-v5", "--num-envs", "4", "--num-steps", "32",
                         "--total-timesteps", "256", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: --runs-dir {blocker} is a file, not a folder; "
                                                "give a folder (it is created if missing)"]


def test_run_folder_stays_inside_runs_dir(tmp_path):
    """'..' would write the run into the runs folder's parent (tests/test_run_folder.py checks every kind of name)."""
    proc, _ = run_script(tmp_path / "runs", "..", "--env-id", "InvertedPendulum-v5", "--num-envs", "4", "--num-steps",
                         "32", "--total-timesteps", "256", check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --run-name '..' names the parent of the runs folder; a run "
                                                   "name is one folder inside --runs-dir"), proc.stderr
    assert os.listdir(tmp_path) == []
