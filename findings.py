"""The paper's five findings, checked per env from the seeds, and the markdown that reports them.

Returns are compared at one env step per comparison (the last evaluation every compared run has, or, without
evaluations, the last step every compared run's training-return curve reaches). Each finding rests on an effect
(a return difference, a sequential-KL ratio, a rank correlation across settings, ...) with a 95% bootstrap
interval over seeds (scipy.stats.bootstrap), and its verdict is read off that interval against a threshold (for
a rank correlation, its chance level: what a random ordering of the settings reaches or passes 5% of the time at
most).
"""
import functools
import textwrap
import warnings

import numpy as np
import pandas as pd
from scipy import stats

SETTING = ["env_id", "num_envs", "num_steps", "num_minibatches", "minibatch_size"]
PHASES = ("early", "middle", "late")
MIN_SEEDS = 3  # fewer seeds than this leave every verdict inconclusive
MIN_SETTINGS = 3  # a rank correlation across fewer settings than this is +-1 by construction
CHANCE = 0.05  # a rank correlation holds only where a random ordering of the settings reaches this often at most
RESAMPLES = 9999
CONFIDENCE = 0.95
FINDINGS = {
    1: "Too-small minibatches train worse",
    2: "Reference KL falls monotonically within an iteration",
    3: "Smaller minibatches give higher sequential KL",
    4: "1000 x 50 and 100 x 500 give similar returns and KL profiles",
    5: "Higher-return settings have higher sequential KL (slower convergence to the fixed point)",
}
SIMILAR_RETURN = 0.2  # finding 4: returns within 20% of the larger one
SIMILAR_KL = (0.5, 2.0)  # finding 4: mean sequential KL within a factor of 2
MONOTONE = 0.99  # finding 2: fraction of consecutive reference-KL steps that decrease


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


# ---- effects with bootstrap intervals over seeds ----

def bootstrap(matrices, effect):
    """effect(*matrices) of seeds x settings matrices (any leading batch axes), and its 95% percentile interval
    when the seeds (rows, all settings of a seed together) are resampled with replacement."""
    estimate = float(effect(*matrices))
    if matrices[0].shape[0] < 2:
        return estimate, float("nan"), float("nan")

    def statistic(idx, axis=-1):
        idx = np.asarray(idx, dtype=int)
        return effect(*[m[idx] for m in matrices])

    # percentile, not BCa: BCa's jackknife degenerates with the 2-4 seeds these studies have. An effect undefined
    # in some resample (a rank correlation of tied values) gives a NaN interval, reported as such by the caller
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((np.arange(matrices[0].shape[0]),), statistic, vectorized=True, n_resamples=RESAMPLES,
                              confidence_level=CONFIDENCE, method="percentile", rng=0)
    return estimate, float(res.confidence_interval.low), float(res.confidence_interval.high)


def spearman(x, y):
    """Rank correlation along the last axis (batched)."""
    rx, ry = stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1)
    rx, ry = rx - rx.mean(-1, keepdims=True), ry - ry.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(-1) / np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))


@functools.lru_cache(maxsize=None)
def chance_level(n):
    """The smallest rank correlation over n untied settings that a random ordering of them reaches or passes
    with probability CHANCE at most (scipy's permutation distribution: exact, all n! orderings, up to 8
    settings; 99,999 random orderings beyond); inf when no ordering is that rare (3 settings or fewer)."""
    if n < 2:  # no ordering at all
        return np.inf
    ranks = np.arange(n, dtype=float)
    null = stats.permutation_test((ranks,), lambda y, axis=-1: spearman(np.broadcast_to(ranks, y.shape), y),
                                  permutation_type="pairings", vectorized=True, n_resamples=99_999,
                                  rng=0).null_distribution
    rare = [v for v in np.unique(null.round(9)) if np.mean(null >= v - 1e-9) <= CHANCE]
    return float(min(rare, default=np.inf))


