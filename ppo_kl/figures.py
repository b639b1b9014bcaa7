"""The figures of the study, drawn from the compact data frames of `plot_kl.py`: each setting's returns (Figure
1), the KL profiles of two settings in three phases (Figures 2 and 3), the anatomy of each update (Figure 4), the
KL summaries across settings (Figure 5) and the verdicts (Figure 0). Sized for a two-column paper's text width."""
import dataclasses
import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402
from scipy import stats  # noqa: E402

from ppo_kl.findings import LABEL_FORM, PAPER, PHASES, common_seeds  # noqa: E402
from ppo_kl.findings_text import num, seed_ranges, seeds_text  # noqa: E402

BUNDLED_FONTS = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


def setup_matplotlib():
    """matplotlib's own fonts only: a system copy of DejaVu (another version) would draw the figures differently
    on another machine, and its font cache, shared between environments, decides which copy it finds. TrueType
    in PDFs (venues refuse Type 3 fonts), and font sizes that print at their size at WIDTH."""
    manager = font_manager.fontManager
    for path in font_manager.findSystemFonts(fontpaths=[BUNDLED_FONTS]):
        manager.addfont(path)
    manager.ttflist = [f for f in manager.ttflist
                       if os.path.dirname(os.path.abspath(f.fname)) == os.path.abspath(BUNDLED_FONTS)]
    manager._findfont_cached.cache_clear()
    plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42,
                         "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7.5,
                         "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.titlesize": 9, "lines.linewidth": 1.2})


def supported_formats():
    return set(plt.figure().canvas.get_supported_filetypes())


# Okabe and Ito's colour-blind-safe palette
SETTING_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"]
WIDTH = 7.0  # inches: a two-column paper's text width

# ---- figures (they take data frames) ----

# No creation date in the files: a figure redrawn from the same data is the same file, byte for byte
UNDATED = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}


def save(fig, out, name, formats):
    for fmt in formats:
        fig.savefig(os.path.join(out, f"{name}.{fmt}"), dpi=150, metadata=UNDATED.get(fmt, {}))
    plt.close(fig)


BANDS = ("spread", "ci95")


@dataclasses.dataclass(frozen=True)
class Look:
    """How the figures are drawn: with their explanatory text below them, or without it for a paper that
    captions them itself; and what the band around a mean over seeds shows (BANDS: the seeds' spread, or the
    95% interval of the mean, the verdicts' level)."""
    captions: bool = True
    band: str = "spread"


def caption(fig, look, *lines, settings=True):
    """The explanatory text below a figure, and what the setting labels mean when the figure uses them."""
    if look.captions:
        text = "\n".join(textwrap.fill(line, 120) for line in (*lines, *[LABEL_FORM] * settings))
        fig.supxlabel(text, fontsize=7, ha="left", x=0.01)


def mean_and_band(per_seed, look, spread="minmax"):
    """per_seed: one row per seed, one column per point (NaN where a seed has none). The mean over seeds and its
    band: with look.band `ci95` Student's t 95% interval of the mean; else the spread, +-1 std (`std`) or the
    seeds' min to max (`minmax`)."""
    per_seed = np.asarray(per_seed, float)
    counts = np.isfinite(per_seed).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(per_seed, 0) / counts
        std = np.sqrt(np.nansum((per_seed - mean) ** 2, 0) / (counts - 1))
        if look.band == "ci95":
            half = stats.t.ppf(0.975, counts - 1) * std / np.sqrt(counts)
            return mean, mean - half, mean + half
        if spread == "std":
            return mean, mean - std, mean + std
        return mean, np.fmin.reduce(per_seed, 0), np.fmax.reduce(per_seed, 0)


def band_text(look, spread="minmax"):
    if look.band == "ci95":
        return "the 95% interval of the mean over seeds (Student's t)"
    return "+-1 std over seeds" if spread == "std" else "the seeds' min to max"


def by_seed(frame, value):
    """A long frame (run, pct, value) as one row per run, one column per pct: the input of mean_and_band."""
    return frame.pivot_table(index="run", columns="pct", values=value, aggfunc="mean")


