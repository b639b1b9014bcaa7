"""Figures 1-3 of the paper, the findings read every way with their verdicts (Figure 0, claims.md), and the anatomy
of finding 3's updates (Figure 4), from the runs of the two sweeps.

    python plot_kl.py --minibatch-runs runs/minibatch --env-rollout-runs runs/env_rollout --out figures
    python plot_kl.py --data docs/results/data --out docs/results      # from a saved summary alone

Reading the runs writes a compact summary (CSV, --save-data) from which everything can be redrawn without the
runs. Figure 1: training episodic return against env steps (the paper's), mean and std over seeds; fig1b: the
evaluation return on its common grid, when the runs were trained with --eval-every. Figures 2 and 3: sequential
and reference KL against the % of the iteration's minibatch updates done, in three training phases, two settings
overlaid by colour: each setting's best run (the paper's view) beside the mean over seeds. claims.md: the
paper's findings read per env with intervals that keep their level at four seeds (ppo_kl/findings.py,
ppo_kl/intervals.py), one row per reading in data/verdicts.csv; the same results are written
between the <!-- results:begin --> and <!-- results:end --> markers of OUT/README.md when it has them, and the
runs' wall times per setting between its <!-- wall-times:begin --> and <!-- wall-times:end --> markers, and the
seeds of the pair settings (those still to run, the added runs' times) between <!-- pair-seeds:begin --> and
<!-- pair-seeds:end -->.
The figures are drawn by ppo_kl/figures.py.
"""
import argparse
import csv
import glob
import io
import os
import zipfile

import numpy as np
import pandas as pd
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from ppo_kl.figures import (BANDS, SETTING_COLOURS, Look, fig_kl_profiles, fig_kl_summaries, fig_returns,
                            fig_update_anatomy, fig_verdicts, save, setup_matplotlib, supported_formats)
from ppo_kl.findings import (PHASES, SETTING, anatomy_rows, beside_published, check_findings, distinct_runs, label,
                             per_run, run_table, seeds_every_setting_has, settings_table, with_returns)
from ppo_kl.findings_text import (anatomy_markdown, claims_markdown, markdown_table, report, seed_growth_markdown,
                                  seed_ranges, summary_lines)
from ppo_kl.run_record import ANATOMY, BOOKKEEPING, fail, read_json, warn

PCT_BINS = 100  # KL profiles are kept as means over 1% bins of the iteration's updates
RETURN_POINTS = 100  # training-return curves are kept at this many env-step points per run
FRAMES = {  # the summary's frames, a CSV file each, and the columns each must have (the files of PROFILES: below)
    "runs": ["sweep", "run", "env_id", "num_envs", "num_steps", "seed", "num_minibatches", "minibatch_size",
             "num_iterations", "wall_time_s", "kl_every", "norm_stats", "eval_every", "flags"],
    "returns": ["run", "step", "episodic_return"],
    "evals": ["run", "step", "eval_return"],
    "kl_iterations": ["run", "iteration", "global_step", "seq_kl_mean", "ref_kl_start", "ref_kl_decrease_frac",
                      "gamma_D", "gamma_D_per_pct"],
    "kl_profiles": ["run", "phase", "iteration", "curve", "pct", "kl"],
    # each update's anatomy (run_record.ANATOMY): its mean per iteration above, its 1%-bin profile per phase here
    "update_profiles": ["run", "phase", "iteration", "quantity", "pct", "value"],
}
FRAMES["kl_iterations"] += [f"{name}_mean" for name in ANATOMY]
# Runs made before the anatomy was recorded have none: their columns empty, and summaries saved before it lack
# the columns and update_profiles.csv
OPTIONAL = {f"{name}_mean" for name in ANATOMY}
OPTIONAL_FRAMES = {"update_profiles"}
# The two profile files are saved wide, one row per profile (run, phase, iteration and its curve or quantity) with a
# column per 1% bin named by the bin's centre, p0.5 ... p99.5 (the `pct` of the long rows), empty where no update
# fell in the bin: about a fifth of the bytes of one row per bin. read_csv turns them back into the long frames
# above, row for row, and still reads the long files of summaries saved before.
PROFILES = {"kl_profiles": "kl", "update_profiles": "value"}  # each wide file and its long value column
BIN_CENTRES = (np.arange(PCT_BINS) + 0.5) * 100 / PCT_BINS
BIN_COLUMNS = [f"p{centre:g}" for centre in BIN_CENTRES]
# a fit or a time can be missing, a key cannot
NULLABLE = {"wall_time_s", "gamma_D", "gamma_D_per_pct", "flags", *OPTIONAL}
# args.json keys that do not change what a run computes (bookkeeping, speed, resumption, the tracker), and the
# keys of the setting itself: every other key must agree between runs that are compared
NOT_RESULTS = BOOKKEEPING | {"exp_name", "seed", "torch_deterministic", "capture_video", "save_model",
                             "kl_save_snapshots", *SETTING}