def read_interval(low, high, rule):
    """holds / does not hold / inconclusive, from where the interval lies against the rule's threshold."""
    kind, *t = rule
    if kind == "rank":  # t: the claimed sign (+1 or -1) of a rank correlation, and its chance level
        sign, level = t
        low, high = sorted((sign * low, sign * high))  # as if the claim were a positive correlation
        # a rank correlation takes few values: one at the chance level counts (1e-9: the level is rounded)
        return "holds" if low >= level - 1e-9 else "does not hold" if high <= 0 else "inconclusive"
    if kind == "below":
        return "holds" if high < t[0] else "does not hold" if low >= t[0] else "inconclusive"
    if kind == "above":
        return "holds" if low > t[0] else "does not hold" if high <= t[0] else "inconclusive"
    return "holds" if t[0] <= low and high <= t[1] else "does not hold" if high < t[0] or low > t[1] else "inconclusive"


def rule_text(rule):
    kind, *t = rule
    if kind == "rank":
        sign, level = t
        op, other = (">=", "<=") if sign > 0 else ("<=", ">=")
        holds = f"{op} {sign * level:.3g} (chance level)" if np.isfinite(level) else "never (no chance level)"
        return f"{holds}; does not hold {other} 0"
    return f"in [{t[0]:g}, {t[1]:g}]" if kind == "within" else f"{'<' if kind == 'below' else '>'} {t[0]:g}"


def effect_row(frame, settings, columns, fn, rule, min_settings, **info):
    """One effect of one finding in one env. frame: distinct runs with `key` (their setting's label), `seed` and
    the value columns; settings: the compared keys in order. Runs of a seed that some compared setting lacks
    are left out, so that a resample always holds every setting."""
    mats = [frame.pivot_table(index="seed", columns="key", values=c, aggfunc="mean").reindex(columns=settings)
            for c in columns]
    complete = np.logical_and.reduce([m.notna().all(axis=1).to_numpy() for m in mats]) if len(mats[0]) else []
    seeds = mats[0].index[complete] if len(mats[0]) else []
    mats = [m.loc[seeds].to_numpy(float) for m in mats]
    row = dict(info, rule=rule_text(rule), seeds=len(seeds), settings=len(settings),
               left_out=int((~frame.seed.isin(seeds)).sum() if len(frame) else 0))
    if len(seeds) == 0:
        return dict(row, estimate=np.nan, low=np.nan, high=np.nan, verdict="inconclusive", reading="inconclusive",
                    why="no run has the data")
    with np.errstate(invalid="ignore"):
        estimate, low, high = bootstrap(mats, fn)
    why = [f"{len(seeds)} seed{'s' * (len(seeds) != 1)}"] if len(seeds) < MIN_SEEDS else []
    why += [f"{len(settings)} settings"] if len(settings) < min_settings else []
    reading = read_interval(low, high, rule) if np.isfinite([low, high]).all() else "inconclusive"
    if reading == "inconclusive":
        why.append(inconclusive_why(rule, len(settings), low, high) if np.isfinite([low, high]).all() else
                   "no interval (too few seeds, or the effect is undefined, e.g. tied values)")
    return dict(row, estimate=estimate, low=low, high=high, why=", ".join(why), reading=reading,
                verdict="inconclusive" if why else reading)


def inconclusive_why(rule, n, low, high):
    if rule[0] != "rank":
        return "the interval straddles the threshold"
    if not np.isfinite(rule[2]):
        return f"no ordering of {n} settings is rarer than {CHANCE:.0%} by chance"
    if low < 0 < high:
        return "the interval straddles 0"
    return "the interval is on the claim's side of 0 but not wholly at or beyond the chance level"


def setting_means(m):
    """seeds x settings (with any leading resample axes) -> settings."""
    return m.mean(-2)


def difference(m):
    return setting_means(m)[..., 0] - setting_means(m)[..., 1]


