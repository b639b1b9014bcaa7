"""Figures 1-3 of the paper, and a table that checks its findings, from the runs of the two sweeps.

    python plot_kl.py --minibatch-runs runs/minibatch --env-rollout-runs runs/env_rollout --out figures
    python plot_kl.py --data docs/results/data --out docs/results      # from a saved summary alone

Reading the runs writes a compact summary (CSV, --save-data) from which the figures and the table can be
redrawn without the runs. Figure 1: episodic return against env steps, mean and std over seeds. Figures 2 and 3:
sequential and reference KL against the % of the iteration's minibatch updates done, in three training phases,
two settings overlaid (solid, dashed). claims.md: the paper's findings checked against the data.
"""
import argparse
import collections
import glob
import json
import os
import sys
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator  # noqa: E402

PHASES = ("early", "middle", "late")
PCT_BINS = 100  # KL profiles are kept as means over 1% bins of the iteration's updates
RETURN_POINTS = 100  # return curves are kept at this many env-step points per run
SETTING = ["sweep", "env_id", "num_envs", "num_steps", "num_minibatches", "minibatch_size"]


def fail(message):
    sys.exit(f"error: {message}")


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


def label(row):
    """The paper's legend form: (N_env x N_rollout : N_minibatch x minibatch_size)."""
    return f"({row.num_envs} x {row.num_steps} : {row.num_minibatches} x {row.minibatch_size})"


# ---- load: run folders -> compact data frames ----

def find_runs(runs_dir, sweep):
    """Complete runs (their folder holds summary.json) of one sweep; partial ones are skipped with a warning."""
    rows = []
    for args_path in sorted(glob.glob(os.path.join(runs_dir, "*", "args.json"))):
        run_dir = os.path.dirname(args_path)
        if not os.path.exists(os.path.join(run_dir, "summary.json")):
            warn(f"skipping {run_dir}: no summary.json (the run failed or is still going)")
            continue
        with open(args_path) as f:
            args = json.load(f)
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
        rows.append(dict(sweep=sweep, run=os.path.basename(run_dir), path=run_dir, env_id=args["env_id"],
                         num_envs=args["num_envs"], num_steps=args["num_steps"], seed=args["seed"],
                         num_minibatches=args["num_minibatches"], minibatch_size=args["minibatch_size"],
                         num_iterations=args["num_iterations"], wall_time_s=summary["wall_time_s"]))
    return pd.DataFrame(rows)


def load_returns(run):
    """Episodic returns smoothed over the last num_envs episodes, at RETURN_POINTS env-step points."""
    events = EventAccumulator(run.path, size_guidance={SCALARS: 0})
    events.Reload()
    if "charts/episodic_return" not in events.Tags()["scalars"]:
        return pd.DataFrame(columns=["run", "step", "episodic_return"])
    scalars = events.Scalars("charts/episodic_return")
    steps = np.array([s.step for s in scalars])
    smoothed = pd.Series([s.value for s in scalars]).rolling(run.num_envs, min_periods=1).mean().to_numpy()
    grid = np.linspace(steps.min(), steps.max(), RETURN_POINTS)
    return pd.DataFrame(dict(run=run.run, step=grid, episodic_return=np.interp(grid, steps, smoothed)))


def pct_bins(pct, values):
    """Means of `values` over 1% bins of `pct` (0..100); returns (bin centres, means) of the non-empty bins."""
    bins = np.minimum((pct / 100 * PCT_BINS).astype(int), PCT_BINS - 1)
    sums, counts = np.bincount(bins, values, PCT_BINS), np.bincount(bins, minlength=PCT_BINS)
    keep = counts > 0
    return (np.arange(PCT_BINS)[keep] + 0.5) * 100 / PCT_BINS, sums[keep] / counts[keep]