def setting_order(runs):
    """Settings as the paper orders them: minibatch size ascending, then N_env descending."""
    keys = runs.drop_duplicates("key").sort_values(["minibatch_size", "num_envs"], ascending=[True, False])
    return list(keys.key)


def row_title(sweep, runs):
    if sweep == "minibatch":
        shapes = ", ".join(sorted({f"{r.num_envs} x {r.num_steps}" for r in runs.itertuples()}))
        return f"Minibatch sweep: minibatch size at N_env x N_rollout = {shapes}"
    sizes = ", ".join(str(s) for s in sorted(runs.minibatch_size.unique()))
    return f"N_env x N_rollout sweep at minibatch size {sizes}"


def fig_returns(runs, curves, title, ylabel, compared_at, look, marker=None):
    """Figure 1 (training returns) or its evaluation companion: value against env steps, one row per sweep, one
    panel per env that has curves, mean over seeds with a +-1 std band. compared_at: (sweep, env) -> the step at
    which the per-setting table compares returns (a dotted line)."""
    data = curves.merge(runs, on="run")
    rows = [(s, sorted(data.env_id[data.sweep == s].unique())) for s in ("minibatch", "env_rollout")]
    rows = [(s, envs) for s, envs in rows if envs]
    if not rows:
        return None
    ncols = max(len(envs) for _, envs in rows)
    # one colour per setting across the figure: the setting the two sweeps share looks the same in both rows
    colours = dict(zip(setting_order(data), SETTING_COLOURS * 3))
    fig = plt.figure(figsize=(WIDTH, 2.5 * len(rows) + 1.1), layout="constrained")
    mixed = dotted = False  # a setting whose seeds differ between envs; a comparison step drawn
    for subfig, (sweep, envs) in zip(fig.subfigures(len(rows), 1, squeeze=False)[:, 0], rows):
        axes = subfig.subplots(1, ncols, squeeze=False)[0]
        for ax in axes[len(envs):]:
            ax.remove()  # no empty panels: an env the sweep did not run leaves its slot blank
        sweep_data = data[data.sweep == sweep]
        seeds = sweep_data.groupby(["key", "env_id"]).run.nunique().groupby("key").agg(
            lambda n: " or ".join(map(str, sorted(set(n)))))  # per env: 2 seeds, or 2 or 3 where envs differ
        mixed = mixed or seeds.str.contains(" or ").any()
        for ax, env in zip(axes, envs):
            for key in setting_order(sweep_data):
                group = sweep_data[(sweep_data.env_id == env) & (sweep_data.key == key)]
                if group.empty:
                    continue
                grid = np.unique(group.step)  # seeds' curves onto one grid; NaN outside a seed's range
                per_seed = np.array([np.interp(grid, g.step, g.value, left=np.nan, right=np.nan)
                                     for _, g in group.groupby("run")])
                mean, low, high = mean_and_band(per_seed, look, spread="std")
                first = group.iloc[0]
                name = (f"minibatch {first.minibatch_size}" if sweep == "minibatch"
                        else f"{first.num_envs} envs x {first.num_steps} steps")
                ax.plot(grid, mean, color=colours[key], label=f"{name} {key}, {seeds[key]} seeds",
                        marker=marker or ("o" if len(grid) == 1 else None), markersize=2.5)
                ax.fill_between(grid, low, high, color=colours[key], alpha=0.2, linewidth=0)
            if np.isfinite(compared_at.get((sweep, env), np.nan)):
                ax.axvline(compared_at[(sweep, env)], color="0.4", linestyle=":", linewidth=1)
            ax.set_title(env)
            ax.set_xlabel("environment steps")
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        handles = {h.get_label(): h for ax in axes[:len(envs)] for h in ax.get_legend_handles_labels()[0]}
        if any(np.isfinite(compared_at.get((sweep, env), np.nan)) for env in envs):  # only for a line drawn
            handles["compared at (claims.md)"] = Line2D([], [], color="0.4", linestyle=":")
            dotted = True
        subfig.suptitle(row_title(sweep, sweep_data))
        subfig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(2, len(handles)),
                      fontsize=7)
    fig.suptitle(title, fontweight="bold")
    caption(fig, look, f"Line: mean over seeds; band: {band_text(look, 'std')}."
                       + (" Dotted: the step at which claims.md compares this panel's settings (the last step all of "
                          "them reach)." if dotted else "")
                       + (" \"n or m seeds\": the count differs between envs (runs.csv lists every run)."
                          if mixed else ""))
    return fig