def relative_difference(m):
    means = setting_means(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (means[..., 0] - means[..., 1]) / np.abs(means).max(-1)


def ratio(m):
    with np.errstate(invalid="ignore", divide="ignore"):
        return setting_means(m)[..., 0] / setting_means(m)[..., 1]


def check_findings(runs, returns, evals, kl_iterations, fig3_shapes):
    """Per finding and env, the effects it rests on with intervals and verdicts: a list of dicts."""
    kl = kl_iterations.groupby("run")[["seq_kl_mean", "ref_kl_decrease_frac"]].mean()
    distinct = distinct_runs(runs).join(kl, on="run").assign(key=lambda d: [label(r) for r in d.itertuples()])
    in_sweep = {sweep: set(runs.run[runs.sweep == sweep]) for sweep in ("minibatch", "env_rollout")}

    def with_returns(frame):
        ret, step, kind = returns_at_common_step(frame.run, returns, evals)
        return frame.assign(ret=frame.run.map(ret)), dict(step=step, kind=kind)

    rows = []
    for env in sorted(distinct.env_id.unique()):
        here = distinct[distinct.env_id == env]
        with_kl = here.dropna(subset=["seq_kl_mean"])
        mb = here[here.run.isin(in_sweep["minibatch"])].sort_values("minibatch_size")
        sizes = mb.drop_duplicates("key")
        if len(sizes) >= 2:  # 1: the smallest minibatch size against the largest
            small, large = sizes.iloc[0], sizes.iloc[-1]
            pair, at = with_returns(mb[mb.key.isin([small.key, large.key])])
            rows.append(effect_row(pair, [small.key, large.key], ["ret"], difference, ("below", 0), 2, finding=1,
                                   env=env, **at, effect=f"return(size {small.minibatch_size}) - "
                                                         f"return(size {large.minibatch_size})"))
        if len(with_kl):  # 2: every distinct run of the env
            rows.append(effect_row(with_kl, list(with_kl.key.unique()), ["ref_kl_decrease_frac"],
                                   lambda m: setting_means(m).mean(-1), ("above", MONOTONE), 1, finding=2, env=env,
                                   effect="fraction of consecutive reference-KL steps that decrease (all runs)"))
        mb_kl = mb.dropna(subset=["seq_kl_mean"]).drop_duplicates("key")
        if len(mb_kl) >= 2:  # 3: across all the minibatch sizes
            size_of = mb_kl.minibatch_size.to_numpy(float)
            rows.append(effect_row(mb.dropna(subset=["seq_kl_mean"]), list(mb_kl.key), ["seq_kl_mean"],
                                   lambda m: spearman(np.broadcast_to(size_of, setting_means(m).shape),
                                                      setting_means(m)),
                                   ("rank", -1, chance_level(len(mb_kl))), MIN_SETTINGS, finding=3, env=env,
                                   effect=f"rank corr(minibatch size, mean seq KL) over {len(mb_kl)} sizes"))
        er = here[here.run.isin(in_sweep["env_rollout"])]
        shapes = [er[(er.num_envs == n) & (er.num_steps == m)] for n, m in fig3_shapes]
        if all(len(s) for s in shapes):  # 4: the two shapes of Figure 3
            keys, names = [s.key.iloc[0] for s in shapes], " / ".join(f"{n} x {m}" for n, m in fig3_shapes)
            pair, at = with_returns(pd.concat(shapes))
            rows.append(effect_row(pair, keys, ["ret"], relative_difference,
                                   ("within", -SIMILAR_RETURN, SIMILAR_RETURN), 2, finding=4, env=env, **at,
                                   effect=f"return difference {names}, relative to the larger"))
            if pair.seq_kl_mean.notna().any():
                rows.append(effect_row(pair, keys, ["seq_kl_mean"], ratio, ("within", *SIMILAR_KL), 2, finding=4,
                                       env=env, effect=f"mean seq KL ratio {names}"))
        if with_kl.key.nunique() >= 2:  # 5: every setting of both sweeps
            everything, at = with_returns(with_kl)
            keys = list(everything.dropna(subset=["ret"]).key.unique())
            rows.append(effect_row(everything, keys, ["ret", "seq_kl_mean"],
                                   lambda r, k: spearman(setting_means(r), setting_means(k)),
                                   ("rank", +1, chance_level(len(keys))),
                                   MIN_SETTINGS, finding=5, env=env, **at,
                                   effect=f"rank corr(return, mean seq KL) over {len(keys)} settings of both sweeps"))
    return rows


def finding_verdicts(rows):
    """Per finding and env, one verdict from its effects: holds if all hold, does not hold if any does not."""
    verdicts = {}
    for row in rows:
        verdicts.setdefault(row["finding"], {}).setdefault(row["env"], []).append(row["verdict"])
    def combine(v):
        return "does not hold" if "does not hold" in v else "holds" if set(v) == {"holds"} else "inconclusive"

    return {f: {env: combine(v) for env, v in envs.items()} for f, envs in verdicts.items()}


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
    table = frame.groupby(["sweep", *SETTING], sort=False).agg(
        seeds=("seed", "nunique"), step=("final_step", "first"), kind=("return_kind", "first"),
        return_mean=("final_return", "mean"), return_std=("final_return", "std"), seq_kl_mean=("seq_kl_mean", "mean"),
        ref_kl_decrease_frac=("ref_kl_decrease_frac", "mean"), **{c: (c, "mean") for c in gamma_columns}).reset_index()
    table["setting"] = [label(r) for r in table.itertuples()]
    return table.sort_values(["sweep", "env_id", "minibatch_size", "num_envs"],
                             ascending=[False, True, True, False]).reset_index(drop=True)


# ---- markdown ----

def fmt(v, spec):
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def num(v):
    """Effects and their bounds: returns as integers, ratios and correlations to 3 significant digits."""
    return fmt(v, ".0f" if np.isfinite(v) and abs(v) >= 100 else ".3g")


def steps(v):
    return "n/a" if not np.isfinite(v) else f"{v / 1e6:.3f}M" if v >= 1e5 else f"{v:,.0f}"


def markdown_table(header, rows):
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in lines)