def load_kl(run, phases):
    """Per-iteration KL statistics, and the binned profiles of the iterations nearest each phase fraction."""
    files = sorted(glob.glob(os.path.join(run.path, "kl", "iter_*.npz")))
    if not files:
        return pd.DataFrame(), pd.DataFrame()
    iterations, profiles = [], []
    for path in files:
        with np.load(path) as f:
            iterations.append(dict(run=run.run, iteration=int(f["iteration"]), global_step=int(f["global_step"]),
                                   seq_kl_mean=float(f["seq_kl"].mean()), ref_kl_start=float(f["ref_kl"][0]),
                                   ref_kl_decrease_frac=float(f["ref_kl_decrease_frac"]), gamma_D=float(f["gamma_D"])))
    available = np.array([it["iteration"] for it in iterations])
    for phase, frac in zip(PHASES, phases):
        iteration = available[np.abs(available - (1 + frac * (run.num_iterations - 1))).argmin()]
        with np.load(files[int(np.flatnonzero(available == iteration)[0])]) as f:
            pct = 100 * f["update"] / f["num_updates"]
            for curve, x, y in (("seq_kl", pct[1:], f["seq_kl"]), ("ref_kl", pct, f["ref_kl"])):
                centres, means = pct_bins(x, y)
                profiles.append(pd.DataFrame(dict(run=run.run, phase=phase, iteration=iteration, curve=curve,
                                                  pct=centres, kl=means)))
    return pd.DataFrame(iterations), pd.concat(profiles)


def load_all(sweep_dirs, phases):
    runs = [find_runs(d, sweep) for sweep, d in sweep_dirs.items() if d and os.path.isdir(d)]
    for sweep, d in sweep_dirs.items():
        if d and not os.path.isdir(d):
            warn(f"no {sweep} runs: {d} is not a folder")
    runs = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame()
    if runs.empty:
        fail(f"no complete runs under {', '.join(d for d in sweep_dirs.values() if d)} "
             "(a run is complete when its folder holds summary.json)")
    returns = pd.concat([load_returns(run) for run in runs.itertuples()], ignore_index=True)
    kl = [load_kl(run, phases) for run in runs.itertuples()]
    data = dict(runs=runs.drop(columns="path"), returns=returns,
                kl_iterations=pd.concat([k[0] for k in kl], ignore_index=True),
                kl_profiles=pd.concat([k[1] for k in kl], ignore_index=True))
    return data


def save_data(data, folder):
    os.makedirs(folder, exist_ok=True)
    for name, frame in data.items():
        frame.to_csv(os.path.join(folder, f"{name}.csv"), index=False, float_format="%.6g")


def read_data(folders):
    """Saved summaries, merged: a run saved in several of them is taken from the first that holds it."""
    names = ("runs", "returns", "kl_iterations", "kl_profiles")
    for folder in folders:
        missing = [n for n in names if not os.path.exists(os.path.join(folder, f"{n}.csv"))]
        if missing:
            fail(f"--data {folder} lacks {', '.join(n + '.csv' for n in missing)}")
    merged = {n: [] for n in names}
    seen = set()
    for folder in folders:
        data = {n: pd.read_csv(os.path.join(folder, f"{n}.csv")) for n in names}
        # A run serving both sweeps is listed once per sweep, and its rows repeated as often; a (sweep, run)
        # already taken from an earlier folder is not taken again.
        keys = list(zip(data["runs"].sweep, data["runs"].run))
        new = [key not in seen for key in keys]
        merged["runs"].append(data["runs"][new])
        copies = collections.Counter(run for (_, run), is_new in zip(keys, new) if is_new)
        for n in names[1:]:
            frame = data[n].drop_duplicates()
            merged[n] += [frame[frame.run == run] for run, count in copies.items() for _ in range(count)]
        seen.update(keys)
    return {n: pd.concat(frames, ignore_index=True) if frames else data[n].iloc[:0] for n, frames in merged.items()}


# ---- aggregate ----

def final_returns(runs, returns):
    """Each run's return at its last point (the mean of its last num_envs episodes)."""
    last = returns.sort_values("step").groupby("run").episodic_return.last()
    return runs.assign(final_return=runs.run.map(last))


