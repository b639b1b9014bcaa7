"""The committed study in docs/results: every figure, claim and generated block is what its data draws, byte for
byte; its figures meet the standards with a sweep cut out; the pairs' readings at seeds 1-4 beside every seed."""
import os
import shutil
import subprocess
import sys
import types

import pandas as pd

from conftest import ROOT, in_process, texts

from ppo_kl import figures
from ppo_kl import findings
import plot_kl

COMMITTED = os.path.join(ROOT, "docs", "results", "data")


def test_added_seeds_read_beside_the_study_at_the_shared_seeds(tmp_path):
    """claims.md's table of the pairs at the shared seeds and at every seed: one row per reading that uses more
    seeds than every setting has, its left side the verdicts of a study saved with seeds 1-4 alone (the summary's
    CSV files filtered here, then read as any summary), its right side the committed verdicts, and the sentence
    above it naming exactly the rows whose two verdicts differ."""
    from ppo_kl.findings_text import num
    full = pd.read_csv(os.path.join(COMMITTED, "verdicts.csv"))
    runs = pd.read_csv(os.path.join(COMMITTED, "runs.csv"))
    shared = set.intersection(*[set(g.seed) for _, g in runs.groupby(findings.SETTING)])
    assert shared == {1, 2, 3, 4} and runs.seed.max() > 4
    keep = set(runs.run[runs.seed.isin(shared)])
    (tmp_path / "data").mkdir()
    for name in plot_kl.FRAMES:
        frame = plot_kl.read_csv(os.path.join(COMMITTED, f"{name}.csv"), name)
        frame[frame.run.isin(keep)].to_csv(tmp_path / "data" / f"{name}.csv", index=False)
    opts = types.SimpleNamespace(sizes=[50, 1000], shapes=[(1000, 50), (100, 500)])
    at_shared = plot_kl.verdicts_at_seeds(plot_kl.read_data([str(tmp_path / "data")]), set(range(1, 100)), opts)
    assert (at_shared.n_seeds_most == 4).all()
    claims = open(os.path.join(os.path.dirname(COMMITTED), "claims.md")).read()
    section = claims.split("### The pairs at the shared seeds and at every seed")[1].split("\n### ")[0]
    rows = [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and "---" not in line][1:]
    grown = full[full.n_seeds_most > 4]
    assert len(rows) == len(grown) > 0
    changed = []
    for finding, env, reading, before, verdict_before, _, _, after, verdict_after, _ in rows:
        base = at_shared[(at_shared.finding == int(finding)) & (at_shared.env == env) & (at_shared.reading == reading)]
        now = grown[(grown.finding == int(finding)) & (grown.env == env) & (grown.reading == reading)]
        assert len(base) == len(now) == 1, (finding, env, reading)
        for text, verdict, r in ((before, verdict_before, base.iloc[0]), (after, verdict_after, now.iloc[0])):
            assert (text, verdict) == (f"{num(r.estimate)} [{num(r.low)}, {num(r.high)}]", r.verdict)
        if verdict_before != verdict_after:
            changed.append(f"finding {finding}, {env}, {reading}: {verdict_before} to {verdict_after}")
    assert f"Verdicts changed ({len(changed)}){': ' if changed else ''}{'; '.join(changed)}." in section


def committed_with_a_sweep_cut(folder):
    """The committed summary with one env's env x rollout runs taken out (an env missing from a sweep), saved to
    folder; returns its runs."""
    frames = {name: pd.read_csv(os.path.join(COMMITTED, f"{name}.csv")) for name in plot_kl.FRAMES}
    runs = frames["runs"]
    cut = sorted(set(runs.env_id[runs.sweep == "minibatch"]))[-1]
    runs = runs[~((runs.sweep == "env_rollout") & (runs.env_id == cut))]
    assert (runs.sweep == "env_rollout").any(), "the committed summary needs env x rollout runs of another env"
    os.makedirs(folder)
    for name, frame in frames.items():
        (runs if name == "runs" else frame[frame.run.isin(runs.run)]).to_csv(os.path.join(folder, f"{name}.csv"),
                                                                             index=False)
    return runs, frames["evals"]