def settings_markdown(table):
    if table.empty:
        return "No complete runs."
    rows = [[r["sweep"], r["env_id"], r["setting"], r["seeds"], f"{steps(r['step'])} ({r['kind']})",
             f"{fmt(r['return_mean'], '.0f')} +- {fmt(r['return_std'], '.0f')}", fmt(r["seq_kl_mean"], ".3g"),
             fmt(r["ref_kl_decrease_frac"], ".3f"),
             " / ".join(fmt(r[f"gamma_D_per_pct_{p}"], ".4f") for p in PHASES),
             " / ".join(fmt(r[f"gamma_D_{p}"], ".5f") for p in PHASES)] for _, r in table.iterrows()]
    return markdown_table(["sweep", "env", "setting", "seeds", "return at step", "return mean +- std", "seq KL mean",
                           "ref-KL decreasing steps", "gamma_D per 1% (early / middle / late)",
                           "gamma_D per update (early / middle / late)"], rows)


def published_markdown(rows):
    if not rows:
        return "No 500 x 100 runs."

    def ours(r, when):
        return (f"{fmt(r[when + '_mean'], '.0f')} +- {fmt(r[when + '_std'], '.0f')} at {steps(r[when + '_step'])} "
                f"({r[when + '_kind']})")

    table = [[r["env"], f"500 x 100, minibatch {r['minibatch_size']}", r["seeds"], ours(r, "budget"), ours(r, "end"),
              "none published" if r["published"] is None else f"{r['published'][0]:.0f} +- {r['published'][1]:.0f}"]
             for r in rows]
    return markdown_table(["env", "ours", "seeds", "ours at 1M steps", "ours at the end", "CleanRL at 1M steps"], table)


