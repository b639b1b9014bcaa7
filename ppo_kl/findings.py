"""The paper's five findings, each read every way its words allow, per env from the seeds (findings_text.py writes
them up).

Returns are compared at one env step per comparison (the last evaluation every compared run has, or, without
evaluations, the last step every compared run's training-return curve reaches). Each reading is an effect with a
95% interval that keeps its level at four seeds (intervals.py), read as supported, contradicted or undetermined
with the same bar on both sides. One reading per finding is primary, chosen by the paper's own words; the others
stand beside it as robustness readings, each with its own verdict.
"""
import numpy as np
import pandas as pd
from scipy import stats

from ppo_kl.intervals import against_level, across_envs, equivalence, iqm_across_envs, rank_trend, two_settings

SETTING = ["env_id", "num_envs", "num_steps", "num_minibatches", "minibatch_size"]
PHASES = ("early", "middle", "late")
MIN_SEEDS = 3  # fewer seeds per setting than this leave a reading undetermined
# n_seeds: the seeds of the setting with fewest, which the verdict's power rests on; n_seeds_most: of the one with
# most (a pair one of whose settings has more seeds so far reads them all)
COLUMNS = ["finding", "env", "reading", "primary", "effect", "estimate", "low", "high", "threshold", "method",
           "n_seeds", "n_seeds_most", "p_value", "verdict", "seeds_needed"]
# Each finding: the claim, the paper's words that choose its primary reading (paper.txt), and that reading
PAPER = {
    1: ("Too-small minibatches train worse", "making the minibatches too small can introduce significant "
        "instability and result in the collapse of the algorithm in addition to the slow training process",
        "the pair of Figure 1 (minibatch 50 vs 1000 at 500 x 100), final evaluation return"),
    2: ("Reference KL falls monotonically within an iteration", "the monotonic reduction in the KL values in "
        "Assumption 4", "the fraction of per-update decreases, against 0.99"),
    3: ("Smaller minibatches give higher sequential KL", "the higher values of the sequential KL even though the "
        "minibatch sizes are smaller", "the pair of Figure 2, mean sequential KL per update over the whole run"),
    4: ("1000 x 50 and 100 x 500 give similar returns and KL profiles", "the increase in the rollout length can "
        "have similar effects in the performance compared with the increase in the number of parallel environments",
        "final evaluation returns equivalent within 20% of the larger (TOST)"),
    5: ("Higher-return settings have higher sequential KL and converge more slowly", "settings with high-return PPO "
        "runs result in slower convergence to the fixed-distribution and higher consecutive KL divergence changes",
        "sequential KL rises with final return, over both sweeps' runs at the seeds all settings have"),
}
SIMILAR_RETURN = 0.2  # finding 4: the returns' equivalence margin, a fraction of the larger setting's mean
MONOTONE = 0.99  # finding 2: the fraction of decreasing steps a monotone fall needs
SIMILAR_IMPROVEMENT = 0.2  # finding 4 across envs: similar when neither setting's run beats the other's > 70%


LABEL_FORM = ("(N_env x N_rollout : N_minibatch x minibatch_size) = parallel envs x steps each env collects per "
              "iteration : minibatches per epoch x samples per minibatch.")


def label(row):
    """The paper's legend form: (N_env x N_rollout : N_minibatch x minibatch_size)."""
    return f"({row.num_envs} x {row.num_steps} : {row.num_minibatches} x {row.minibatch_size})"


def distinct_runs(runs):
    """Each training run once. A run that serves both sweeps (the 500 x 100 : 50 x 1000 runs, copied into both
    folders) is listed once per sweep; two folders of the same setting, seed and flags hold the same run."""
    return runs.drop_duplicates("run").drop_duplicates([*SETTING, "seed", "flags"]).reset_index(drop=True)


# ---- returns at a common step ----