PHASE_STYLES = dict(zip(PHASES, ("-", "--", ":")))


def fig_kl_profiles(chosen, profiles, title, look):
    """Figures 2 and 3: sequential (top) and reference (bottom) KL against the % of the iteration's updates, the two
    settings by colour, the three training phases by line style (chosen: runs with `colour`, `selection`, `key`,
    `final_return`). Left: each setting's run with the best final return, as the paper drew; right: mean over
    seeds, band min-max."""
    envs = sorted(chosen.env_id.unique())
    fig = plt.figure(figsize=(WIDTH, 3.9 * len(envs) + 0.9), layout="constrained")
    for subfig, env in zip(fig.subfigures(len(envs), 1, squeeze=False)[:, 0], envs):
        axes = subfig.subplots(2, 2, sharex=True)
        here, handles, drawn = chosen[chosen.env_id == env], {}, []
        for colour, setting in here.groupby("colour", sort=False):
            ranked = setting.sort_values(["final_return", "seed"], ascending=[False, True], na_position="last")
            best = ranked.iloc[0]
            note = (f"best: seed {best.seed}, {best.final_return:.0f}" if np.isfinite(best.final_return)
                    else f"no return: seed {best.seed}")
            seeds = setting.run.nunique()
            handles[f"{best.selection}, {seeds} seed{'s' * (seeds != 1)} ({note})"] = Line2D([], [], color=colour)
            drawn.append(best.selection)
            data = profiles[profiles.run.isin(setting.run)]
            for r, curve in enumerate(("seq_kl", "ref_kl")):
                for phase, style in PHASE_STYLES.items():
                    sub = data[(data.curve == curve) & (data.phase == phase)]
                    one = sub[sub.run == best.run]
                    one = one[one.kl > 0]  # log scale: the last reference KL is exactly 0
                    single = dict(marker="o", markersize=3) if len(one) == 1 else {}
                    axes[r, 0].plot(one.pct, one.kl, style, color=colour, **single)
                    per_seed = by_seed(sub[sub.kl > 0], "kl")
                    mean, low, high = mean_and_band(per_seed, look)
                    axes[r, 1].plot(per_seed.columns, mean, style, color=colour, **single)
                    axes[r, 1].fill_between(per_seed.columns, low, high, color=colour, alpha=0.1, linewidth=0)
                    its = sorted(set(sub.iteration))
                    if its:
                        handles.setdefault(f"{phase}: iteration {', '.join(map(str, its))}",
                                           Line2D([], [], color="k", linestyle=style))
        axes[0, 0].set_title("each setting's best run (the paper's view)")
        axes[0, 1].set_title("mean over seeds, band: " + ("95% interval of the mean" if look.band == "ci95"
                                                          else "the seeds' min to max"))
        for ax in axes.flat:
            ax.set_yscale("log")
        for r, name in enumerate((r"sequential KL($\pi_{i+1}\,\|\,\pi_i$)", r"reference KL($\pi_U\,\|\,\pi_i$)")):
            axes[r, 0].set_ylabel(name)
            for c in range(2):
                axes[1, c].set_xlabel("% of the iteration's updates done")
        settings = [k for k in handles if "seed" in k]
        phase_keys = [k for k in handles if k not in settings]
        order = settings + [""] * (len(phase_keys) - len(settings)) + phase_keys  # settings left, phases right
        legend = [handles.get(k, Line2D([], [], linestyle="none")) for k in order]
        subfig.legend(legend, order, loc="outside lower center", ncols=2)
        subfig.suptitle(f"{env}: " + " vs ".join(drawn))
    fig.suptitle(title, fontweight="bold")
    caption(fig, look, "Colours: the two settings; line styles: training phases. Left: for each setting its run "
                       "with the best final return (the paper selected two of its best runs; the legend gives that "
                       f"return, read where claims.md compares returns); right: mean over seeds, band: "
                       f"{band_text(look)}.")
    return fig