SAME_RESULTS = {("env_backend", "mujoco-batch"): "gymnasium"}  # the same transitions bit for bit (tests check it)
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TIMES_BEGIN, TIMES_END = "<!-- wall-times:begin -->", "<!-- wall-times:end -->"
PAIRS_BEGIN, PAIRS_END = "<!-- pair-seeds:begin -->", "<!-- pair-seeds:end -->"


# ---- load: run folders -> compact data frames ----

def flags_of(args):
    """The flags that change results, as 'key=value;...' (the setting and the seed left out)."""
    kept = {k: SAME_RESULTS.get((k, v), v) for k, v in args.items() if k not in NOT_RESULTS}
    return ";".join(f"{k}={v}" for k, v in sorted(kept.items()))


def find_runs(runs_dir, sweep):
    """Complete runs (their folder holds summary.json) of one sweep; partial ones are skipped with a warning."""
    rows = []
    for args_path in sorted(glob.glob(os.path.join(runs_dir, "*", "args.json"))):
        run_dir = os.path.dirname(args_path)
        if not os.path.exists(os.path.join(run_dir, "summary.json")):
            warn(f"skipping {run_dir}: no summary.json (the run failed or is still going)")
            continue
        args = read_json(args_path, required=True)
        summary = read_json(os.path.join(run_dir, "summary.json"), required=True)
        missing = [k for k in (*SETTING, "seed", "num_iterations") if k not in args]
        if missing:
            fail(f"{args_path} lacks {', '.join(missing)}: not a run folder of ppo_continuous_kl.py")
        rows.append(dict(sweep=sweep, run=os.path.basename(run_dir), path=run_dir, **{k: args[k] for k in SETTING},
                         seed=args["seed"], num_iterations=args["num_iterations"],
                         wall_time_s=summary.get("wall_time_s", np.nan), kl_every=args.get("kl_every", 1),
                         norm_stats=args.get("norm_stats", ""), eval_every=args.get("eval_every", 0),
                         flags=flags_of(args)))
    return pd.DataFrame(rows)


def check_comparable(runs):
    """Refuse to mix runs whose results-changing flags (kl_every, total_timesteps, ...) differ: the findings
    compare all runs of an env, and Figures 2-3 overlay them. One line, naming two such runs."""
    for run, g in runs.groupby("run"):
        if len(g[[*SETTING, "seed", "flags"]].drop_duplicates()) > 1:
            fail(f"two runs named {run} (sweeps {', '.join(g.sweep)}) differ in setting or flags: rename one")
    for env, g in runs.groupby("env_id"):
        first = dict(f.split("=", 1) for f in g["flags"].iloc[0].split(";") if f)
        for r in g.itertuples():
            other = dict(f.split("=", 1) for f in r.flags.split(";") if f)
            diff = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
            if diff:
                fail(f"{env} runs {g.run.iloc[0]} and {r.run} differ in "
                     + ", ".join(f"{k} ({first.get(k, 'unset')} vs {other.get(k, 'unset')})" for k in diff)
                     + ": their profiles and returns are not comparable; plot them from separate folders")


def load_events(run):
    """Training returns smoothed over the last num_envs episodes, at RETURN_POINTS env-step points; and the
    evaluation returns (mean of each evaluation's episodes) at the steps they were made."""
    try:
        events = EventAccumulator(run.path, size_guidance={SCALARS: 0})
        events.Reload()
        tags = events.Tags()["scalars"]
        train = events.Scalars("charts/episodic_return") if "charts/episodic_return" in tags else []
        evals = events.Scalars("eval/episodic_return") if "eval/episodic_return" in tags else []
    except Exception as e:  # tensorboard raises its own types for damaged event files
        fail(f"{run.path}: unreadable TensorBoard events ({type(e).__name__}: {e})")
    returns = pd.DataFrame(columns=FRAMES["returns"])
    if train:
        steps = np.array([s.step for s in train])
        smoothed = pd.Series([s.value for s in train]).rolling(run.num_envs, min_periods=1).mean().to_numpy()
        grid = np.linspace(steps.min(), steps.max(), RETURN_POINTS)
        returns = pd.DataFrame(dict(run=run.run, step=grid, episodic_return=np.interp(grid, steps, smoothed)))
    evals = pd.DataFrame(dict(run=run.run, step=[s.step for s in evals], eval_return=[s.value for s in evals]))
    return returns, evals.groupby(["run", "step"], as_index=False).eval_return.mean()


