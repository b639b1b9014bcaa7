"""Bad flags are refused at once with one line that names the flag and what is allowed, before any run folder or env
is made: every numeric flag checked for its meaningful range and finiteness, the flags that must agree, envs the
script cannot train, values the command-line parser refuses, and run folders that cannot take the run. The commands
go through the script's own checks in this process (conftest.refusal); one refusal of each kind also goes through
the script itself."""
import os

import pytest

from conftest import refusal, run_script

BASE = ["--num-envs", "4", "--num-steps", "32", "--total-timesteps", "256"]  # num_envs x num_steps = 128

CASES = [
    # sizes, counts and seeds
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
    (["--kl-num-states", "129"], "--kl-num-states must be in [0, num_envs x num_steps = 128]"),
    (["--kl-num-states", "-1"], "--kl-num-states must be in [0, num_envs x num_steps = 128]"),
    (["--kl-every", "0"], "--kl-every must be a positive integer"),
    (["--minibatch-size", "1"], "--minibatch-size must be >= 2 with --norm-adv"),
    (["--env-threads", "-1"], "--env-threads must be a non-negative integer (0: one per core)"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be a non-negative integer"),
    (["--eval-every", "-1"], "--eval-every must be a non-negative integer"),
    (["--eval-episodes", "0"], "--eval-episodes must be a positive integer"),
    (["--num-seeds", "0"], "--num-seeds must be a positive integer"),
    (["--num-threads", "0"], "--num-threads must be a positive integer"),
    (["--seed", "-1"], "--seed must be in [0, 2**32"),
    (["--seed", "4294967295"], "--seed must be in [0, 2**32"),
    # values that trained before, silently doing something else
    (["--max-grad-norm", "-0.5"], "--max-grad-norm must be > 0 and finite (a negative norm flips the gradient)"),
    (["--max-grad-norm", "0"], "--max-grad-norm must be > 0 and finite"),
    (["--clip-coef", "inf"], "--clip-coef must be > 0 and finite, got inf"),
    (["--clip-coef", "nan"], "--clip-coef must be > 0 and finite, got nan"),
    (["--ent-coef", "nan"], "--ent-coef must be >= 0 and finite"),
    (["--ent-coef", "-inf"], "--ent-coef must be >= 0 and finite"),
    (["--vf-coef", "-1"], "--vf-coef must be >= 0 and finite"),
    (["--learning-rate", "0"], "--learning-rate must be > 0"),
    (["--learning-rate", "inf"], "--learning-rate must be > 0 and finite"),
    (["--gae-lambda", "nan"], "--gae-lambda must be in [0, 1]"),
    (["--gamma", "1.5"], "--gamma must be in [0, 1]"),
    (["--gamma", "-0.1"], "--gamma must be in [0, 1]"),
    (["--target-kl", "-0.1"], "--target-kl must be > 0"),
    (["--target-kl", "inf"], "--target-kl must be > 0 and finite (or omitted)"),
    (["--target-kl", "0"], "--target-kl must be > 0 and finite (or omitted)"),
    # combinations
    (["--num-seeds", "2"], "--run-name must contain {seed} with --num-seeds 2"),
    (["--num-seeds", "2", "--run-name", "x{seed}", "--target-kl", "0.1"], "--target-kl stops a single run's epochs"),
    # envs the script cannot train, and sizes that cannot fit: refused before the envs are built
    (["--env-id", "HalfCheetah-v9"],
     "--env-id 'HalfCheetah-v9' is not a registered Gymnasium env; close matches: HalfCheetah-v5"),
    (["--env-id", "nosuchmodule:Foo-v0"], "--env-id 'nosuchmodule:Foo-v0': cannot import 'nosuchmodule'"),
    (["--env-id", "CartPole-v1"], "--env-id CartPole-v1 has a Discrete action space"),
    (["--env-backend", "mujoco-batch", "--env-id", "Swimmer-v5"],
     "--env-backend mujoco-batch supports --env-id HalfCheetah-v5, Hopper-v5, Walker2d-v5, Ant-v5, Humanoid-v5 "
     "(Gymnasium's defaults), got 'Swimmer-v5'"),
    (["--env-backend", "warp", "--env-id", "Ant-v5"],
     "--env-backend warp refuses --env-id Ant-v5: MuJoCo Warp 4.0.0 orients plane-capsule contact frames "
     "unlike MuJoCo"),
    (["--env-backend", "warp", "--env-id", "Swimmer-v5"],
     "--env-backend warp supports --env-id HalfCheetah-v5, Hopper-v5, Walker2d-v5, Humanoid-v5 (Gymnasium's defaults), "
     "got 'Swimmer-v5'"),
    (["--num-envs", "4000000", "--num-steps", "100000", "--total-timesteps", "400000000000"], "needs about"),
    # run folders: nothing to resume in a fresh folder
    (["--resume"], "--resume: "),
]


def split_run_name(flags):
    """The case's --run-name ("bad" without one) and its other flags."""
    if "--run-name" not in flags:
        return "bad", flags
    i = flags.index("--run-name")
    return flags[i + 1], flags[:i] + flags[i + 2:]


@pytest.mark.parametrize("flags,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_flag_fails_fast_with_one_clear_line(tmp_path, flags, message):
    name, flags = split_run_name(flags)
    line = refusal(tmp_path / "runs", name, *BASE, *flags)
    assert message in line, line


PARSE_CASES = [(["--norm-stats", "global"], ["--norm-stats", "'per-env'", "'shared'"]),
               (["--num-envs", "x"], ["--num-envs", "'x'"]),
               (["--no-such-flag", "3"], ["--no-such-flag"]),
               (["--compile", "maybe"], ["--compile", "'auto'", "'on'", "'off'"])]


@pytest.mark.parametrize("flags,words", PARSE_CASES, ids=[" ".join(c[0]) for c in PARSE_CASES])
def test_unparsable_flag_fails_with_one_line(tmp_path, flags, words):
    """Values the command-line parser itself refuses (unknown flags, choices, types) get one line too, which names
    the allowed values of a choice."""
    line = refusal(tmp_path / "runs", "bad", *flags)
    assert all(w in line for w in words), line


def test_good_command_passes_the_same_checks_and_trains(tmp_path):
    """The control: Pendulum-v1 has a time limit, so --eval-every can evaluate whole episodes."""
    _, run_dir = run_script(tmp_path, "good", *BASE[:-1], "128", "--env-id", "Pendulum-v1", "--eval-every", "1",
                            "--env-backend", "gymnasium")
    assert os.path.exists(os.path.join(run_dir, "summary.json"))


def test_existing_run_folder_is_not_overwritten(tmp_path):
    # a logged iteration, no checkpoint to continue from (a folder with no finished iteration starts over instead)
    taken = tmp_path / "runs" / "taken"
    os.makedirs(taken / "kl")
    (taken / "args.json").write_text("{}")
    (taken / "kl" / "iter_00001.npz").write_text("")
    assert "already holds a run" in refusal(tmp_path / "runs", "taken", *BASE)
    assert (taken / "args.json").read_text() == "{}"


def test_unwritable_runs_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert refusal(blocker, "x", "--env-id", "InvertedPendulum-v5", *BASE) == (
        f"error: --runs-dir {blocker} is a file, not a folder; give a folder (it is created if missing)")


def test_run_folder_stays_inside_runs_dir(tmp_path):
    """'..' would write the run into the runs folder's parent (tests/test_run_folder.py checks every kind of name)."""
    line = refusal(tmp_path / "runs", "..", "--env-id", "InvertedPendulum-v5", *BASE)
    assert line.startswith("error: --run-name '..' names the parent of the runs folder; a run name is one folder "
                           "inside --runs-dir"), line
    assert os.listdir(tmp_path) == []


# One refusal of each kind through the script itself, as a user meets it: the checks' error reaches stderr as its
# only line, the exit status says it failed, and neither the runs folder nor anything in the working folder is made.
END_TO_END = [
    (["--minibatch-size", "33"], ["--minibatch-size must be a positive divisor of num_envs x num_steps = 128"]),
    (["--norm-stats", "global"], ["--norm-stats", "'per-env'", "'shared'"]),
    (["--resume"], ["--resume: ", "holds no checkpoint.pt to resume from"]),
]


@pytest.mark.parametrize("flags,words", END_TO_END, ids=["resolve_args", "parser", "run folder"])
def test_script_refuses_in_one_stderr_line_and_makes_no_folder(tmp_path, flags, words):
    proc, _ = run_script(tmp_path / "runs", "bad", *BASE, *flags, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines[0]
    assert os.listdir(tmp_path) == []
