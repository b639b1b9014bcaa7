"""ppo_kl/evaluate.py on models saved by tiny real runs: the run's own end-of-run evaluation reproduced, bad input
refused in one line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, error_of



def evaluate(*flags, cwd=None):
    env = {**os.environ, "PYTHONPATH": ROOT}  # `python -m ppo_kl.evaluate` from any folder
    return subprocess.run([sys.executable, "-m", "ppo_kl.evaluate", *flags], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize("run", ["tiny_run", "hopper_run"])
def test_a_saved_model_evaluates_as_the_run_did(run, request):
    """With the run's seed and episode count, the returns are the ones the run itself logged after saving (the
    same frozen statistics, env seeds and action draws): the model, its statistics and the evaluation are
    restored whole. tiny_run steps its envs with mujoco-batch, hopper_run with Gymnasium."""
    run_dir = request.getfixturevalue(run)
    with open(os.path.join(run_dir, "summary.json")) as f:
        expected = json.load(f)["eval_returns"]
    proc = evaluate(os.path.join(run_dir, "ppo_continuous_kl.pt"), "--episodes", str(len(expected)))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[0])
    np.testing.assert_allclose(result["returns"], expected, rtol=1e-6)
    assert f"over {len(expected)} episodes" in proc.stdout.splitlines()[1]
    # another seed plays other episodes
    other = json.loads(evaluate(os.path.join(run_dir, "ppo_continuous_kl.pt"), "--episodes", str(len(expected)),
                                "--seed", "77").stdout.splitlines()[0])
    assert other["returns"] != result["returns"]


BAD_INPUT = [(["{tmp}/missing.pt"], "does not exist"),
             (["{tmp}/notes.pt"], "not a readable model file"),
             (["{run}/checkpoint.pt"], "not a model saved by"),
             (["{run}/ppo_continuous_kl.pt", "--episodes", "0"], "--episodes")]


@pytest.mark.parametrize("flags,words", BAD_INPUT, ids=[" ".join(c[0]) for c in BAD_INPUT])
def test_bad_input_is_refused_in_one_line(tiny_run, tmp_path, monkeypatch, flags, words):
    """ppo_kl.evaluate's main in this process: a new Python costs seconds of imports per command."""
    from ppo_kl import evaluate as evaluate_module
    (tmp_path / "notes.pt").write_text("hello")
    flags = [flags[0].format(tmp=tmp_path, run=tiny_run), *flags[1:]]
    monkeypatch.setattr(sys, "argv", ["python -m ppo_kl.evaluate", *flags])
    line = error_of(evaluate_module.main)
    assert words in line, line


def test_bad_input_is_refused_in_one_stderr_line_by_the_module_itself(tmp_path):
    proc = evaluate(str(tmp_path / "missing.pt"))
    assert proc.returncode != 0 and proc.stderr.strip().splitlines() == [
        f"error: model {tmp_path / 'missing.pt'} does not exist; ppo_continuous_kl.py --save-model writes "
        "<run folder>/ppo_continuous_kl.pt"], proc.stderr