def verdict_text(r):
    if not r["why"]:
        return r["verdict"]
    alone = f"; the interval alone reads: {r['reading']}" if r["reading"] != r["verdict"] else ""
    return f"{r['verdict']} ({r['why']}{alone})"


def findings_markdown(rows):
    body = [[r["finding"], r["env"], r["effect"], num(r["estimate"]), f"[{num(r['low'])}, {num(r['high'])}]",
             r["rule"], r["seeds"],
             f"{steps(r['step'])} ({r['kind']})" if "step" in r else "-",
             verdict_text(r)
             + (f"; {r['left_out']} runs left out (seed not in every setting)" if r["left_out"] else "")]
            for r in rows]
    return markdown_table(["#", "env", "effect", "estimate", "95% interval", "holds when", "seeds",
                           "returns at", "verdict"], body)


def summary_lines(rows, envs):
    verdicts = finding_verdicts(rows)
    lines = []
    for f, claim in FINDINGS.items():
        got = verdicts.get(f, {})
        held = sum(v == "holds" for v in got.values())
        per_env = ", ".join(f"{env}: {got[env]}" for env in envs if env in got)
        untested = [env for env in envs if env not in got]
        lines.append(f"- **{f}. {claim}**: held in {held} of {len(got)} env{'s' * (len(got) != 1)} tested"
                     + (f" ({per_env})" if per_env else "")
                     + (f"; not testable in {', '.join(untested)} (no runs of the settings or KL data it needs)"
                        if untested else ""))
    return lines


def report(runs, table, rows, published=()):
    """The generated results: finding lines, the per-env effects, the per-setting table and the 500 x 100 returns
    beside CleanRL's published ones (claims.md's body, and the block plot_kl.py writes into the results README)."""
    envs = sorted(runs.env_id.unique())
    kinds = sorted({r["kind"] for r in rows if "kind" in r} | set(table.get("kind", pd.Series(dtype=str))))
    norm = ", ".join(sorted(runs.norm_stats.astype(str).unique())) if "norm_stats" in runs else "unknown"
    n_runs = len(distinct_runs(runs))
    head = [f"{n_runs} distinct runs in {len(envs)} env{'s' * (len(envs) != 1)} ({', '.join(envs)}); "
            f"observation/reward normalisation statistics: `--norm-stats {norm}`; returns compared as "
            + " and ".join(RETURN_KIND[k] for k in kinds) + "."]
    return "\n".join([*head, "", "### Findings, per env", "", *summary_lines(rows, envs), "",
                      findings_markdown(rows), "", "### Per setting", "", settings_markdown(table), "",
                      "### Beside CleanRL's published returns", "", PUBLISHED_NOTE, "",
                      published_markdown(published), ""])


PUBLISHED_NOTE = f"""\
CleanRL publishes returns of its script at its own defaults (1 env x 2,048 steps, 32 minibatches of 64) after \
{PUBLISHED_STEPS / 1e6:.0f}M steps
on the MuJoCo v4 envs. That is another batch, minibatch and budget than these 500 x 100 runs on v5 (1M steps are
488 of its iterations and 20 of 500 x 100), so this is a check of scale, not a test. Its figure is the return of
the episodes its training policy played, as is an evaluation here (stochastic actions, statistics frozen). Ours:
mean +- std over seeds at the last evaluation at or before 1M steps and at the last one all of the setting's runs
have; runs without evaluations give training returns interpolated there (those of 500 x 100 come in waves 500,500
steps apart, as its envs end their 1,000-step episodes together)."""


RETURN_KIND = {
    "evaluation": "evaluation returns (`eval/episodic_return`) at the last evaluation all compared runs have",
    "training": "training returns (`charts/episodic_return`, smoothed over each run's last N_env episodes) "
                "interpolated at the last step all compared runs reach (the earliest run's last episode)",
}