ANATOMY_ROWS = [  # what sets the size of an update, beside the sequential KL it produces: (quantity, label, log)
    ("seq_kl", "sequential KL\n" r"($\pi_i\,\|\,\pi_{i-1}$)", True),
    ("actor_step", "actor step\n" r"$\|\theta_i - \theta_{i-1}\|$", True),
    ("grad_norm", "gradient norm\n(dotted: actor)", True),
    ("clip_scale", "clipping factor\n(1: none)", False),
    ("approx_kl", "approx KL\n" r"($\pi_0\,\|\,\pi_{i-1}$)", True),
    ("clipfrac", "clip fraction", False),
]


def fig_update_anatomy(env, chosen, profiles, anatomy, look):
    """Finding 3 explained: for the two settings of Figure 2 in one env, each per-update quantity (rows) against the
    % of the iteration's updates, in the three phases (columns); mean over the seeds that recorded the anatomy,
    band min-max. chosen: the two settings' runs with `key` and `colour`."""
    fig = plt.figure(figsize=(WIDTH, 1.35 * len(ANATOMY_ROWS) + 1.6), layout="constrained")
    panels = fig.subfigures(1, 1)  # its legend sits below the panels, above the figure's caption
    axes = panels.subplots(len(ANATOMY_ROWS), len(PHASES), sharex=True, sharey="row", squeeze=False)
    handles = {}
    for key, setting in chosen.groupby("key", sort=False):
        colour, runs = setting.colour.iloc[0], set(setting.run)
        kl = profiles[profiles.run.isin(runs) & (profiles.curve == "seq_kl")].rename(columns={"kl": "value"})
        parts = anatomy[anatomy.run.isin(runs)]
        seeds = setting.seed[setting.run.isin(parts.run)]
        handles[f"{key} ({setting.label.iloc[0]}), seed{'s' * (seeds.nunique() != 1)} {seed_ranges(seeds)}"] = Line2D(
            [], [], color=colour)
        for r, (quantity, _, _) in enumerate(ANATOMY_ROWS):
            for c, phase in enumerate(PHASES):
                for name, style in ((("grad_norm", "-"), ("actor_grad_norm", ":")) if quantity == "grad_norm"
                                    else ((quantity, "-"),)):
                    source = kl[kl.run.isin(parts.run)] if name == "seq_kl" else parts[parts.quantity == name]
                    sub = source[source.phase == phase]
                    if sub.empty:
                        continue
                    per_seed = by_seed(sub, "value")
                    mean, low, high = mean_and_band(per_seed, look)
                    axes[r, c].plot(per_seed.columns, mean, style, color=colour,
                                    marker="." if len(mean) == 1 else None)
                    if style == "-":
                        axes[r, c].fill_between(per_seed.columns, low, high, color=colour, alpha=0.15, linewidth=0)
    for r, (_, ylabel, log) in enumerate(ANATOMY_ROWS):
        axes[r, 0].set_ylabel(ylabel)
        if log:
            axes[r, 0].set_yscale("log")
    panels.align_ylabels(axes[:, 0])
    for c, phase in enumerate(PHASES):
        its = sorted(set(anatomy[anatomy.run.isin(chosen.run) & (anatomy.phase == phase)].iteration))
        axes[0, c].set_title(f"{phase}: iteration {', '.join(map(str, its))}")
        axes[-1, c].set_xlabel("% of the iteration's updates done")
    panels.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=2)
    fig.suptitle(f"{env}: what sets the size of each minibatch update", fontweight="bold")
    caption(fig, look, "Each update's quantities, binned over 1% of the iteration's updates: line, mean over "
                       f"seeds; band, {band_text(look)}. Gradient norms are before clipping to --max-grad-norm (0.5, "
                       "actor and critic together); the clipping factor scales the whole gradient; Adam then "
                       "normalises each weight's step. approx KL and clip fraction: of the update's own minibatch, "
                       "against the policy that collected it.")
    return fig


