"""Every numeric flag is checked for its meaningful range and finiteness, and every env the script cannot train is
refused, with one line naming the flag and what is allowed, before any run folder or env is made."""
import os

import pytest

from conftest import run_script

CASES = [
    # values that trained before, silently doing something else
    (["--max-grad-norm", "-0.5"], "--max-grad-norm must be > 0 and finite (a negative norm flips the gradient)"),
    (["--max-grad-norm", "0"], "--max-grad-norm must be > 0 and finite"),
    (["--clip-coef", "inf"], "--clip-coef must be > 0 and finite, got inf"),
    (["--clip-coef", "nan"], "--clip-coef must be > 0 and finite, got nan"),
    (["--ent-coef", "nan"], "--ent-coef must be >= 0 and finite"),
    (["--ent-coef", "-inf"], "--ent-coef must be >= 0 and finite"),
    (["--vf-coef", "-1"], "--vf-coef must be >= 0 and finite"),
    (["--learning-rate", "inf"], "--learning-rate must be > 0 and finite"),
    (["--gae-lambda", "nan"], "--gae-lambda must be in [0, 1]"),
    (["--gamma", "-0.1"], "--gamma must be in [0, 1]"),
    (["--target-kl", "inf"], "--target-kl must be > 0 and finite (or omitted)"),
    (["--target-kl", "0"], "--target-kl must be > 0 and finite (or omitted)"),
    (["--seed", "-1"], "--seed must be in [0, 2**32"),
    (["--seed", "4294967295"], "--seed must be in [0, 2**32"),
    (["--eval-every", "-1"], "--eval-every must be a non-negative integer"),
    (["--eval-episodes", "0"], "--eval-episodes must be a positive integer"),
    (["--num-seeds", "0"], "--num-seeds must be a positive integer"),
    (["--num-threads", "0"], "--num-threads must be a positive integer"),
    # combinations
    (["--num-seeds", "2"], "--run-name must contain {seed} with --num-seeds 2"),
    (["--num-seeds", "2", "--run-name", "x{seed}", "--target-kl", "0.1"], "--target-kl stops a single run's epochs"),
    # envs the script cannot train, and sizes that cannot fit: refused before the envs are built
    (["--env-id", "CartPole-v1"], "--env-id CartPole-v1 has a Discrete action space"),
    (["--env-id", "Pendulum-v1", "--eval-every", "1", "--env-backend", "gymnasium"], None),  # fine: has a time limit
    (["--num-envs", "4000000", "--num-steps", "100000", "--total-timesteps", "400000000000"],
     "needs about"),
]


@pytest.mark.parametrize("flags,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_out_of_range_flag_fails_fast_with_one_clear_line(tmp_path, flags, message):
    base = ["--num-envs", "4", "--num-steps", "32", "--total-timesteps", "128"]
    if message is None:  # the control: the same checks let a good command through
        proc, run_dir = run_script(tmp_path, "good", *base, *flags)
        assert os.path.exists(os.path.join(run_dir, "summary.json"))
        return
    name = next((flags[i + 1] for i, f in enumerate(flags) if f == "--run-name"), "bad")
    flags = [f for i, f in enumerate(flags) if f != "--run-name" and (i == 0 or flags[i - 1] != "--run-name")]
    proc, run_dir = run_script(tmp_path, name, *base, *flags, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert not os.listdir(tmp_path)  # no run folder was made


PARSE_CASES = [(["--norm-stats", "global"], ["--norm-stats", "'per-env'", "'shared'"]),
               (["--num-envs", "x"], ["--num-envs", "'x'"]),
               (["--no-such-flag", "3"], ["--no-such-flag"]),
               (["--compile", "maybe"], ["--compile", "'auto'", "'on'", "'off'"])]


@pytest.mark.parametrize("flags,words", PARSE_CASES, ids=[" ".join(c[0]) for c in PARSE_CASES])
def test_unparsable_flag_fails_with_one_line(tmp_path, flags, words):
    """Values the command-line parser itself refuses (unknown flags, choices, types) get one line too."""
    proc, run_dir = run_script(tmp_path, "bad", *flags, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines[0]
    assert not os.path.exists(run_dir)