def test_committed_results_figures(monkeypatch, tmp_path):
    """The committed summary, less one env's env x rollout runs: no empty panel, readable legends, the label
    explained, titles naming only what is drawn, the evaluation figure when there are evaluations, and the README
    block replaced."""
    runs, evals = committed_with_a_sweep_cut(tmp_path / "data")
    (tmp_path / "README.md").write_text(f"set-up\n{plot_kl.BEGIN}\nold numbers\n{plot_kl.END}\ncaveats\n")
    drawn = in_process(monkeypatch, "--data", str(tmp_path / "data"), "--out", str(tmp_path))
    has_evals = runs.run.isin(evals.run).any()
    expected = {"fig0_verdicts", "fig1_returns", "fig2_kl_minibatch", "fig3_kl_env_rollout", "fig5_kl_summaries"}
    # an anatomy figure for each env whose minibatch 50 and 1000 both have runs that recorded it
    iterations = pd.read_csv(tmp_path / "data" / "kl_iterations.csv")
    recorded = runs[runs.run.isin(iterations.run[iterations.grad_norm_mean.notna()]) & (runs.sweep == "minibatch")]
    sizes = recorded[recorded.minibatch_size.isin([50, 1000])].groupby("env_id").minibatch_size.nunique()
    expected |= {f"fig4_update_anatomy_{env}" for env in sizes.index[sizes == 2]}
    assert set(drawn) == expected | ({"fig1b_eval_returns"} if has_evals else set())
    verdict_cells = [t.get_text() for t in drawn.pop("fig0_verdicts").get_axes()[0].texts]
    assert verdict_cells.count("supported") + verdict_cells.count("contradicted") + verdict_cells.count(
        "undetermined") == 5 * runs.env_id.nunique() - verdict_cells.count("not tested")
    summaries = drawn.pop("fig5_kl_summaries")  # points and lines; one row per env
    assert all(ax.collections for ax in summaries.get_axes()), "fig5_kl_summaries has an empty panel"
    assert len(summaries.get_axes()) == 3 * runs.env_id.nunique()
    # filled, the runs of the seeds every setting in the panel has (what its reading uses): finding 5's panel over
    # both sweeps, the trends' panels (3 thirds, then gamma_D) over the minibatch sweep at 500 x 100; hollow, the
    # pairs' added seeds
    def split(frame, times=1):
        shared = set.intersection(*[set(g.seed) for _, g in frame.groupby(findings.SETTING)])
        return times * (~frame.seed.isin(shared)).sum(), times * frame.seed.isin(shared).sum()

    panels = summaries.get_axes()
    for e, env in enumerate(sorted(set(runs.env_id))):
        distinct = findings.distinct_runs(runs[runs.env_id == env])
        shape = distinct[(distinct.num_envs == 500) & (distinct.num_steps == 100)]
        if env in {"HalfCheetah-v5", "Walker2d-v5"}:  # their pairs' added seeds: hollow points in every panel
            assert split(distinct)[0] > 0 and split(shape)[0] > 0
        assert hollow_and_filled(panels[3 * e + 1]) == split(distinct), env
        assert hollow_and_filled(panels[3 * e]) == split(shape, 3), env
        assert hollow_and_filled(panels[3 * e + 2]) == split(shape), env
    assert any(text.endswith("; 10 seeds") for text in verdict_cells) and "against 0; 4 seeds" in verdict_cells
    for name, fig in drawn.items():
        assert all(ax.lines for ax in fig.get_axes()), f"{name} has an empty panel"
        assert fig.get_size_inches()[0] <= figures.WIDTH
        for f in [fig, *fig.subfigs]:
            assert all(t.get_fontsize() >= 7 for legend in f.legends for t in legend.get_texts())
        assert any("(N_env x N_rollout : N_minibatch x minibatch_size) =" in t for t in texts(fig)), name
    # the caption explains the dotted line where one is drawn, and seed counts that differ between envs
    for name in {"fig1_returns", "fig1b_eval_returns"} & set(drawn):
        said = " ".join(texts(drawn[name]))
        dotted = any(line.get_linestyle() == ":" for ax in drawn[name].get_axes() for line in ax.lines)
        assert ("Dotted: the step at which claims.md compares" in said) == dotted, name
        assert ("\"n or m seeds\": the count differs between envs" in said) == (" or 10 seeds" in said), name
    # one panel per env of each sweep: the env cut from the env x rollout sweep has none there
    assert len(drawn["fig1_returns"].get_axes()) == runs.groupby("sweep").env_id.nunique().sum()
    shapes = set(zip(runs.num_envs[runs.sweep == "env_rollout"], runs.num_steps[runs.sweep == "env_rollout"]))
    fig3 = texts(drawn["fig3_kl_env_rollout"])
    title = "KL profiles in three training phases: 1000 envs x 50 steps"
    title += " vs 100 envs x 500 steps" * ((100, 500) in shapes)
    assert title in fig3 and not any(t.startswith(title + " vs") for t in fig3)
    rollout = runs[(runs.sweep == "env_rollout") & (runs.num_envs == 1000) & (runs.num_steps == 50)]
    seeds = rollout[rollout.env_id == rollout.env_id.min()].seed.nunique()  # the first env's legend
    assert any(t.startswith(f"1000 envs x 50 steps, {seeds} seeds (best: seed") for t in fig3), fig3
    # each setting its own colour from the colour-blind-safe palette, each phase its own line style
    axes = drawn["fig3_kl_env_rollout"].subfigs[0].get_axes()
    assert {line.get_color() for line in axes[1].lines} <= set(figures.SETTING_COLOURS[:2])
    assert {line.get_linestyle() for line in axes[1].lines} == {"-", "--", ":"}
    readme, claims = (tmp_path / "README.md").read_text(), (tmp_path / "claims.md").read_text()
    assert "old numbers" not in readme and readme.startswith("set-up\n") and readme.endswith("caveats\n")
    block = readme.split(plot_kl.BEGIN)[1].split(plot_kl.END)[0].strip()
    assert block and block in claims and f"--norm-stats {', '.join(sorted(set(runs.norm_stats)))}`" in block
    assert ("evaluation returns" if has_evals else "training returns") in block