def points(ax, x, y, filled, colour, **style):
    """A scatter whose points are filled where `filled`, hollow (edge only) elsewhere."""
    filled = np.asarray(filled, bool)
    ax.scatter(x[filled], y[filled], color=colour, **style)
    ax.scatter(x[~filled], y[~filled], facecolors="none", edgecolors=colour, linewidths=0.6, **style)


def fig_kl_summaries(table, look):
    """Findings 3 and 5 and the contraction at a glance, one row per env (table: findings.run_table's runs with
    their final return): mean sequential KL against minibatch size, per third of the run; mean
    sequential KL against final return, every run of both sweeps; gamma_D per 1% against minibatch size. Runs of
    the seeds every setting of the env has (those the trends and finding 5 read) are filled, others hollow."""
    envs = sorted(table.env_id.unique())
    fig = plt.figure(figsize=(WIDTH, 2.1 * len(envs) + 1.8), layout="constrained")
    panels = fig.subfigures(1, 1)  # its legend sits below the panels, above the figure's caption
    with_return = bool(np.isfinite(table.ret).any())  # without returns (no episode ended) the middle column goes
    axes = panels.subplots(len(envs), 3, squeeze=False)
    if not with_return:
        for ax in axes[:, 1]:
            ax.remove()
    settings = table.drop_duplicates("key").sort_values(["minibatch_size", "num_envs"], ascending=[True, False])
    colours = dict(zip(settings.key, SETTING_COLOURS * 2))
    handles, hollow = {}, False
    for row, env in zip(axes, envs):
        here = table[table.env_id == env]
        # filled: the runs each reading takes (findings.check_findings), the trends' over the minibatch sweep's
        # settings, finding 5's over every setting with a sequential KL and a return
        read = common_seeds(here.dropna(subset=["seq_kl_whole", "ret"]))
        here = here.assign(shared=here.run.isin(read.run))
        # the minibatch sweep's shape: the one with the most minibatch sizes (500 x 100 in the paper)
        sizes = here.groupby(["num_envs", "num_steps"]).minibatch_size.nunique()
        n, m = sizes.idxmax()
        shape = here[(here.num_envs == n) & (here.num_steps == m)]
        shape = shape.assign(shared=shape.run.isin(common_seeds(shape).run))
        drawn = here.ret.notna() & here.seq_kl_whole.notna()
        hollow = hollow or not shape.shared.all() or (with_return and not here.shared[drawn].all())
        for third, style, marker in (("first", "-", "o"), ("middle", "--", "s"), ("last", ":", "^")):
            column = f"seq_kl_{third}"
            points(row[0], shape.minibatch_size, shape[column], shape.shared, "0.5", s=6, marker=marker, alpha=0.6)
            means = shape.groupby("minibatch_size")[column].mean()
            row[0].plot(means.index, means, style, color="k", marker=marker, markersize=3)
            handles.setdefault(f"{third} third of the run (mean over seeds; points: seeds)",
                               Line2D([], [], color="k", linestyle=style, marker=marker, markersize=3))
        for key, g in here.groupby("key") if with_return else ():
            first = g.iloc[0]
            name = f"{first.num_envs} envs x {first.num_steps} steps, minibatch {first.minibatch_size}"
            points(row[1], g.ret, g.seq_kl_whole, g.shared, colours[key], s=9)
            handles.setdefault(name, Line2D([], [], color=colours[key], marker="o", linestyle="none"))
        points(row[2], shape.minibatch_size, shape.gamma_per_pct, shape.shared, "0.5", s=6)
        means = shape.groupby("minibatch_size").gamma_per_pct.mean()
        row[2].plot(means.index, means, color="k", marker="o", markersize=3)
        for ax in row[[0, 2]]:
            ax.set_xscale("log")
            ax.set_xlabel(f"minibatch size ({n} x {m})")
        row[0].set_yscale("log")
        row[0].set_ylabel(f"{env}\nmean sequential KL")
        if with_return:
            row[1].set_yscale("log")
            row[1].set_xlabel("final evaluation return")
        row[2].set_ylabel(r"$\gamma_D$ per 1% of updates")
    axes[0, 0].set_title("finding 3: per update, by third of the run")
    if with_return:
        axes[0, 1].set_title("finding 5: every run, both sweeps")
    axes[0, 2].set_title("reference KL's contraction")
    order = [k for k in handles if "third" in k] + sorted(k for k in handles if "third" not in k)
    panels.legend([handles[k] for k in order], order, loc="outside lower center", ncols=2, fontsize=6.5)
    fig.suptitle("Sequential KL and contraction across settings", fontweight="bold")
    caption(fig, look, "Left and right: the minibatch sweep (at its N_env x N_rollout), every seed a grey point, the "
                 "setting's mean a "
                 "line. Middle: every run of both sweeps, the whole run's mean sequential KL against its final "
                 "evaluation return (at the last evaluation all the env's runs have)."
                 + (" Filled points: the seeds every setting in the panel has, which the trends and finding 5 in "
                    "claims.md read; hollow: seeds only some settings have (the pairs'), in the means but not in "
                    "those readings." if hollow else "")
                 + " gamma_D: the fitted per-1% contraction rate of KL(pi_U || pi_i), mean over the run's "
                 "iterations, closer to 1 is slower (claims.md says where the geometric fit is poor).")
    return fig