def settings_table(data):
    """One row per setting: final return mean/std over seeds, mean sequential KL, fraction of decreasing
    reference-KL steps, gamma_D per phase."""
    runs = final_returns(data["runs"], data["returns"])
    kl = data["kl_iterations"].merge(runs[["run", *SETTING]], on="run")
    table = runs.groupby(SETTING).agg(seeds=("seed", "nunique"), return_mean=("final_return", "mean"),
                                      return_std=("final_return", "std")).reset_index()
    if not kl.empty:
        kl_means = kl.groupby(SETTING).agg(seq_kl_mean=("seq_kl_mean", "mean"),
                                           ref_kl_decrease_frac=("ref_kl_decrease_frac", "mean")).reset_index()
        table = table.merge(kl_means, on=SETTING, how="left")
        phases = data["kl_profiles"][["run", "phase", "iteration"]].drop_duplicates()
        gammas = phases.merge(data["kl_iterations"], on=["run", "iteration"]).merge(runs[["run", *SETTING]], on="run")
        gammas = gammas.pivot_table(index=SETTING, columns="phase", values="gamma_D", aggfunc="mean")
        gammas = gammas[[p for p in PHASES if p in gammas.columns]]
        table = table.merge(gammas.add_prefix("gamma_D_").reset_index(), on=SETTING, how="left")
    return table.sort_values(["sweep", "env_id", "minibatch_size", "num_envs"], ascending=[False, True, True, False])


# ---- figures ----

def save(fig, out, name, formats):
    for fmt in formats:
        fig.savefig(os.path.join(out, f"{name}.{fmt}"), bbox_inches="tight", dpi=150)
    plt.close(fig)


def fig_returns(runs, returns):
    """Figure 1: return against env steps; top row the minibatch sweep, bottom row the env x rollout sweep."""
    sweeps = [s for s in ("minibatch", "env_rollout") if s in set(runs.sweep)]
    envs = sorted(runs.env_id.unique())
    fig, axes = plt.subplots(len(sweeps), len(envs), figsize=(4.2 * len(envs), 3.4 * len(sweeps)), squeeze=False)
    curves = returns.merge(runs, on="run")
    for r, sweep in enumerate(sweeps):
        for c, env in enumerate(envs):
            ax = axes[r, c]
            for key, group in curves[(curves.sweep == sweep) & (curves.env_id == env)].groupby(SETTING[2:]):
                # seeds share the step grid only approximately: bring them onto one before averaging
                grid = np.linspace(0, group.step.max(), RETURN_POINTS)
                per_seed = np.array([np.interp(grid, g.step, g.episodic_return, left=np.nan)
                                     for _, g in group.groupby("run")])
                with warnings.catch_warnings():  # a grid point before any seed's first episode stays NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean, std = np.nanmean(per_seed, 0), np.nanstd(per_seed, 0)
                line, = ax.plot(grid, mean, label=label(group.iloc[0]))
                ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            ax.set_title(f"{env} ({'minibatch size' if sweep == 'minibatch' else 'N_env x N_rollout'})")
            ax.set_xlabel("environment steps")
            ax.set_ylabel("episodic return")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_kl_profiles(runs, profiles, settings, title):
    """Figures 2 and 3: sequential (top) and reference (bottom) KL against the % of the iteration's updates,
    one colour per training phase, the two settings solid and dashed; mean over seeds, log scale."""
    envs = sorted(runs.env_id.unique())
    fig, axes = plt.subplots(2, len(envs), figsize=(4.2 * len(envs), 6.4), squeeze=False)
    data = profiles.merge(runs, on="run")
    colours = dict(zip(PHASES, ("tab:blue", "tab:orange", "tab:green")))
    for c, env in enumerate(envs):
        for r, curve in enumerate(("seq_kl", "ref_kl")):
            ax = axes[r, c]
            for style, select in zip(("-", "--"), settings):
                subset = data[(data.env_id == env) & (data.curve == curve) & select(data)]
                for phase in PHASES:
                    group = subset[subset.phase == phase]
                    if group.empty:
                        continue
                    mean = group.groupby("pct").kl.mean()
                    mean = mean[mean > 0]
                    ax.plot(mean.index, mean.values, style, color=colours[phase],
                            label=f"{label(group.iloc[0])} {phase} (iter {int(group.iteration.median())})")
            ax.set_yscale("log")
            ax.set_title(f"{env}: {'sequential' if curve == 'seq_kl' else 'reference'} KL")
            ax.set_xlabel("% of the iteration's updates done")
            ax.set_ylabel("KL(pi_i+1 || pi_i)" if curve == "seq_kl" else "KL(pi_final || pi_i)")
            ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- the paper's findings ----