def returns_at_common_step(names, returns, evals, until=None):
    """Each named run's return at one env step that all of them reach: their last common evaluation when every
    run was evaluated, else their training-return curves interpolated at the earliest last-episode step (runs
    that finished no episode get NaN); with until, at that step instead when all reach it (an evaluation: each
    run's last one at or before it). Returns (Series run -> return, step, kind)."""
    names = list(dict.fromkeys(names))
    ev = evals[evals.run.isin(names)]
    if names and set(ev.run) == set(names):
        step = min(ev.groupby("run").step.max().min(), until or np.inf)
        ev = ev[ev.step <= step]
        if set(ev.run) == set(names):
            at = ev.sort_values("step").groupby("run").eval_return.last()
            return at.reindex(names), float(ev.groupby("run").step.max().min()), "evaluation"
        return pd.Series(np.nan, index=names), float(step), "evaluation"
    tr = returns[returns.run.isin(names)].sort_values("step")
    if tr.empty:
        return pd.Series(np.nan, index=names), float("nan"), "training"
    step = min(tr.groupby("run").step.max().min(), until or np.inf)
    at = {run: np.interp(step, g.step, g.episodic_return, left=np.nan) for run, g in tr.groupby("run")}
    return pd.Series(at, dtype=float).reindex(names), float(step), "training"


def per_run(runs, returns, evals, kl_iterations):
    """Distinct runs with their mean sequential KL and decreasing reference-KL fraction over all iterations, and
    their return at the common step of their sweep and env (the per-setting table's, and Figures 2-3's best run)."""
    frame = runs.copy()
    kl = kl_iterations.groupby("run")[["seq_kl_mean", "ref_kl_decrease_frac"]].mean()
    frame = frame.join(kl, on="run")
    parts = []
    for _, g in frame.groupby(["sweep", "env_id"], sort=False):
        ret, step, kind = returns_at_common_step(g.run, returns, evals)
        parts.append(g.assign(final_return=g.run.map(ret), final_step=step, return_kind=kind))
    return pd.concat(parts) if parts else frame.assign(final_return=[], final_step=[], return_kind=[])


# ---- the readings ----

def profile_shapes(kl_profiles, kl_iterations):
    """Per run and phase, the shape of the reference-KL profile on its 1% grid: Kendall's tau against the % of
    updates done (-1: a fall at every bin), the plateau ref_kl(90%) / ref_kl(50%) beside what the fitted
    geometric contraction predicts (gamma_D per 1% to the 40th), and the R^2 of that fit (log ref_kl against %)."""
    rows = []
    ref = kl_profiles[(kl_profiles.curve == "ref_kl") & (kl_profiles.kl > 0)]
    gammas = kl_iterations.set_index(["run", "iteration"]).gamma_D_per_pct
    for (run, phase, iteration), g in ref.groupby(["run", "phase", "iteration"]):
        if len(g) < 3:
            continue
        pct, log_kl = g.pct.to_numpy(float), np.log(g.kl.to_numpy(float))
        fit = np.polyfit(pct, log_kl, 1)
        residual, total = np.sum((log_kl - np.polyval(fit, pct)) ** 2), np.sum((log_kl - log_kl.mean()) ** 2)
        at = {q: g.kl.iloc[int(np.abs(pct - q).argmin())] for q in (50, 90)}
        rows.append(dict(run=run, phase=phase, tau=stats.kendalltau(pct, log_kl).statistic, plateau=at[90] / at[50],
                         plateau_fit=gammas.get((run, iteration), np.nan) ** 40,
                         r2=1 - residual / total if total > 0 else np.nan))
    return pd.DataFrame(rows, columns=["run", "phase", "tau", "plateau", "plateau_fit", "r2"])