VERDICT_COLOURS = {"supported": "#4c9a5b", "contradicted": "#c8553d", "undetermined": "#d9d9d9"}


def fig_verdicts(verdicts, look):
    """Findings x envs: each cell the primary reading's verdict (colour) with its estimate and interval; a corner
    mark where another reading of the finding in that env reaches the opposite verdict."""
    envs = sorted(set(verdicts.env) - {"all"})  # the readings across envs are in claims.md
    findings = sorted(PAPER)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.75 * len(findings) + 1.3), layout="constrained")
    for y, finding in enumerate(findings):
        for x, env in enumerate(envs):
            cell = verdicts[(verdicts.finding == finding) & (verdicts.env == env)]
            main = cell[cell.primary]
            verdict = main.verdict.iloc[0] if len(main) else None
            ax.add_patch(plt.Rectangle((x, y), 1, 1, facecolor=VERDICT_COLOURS.get(verdict, "white"),
                                       edgecolor="white", linewidth=2))
            if verdict is None:
                ax.text(x + 0.5, y + 0.5, "not tested", ha="center", va="center", fontsize=7, color="0.4")
                continue
            r = main.iloc[0]
            bar = f"within \u00b1{num(r.threshold)}" if "within" in r.method else f"against {num(r.threshold)}"
            ax.text(x + 0.5, y + 0.25, verdict, ha="center", va="center", fontsize=7.5, weight="bold")
            ax.text(x + 0.5, y + 0.52, f"{num(r.estimate)} [{num(r.low)}, {num(r.high)}]", ha="center", va="center",
                    fontsize=6.5)
            ax.text(x + 0.5, y + 0.78, f"{bar}; {seeds_text(r)} seeds", ha="center", va="center", fontsize=6,
                    color="0.25")
            others = set(cell[~cell.primary].verdict) - {"undetermined", verdict}
            if others:
                ax.text(x + 0.97, y + 0.1, "*", ha="right", va="top", fontsize=10, weight="bold")
    ax.set_xlim(0, len(envs))
    ax.set_ylim(len(findings), 0)
    ax.set_xticks(np.arange(len(envs)) + 0.5, envs)
    ax.set_yticks(np.arange(len(findings)) + 0.5, [textwrap.fill(f"{f}. {PAPER[f][0]}", 34) for f in findings])
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle("The paper's findings: the primary reading per env, estimate [95% interval]")
    effects = "; ".join(f"{f}. {effect}" for f, effect in
                        verdicts[verdicts.primary].groupby("finding").effect.first().items())
    caption(fig, look, "Green: supported, red: contradicted, grey: undetermined (the interval straddles the "
                       "threshold, or lies across the equivalence margin). *: another reading of the finding in that "
                       "env reaches the other decided verdict (claims.md lists every reading). Below each interval: "
                       "the threshold, or the equivalence margin, and the seeds per setting.",
            f"Estimates (x vs y: x's minus y's, or x's over y's): {effects}.", settings=False)
    return fig