def rank_corr(x, y):
    x, y = pd.Series(x).rank(), pd.Series(y).rank()
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.nunique() > 1 and y.nunique() > 1 else float("nan")


def verdict(ok):
    return "not testable with these runs" if ok is None else ("holds" if ok else "does not hold")


def findings(table, kl_iterations, fig3_shapes):
    """The paper's five findings, each with the numbers it rests on and whether it holds here."""
    lines = []
    mb = table[table.sweep == "minibatch"]
    per_env = []
    for env, g in mb.groupby("env_id"):
        if g.minibatch_size.nunique() > 1:
            smallest, best = g.loc[g.minibatch_size.idxmin()], g.loc[g.return_mean.idxmax()]
            per_env.append((env, smallest.minibatch_size, smallest.return_mean, best.minibatch_size, best.return_mean,
                            smallest.return_mean < best.return_mean))
    lines.append(("1. Too-small minibatches train worse", None if not per_env else all(p[-1] for p in per_env),
                  "; ".join(f"{e}: smallest size {s} ends at {rs:.0f}, the best size {b} at {rb:.0f}"
                            for e, s, rs, b, rb, _ in per_env)))
    if kl_iterations.empty:
        lines.append(("2. Reference KL falls monotonically within an iteration", None, "no KL files"))
    else:
        frac = kl_iterations.ref_kl_decrease_frac.mean()
        lines.append(("2. Reference KL falls monotonically within an iteration", frac >= 0.99,
                      f"{100 * frac:.2f}% of steps decrease over {len(kl_iterations)} iterations (holds at >= 99%)"))
    corr = {env: rank_corr(g.minibatch_size, g.seq_kl_mean) for env, g in mb.groupby("env_id")} if "seq_kl_mean" in mb else {}
    corr = {e: c for e, c in corr.items() if not np.isnan(c)}
    lines.append(("3. Smaller minibatches give higher sequential KL", None if not corr else all(c < 0 for c in corr.values()),
                  "; ".join(f"{e}: rank corr(size, seq KL) {c:+.2f}" for e, c in corr.items())))
    er = table[table.sweep == "env_rollout"]
    pairs = []
    for env, g in er.groupby("env_id"):
        shapes = {f"{r.num_envs}x{r.num_steps}": r for r in g.itertuples()}
        if all(s in shapes for s in fig3_shapes):
            a, b = (shapes[s] for s in fig3_shapes)
            similar_return = abs(a.return_mean - b.return_mean) <= max(a.return_std, b.return_std, 1e-9)
            kl_ratio = a.seq_kl_mean / b.seq_kl_mean if "seq_kl_mean" in g else float("nan")
            pairs.append((env, a.return_mean, b.return_mean, kl_ratio, similar_return and 0.5 <= kl_ratio <= 2))
    lines.append((f"4. {fig3_shapes[0]} and {fig3_shapes[1]} give similar returns and KL profiles",
                  None if not pairs else all(p[-1] for p in pairs),
                  "; ".join(f"{e}: returns {ra:.0f} vs {rb:.0f}, seq KL ratio {k:.2f} (similar: returns within one "
                            f"seed std, KL ratio in [0.5, 2])" for e, ra, rb, k, _ in pairs)))
    corr = {env: rank_corr(g.return_mean, g.seq_kl_mean) for env, g in table.groupby("env_id")} if "seq_kl_mean" in table else {}
    corr = {e: c for e, c in corr.items() if not np.isnan(c)}
    lines.append(("5. Higher-return settings have higher sequential KL (slower convergence to the fixed point)",
                  None if not corr else all(c > 0 for c in corr.values()),
                  "; ".join(f"{e}: rank corr(final return, seq KL) {c:+.2f}" for e, c in corr.items())))
    return lines