def method_text():
    """How claims.md tests each finding, with the chance levels of rank correlations over typical settings."""
    # \0 keeps "0.9 for 5" and the like on one line
    levels = ",\0".join(f"{chance_level(n):.3g}\0for\0{n}" + "\0settings" * (n == 4) for n in (4, 5, 8))
    rank = textwrap.fill(
        "A rank correlation across n settings (findings 3 and 5) holds only when its whole interval lies at or "
        "beyond its chance level: the value that a random ordering of the n settings reaches or passes with "
        f"probability {CHANCE:.0%} at most (the permutation distribution of Spearman's rho, "
        f"`scipy.stats.permutation_test`, exact up to 8 settings). It is {levels}, and there is none for 3 "
        "settings or fewer (no ordering of so few is that rare). The bootstrap alone cannot tell a weak "
        "correlation from a strong one: when every resample of seeds ranks the settings the same way, the "
        "interval is one point, however close to 0. So \"holds\" asks that the ranking be one that chance rarely "
        "gives, at 97.5% of the resamples or more: a conservative rule, not a test at the 5% level. The claims "
        "are directional, and a correlation does not hold when its interval lies wholly on the other side of 0 "
        "(the settings rank against the claim at every resample); this needs no chance level, so with no "
        "association at all it can come out up to half the time. A correlation on the claim's side of 0 but "
        "short of its chance level is inconclusive: random orderings often rank the settings that well.",
        113).replace("\0", " ")
    return f"""\
How to read it. Each finding is tested per env on an effect (below), from the distinct runs of that env: a run
that serves both sweeps counts once. Returns are compared at one env step per comparison (column "returns at"):
HalfCheetah's episodes last 1,000 steps, so runs of different N_env end their last episodes at different steps,
and a run's last return is no fair comparison. The 95% interval is a percentile bootstrap over seeds
(`scipy.stats.bootstrap`, {RESAMPLES} resamples, fixed seed): a resample draws seeds with replacement and keeps
all the runs of each seed; seeds that some compared setting lacks are left out. A verdict **holds** when the
interval lies on the claim's side of the threshold, **does not hold** when it lies on the other side, and is
**inconclusive** when it straddles the threshold, or with fewer than {MIN_SEEDS} seeds, or (for a rank
correlation) fewer than {MIN_SETTINGS} settings.

{rank}

| # | effect | holds when |
| --- | --- | --- |
| 1 | mean return at the smallest minibatch size minus at the largest (minibatch sweep) | interval < 0 |
| 2 | mean over runs of the fraction of consecutive reference-KL steps that decrease | interval > {MONOTONE} |
| 3 | rank correlation, across the minibatch sizes, between size and mean sequential KL | interval <= -(chance \
level); does not hold when >= 0 |
| 4 | (a) return difference of the two shapes relative to the larger return; (b) ratio of their mean \
sequential KL | (a) interval in [-{SIMILAR_RETURN}, {SIMILAR_RETURN}] and (b) interval in [{SIMILAR_KL[0]}, \
{SIMILAR_KL[1]}]; does not hold when either lies outside |
| 5 | rank correlation, across all settings of both sweeps, between return and mean sequential KL | interval >= \
chance level; does not hold when <= 0 |

Finding 2 tests what the paper states, a monotonic fall, update by update. A fall toward pi_U on the whole says
little by itself: pi_i nears pi_U as i nears U whatever the updates do, a random walk included. How fast the
reference KL falls overall is gamma_D, per setting below.

Per setting: return mean and std over seeds at the step shown (the last step all of that sweep's runs in that
env reach). seq KL mean: mean sequential KL, KL(pi_i+1 || pi_i), over all iterations, then over seeds. gamma_D:
the fitted contraction rate of KL(pi_U || pi_i) at the phase's iteration, per 1% of the iteration's updates
(comparable across settings) and per update (settings with 10,000 and 500 updates per iteration differ in it by
construction).
"""


def claims_markdown(runs, table, rows, published=()):
    return "\n".join(["# The paper's findings, checked", "", method_text(), report(runs, table, rows, published)])
