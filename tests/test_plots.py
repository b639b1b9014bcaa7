"""plot_kl.py on tiny real sweeps: every figure, the claims, the saved summary and its generated README blocks,
and every bad input refused in one line (never a traceback). The committed study: test_committed_results.py."""
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import ROOT, in_process, texts

from ppo_kl import figures
from ppo_kl import findings
from ppo_kl import intervals
import plot_kl

TINY_FIGS = ["--fig2-sizes", "32,64", "--fig3-shapes", "4x32,8x16"]  # the settings of the tiny sweeps
PLOT = [sys.executable, os.path.join(ROOT, "plot_kl.py"), *TINY_FIGS]
COMMITTED = os.path.join(ROOT, "docs", "results", "data")


def plot(*flags, check=True):
    proc = subprocess.run([*PLOT, *flags], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def refused(proc, *words):
    """A one-line `error: ...` naming what was wrong."""
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(w in last for w in words), last
    return last


def refusal(monkeypatch, *flags):
    """plot_kl.main() in this process, expected to stop with a one-line `error: ...`; returns it."""
    with pytest.raises(SystemExit) as stop:
        in_process(monkeypatch, *flags)
    message = str(stop.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


@pytest.fixture(scope="module")
def summary(tiny_sweeps, tmp_path_factory):
    """plot_kl.py run once on the tiny sweeps; returns its output folder and process."""
    out = tmp_path_factory.mktemp("plots")
    minibatch, env_rollout = tiny_sweeps
    return out, plot("--minibatch-runs", str(minibatch), "--env-rollout-runs", str(env_rollout), "--out", str(out))


def test_figures_claims_and_summary(tiny_sweeps, summary, tmp_path, monkeypatch):
    out, proc = summary
    data = {n: pd.read_csv(out / "data" / f"{n}.csv") for n in plot_kl.FRAMES}
    evaluated = (data["runs"].eval_every > 0).all()
    names = ["fig0_verdicts", "fig1_returns", "fig2_kl_minibatch", "fig3_kl_env_rollout",
             "fig4_update_anatomy_InvertedPendulum-v5", "fig5_kl_summaries"]
    names += ["fig1b_eval_returns"] * bool(evaluated)
    for name in names:
        for fmt in ("png", "pdf"):
            assert os.path.getsize(out / f"{name}.{fmt}") > 10_000, name
    claims = (out / "claims.md").read_text()
    for setting in ("(4 x 32 : 4 x 32)", "(4 x 32 : 2 x 64)", "(8 x 16 : 4 x 32)"):
        assert setting in claims
    summary_lines = [line for line in claims.splitlines() if line.startswith("- **")]
    assert len(summary_lines) == 5 and all(line in proc.stdout for line in summary_lines)
    verdict = r"\): (supported|contradicted|undetermined) in InvertedPendulum-v5"
    assert all(re.search(verdict, line) for line in summary_lines), summary_lines
    assert ("evaluation returns" if evaluated else "training returns") in claims
    # verdicts.csv: one row per reading, a primary one per finding; claims.md's table is made from it
    verdicts = pd.read_csv(out / "data" / "verdicts.csv")
    assert list(verdicts.columns) == findings.COLUMNS and set(verdicts.verdict) <= set(intervals.VERDICTS)
    assert verdicts.groupby("finding").primary.sum().to_dict() == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    # 2 seeds per setting: every reading undetermined, whatever its interval
    assert (verdicts.n_seeds == 2).all() and (verdicts.verdict == "undetermined").all()
    # finding 2 recomputed from the KL files: per run, then over the 6 distinct runs (the 4 x 32 : 4 x 32 runs
    # are in both sweeps and count once)
    per_run = {}
    for path in glob.glob(f"{tiny_sweeps[0]}/*/kl/*.npz") + glob.glob(f"{tiny_sweeps[1]}/*/kl/*.npz"):
        run = re.search(r"(\d+x\d+__mb\d+__s\d)", path).group(1)
        per_run.setdefault(run, []).append(float(np.load(path)["ref_kl_decrease_frac"]))
    assert len(per_run) == 6
    two = verdicts[(verdicts.finding == 2) & verdicts.primary].iloc[0]
    assert two.estimate == pytest.approx(np.mean([np.mean(v) for v in per_run.values()]), rel=1e-5)
    # the summary: what the figures need, each run's rows once, small
    assert len(data["runs"]) == 8 and set(data["runs"].sweep) == {"minibatch", "env_rollout"}
    assert len(data["kl_iterations"]) == 6 * 3 and data["kl_iterations"].gamma_D_per_pct.between(0, 1).all()
    assert (data["runs"].kl_every == 1).all() and data["runs"]["flags"].str.contains("total_timesteps=384").all()
    assert set(data["kl_profiles"].phase) == {"early", "middle", "late"}
    assert sum(os.path.getsize(out / "data" / f) for f in os.listdir(out / "data")) < 1_000_000
    # PDFs embed TrueType (Type 42) fonts, none of Type 3
    pdf = (out / "fig1_returns.pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf
    # redrawn from the summary alone: the same claims and figures
    assert set(in_process(monkeypatch, "--data", str(out / "data"), "--out", str(tmp_path), *TINY_FIGS)) == set(names)
    assert (tmp_path / "claims.md").read_text() == claims


def test_summary_keeps_each_updates_anatomy(tiny_sweeps, summary):
    """kl_iterations.csv holds each iteration's mean of every anatomy quantity, and update_profiles.csv its 1%-bin
    profile at the three phases, both recomputed here from the KL files (a tiny run's 40 updates fall one to a bin)."""
    out, _ = summary
    iterations = pd.read_csv(out / "data" / "kl_iterations.csv")
    profiles = plot_kl.read_csv(out / "data" / "update_profiles.csv", "update_profiles")
    assert set(profiles.quantity) == set(plot_kl.ANATOMY) and set(profiles.phase) == {"early", "middle", "late"}
    checked = 0
    for path in glob.glob(f"{tiny_sweeps[0]}/*/kl/*.npz") + glob.glob(f"{tiny_sweeps[1]}/*/kl/*.npz"):
        run, f = os.path.basename(os.path.dirname(os.path.dirname(path))), np.load(path)
        row = iterations[(iterations.run == run) & (iterations.iteration == int(f["iteration"]))]
        assert len(row) == 1, (run, int(f["iteration"]))
        for name in plot_kl.ANATOMY:
            np.testing.assert_allclose(row[f"{name}_mean"].item(), np.mean(f[name], dtype=np.float64), rtol=1e-5)
            kept = profiles[(profiles.run == run) & (profiles.iteration == int(f["iteration"]))
                            & (profiles.quantity == name)]
            for phase, one in kept.groupby("phase"):
                centres = (np.minimum(np.arange(1, len(f[name]) + 1) * 100 // len(f[name]), 99) + 0.5)
                np.testing.assert_allclose(one.sort_values("pct").pct, centres)
                np.testing.assert_allclose(one.sort_values("pct").value, f[name], rtol=1e-5, atol=1e-12)
                checked += 1
    assert checked >= 8 * 3 * len(plot_kl.ANATOMY) / 2  # every run's phases (a 3-iteration run: some coincide)


@pytest.fixture(scope="module")
def tiny_frames(tiny_sweeps):
    """The tiny sweeps' summary as read from their run folders (a tiny profile's 40 updates fill 40 of its 100
    bins)."""
    return plot_kl.load_all(dict(minibatch=str(tiny_sweeps[0]), env_rollout=str(tiny_sweeps[1])), [0.1, 0.5, 0.9])


def save_long(data, folder):
    """A summary as plot_kl.py saved it before the profiles were saved wide: one row per bin."""
    os.makedirs(folder)
    for name, frame in data.items():
        frame.to_csv(os.path.join(folder, f"{name}.csv"), index=False, float_format="%.6g")


def by_sweep(data, sweep):
    """The part of a summary that holds one sweep's runs."""
    runs = data["runs"][data["runs"].sweep == sweep]
    return {n: runs if n == "runs" else f[f.run.isin(runs.run)] for n, f in data.items()}


def test_wide_profiles_read_back_as_the_long_frames(tiny_frames, tmp_path):
    """The profiles are saved one row per profile and read back as the long frames they were made from: the same
    rows in the same order, the same keys, the bins no update fell in left out, the values to the 6 digits saved."""
    plot_kl.save_data(tiny_frames, tmp_path)
    back = plot_kl.read_data([str(tmp_path)])
    for name, value in plot_kl.PROFILES.items():
        original = tiny_frames[name].reset_index(drop=True)
        wide = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(wide.columns) == plot_kl.profile_keys(name) + plot_kl.BIN_COLUMNS
        assert len(wide) == len(original.drop_duplicates(plot_kl.profile_keys(name)))
        assert 0 < wide[plot_kl.BIN_COLUMNS].notna().to_numpy().mean() < 1  # some bins empty
        assert list(back[name].columns) == plot_kl.FRAMES[name]
        pd.testing.assert_frame_equal(back[name].drop(columns=value), original.drop(columns=value),
                                      check_dtype=False, check_exact=True)
        assert back[name][value].dtype == np.float64
        np.testing.assert_allclose(back[name][value], original[value], rtol=5e-6, atol=0)


def test_long_profiles_of_older_summaries_still_read(tiny_frames, tmp_path):
    """A summary saved one row per bin, before the profiles were saved wide, reads as the same frames as the same
    data saved wide, alone or merged with a wide one (one sweep's runs saved each way)."""
    for sweep in ("minibatch", "env_rollout"):
        save_long(by_sweep(tiny_frames, sweep), tmp_path / "long" / sweep)
        plot_kl.save_data(by_sweep(tiny_frames, sweep), tmp_path / "wide" / sweep)
    header = (tmp_path / "long" / "minibatch" / "kl_profiles.csv").read_text().splitlines()[0]
    assert header == ",".join(plot_kl.FRAMES["kl_profiles"])

    def read(*formats):
        return plot_kl.read_data([str(tmp_path / f / s) for f, s in zip(formats, ("minibatch", "env_rollout"))])
    wide = read("wide", "wide")
    for formats in (("long", "long"), ("long", "wide"), ("wide", "long")):
        got = read(*formats)
        for name in plot_kl.FRAMES:
            pd.testing.assert_frame_equal(got[name], wide[name], check_exact=True, obj=f"{formats} {name}")
    assert set(wide["kl_profiles"].run) == set(tiny_frames["kl_profiles"].run)


@pytest.mark.parametrize("source", ["tiny", "committed"])
def test_wide_profiles_are_several_times_smaller(source, tmp_path, request):
    """The same profiles saved wide take under a third of the bytes of one row per bin, at the tiny sweeps' 40
    bins of 100 and the committed summary's full profiles."""
    data = request.getfixturevalue("tiny_frames") if source == "tiny" else plot_kl.read_data([COMMITTED])
    save_long(data, tmp_path / "long")
    plot_kl.save_data(data, tmp_path / "wide")
    for name in plot_kl.PROFILES:
        long, wide = (os.path.getsize(tmp_path / f / f"{name}.csv") for f in ("long", "wide"))
        assert wide < long / 3, (name, wide, long)


def test_wide_profile_cut_short_is_refused(summary, tmp_path, monkeypatch):
    """A wide line cut short (pandas would fill its last bins as empty) is refused in one line naming it."""
    data = tmp_path / "data"
    shutil.copytree(summary[0] / "data", data)
    lines = (data / "kl_profiles.csv").read_text().splitlines(keepends=True)
    lines[2] = ",".join(lines[2].split(",")[:50]) + "\n"
    (data / "kl_profiles.csv").write_text("".join(lines))
    message = refusal(monkeypatch, "--data", str(data), "--out", str(tmp_path / "o"))
    assert "kl_profiles.csv has 50 of its 104 fields on line 3" in message


def test_wall_time_block_follows_the_data(summary, tmp_path, monkeypatch):
    """The README's wall-time block is rewritten from runs.csv, the rest of the README kept: each setting's
    min / median / max minutes over its runs, a run in both sweeps counted once (recomputed here with the
    statistics module), and the runs without a wall time counted."""
    import statistics
    runs = pd.read_csv(summary[0] / "data" / "runs.csv")
    names = sorted(runs.run.unique())  # minutes apart, so that min, median and max differ when printed
    runs["wall_time_s"] = runs.run.map({name: 60 * (2.5 + 7.3 * i) for i, name in enumerate(names)})
    runs.loc[runs.run == names[-1], "wall_time_s"] = np.nan  # a run whose time is unknown
    data = tmp_path / "data"
    shutil.copytree(summary[0] / "data", data)
    runs.to_csv(data / "runs.csv", index=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"set-up\n{plot_kl.TIMES_BEGIN}\nstale table\n{plot_kl.TIMES_END}\ncosts\n")
    in_process(monkeypatch, "--data", str(data), "--out", str(tmp_path), *TINY_FIGS)
    text = readme.read_text()
    assert text.startswith(f"set-up\n{plot_kl.TIMES_BEGIN}\n") and text.endswith(f"{plot_kl.TIMES_END}\ncosts\n")
    block = text.split(plot_kl.TIMES_BEGIN)[1].split(plot_kl.TIMES_END)[0]
    assert "stale" not in block
    table = {tuple(c.strip() for c in line.strip("|").split("|")[1:]) for line in block.splitlines()
             if line.startswith("| ")} - {("setting", "runs", "minutes per run: min / median / max"), ("---",) * 3}
    unique = runs.drop_duplicates("run")
    timed = unique.dropna(subset=["wall_time_s"])
    expected = set()
    for (n, m, b), g in timed.groupby(["num_envs", "num_steps", "minibatch_size"]):
        minutes = list(g.wall_time_s / 60)
        expected.add((f"{n} x {m}, minibatch {b}", str(len(minutes)),
                      f"{min(minutes):.1f} / {statistics.median(minutes):.1f} / {max(minutes):.1f}"))
    assert table == expected
    total = timed.wall_time_s.sum() / 3600
    assert f"InvertedPendulum-v5 {total:.1f} h in {len(timed)} runs" in block
    assert f"Runs without a wall time: {len(unique) - len(timed)}." in block and len(unique) > len(timed)


def test_pair_seed_block_names_the_seeds_still_to_run(summary):
    """The pair settings' block, from a tiny summary where one pair setting gained seeds 3 and 5: it alone is at
    the fullest seeds, the others lack exactly 3 and 5, and the added runs' minutes are listed in seed order and
    summed. The expectation is counted here from the rows of runs.csv with the csv module; the setting shared by
    both pairs (4 x 32, minibatch 32, in both sweeps' folders) is one cell."""
    import csv
    with open(summary[0] / "data" / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    grown = [r for r in rows if r["sweep"] == "minibatch" and r["minibatch_size"] == "64" and r["seed"] == "1"]
    assert len(grown) == 1
    for seed, minutes in ((5, 7.25), (3, 4.5)):  # out of order on purpose
        rows.append(grown[0] | {"seed": str(seed), "run": grown[0]["run"].replace("__s1", f"__s{seed}"),
                                "wall_time_s": str(60 * minutes)})
    runs = pd.DataFrame(rows).astype({c: int for c in ("num_envs", "num_steps", "minibatch_size", "seed")})
    runs["wall_time_s"] = runs.wall_time_s.astype(float)
    block = plot_kl.pair_seeds(runs, [32, 64], [(4, 32), (8, 16)])
    table = [tuple(c.strip() for c in line.strip("|").split("|")) for line in block.splitlines()
             if line.startswith("| ") and "---" not in line][1:]
    cells = {(r["num_envs"], r["num_steps"], r["minibatch_size"]) for r in rows}
    assert len(table) == len(cells) == 3
    for env, setting, seeds, lacking, minutes in table:
        if setting == "4 x 32, minibatch 64":
            assert (seeds, lacking, minutes) == ("1-3, 5", "none", "4.5, 7.2")
        else:
            assert (seeds, lacking, minutes) == ("1-2", "3, 5", "none")
    assert ("Pair settings at seeds 1-3, 5: 1 of 3; runs still to run: 4. "
            "The 2 added runs' wall times sum to 0.2 h") in block
    assert plot_kl.seed_ranges([]) == "none" and plot_kl.seed_ranges([9, 1, 2, 4, 3, 7]) == "1-4, 7, 9"


def test_one_env_without_captions(summary, tmp_path, monkeypatch):
    """--envs draws a subset; --no-caption leaves the explanatory text out; an env not in the runs is refused in one
    line naming the allowed ones."""
    out, _ = summary
    drawn = in_process(monkeypatch, "--data", str(out / "data"), "--out", str(tmp_path), "--envs",
                         "InvertedPendulum-v5", "--no-caption", *TINY_FIGS)
    for name, fig in drawn.items():
        assert fig._supxlabel is None or not fig._supxlabel.get_text(), name
    message = refusal(monkeypatch, "--data", str(out / "data"), "--out", str(tmp_path), "--envs", "Hopper-v5")
    assert "--envs Hopper-v5" in message and "allowed: InvertedPendulum-v5" in message


def test_bands_against_an_independent_computation():
    """mean_and_band over seeds with a missing value: the t interval against scipy's, the std and min-max bands
    against numpy's, each column over the seeds it has."""
    per_seed = np.array([[1.0, 2.0, 4.0], [3.0, np.nan, 5.0], [2.0, 6.0, 9.0], [6.0, 1.0, 0.5]])
    mean, low, high = figures.mean_and_band(per_seed, figures.Look(band="ci95"))
    for c in range(3):
        seeds = per_seed[np.isfinite(per_seed[:, c]), c]
        want = stats.t.interval(0.95, len(seeds) - 1, loc=seeds.mean(), scale=stats.sem(seeds))
        assert mean[c] == pytest.approx(seeds.mean()) and (low[c], high[c]) == pytest.approx(want)
        _, lo, hi = figures.mean_and_band(per_seed, figures.Look(), spread="std")
        assert (lo[c], hi[c]) == pytest.approx((seeds.mean() - seeds.std(ddof=1), seeds.mean() + seeds.std(ddof=1)))
        _, lo, hi = figures.mean_and_band(per_seed, figures.Look())
        assert (lo[c], hi[c]) == (seeds.min(), seeds.max())


def test_band_ci95_is_drawn_and_named(summary, tmp_path, monkeypatch):
    """--band ci95: the KL figure's right panels draw the 95% interval of the mean and the captions say so; an
    unknown band is refused in one line naming the allowed ones."""
    out, _ = summary
    spread = in_process(monkeypatch, "--data", str(out / "data"), "--out", str(tmp_path / "s"), *TINY_FIGS)
    ci = in_process(monkeypatch, "--data", str(out / "data"), "--out", str(tmp_path / "c"), "--band", "ci95",
                    *TINY_FIGS)
    assert any("95% interval of the mean over seeds (Student's t)" in t for t in texts(ci["fig2_kl_minibatch"]))
    assert any("the seeds' min to max" in t for t in texts(spread["fig2_kl_minibatch"]))
    assert any("band: the 95% interval of the mean over seeds" in t for t in texts(ci["fig1_returns"]))

    def bands(fig):
        return [p.get_paths()[0].vertices.round(12).tolist() for ax in fig.subfigs[0].get_axes()[1::2]
                for p in ax.collections]
    assert bands(ci["fig2_kl_minibatch"]) and bands(ci["fig2_kl_minibatch"]) != bands(spread["fig2_kl_minibatch"])
    message = refusal(monkeypatch, "--data", str(out / "data"), "--out", str(tmp_path), "--band", "iqr")
    assert message == "error: --band iqr: allowed: spread, ci95"


def test_absent_figure_settings_are_warned_about(summary, monkeypatch, capsys):
    out, _ = summary
    drawn = in_process(monkeypatch, "--data", str(out / "data"), "--out", str(out / "absent"),
                         "--fig2-sizes", "32,999", "--fig3-shapes", "3x3,5x5")
    err = capsys.readouterr().err
    assert "--fig2-sizes: InvertedPendulum-v5 has no run of minibatch 999" in err and "(4 x 32 : 2 x 64)" in err
    assert "--fig3-shapes: no run of 3 envs x 3 steps or 5 envs x 5 steps: fig3_kl_env_rollout is left out" in err
    assert "fig3_kl_env_rollout" not in drawn
    title = drawn["fig2_kl_minibatch"]._suptitle.get_text()
    assert title.endswith("minibatch 32") and "999" not in title
    assert all(ax.lines for ax in drawn["fig2_kl_minibatch"].get_axes())


def test_partial_runs_are_skipped_by_name(tiny_sweeps, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "minibatch"
    shutil.copytree(tiny_sweeps[0], runs)
    os.remove(runs / "InvertedPendulum-v5__4x32__mb64__s2" / "summary.json")
    drawn = in_process(monkeypatch, "--minibatch-runs", str(runs), "--env-rollout-runs", str(tmp_path / "none"),
                         "--out", str(tmp_path / "f"), *TINY_FIGS)
    err = capsys.readouterr().err
    assert "warning: skipping" in err and "InvertedPendulum-v5__4x32__mb64__s2" in err
    assert "no env_rollout runs" in err
    assert len(pd.read_csv(tmp_path / "f" / "data" / "runs.csv")) == 3
    assert "fig2_kl_minibatch" in drawn and "fig3_kl_env_rollout" not in drawn


@pytest.mark.parametrize("which", ["all", "some"])
def test_runs_that_finished_no_episode(tiny_sweeps, tmp_path, which):
    """Their event files hold no return: a warning naming them, no traceback. When no run has an episode the
    return figures are left out; when some have (the README's small sweep: at 1000 x 50 no HalfCheetah episode
    ends in 10 iterations), Figure 1 draws the others."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    runs = tmp_path / "minibatch"
    shutil.copytree(tiny_sweeps[0], runs)
    emptied = sorted(runs.glob("InvertedPendulum-v5__*" if which == "all" else "InvertedPendulum-v5__*__mb32__*"))
    for run in emptied:
        for events in run.glob("events.out.tfevents.*"):
            events.unlink()
        writer = EventFileWriter(str(run))
        writer.add_event(Event(step=128, summary=Summary(value=[Summary.Value(tag="charts/SPS", simple_value=1.0)])))
        writer.close()
    proc = plot("--minibatch-runs", str(runs), "--env-rollout-runs", str(tmp_path / "none"), "--out",
                str(tmp_path / "f"), "--formats", "png")
    assert f"{len(emptied)} runs finished no episode" in proc.stderr and emptied[0].name in proc.stderr
    assert (tmp_path / "f" / "fig2_kl_minibatch.png").exists()
    verdicts = pd.read_csv(tmp_path / "f" / "data" / "verdicts.csv")
    one = verdicts[(verdicts.finding == 1) & verdicts.primary].iloc[0]
    if which == "all":
        assert "fig1_returns is left out" in proc.stderr and not (tmp_path / "f" / "fig1_returns.png").exists()
        assert one.verdict == "undetermined" and one.method == "none: no run has the data"
    else:
        assert (tmp_path / "f" / "fig1_returns.png").exists() and "Traceback" not in proc.stderr
        assert one.verdict == "undetermined"


def test_damaged_kl_file_is_named(tiny_sweeps, tmp_path):
    runs = tmp_path / "minibatch"
    shutil.copytree(tiny_sweeps[0], runs)
    damaged = sorted(runs.glob("*/kl/iter_*.npz"))[1]
    damaged.write_bytes(damaged.read_bytes()[:300])
    proc = plot("--minibatch-runs", str(runs), "--env-rollout-runs", str(tmp_path / "none"), "--out",
                str(tmp_path / "f"), check=False)
    refused(proc, str(damaged), "not a readable KL file")
    assert not glob.glob(str(tmp_path / "f" / "fig*"))  # refused before any figure was drawn


def test_mixed_flags_are_refused(tiny_sweeps, tmp_path, monkeypatch):
    """Runs whose flags change results (here --kl-every, then --total-timesteps) are not pooled."""
    runs = tmp_path / "minibatch"
    shutil.copytree(tiny_sweeps[0], runs)
    args_path = runs / "InvertedPendulum-v5__4x32__mb64__s2" / "args.json"
    args = json.loads(args_path.read_text())
    args_path.write_text(json.dumps(dict(args, kl_every=5)))
    proc = plot("--minibatch-runs", str(runs), "--env-rollout-runs", "", "--out", str(tmp_path / "f"), check=False)
    refused(proc, "InvertedPendulum-v5__4x32__mb64__s2", "kl_every (1 vs 5)", "separate folders")
    args_path.write_text(json.dumps(dict(args, total_timesteps=512)))
    assert "total_timesteps (384 vs 512)" in refusal(monkeypatch, "--minibatch-runs", str(runs), "--env-rollout-runs",
                                                     "", "--out", str(tmp_path / "f"))


def test_bad_flags_and_damaged_summaries(summary, tmp_path, monkeypatch):
    raw = plot("--help").stdout
    help_text = " ".join(raw.split())
    assert "(default: runs/minibatch)" in help_text and "(default: png,pdf)" in help_text
    assert "\n    python plot_kl.py --data docs/results/data --out docs/results" in raw  # the description kept as is
    refuses = functools.partial(refusal, monkeypatch)
    assert "error: no complete runs under" in refuses("--minibatch-runs", str(tmp_path), "--env-rollout-runs",
                                                      str(tmp_path / "no"))
    assert "--phases takes 3 comma-separated fractions" in refuses("--phases", "0.1,0.5")
    data = str(summary[0] / "data")
    assert "unknown svgx; allowed: avif, eps" in refuses("--data", data, "--formats", "png,svgx")
    (tmp_path / "file").write_text("")
    message = refuses("--data", data, "--out", str(tmp_path / "file"))
    assert message.startswith("error: --out") and "is a file; it takes a folder" in message
    assert "lacks runs.csv" in refuses("--data", str(tmp_path))
    # a summary cut mid-line, and one cut at a line's end (runs.csv loses its last run)
    for name, cut, words in (("returns.csv", -7, "returns.csv is truncated"),
                             ("runs.csv", None, "holds runs that runs.csv lacks")):
        copy = tmp_path / name
        shutil.copytree(data, copy)
        lines = (copy / name).read_bytes().splitlines(keepends=True)
        (copy / name).write_bytes(b"".join(lines)[:cut] if cut else b"".join(lines[:-1]))
        assert words in refuses("--data", str(copy), "--out", str(tmp_path / "o"))


def test_summaries_saved_apart_merge_into_the_whole(tiny_sweeps, summary, tmp_path, monkeypatch):
    """Runs summarised in separate batches (say, one per session) redraw as if read all at once."""
    minibatch, env_rollout = tiny_sweeps
    none = str(tmp_path / "none")
    for out, runs in (("a", ["--minibatch-runs", str(minibatch), "--env-rollout-runs", none]),
                      ("b", ["--minibatch-runs", none, "--env-rollout-runs", str(env_rollout)])):
        in_process(monkeypatch, *runs, "--out", str(tmp_path / out), *TINY_FIGS)
    # the whole summary repeats the first's runs: they are kept once
    whole = summary[0]
    in_process(monkeypatch, "--data", str(tmp_path / "a" / "data"), str(tmp_path / "b" / "data"), str(whole / "data"),
               "--out", str(tmp_path / "merged"), "--save-data", str(tmp_path / "merged" / "data"), *TINY_FIGS)
    assert (tmp_path / "merged" / "claims.md").read_text() == (whole / "claims.md").read_text()
    for name in plot_kl.FRAMES:
        merged, full = (pd.read_csv(d / "data" / f"{name}.csv") for d in (tmp_path / "merged", whole))
        assert len(merged) == len(full) > 0 or name == "evals", name


def test_summary_without_evaluations_merges_with_one_that_has_them(summary, tmp_path, monkeypatch):
    """Summaries written before evaluations existed (a header-only evals.csv) merge with new runs that have them."""
    old = tmp_path / "old"
    shutil.copytree(COMMITTED, old)
    (old / "evals.csv").write_text(",".join(plot_kl.FRAMES["evals"]) + "\n")
    # and before the update anatomy: no update_profiles.csv, no anatomy columns in kl_iterations.csv
    os.remove(old / "update_profiles.csv")
    iterations = pd.read_csv(old / "kl_iterations.csv")
    iterations.drop(columns=[f"{name}_mean" for name in plot_kl.ANATOMY]).to_csv(old / "kl_iterations.csv", index=False)
    assert len(pd.read_csv(summary[0] / "data" / "evals.csv")) > 0
    drawn = in_process(monkeypatch, "--data", str(old), str(summary[0] / "data"), "--out", str(tmp_path),
                         "--save-data", str(tmp_path / "merged"), *TINY_FIGS)
    assert "fig1b_eval_returns" in drawn
    merged = pd.read_csv(tmp_path / "merged" / "kl_iterations.csv")
    new_runs = merged.run.isin(pd.read_csv(summary[0] / "data" / "runs.csv").run)
    assert merged.loc[~new_runs, "grad_norm_mean"].isna().all() and merged.loc[new_runs, "grad_norm_mean"].gt(0).all()