def markdown_table(frame):
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    rows = [list(frame.columns), ["---"] * len(frame.columns), *cells]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def claims_markdown(table, lines):
    shown = table.assign(setting=[label(r) for r in table.itertuples()])
    columns = ["sweep", "env_id", "setting", "seeds", "return_mean", "return_std"]
    columns += [c for c in shown.columns if c.startswith(("seq_kl", "ref_kl", "gamma_D"))]
    text = ["# The paper's findings, checked", "", "## Per setting", "", markdown_table(shown[columns]),
            "", "final return: the mean of each run's last num_envs episodes, then mean and std over seeds. "
            "seq_kl_mean: mean sequential KL over all iterations and seeds. gamma_D: fitted contraction rate per "
            "update (KL(pi_U || pi_i) ~ C gamma_D^i) at the phase's iteration.", "", "## Findings", ""]
    text += [f"- **{name}**: {verdict(ok)}. {detail}" for name, ok, detail in lines]
    return "\n".join(text) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minibatch-runs", default="runs/minibatch", help="runs folder of sweep_minibatch.sh")
    parser.add_argument("--env-rollout-runs", default="runs/env_rollout", help="runs folder of sweep_env_rollout.sh")
    parser.add_argument("--data", nargs="+", metavar="DIR",
                        help="draw from saved summaries (CSV files) instead of run folders; several are merged")
    parser.add_argument("--save-data", help="save the summary read from the runs (or merged from --data) here "
                                            "(default: OUT/data when reading runs)")
    parser.add_argument("--out", default="figures", help="folder for the figures and claims.md")
    parser.add_argument("--phases", default="0.1,0.5,0.9",
                        help="training phases of Figures 2-3, as fractions of the run's iterations")
    parser.add_argument("--fig2-sizes", default="50,1000", help="the two minibatch sizes of Figure 2 (solid, dashed)")
    parser.add_argument("--fig3-shapes", default="1000x50,100x500", help="the two N_env x N_rollout of Figure 3")
    parser.add_argument("--formats", default="png,pdf", help="figure file formats")
    opts = parser.parse_args()
    try:
        phases = [float(p) for p in opts.phases.split(",")]
        sizes = [int(s) for s in opts.fig2_sizes.split(",")]
        shapes = [tuple(int(v) for v in s.split("x")) for s in opts.fig3_shapes.split(",")]
    except ValueError:
        fail("--phases takes 3 fractions, --fig2-sizes 2 integers, --fig3-shapes 2 NxM shapes, comma-separated")
    if len(phases) != 3 or not all(0 <= p <= 1 for p in phases):
        fail(f"--phases takes 3 comma-separated fractions in [0, 1], got {opts.phases}")
    if len(sizes) != 2 or len(shapes) != 2:
        fail("--fig2-sizes and --fig3-shapes each take two settings, comma-separated")

    if opts.data:
        data = read_data(opts.data)
        if opts.save_data:
            save_data(data, opts.save_data)
    else:
        data = load_all({"minibatch": opts.minibatch_runs, "env_rollout": opts.env_rollout_runs}, phases)
        save_data(data, opts.save_data or os.path.join(opts.out, "data"))
    os.makedirs(opts.out, exist_ok=True)
    formats = opts.formats.split(",")
    runs = data["runs"]
    save(fig_returns(runs, data["returns"]), opts.out, "fig1_returns", formats)
    if data["kl_profiles"].empty:
        warn("no KL files in these runs (--no-kl?): Figures 2 and 3 are left out")
    else:
        for name, sweep, settings, title in (
            ("fig2_kl_minibatch", "minibatch", [lambda d, s=s: d.minibatch_size == s for s in sizes],
             f"minibatch size {sizes[0]} (solid) vs {sizes[1]} (dashed)"),
            ("fig3_kl_env_rollout", "env_rollout",
             [lambda d, s=s: (d.num_envs == s[0]) & (d.num_steps == s[1]) for s in shapes],
             f"{opts.fig3_shapes.split(',')[0]} (solid) vs {opts.fig3_shapes.split(',')[1]} (dashed)")):
            sweep_runs = runs[runs.sweep == sweep]
            if sweep_runs.empty:
                warn(f"no {sweep} runs: {name} is left out")
                continue
            save(fig_kl_profiles(sweep_runs, data["kl_profiles"], settings, title), opts.out, name, formats)
    table = settings_table(data)
    text = claims_markdown(table, findings(table, data["kl_iterations"], opts.fig3_shapes.split(",")))
    with open(os.path.join(opts.out, "claims.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"figures and claims.md in {opts.out}")


if __name__ == "__main__":
    main()