def run_table(runs, returns, evals, kl_iterations, kl_profiles):
    """Per distinct run: its setting, mean sequential KL and net change per iteration (whole run and each third of
    its iterations), fraction of reference-KL decreases per update and on the 1% grid, gamma_D per 1%."""
    frame = distinct_runs(runs).assign(key=lambda d: [label(r) for r in d.itertuples()]).set_index("run")
    it = kl_iterations.merge(frame[["num_iterations"]], left_on="run", right_index=True)
    it["third"] = np.minimum(3 * (it.iteration - 1) // it.num_iterations, 2)
    for column, name in (("seq_kl_mean", "seq_kl"), ("ref_kl_start", "net_kl")):
        frame[f"{name}_whole"] = it.groupby("run")[column].mean()
        for third, phase in enumerate(("first", "middle", "last")):
            frame[f"{name}_{phase}"] = it[it.third == third].groupby("run")[column].mean()
    frame["decrease_frac"] = it.groupby("run").ref_kl_decrease_frac.mean()
    frame["gamma_per_pct"] = it.groupby("run").gamma_D_per_pct.mean()
    ref = kl_profiles[kl_profiles.curve == "ref_kl"].sort_values("pct")
    grid = ref.groupby(["run", "phase"]).kl.apply(lambda k: float(np.mean(np.diff(k.to_numpy()) < 0)))
    frame["decrease_frac_grid"] = grid.groupby("run").mean()
    frame["tau_grid"] = profile_shapes(kl_profiles, kl_iterations).groupby("run").tau.mean()
    seq = kl_profiles[(kl_profiles.curve == "seq_kl") & (kl_profiles.kl > 0)]
    for phase, g in seq.groupby("phase"):  # the sequential KL's shape: its log-slope per % of the updates
        frame[f"seq_kl_slope_{phase}"] = g.groupby("run").apply(
            lambda r: np.polyfit(r.pct, np.log(r.kl), 1)[0] if len(r) >= 3 else np.nan, include_groups=False)
    return frame.reset_index()


def with_returns(frame, returns, evals):
    """The runs with their final return at their common step, area under the curve (the mean evaluation return up
    to it: evaluations are at equal env steps) and collapse (drop from the best evaluation to the final one,
    relative to the best's size)."""
    final, step, kind = returns_at_common_step(frame.run, returns, evals)
    if kind == "evaluation":
        curve = evals[evals.run.isin(frame.run) & (evals.step <= step)].rename(columns={"eval_return": "r"})
    else:
        curve = returns[returns.run.isin(frame.run) & (returns.step <= step)].rename(columns={"episodic_return": "r"})
    best = curve.groupby("run").r.max()
    return frame.assign(ret=frame.run.map(final), auc=frame.run.map(curve.groupby("run").r.mean()),
                        collapse=frame.run.map((best - final) / best.abs().clip(lower=1e-12)))


def seeds_every_setting_has(frame, setting="key"):
    """The seeds that every setting of the frame (its rows grouped by `setting`) has."""
    return set.intersection(*[set(g.seed) for _, g in frame.groupby(setting)]) if len(frame) else set()


def common_seeds(frame):
    """The runs of the seeds that every setting of the frame has: a reading across many settings keeps one set of
    seeds, so that a setting run at more seeds (a pair the paper draws) does not weigh more in it."""
    return frame[frame.seed.isin(seeds_every_setting_has(frame))]


def check_findings(runs, returns, evals, kl_iterations, kl_profiles, fig2_sizes, fig3_shapes):
    """Every reading of every finding in every env: a frame with COLUMNS. Pairs use every seed each of their two
    settings has; readings across more settings (trends, findings 2 and 5) the seeds all of them have."""
    table = run_table(runs, returns, evals, kl_iterations, kl_profiles)
    in_sweep = {sweep: set(runs.run[runs.sweep == sweep]) for sweep in ("minibatch", "env_rollout")}
    rows = []

    def add(finding, env, reading, primary, effect, numbers, groups):
        sizes = [len(g) for g in groups]
        n, most = min(sizes, default=0), max(sizes, default=0)
        if n < MIN_SEEDS and numbers["verdict"] != "undetermined":
            numbers = dict(numbers, verdict="undetermined", seeds_needed=MIN_SEEDS)
        rows.append(dict(finding=finding, env=env, reading=reading, primary=primary, effect=effect,
                         n_seeds=n, n_seeds_most=most, **numbers))

    across = {1: [], 4: []}  # each env's return pair, for the readings across envs
    for env in sorted(table.env_id.unique()):
        here = table[table.env_id == env]
        mb = here[here.run.isin(in_sweep["minibatch"])]
        small, large = (mb[mb.minibatch_size == s] for s in fig2_sizes)
        shape = mb[(mb.num_envs * mb.num_steps).isin([small.num_envs.mul(small.num_steps).max()])]
        if len(small) and len(large):
            pair = with_returns(pd.concat([small, large]), returns, evals)
            a, b = pair[pair.minibatch_size == fig2_sizes[0]], pair[pair.minibatch_size == fig2_sizes[1]]
            vs = f"minibatch {fig2_sizes[0]} vs {fig2_sizes[1]}"
            for reading, col, sign, primary in (("final return", "ret", -1, True), ("speed: area under the curve",
                                                "auc", -1, False), ("collapse from the best evaluation", "collapse",
                                                                    +1, False)):
                add(1, env, f"pair, {reading}", primary, f"{col}({vs}): difference",
                    two_settings(a[col].dropna(), b[col].dropna(), sign), (a, b))
            across[1].append(on_pair_scale(a.ret.dropna(), b.ret.dropna()))
            for unit, name in (("per update", "seq_kl"), ("per unit of data", "net_kl")):
                for phase in ("whole", "first", "middle", "last"):
                    add(3, env, f"pair, {unit}, {phase + ' run' if phase == 'whole' else phase + ' third'}",
                        unit == "per update" and phase == "whole", f"{name}({vs}): ratio",
                        two_settings(a[f"{name}_{phase}"].dropna(), b[f"{name}_{phase}"].dropna(), +1, "ratio"), (a, b))
        sizes = shape.minibatch_size.nunique()
        if sizes >= 3:
            trend = with_returns(common_seeds(shape), returns, evals)
            counts = [g for _, g in trend.groupby("minibatch_size")]
            add(1, env, f"trend over {sizes} sizes, final return", False, "rho(minibatch size, final return)",
                rank_trend(trend.minibatch_size, trend.ret, +1, sizes), counts)
            for unit, name in (("per update", "seq_kl"), ("per unit of data", "net_kl")):
                add(3, env, f"trend over {sizes} sizes, {unit}", False, f"rho(minibatch size, {name})",
                    rank_trend(trend.minibatch_size, trend[f"{name}_whole"], -1, sizes), counts)
        with_kl = common_seeds(here.dropna(subset=["decrease_frac"]))
        if len(with_kl):
            for reading, col, primary in (("per update", "decrease_frac", True), ("on the 1% grid",
                                                                                  "decrease_frac_grid", False)):
                add(2, env, f"fraction of reference-KL decreases, {reading}", primary,
                    f"mean over runs of {col}", against_level(with_kl[col].dropna(), MONOTONE, +1),
                    [g for _, g in with_kl.groupby("key")])
            add(2, env, "Kendall tau of reference KL against the % of updates (1% grid)", False,
                "mean over runs of tau_grid (a monotone fall: -1)",
                against_level(with_kl.tau_grid.dropna(), -MONOTONE, -1), [g for _, g in with_kl.groupby("key")])
        er = here[here.run.isin(in_sweep["env_rollout"])]
        shapes = [er[(er.num_envs == n) & (er.num_steps == m)] for n, m in fig3_shapes]
        if all(len(s) for s in shapes):
            pair = with_returns(pd.concat(shapes), returns, evals)
            a, b = (pair[pair.run.isin(s.run)] for s in shapes)
            names = " vs ".join(f"{n} x {m}" for n, m in fig3_shapes)
            margin = SIMILAR_RETURN * max(abs(a.ret.mean()), abs(b.ret.mean()))
            add(4, env, "returns equivalent", True, f"ret({names}): difference",
                equivalence(a.ret.dropna(), b.ret.dropna(), margin), (a, b))
            across[4].append(on_pair_scale(a.ret.dropna(), b.ret.dropna()))
            if len(small) and len(large) and a.seq_kl_whole.notna().all() and b.seq_kl_whole.notna().all():
                # the minibatch pair's log ratio is an effect the paper calls one: half of it is the KL margin
                kl_margin = 0.5 * abs(np.log(small.seq_kl_whole).mean() - np.log(large.seq_kl_whole).mean())
                add(4, env, "sequential KL level equivalent (log ratio)", False, f"log seq_kl({names}): difference",
                    equivalence(np.log(a.seq_kl_whole), np.log(b.seq_kl_whole), kl_margin), (a, b))
            for phase in PHASES:  # the profiles' shape: equivalent within half the minibatch pair's difference
                column = f"seq_kl_slope_{phase}"
                if column not in pair or not (len(small) and len(large)):
                    continue
                margin = 0.5 * abs(small[column].mean() - large[column].mean())
                add(4, env, f"sequential KL profile shape equivalent, {phase} phase", False,
                    f"slope of log seq_kl per % of updates ({names}): difference",
                    equivalence(a[column].dropna(), b[column].dropna(), margin), (a, b))
        every = common_seeds(with_returns(here.dropna(subset=["seq_kl_whole"]), returns, evals).dropna(subset=["ret"]))
        settings = every.key.nunique()
        if settings >= 3:
            groups = [g for _, g in every.groupby("key")]
            for half, col in (("sequential KL", "seq_kl_whole"), ("convergence (gamma_D per 1%)", "gamma_per_pct")):
                for against, x in (("final return", "ret"), ("area under the curve", "auc")):
                    add(5, env, f"{half} rises with {against}", half == "sequential KL" and against == "final return",
                        f"rho({x}, {col}) over {settings} settings",
                        rank_trend(every[x], every[col], +1, settings), groups)
    if len(across[1]) >= 2:
        groups, vs = [x for pair in across[1] for x in pair], f"minibatch {fig2_sizes[0]} vs {fig2_sizes[1]}"
        add(1, "all", f"pair, final return (probability of improvement, {len(across[1])} envs)", False,
            f"P(a run at minibatch {fig2_sizes[0]} beats one at {fig2_sizes[1]}), averaged over envs",
            across_envs(across[1], -1), groups)
        add(1, "all", f"pair, final return (IQM, {len(across[1])} envs)", False,
            f"IQM of ret / the pair's better mean ({vs}): difference", iqm_across_envs(across[1], -1), groups)
    if len(across[4]) >= 2:
        groups, names = [x for pair in across[4] for x in pair], " vs ".join(f"{n} x {m}" for n, m in fig3_shapes)
        add(4, "all", f"returns similar (probability of improvement, {len(across[4])} envs)", False,
            f"P(a run at {names.replace(' vs ', ' beats one at ')}), averaged over envs",
            across_envs(across[4], +1, margin=SIMILAR_IMPROVEMENT), groups)
        add(4, "all", f"returns similar (IQM, {len(across[4])} envs)", False,
            f"IQM of ret / the pair's better mean ({names}): difference",
            iqm_across_envs(across[4], +1, margin=SIMILAR_RETURN), groups)
    return pd.DataFrame(rows, columns=COLUMNS)


def on_pair_scale(x, y):
    """Both settings' returns as fractions of the better setting's mean in the env: the scale of finding 4's
    margin, which makes envs whose returns differ by orders of magnitude comparable."""
    scale = max(abs(x.mean()), abs(y.mean()))
    return x / scale, y / scale


# ---- what sets the size of an update ----

ANATOMY_MEANS = ["seq_kl_mean", "actor_step_mean", "grad_norm_mean", "actor_grad_norm_mean", "clip_scale_mean",
                 "approx_kl_mean", "clipfrac_mean"]


def anatomy_rows(runs, kl_iterations, fig2_sizes):
    """For finding 3's pair in each env whose runs recorded the update anatomy: each quantity's mean per update
    (seeds' means of their iterations' means, whole run and each third), the two settings' and their ratio with
    its interval (Welch on the log scale)."""
    table = distinct_runs(runs)
    it = kl_iterations.merge(table[["run", "env_id", "minibatch_size", "num_iterations"]], on="run")
    it = it[it.minibatch_size.isin(fig2_sizes) & it.grad_norm_mean.notna()]
    it = it.assign(third=np.minimum(3 * (it.iteration - 1) // it.num_iterations, 2))
    rows = []
    for env, here in it.groupby("env_id"):
        if here.minibatch_size.nunique() < 2:
            continue
        for phase, part in [("whole run", here)] + [(f"{name} third", here[here.third == t])
                                                    for t, name in enumerate(("first", "middle", "last"))]:
            per_run = part.groupby(["run", "minibatch_size"])[ANATOMY_MEANS].mean().reset_index()
            small, large = (per_run[per_run.minibatch_size == s] for s in fig2_sizes)
            for column in ANATOMY_MEANS:
                numbers = two_settings(small[column], large[column], +1, "ratio")
                rows.append(dict(env=env, phase=phase, quantity=column.removesuffix("_mean"),
                                 seeds=min(len(small), len(large)),
                                 small=small[column].mean(), large=large[column].mean(), ratio=numbers["estimate"],
                                 low=numbers["low"], high=numbers["high"]))
    return pd.DataFrame(rows)


# ---- the per-setting table ----

# CleanRL's documented returns of ppo_continuous_action.py at its defaults (1 env x 2048 steps, 32 minibatches of
# 64, 1M steps, MuJoCo v4 envs, training episodic return, mean +- std over seeds): the "MuJoCo v4" table of its PPO
# documentation (docs.cleanrl.dev/rl-algorithms/ppo/), which lists no Ant
PUBLISHED = {"HalfCheetah": (1442.64, 46.03), "Walker2d": (2287.95, 571.78), "Humanoid": (716.11, 49.08)}
PUBLISHED_STEPS = 1_000_000


def beside_published(runs, returns, evals):
    """Per env and minibatch size of the 500 x 100 runs (the minibatch sweep's shape): the return, mean and std
    over seeds, at CleanRL's published budget (1M steps) and at the last step all those runs reach, beside
    CleanRL's published figure for its defaults."""
    rows = []
    distinct = distinct_runs(runs)
    shape = distinct[(distinct.num_envs == 500) & (distinct.num_steps == 100)]
    for (env, size), g in shape.groupby(["env_id", "minibatch_size"]):
        row = dict(env=env, minibatch_size=size, seeds=g.seed.nunique(), published=PUBLISHED.get(env.split("-")[0]))
        for when, until in (("budget", PUBLISHED_STEPS), ("end", None)):
            ret, step, kind = returns_at_common_step(g.run, returns, evals, until)
            row |= {f"{when}_step": step, f"{when}_kind": kind, f"{when}_mean": mean_of(ret),
                    f"{when}_std": float(ret.std())}
        rows.append(row)
    return rows


def mean_of(values):
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def settings_table(runs, returns, evals, kl_iterations, kl_profiles):
    """One row per sweep, env and setting: return at the sweep's common step (mean, std over seeds), mean
    sequential KL, decreasing reference-KL fraction, gamma_D per 1% of the iteration's updates and per update
    at the iteration of each phase (mean over seeds)."""
    frame = per_run(runs, returns, evals, kl_iterations)
    gammas = kl_profiles[["run", "phase", "iteration"]].drop_duplicates().merge(
        kl_iterations[["run", "iteration", "gamma_D", "gamma_D_per_pct"]], on=["run", "iteration"])
    gammas = gammas.pivot_table(index="run", columns="phase", values=["gamma_D_per_pct", "gamma_D"], aggfunc="mean")
    gammas.columns = [f"{value}_{phase}" for value, phase in gammas.columns]
    gamma_columns = [f"{value}_{phase}" for value in ("gamma_D_per_pct", "gamma_D") for phase in PHASES]
    frame = frame.join(gammas.reindex(columns=gamma_columns), on="run")
    shapes = profile_shapes(kl_profiles, kl_iterations).groupby("run")[["plateau", "plateau_fit", "r2"]].mean()
    frame = frame.join(shapes, on="run")
    table = frame.groupby(["sweep", *SETTING], sort=False).agg(
        seeds=("seed", "nunique"), step=("final_step", "first"), kind=("return_kind", "first"),
        return_mean=("final_return", "mean"), return_std=("final_return", "std"), seq_kl_mean=("seq_kl_mean", "mean"),
        ref_kl_decrease_frac=("ref_kl_decrease_frac", "mean"), plateau=("plateau", "median"),
        plateau_fit=("plateau_fit", "median"), r2=("r2", "median"), **{c: (c, "mean") for c in gamma_columns}
    ).reset_index()
    table["setting"] = [label(r) for r in table.itertuples()]
    return table.sort_values(["sweep", "env_id", "minibatch_size", "num_envs"],
                             ascending=[False, True, True, False]).reset_index(drop=True)
