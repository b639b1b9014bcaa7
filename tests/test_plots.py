"""plot_kl.py on tiny real sweeps: every figure, the claims table, the saved summary, missing data."""
import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd

from conftest import ROOT

PLOT = [sys.executable, os.path.join(ROOT, "plot_kl.py"), "--fig2-sizes", "32,64", "--fig3-shapes", "4x32,8x16"]


def plot(*flags, check=True):
    proc = subprocess.run([*PLOT, *flags], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_figures_table_and_summary(tiny_sweeps, tmp_path):
    minibatch, env_rollout = tiny_sweeps
    proc = plot("--minibatch-runs", str(minibatch), "--env-rollout-runs", str(env_rollout), "--out", str(tmp_path))
    for name in ("fig1_returns", "fig2_kl_minibatch", "fig3_kl_env_rollout"):
        for fmt in ("png", "pdf"):
            assert os.path.getsize(tmp_path / f"{name}.{fmt}") > 10_000, name
    claims = (tmp_path / "claims.md").read_text()
    assert claims in proc.stdout
    for setting in ("(4 x 32 : 4 x 32)", "(4 x 32 : 2 x 64)", "(8 x 16 : 4 x 32)"):
        assert setting in claims
    findings = [l for l in claims.splitlines() if l.startswith("- **")]
    assert len(findings) == 5
    assert all(re.search(r"\*\*: (holds|does not hold|not testable with these runs)\.", l) for l in findings), findings
    # finding 2's figure, recomputed from the KL files themselves
    fracs = [np.mean(np.diff(np.load(f)["ref_kl"]) < 0) for f in glob.glob(f"{minibatch}/*/kl/*.npz") + glob.glob(f"{env_rollout}/*/kl/*.npz")]
    assert len(fracs) == 24
    assert f"{100 * np.mean(fracs):.2f}% of steps decrease over 24 iterations" in findings[1]
    assert findings[1].split("**: ")[1].startswith("holds" if np.mean(fracs) >= 0.99 else "does not hold")
    # the summary holds what the figures need, and is small
    data = {n: pd.read_csv(tmp_path / "data" / f"{n}.csv") for n in ("runs", "returns", "kl_iterations", "kl_profiles")}
    assert len(data["runs"]) == 8 and set(data["runs"].sweep) == {"minibatch", "env_rollout"}
    assert len(data["kl_iterations"]) == 8 * 3
    assert set(data["kl_profiles"].phase) == {"early", "middle", "late"}
    ref = data["kl_profiles"][data["kl_profiles"].curve == "ref_kl"]
    assert (ref.kl >= 0).all() and (data["kl_iterations"].ref_kl_decrease_frac <= 1).all()
    assert sum(os.path.getsize(tmp_path / "data" / f) for f in os.listdir(tmp_path / "data")) < 1_000_000
    # redrawn from the summary alone: the same table
    again = tmp_path / "again"
    plot("--data", str(tmp_path / "data"), "--out", str(again))
    assert (again / "claims.md").read_text() == claims
    assert os.path.getsize(again / "fig2_kl_minibatch.png") > 10_000


def test_partial_runs_are_skipped_by_name(tiny_sweeps, tmp_path):
    runs = tmp_path / "minibatch"
    shutil.copytree(tiny_sweeps[0], runs)
    os.remove(runs / "InvertedPendulum-v5__4x32__mb64__s2" / "summary.json")
    proc = plot("--minibatch-runs", str(runs), "--env-rollout-runs", str(tmp_path / "none"), "--out", str(tmp_path / "f"))
    assert "warning: skipping" in proc.stderr and "InvertedPendulum-v5__4x32__mb64__s2" in proc.stderr
    assert "no env_rollout runs" in proc.stderr
    assert len(pd.read_csv(tmp_path / "f" / "data" / "runs.csv")) == 3
    assert not (tmp_path / "f" / "fig3_kl_env_rollout.png").exists()


def test_no_data_and_bad_flags(tmp_path):
    proc = plot("--minibatch-runs", str(tmp_path), "--env-rollout-runs", str(tmp_path / "no"), check=False)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("error: no complete runs under")
    proc = plot("--phases", "0.1,0.5", check=False)
    assert proc.returncode != 0 and "error: --phases takes 3 comma-separated fractions" in proc.stderr
    proc = plot("--data", str(tmp_path), check=False)
    assert proc.returncode != 0 and "error: --data" in proc.stderr and "runs.csv" in proc.stderr


def test_summaries_saved_apart_merge_into_the_whole(tiny_sweeps, tmp_path):
    """Runs summarised in separate batches (say, one per session) redraw as if read all at once."""
    minibatch, env_rollout = tiny_sweeps
    none = str(tmp_path / "none")
    plot("--minibatch-runs", str(minibatch), "--env-rollout-runs", none, "--out", str(tmp_path / "a"))
    plot("--minibatch-runs", none, "--env-rollout-runs", str(env_rollout), "--out", str(tmp_path / "b"))
    plot("--minibatch-runs", str(minibatch), "--env-rollout-runs", str(env_rollout), "--out", str(tmp_path / "all"))
    # the third summary repeats the first's runs: they are kept once
    plot("--data", str(tmp_path / "a" / "data"), str(tmp_path / "b" / "data"), str(tmp_path / "all" / "data"),
         "--out", str(tmp_path / "merged"), "--save-data", str(tmp_path / "merged" / "data"))
    assert (tmp_path / "merged" / "claims.md").read_text() == (tmp_path / "all" / "claims.md").read_text()
    for name in ("runs", "returns", "kl_iterations", "kl_profiles"):
        merged, whole = (pd.read_csv(tmp_path / d / "data" / f"{name}.csv") for d in ("merged", "all"))
        assert len(merged) == len(whole) > 0, name