def test_committed_results_are_what_their_data_draws(tmp_path):
    """docs/results regenerates from its data alone, byte for byte: figures, claims.md and the README's results
    block. A figure or a number left stale after a change to plot_kl.py or findings.py fails here."""
    results = os.path.dirname(COMMITTED)
    shutil.copy(os.path.join(results, "README.md"), tmp_path / "README.md")
    cmd = [sys.executable, os.path.join(ROOT, "plot_kl.py"), "--data", COMMITTED, "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    drawn = sorted(f for f in os.listdir(tmp_path) if os.path.isfile(tmp_path / f))
    committed = sorted(f for f in os.listdir(results) if os.path.isfile(os.path.join(results, f)))
    assert drawn == committed
    drawn.append(os.path.join("data", "verdicts.csv"))  # the verdicts, which the claims and the README are made from
    stale = [f for f in drawn
             if (tmp_path / f).read_bytes() != open(os.path.join(results, f), "rb").read()]
    assert not stale, ("regenerate docs/results (python plot_kl.py --data docs/results/data --out docs/results): "
                       f"{stale}")


def hollow_and_filled(ax):
    """The numbers of hollow (no face colour) and filled points in a scatter panel."""
    counts = [0, 0]
    for c in ax.collections:
        faces = c.get_facecolors()
        counts[int(len(faces) > 0 and faces[:, 3].max() > 0)] += len(c.get_offsets())
    return tuple(counts)