def pct_bins(pct, values):
    """Means of `values` over 1% bins of `pct` (0..100); returns (bin centres, means) of the non-empty bins."""
    bins = np.minimum((pct / 100 * PCT_BINS).astype(int), PCT_BINS - 1)
    sums, counts = np.bincount(bins, values, PCT_BINS), np.bincount(bins, minlength=PCT_BINS)
    keep = counts > 0
    return BIN_CENTRES[keep], sums[keep] / counts[keep]


def read_npz(path, fields):
    try:
        with np.load(path) as f:
            got = {k: f[k] for k in fields if k in f.files or k != "gamma_D_per_pct"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        fail(f"{path} is not a readable KL file ({type(e).__name__}: {e}); delete it or rerun its run")
    if "gamma_D_per_pct" in fields and "gamma_D_per_pct" not in got:  # files from before the field: per update
        got["gamma_D_per_pct"] = got["gamma_D"] ** (got["num_updates"] / 100)
    return got


def load_kl(run, phases):
    """Per-iteration KL statistics, and the binned profiles of the iterations nearest each phase fraction."""
    files = sorted(glob.glob(os.path.join(run.path, "kl", "iter_*.npz")))
    if not files:
        return (pd.DataFrame(columns=FRAMES["kl_iterations"]), pd.DataFrame(columns=FRAMES["kl_profiles"]),
                pd.DataFrame(columns=FRAMES["update_profiles"]))
    iterations = []
    for path in files:
        f = read_npz(path, ("iteration", "global_step", "seq_kl", "ref_kl", "ref_kl_decrease_frac", "gamma_D",
                            "num_updates", "gamma_D_per_pct", *ANATOMY))
        iterations.append(dict(run=run.run, iteration=int(f["iteration"]), global_step=int(f["global_step"]),
                               seq_kl_mean=float(f["seq_kl"].mean()), ref_kl_start=float(f["ref_kl"][0]),
                               ref_kl_decrease_frac=float(f["ref_kl_decrease_frac"]), gamma_D=float(f["gamma_D"]),
                               gamma_D_per_pct=float(f["gamma_D_per_pct"]),
                               **{f"{name}_mean": float(f[name].mean()) if name in f else np.nan for name in ANATOMY}))
    available, profiles, anatomy = np.array([it["iteration"] for it in iterations]), [], []
    for phase, frac in zip(PHASES, phases):
        index = int(np.abs(available - (1 + frac * (run.num_iterations - 1))).argmin())
        f = read_npz(files[index], ("update", "num_updates", "seq_kl", "ref_kl", *ANATOMY))
        pct = 100 * f["update"] / f["num_updates"]
        for curve, x, y in (("seq_kl", pct[1:], f["seq_kl"]), ("ref_kl", pct, f["ref_kl"])):
            centres, means = pct_bins(x, y)
            profiles.append(pd.DataFrame(dict(run=run.run, phase=phase, iteration=available[index], curve=curve,
                                              pct=centres, kl=means)))
        for name in ANATOMY:
            if name in f:  # update u = 1..U, after which the policy is snapshot u: the x of seq_kl's entry u - 1
                centres, means = pct_bins(100 * np.arange(1, len(f[name]) + 1) / f["num_updates"], f[name])
                anatomy.append(pd.DataFrame(dict(run=run.run, phase=phase, iteration=available[index],
                                                 quantity=name, pct=centres, value=means)))
    anatomy = pd.concat(anatomy) if anatomy else pd.DataFrame(columns=FRAMES["update_profiles"])
    return pd.DataFrame(iterations), pd.concat(profiles), anatomy


def load_all(sweep_dirs, phases):
    runs = [find_runs(d, sweep) for sweep, d in sweep_dirs.items() if d and os.path.isdir(d)]
    for sweep, d in sweep_dirs.items():
        if d and not os.path.isdir(d):
            warn(f"no {sweep} runs: {d} is not a folder")
    runs = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame()
    if runs.empty:
        fail(f"no complete runs under {', '.join(d for d in sweep_dirs.values() if d)} "
             "(a run is complete when its folder holds summary.json)")
    check_comparable(runs)  # before the event files and KL files are read
    distinct = runs.drop_duplicates("run")  # a run in both sweeps is read once
    events = [load_events(run) for run in distinct.itertuples()]
    kl = [load_kl(run, phases) for run in distinct.itertuples()]
    frames = dict(runs=runs.drop(columns="path"), returns=[e[0] for e in events], evals=[e[1] for e in events],
                  kl_iterations=[k[0] for k in kl], kl_profiles=[k[1] for k in kl], update_profiles=[k[2] for k in kl])
    return {n: f if n == "runs" else concat_frames(f)[FRAMES[n]] for n, f in frames.items()}


def concat_frames(frames):
    """One frame of several, the empty ones left out: an empty frame has object columns, which would make the
    merged columns objects too (and numpy refuses them)."""
    full = [f for f in frames if len(f)]
    return pd.concat(full, ignore_index=True) if full else frames[0].iloc[:0]


def profile_keys(name):
    """The columns naming one profile of a profile frame: all but `pct` and the value."""
    return FRAMES[name][:-2]


def to_wide(frame, name):
    """A long profile frame as the rows of its wide file, in the order of the profiles' first rows."""
    keys = profile_keys(name)
    if frame.empty:
        return pd.DataFrame(columns=keys + BIN_COLUMNS)
    profile, pct = frame.groupby(keys, sort=False).ngroup().to_numpy(), frame.pct.to_numpy(float)
    bins = np.clip(np.rint(pct * PCT_BINS / 100 - 0.5).astype(int), 0, PCT_BINS - 1)
    # a pct off the bin centres, or a bin twice, would be lost in the grid
    if (BIN_CENTRES[bins] != pct).any() or pd.Series(profile * PCT_BINS + bins).duplicated().any():
        fail(f"{name}.csv not saved: a profile's rows must be one per 1% bin, at pct {BIN_CENTRES[0]:g} ... "
             f"{BIN_CENTRES[-1]:g}")
    grid = np.full((profile.max() + 1, PCT_BINS), np.nan)
    grid[profile, bins] = frame[PROFILES[name]].to_numpy(float)
    first = frame[keys][~pd.Series(profile).duplicated().to_numpy()].reset_index(drop=True)
    return pd.concat([first, pd.DataFrame(grid, columns=BIN_COLUMNS)], axis=1)


def to_long(wide, name):
    """A wide profile file's rows as the long frame of FRAMES: each profile's bins that hold a value, in pct
    order, the profiles in the file's order (that of the long frame they were saved from)."""
    if wide.empty:
        return pd.DataFrame(columns=FRAMES[name])
    values = wide[BIN_COLUMNS].to_numpy(float)
    held = ~np.isnan(values)
    rows = wide[profile_keys(name)].iloc[np.repeat(np.arange(len(wide)), held.sum(axis=1))]
    return rows.assign(pct=np.broadcast_to(BIN_CENTRES, values.shape)[held],
                       **{PROFILES[name]: values[held]}).reset_index(drop=True)


def save_data(data, folder):
    os.makedirs(folder, exist_ok=True)
    for name, frame in data.items():
        frame = to_wide(frame, name) if name in PROFILES else frame
        frame.to_csv(os.path.join(folder, f"{name}.csv"), index=False, float_format="%.6g")


def read_csv(path, name):
    """One summary CSV as the frame FRAMES[name] describes, refused in one line when truncated, damaged or lacking
    a column. A profile file is read wide or long, as its header says."""
    with open(path, "rb") as f:
        content = f.read()
    if not content.endswith(b"\n"):
        fail(f"{path} is truncated (its last line is incomplete); save the summary again with --save-data")
    try:
        frame = pd.read_csv(io.BytesIO(content))
    except (ValueError, UnicodeDecodeError) as e:  # pandas' parser and empty-data errors are ValueErrors
        fail(f"{path} is not a readable summary CSV ({type(e).__name__}: {e})")
    columns, described = FRAMES[name], ", ".join(FRAMES[name])
    wide = name in PROFILES and "pct" not in frame.columns
    if wide:
        columns = profile_keys(name) + BIN_COLUMNS
        described = f"{', '.join(profile_keys(name))}, {BIN_COLUMNS[0]} ... {BIN_COLUMNS[-1]}"
        # pandas fills a line cut short with empty cells, which a wide row may rightly have: its field count tells
        widths = [len(row) for row in csv.reader(io.StringIO(content.decode()))]
        short = next((i for i, width in enumerate(widths, 1) if width < widths[0]), None)
        if short:
            fail(f"{path} has {widths[short - 1]} of its {widths[0]} fields on line {short} (truncated or damaged); "
                 "save the summary again with --save-data")
    frame = frame.assign(**{c: np.nan for c in columns if c in OPTIONAL and c not in frame.columns})
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        fail(f"{path} lacks the columns {', '.join(missing[:6])}{' ...' * (len(missing) > 6)}; a summary written by "
             f"plot_kl.py --save-data has {described}")
    holes = frame[[c for c in columns if c not in NULLABLE and c not in BIN_COLUMNS]].isna().any(axis=1)
    if holes.any():
        fail(f"{path} has empty cells on line {int(np.flatnonzero(holes)[0]) + 2} (truncated or damaged); "
             "save the summary again with --save-data")
    if wide:
        return to_long(frame, name)
    return frame.assign(flags=frame["flags"].fillna("")) if "flags" in frame else frame


def read_data(folders):
    """Saved summaries, merged: a run saved in several of them is taken from the first that holds it."""
    for folder in folders:
        missing = [n for n in FRAMES
                   if n not in OPTIONAL_FRAMES and not os.path.isfile(os.path.join(folder, f"{n}.csv"))]
        if missing:
            fail(f"--data {folder} lacks {', '.join(n + '.csv' for n in missing)} (a summary holds "
                 f"{', '.join(n + '.csv' for n in FRAMES if n not in OPTIONAL_FRAMES)})")
    merged, owner = {n: [] for n in FRAMES}, {}
    for i, folder in enumerate(folders):
        data = {n: read_csv(path, n) if os.path.isfile(path := os.path.join(folder, f"{n}.csv"))
                else pd.DataFrame(columns=cols) for n, cols in FRAMES.items()}
        for n in list(FRAMES)[1:]:
            extra = sorted(set(data[n].run) - set(data["runs"].run))
            if extra:
                fail(f"{os.path.join(folder, n + '.csv')} holds runs that runs.csv lacks ({', '.join(extra[:3])}): "
                     "runs.csv is truncated or from another summary")
        seen = {(r.sweep, r.run) for r in pd.concat(merged["runs"]).itertuples()} if merged["runs"] else set()
        merged["runs"].append(data["runs"][[(r.sweep, r.run) not in seen for r in data["runs"].itertuples()]])
        for run in data["runs"].run:
            owner.setdefault(run, i)
        mine = {run for run, j in owner.items() if j == i}
        for n in list(FRAMES)[1:]:  # older summaries repeated a shared run's rows once per sweep
            merged[n].append(data[n][data[n].run.isin(mine)].drop_duplicates())
    data = {n: concat_frames(frames) for n, frames in merged.items()}
    check_comparable(data["runs"])
    return data


def draw_anatomy(frame, profiles, anatomy, opts):
    """One anatomy figure per env with both settings of --fig2-sizes recorded (runs made before the anatomy have
    none): fig4_update_anatomy_<env>."""
    with_anatomy = frame[frame.run.isin(anatomy.run) & (frame.sweep == "minibatch")]
    palette = dict(zip(opts.sizes, SETTING_COLOURS))
    for env, runs in with_anatomy.groupby("env_id"):
        chosen = runs[runs.minibatch_size.isin(opts.sizes)]
        if chosen.minibatch_size.nunique() < 2:
            continue
        chosen = chosen.assign(colour=chosen.minibatch_size.map(palette),
                               label=[f"minibatch {r.minibatch_size}" for r in chosen.itertuples()])
        chosen = chosen.sort_values("minibatch_size")
        save(fig_update_anatomy(env, chosen, profiles, anatomy, opts.look), opts.out, f"fig4_update_anatomy_{env}",
             opts.format_list)


def choose(frame, selections, flag):
    """The runs of the two settings a KL figure overlays, each in a colour of its own (`colour`, and `selection`,
    its plain name); a selection absent from an env is warned about and left out of it."""
    parts = []
    for env, g in frame.groupby("env_id"):
        found = [g[select(g)].assign(colour=colour, selection=name)
                 for colour, (name, select) in zip(SETTING_COLOURS, selections.items())]
        absent = [name for name, f in zip(selections, found) if f.empty]
        if absent:
            have = ", ".join(sorted({k for k in g.key}))
            warn(f"{flag}: {env} has no run of {', '.join(absent)} (it has {have}); "
                 + ("its panels show the other setting alone" if len(absent) < len(found) else "it is left out"))
        parts += [f for f in found if not f.empty]
    return pd.concat(parts) if parts else frame.iloc[:0]


# ---- main ----

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def parse_options():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--minibatch-runs", default="runs/minibatch", help="runs folder of sweep_minibatch.sh")
    parser.add_argument("--env-rollout-runs", default="runs/env_rollout", help="runs folder of sweep_env_rollout.sh")
    parser.add_argument("--data", nargs="+", metavar="DIR",
                        help="draw from saved summaries (CSV files) instead of run folders; several are merged")
    parser.add_argument("--save-data", help="save the summary read from the runs (or merged from --data) here "
                                            "(when reading runs and not given: OUT/data)")
    parser.add_argument("--out", default="figures", help="folder for the figures and claims.md")
    parser.add_argument("--phases", default="0.1,0.5,0.9",
                        help="training phases of Figures 2-3, as fractions of the run's iterations")
    parser.add_argument("--fig2-sizes", default="50,1000", help="the two minibatch sizes of Figure 2")
    parser.add_argument("--fig3-shapes", default="1000x50,100x500", help="the two N_env x N_rollout of Figure 3")
    parser.add_argument("--formats", default="png,pdf", help="figure file formats, comma-separated")
    parser.add_argument("--envs", help="draw and read only these envs, comma-separated (default: every env in the "
                                       "runs); one env a call gives one figure per env, each fitting a page")
    parser.add_argument("--no-caption", action="store_true",
                        help="leave the explanatory text out of the figures (for a paper that captions them itself)")
    parser.add_argument("--band", default="spread", help="what the band around a mean over seeds shows: spread "
                        "(+-1 std for returns, the seeds' min to max for KL and the update anatomy) or ci95 (the 95%% "
                        "interval of the mean, Student's t, the verdicts' level)")
    opts = parser.parse_args()
    if opts.band not in BANDS:
        fail(f"--band {opts.band}: allowed: {', '.join(BANDS)}")
    opts.look = Look(captions=not opts.no_caption, band=opts.band)
    try:
        opts.phase_list = [float(p) for p in opts.phases.split(",")]
        opts.sizes = [int(s) for s in opts.fig2_sizes.split(",")]
        opts.shapes = [tuple(int(v) for v in s.split("x")) for s in opts.fig3_shapes.split(",")]
        assert all(len(s) == 2 for s in opts.shapes)
    except (ValueError, AssertionError):
        fail("--phases takes 3 fractions, --fig2-sizes 2 integers, --fig3-shapes 2 NxM shapes, comma-separated")
    if len(opts.phase_list) != 3 or not all(0 <= p <= 1 for p in opts.phase_list):
        fail(f"--phases takes 3 comma-separated fractions in [0, 1], got {opts.phases}")
    if len(opts.sizes) != 2 or len(opts.shapes) != 2:
        fail("--fig2-sizes and --fig3-shapes each take two settings, comma-separated")
    supported = supported_formats()
    opts.format_list = [f.strip().lower() for f in opts.formats.split(",")]
    unknown = [f for f in opts.format_list if f not in supported]
    if unknown or not opts.format_list:
        fail(f"--formats {opts.formats}: unknown {', '.join(unknown) or 'empty'}; "
             f"allowed: {', '.join(sorted(supported))}")
    for flag, path in (("--out", opts.out), ("--save-data", opts.save_data)):
        if path and os.path.exists(path) and not os.path.isdir(path):
            fail(f"{flag} {path} is a file; it takes a folder (made when missing)")
    return opts


def wall_times(runs):
    """Minutes per run of each setting (min / median / max of the runs' wall_time_s, each run once) and each env's
    total: what the study cost, generated so that it follows the data as chunks land."""
    timed = distinct_runs(runs).dropna(subset=["wall_time_s"])
    if timed.empty:
        return "No run has a wall time."
    timed = timed.assign(minutes=timed.wall_time_s / 60).sort_values(
        ["env_id", "num_envs", "minibatch_size"], ascending=[True, False, False], kind="stable")
    rows = [[env, f"{n} x {m}, minibatch {b}", len(g), " / ".join(f"{v:.1f}" for v in g.minutes.quantile([0, .5, 1]))]
            for (env, n, m, b), g in timed.groupby(["env_id", "num_envs", "num_steps", "minibatch_size"], sort=False)]
    totals = [f"{env} {g.minutes.sum() / 60:.1f} h in {len(g)} runs" for env, g in timed.groupby("env_id")]
    untimed = len(distinct_runs(runs)) - len(timed)
    return "\n".join([markdown_table(["env", "setting", "runs", "minutes per run: min / median / max"], rows), "",
                      f"Sum of the runs' wall times: {'; '.join(totals)}."
                      + (f" Runs without a wall time: {untimed}." if untimed else "")])


def shared_seeds(runs):
    """The seeds that every setting of every env has: what readings across all settings use, and the baseline the
    added seeds of the pairs are read against."""
    return seeds_every_setting_has(distinct_runs(runs), SETTING)


def verdicts_at_seeds(data, seeds, opts):
    """Every reading of the findings, as a study of these seeds alone reads it."""
    data = {n: f[f.run.isin(data["runs"].run[data["runs"].seed.isin(seeds)])] for n, f in data.items()}
    runs = data["runs"].assign(key=[label(r) for r in data["runs"].itertuples()])
    return check_findings(runs, data["returns"], data["evals"], data["kl_iterations"], data["kl_profiles"],
                          opts.sizes, opts.shapes)


def pair_seeds(runs, sizes, shapes):
    """Where the seeds added to the pairs the paper draws stand, per env: each pair setting's seeds, those that any
    pair setting has and it lacks (still to run), and the minutes of each added run (beyond the seeds every setting
    of its env has) in seed order. Generated, so that it follows the data as chunks land."""
    in_pair = (((runs.sweep == "minibatch") & runs.minibatch_size.isin(sizes))
               | ((runs.sweep == "env_rollout") & pd.Series(list(zip(runs.num_envs, runs.num_steps)),
                                                            index=runs.index).isin(shapes)))
    pair_runs = distinct_runs(runs[in_pair])  # a setting of both pairs (one shape in both) is one cell
    if pair_runs.empty:
        return "No run of the pair settings (--fig2-sizes, --fig3-shapes)."
    target = set(pair_runs.seed)
    rows, done, missing, added = [], 0, 0, []
    for env, env_runs in pair_runs.groupby("env_id"):
        everywhere = shared_seeds(runs[runs.env_id == env])
        env_runs = env_runs.sort_values(["num_envs", "minibatch_size"], ascending=False, kind="stable")
        for (n, m, b), cell in env_runs.groupby(["num_envs", "num_steps", "minibatch_size"], sort=False):
            lacking = target - set(cell.seed)
            extra = cell[~cell.seed.isin(everywhere)].sort_values("seed").wall_time_s
            added.append(extra)
            done, missing = done + (not lacking), missing + len(lacking)
            minutes = ", ".join("?" if pd.isna(t) else f"{t / 60:.1f}" for t in extra) or "none"
            rows.append([env, f"{n} x {m}, minibatch {b}", seed_ranges(cell.seed), seed_ranges(lacking), minutes])
    added = pd.concat(added)
    return "\n".join([
        markdown_table(["env", "pair setting", "seeds", "still to run", "minutes per added run, in seed order"],
                       rows), "",
        f"Pair settings at seeds {seed_ranges(target)}: {done} of {len(rows)}; runs still to run: {missing}. "
        f"The {len(added)} added runs' wall times sum to {added.sum() / 3600:.1f} h (runs side by side took less "
        "elapsed time)" + (f"; {added.isna().sum()} have none." if added.isna().any() else ".")])


def write_readme_blocks(path, blocks):
    """Replace the generated blocks of the results README ({(begin, end): text}), so that its numbers are the
    data's: those whose markers it has; a README with none of them is warned about."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        text = f.read()
    found = [(begin, end) for begin, end in blocks if begin in text and end in text[text.find(begin):]]
    if not found:
        warn(f"{path} has no {BEGIN} ... {END} markers: its results are not updated")
        return
    for begin, end in found:
        start, stop = text.index(begin) + len(begin), text.index(end, text.index(begin))
        text = f"{text[:start]}\n{blocks[begin, end]}\n{text[stop:]}"
    with open(path, "w") as f:
        f.write(text)


def draw_returns(runs, frame, data, opts):
    """Figure 1 from the training returns, and its companion from the evaluation returns when there are any."""
    compared = {(r.sweep, r.env_id): (r.final_step, r.return_kind) for r in frame.itertuples()}
    for name, kind, curves in (
            ("fig1_returns", "training", data["returns"].rename(columns={"episodic_return": "value"})),
            ("fig1b_eval_returns", "evaluation", data["evals"].rename(columns={"eval_return": "value"}))):
        at = {key: step for key, (step, k) in compared.items() if k == kind}
        fig = fig_returns(runs, curves, f"Episodic return ({kind})", f"{kind} episodic return", at, opts.look,
                          marker="o" if kind == "evaluation" else None)
        if fig is None:
            why = " (trained without --eval-every)" if kind == "evaluation" else ""
            warn(f"no {kind} returns in these runs{why}: {name} is left out")
        else:
            save(fig, opts.out, name, opts.format_list)


def draw_kl(frame, profiles, opts):
    """Figures 2 and 3: the two settings named by --fig2-sizes and --fig3-shapes, those present in the data."""
    if profiles.empty:
        warn("no KL files in these runs (--no-kl?): Figures 2 and 3 are left out")
        return
    with_kl = frame[frame.run.isin(profiles.run)]
    for name, sweep, flag, selections in (
            ("fig2_kl_minibatch", "minibatch", "--fig2-sizes",
             {f"minibatch {s}": (lambda d, s=s: d.minibatch_size == s) for s in opts.sizes}),
            ("fig3_kl_env_rollout", "env_rollout", "--fig3-shapes",
             {f"{n} envs x {m} steps": (lambda d, n=n, m=m: (d.num_envs == n) & (d.num_steps == m))
              for n, m in opts.shapes})):
        sweep_runs = with_kl[with_kl.sweep == sweep]
        if sweep_runs.empty:
            warn(f"no {sweep} runs with KL files: {name} is left out")
            continue
        chosen = choose(sweep_runs, selections, flag)
        if chosen.empty:
            warn(f"{flag}: no run of {' or '.join(selections)}: {name} is left out")
            continue
        drawn = [name for name in selections if name in set(chosen.selection)]  # the title names only these
        title = f"KL profiles in three training phases: {' vs '.join(drawn)}"
        save(fig_kl_profiles(chosen, profiles, title, opts.look), opts.out, name, opts.format_list)


def main():
    opts = parse_options()
    setup_matplotlib()
    if opts.data:
        data = read_data(opts.data)
        if opts.save_data:
            save_data(data, opts.save_data)
    else:
        data = load_all({"minibatch": opts.minibatch_runs, "env_rollout": opts.env_rollout_runs}, opts.phase_list)
        folder = opts.save_data or os.path.join(opts.out, "data")
        save_data(data, folder)
        data = read_data([folder])  # what follows is then what a redraw from the summary alone gives, digit for digit
    if opts.envs:
        wanted, have = [e.strip() for e in opts.envs.split(",") if e.strip()], sorted(set(data["runs"].env_id))
        unknown = [e for e in wanted if e not in have]
        if unknown or not wanted:
            fail(f"--envs {opts.envs}: {', '.join(unknown) or 'empty'} not in the runs; allowed: {', '.join(have)}")
        keep = set(data["runs"].run[data["runs"].env_id.isin(wanted)])
        data = {n: f[f.run.isin(keep)] for n, f in data.items()}
    runs = data["runs"].assign(key=lambda d: [label(r) for r in d.itertuples()])
    no_episode = sorted(set(runs.run) - set(data["returns"].run))
    if no_episode:
        warn(f"{len(no_episode)} runs finished no episode and have no training return ({', '.join(no_episode)}): "
             "Figure 1 and the return findings leave them out")
    os.makedirs(opts.out, exist_ok=True)
    frame = per_run(runs, data["returns"], data["evals"], data["kl_iterations"])
    draw_returns(runs, frame, data, opts)
    draw_kl(frame, data["kl_profiles"], opts)
    draw_anatomy(frame, data["kl_profiles"], data["update_profiles"], opts)
    summary_runs = pd.concat([with_returns(g, data["returns"], data["evals"]) for _, g in run_table(
        runs, data["returns"], data["evals"], data["kl_iterations"], data["kl_profiles"]).groupby("env_id")])
    if summary_runs.seq_kl_whole.notna().any():
        save(fig_kl_summaries(summary_runs, opts.look), opts.out, "fig5_kl_summaries", opts.format_list)
    table = settings_table(runs, data["returns"], data["evals"], data["kl_iterations"], data["kl_profiles"])
    verdicts, shared = verdicts_at_seeds(data, set(runs.seed), opts), shared_seeds(runs)
    growth = (seed_growth_markdown(verdicts_at_seeds(data, shared, opts), verdicts, shared)
              if set(runs.seed) - shared else "")
    os.makedirs(os.path.join(opts.out, "data"), exist_ok=True)
    # every digit, so that a number read back from it prints as claims.md prints it (6 digits can round a 5 away)
    verdicts.to_csv(os.path.join(opts.out, "data", "verdicts.csv"), index=False)
    save(fig_verdicts(verdicts, opts.look), opts.out, "fig0_verdicts", opts.format_list)
    published = beside_published(runs, data["returns"], data["evals"])
    anatomy = anatomy_markdown(anatomy_rows(runs, data["kl_iterations"], opts.sizes), opts.sizes)
    text = claims_markdown(runs, table, verdicts, published, anatomy, growth)
    with open(os.path.join(opts.out, "claims.md"), "w") as f:
        f.write(text)
    write_readme_blocks(os.path.join(opts.out, "README.md"), {(BEGIN, END): report(runs, table, verdicts, published,
                                                                                   anatomy, growth),
                                                              (TIMES_BEGIN, TIMES_END): wall_times(runs),
                                                              (PAIRS_BEGIN, PAIRS_END): pair_seeds(runs, opts.sizes,
                                                                                                   opts.shapes)})
    print("\n".join(summary_lines(verdicts, sorted(runs.env_id.unique()))))
    print(f"figures, claims.md (every reading) and data/verdicts.csv in {opts.out}")


if __name__ == "__main__":
    main()
