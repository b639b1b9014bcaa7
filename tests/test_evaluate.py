"""ppo_kl/evaluate.py on models saved by tiny real runs: the run's own end-of-run evaluation reproduced, bad input
refused in one line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT



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


def test_bad_input_is_refused_in_one_line(tiny_run, tmp_path):
    not_a_model = tmp_path / "notes.pt"
    not_a_model.write_text("hello")
    for flags, words in (([str(tmp_path / "missing.pt")], "does not exist"),
                         ([str(not_a_model)], "not a readable model file"),
                         ([os.path.join(tiny_run, "checkpoint.pt")], "not a model saved by"),
                         ([os.path.join(tiny_run, "ppo_continuous_kl.pt"), "--episodes", "0"], "--episodes")):
        proc = evaluate(*flags)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and words in last, last
