"""The findings in words: the markdown tables, the per-env summary lines, the anatomy's reading, and claims.md with
its method text, all written from the numbers findings.py computes."""
import functools

import numpy as np
import pandas as pd

from ppo_kl.findings import (LABEL_FORM, MIN_SEEDS, PAPER, PHASES, PUBLISHED_STEPS, SIMILAR_IMPROVEMENT,
                             SIMILAR_RETURN, distinct_runs)
from ppo_kl.intervals import CONFIDENCE, VERDICTS, simulated_coverage


def anatomy_markdown(rows, fig2_sizes):
    """The table, and per env one sentence read off its whole-run rows: the chain from the gradient to the KL."""
    if rows.empty:
        return ""
    a, b = fig2_sizes
    lines = []
    for env, here in rows.groupby("env"):
        whole = here[here.phase == "whole run"].set_index("quantity")
        r = {q: whole.loc[q, "ratio"] for q in whole.index}
        lines.append(f"- {env} ({int(whole.seeds.min())} seeds per setting), minibatch {a} against {b}, per update "
                     f"over the whole run: gradient norm before clipping x{fmt(r['grad_norm'], '.3g')} (actor's "
                     f"x{fmt(r['actor_grad_norm'], '.3g')}), clipping factor x{fmt(r['clip_scale'], '.3g')}, actor "
                     f"step x{fmt(r['actor_step'], '.3g')}, sequential KL x{fmt(r['seq_kl'], '.3g')}; the "
                     f"minibatch's approximate KL x{fmt(r['approx_kl'], '.3g')}, clip fraction "
                     f"x{fmt(r['clipfrac'], '.3g')}.")
        lines.append(f"  {anatomy_reading(whole, a, b)}")
    body = [[r.env, r.phase, r.quantity, r.seeds, fmt(r.small, ".3g"), fmt(r.large, ".3g"), fmt(r.ratio, ".3g"),
             f"[{fmt(r.low, '.3g')}, {fmt(r.high, '.3g')}]"] for r in rows.itertuples()]
    table = markdown_table(["env", "iterations", "per update", "seeds", f"minibatch {a}", f"minibatch {b}", "ratio",
                            "95% interval"], body)
    return "\n".join(lines) + "\n\n" + table


def anatomy_reading(whole, a, b):
    """What the whole-run ratios say about the chain gradient -> clipping -> Adam -> step -> KL, in words chosen
    by the numbers: whether the step's length follows the gradient, and how close the gradient's growth at the
    smaller minibatch comes to what sampling noise alone gives (sqrt of the size ratio)."""
    step, kl, grad = (whole.loc[q] for q in ("actor_step", "seq_kl", "grad_norm"))
    noise = np.sqrt(b / a)
    if 0.9 <= step.low and step.high <= 1.1:
        length = (f"the actor moves about as far per update at both sizes (x{fmt(step.ratio, '.3g')}) although "
                  f"the gradient before clipping is x{fmt(grad.ratio, '.3g')} and the clipping factor "
                  f"x{fmt(whole.loc['clip_scale', 'ratio'], '.3g')}: Adam's per-weight normalisation, not the "
                  "gradient's size, sets the step's length")
    else:
        length = (f"the actor's step per update differs (x{fmt(step.ratio, '.3g')}, "
                  f"[{fmt(step.low, '.3g')}, {fmt(step.high, '.3g')}])")
    per_step = kl.ratio / step.ratio ** 2
    direction = (": a ratio consistent with the step's direction, not its length, setting the sequential KL"
                 if "Adam" in length else "")
    return (f"Read: {length}; per unit of squared step the policy's output moves x{fmt(per_step, '.3g')} as much "
            f"at minibatch {a}{direction}. A gradient of "
            f"pure sampling noise would grow x{fmt(noise, '.3g')} from minibatch {b} to {a}; the measured "
            f"x{fmt(grad.ratio, '.3g')} is {fmt(100 * grad.ratio / noise, '.0f')}% of that.")


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
             " / ".join(fmt(r[f"gamma_D_{p}"], ".5f") for p in PHASES),
             f"{fmt(r['plateau'], '.3g')} ({fmt(r['plateau_fit'], '.3g')})", fmt(r["r2"], ".2f")]
            for _, r in table.iterrows()]
    return markdown_table(["sweep", "env", "setting", "seeds", "return at step", "return mean +- std", "seq KL mean",
                           "ref-KL decreasing steps", "gamma_D per 1% (early / middle / late)",
                           "gamma_D per update (early / middle / late)",
                           "ref KL at 90% / at 50% of the updates (gamma_D's fit predicts)", "R^2 of the fit"], rows)


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

def needed_text(n):
    """Seeds per setting that would decide a reading: a count, "more than 50", or nothing (decided)."""
    if isinstance(n, str):
        return n
    return "" if n is None or not np.isfinite(n) else str(int(n))


def seed_ranges(seeds):
    """Seeds as runs of consecutive numbers: [1, 2, 3, 4, 7] -> '1-4, 7'."""
    seeds, parts = sorted({int(s) for s in seeds}), []
    for seed in seeds:
        if parts and seed == parts[-1][1] + 1:
            parts[-1][1] = seed
        else:
            parts.append([seed, seed])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in parts) or "none"


def seeds_text(r):
    """A reading's seeds per setting: one number, or the fewest and the most where its settings differ."""
    return str(r.n_seeds) if r.n_seeds == r.n_seeds_most else f"{r.n_seeds} and {r.n_seeds_most}"


def verdicts_markdown(verdicts):
    """Every reading, the primary one of each finding in bold."""
    body = []
    for r in verdicts.itertuples():
        strong = "**" if r.primary else ""
        body.append([r.finding, r.env, f"{strong}{r.reading}{strong}", num(r.estimate),
                     f"[{num(r.low)}, {num(r.high)}]", num(r.threshold), seeds_text(r), fmt(r.p_value, ".3g"),
                     f"{strong}{r.verdict}{strong}", needed_text(r.seeds_needed)])
    return markdown_table(["#", "env", "reading", "estimate", "95% interval", "threshold", "seeds per setting",
                           "p (one-sided, for the claim)", "verdict", "seeds that would decide it"], body)


def seed_growth_markdown(at_shared, verdicts, shared):
    """The readings that use seeds beyond the shared ones (the pairs with added seeds), each beside the same reading
    at the shared seeds alone: how the added seeds moved estimate, interval and verdict."""
    key = ["finding", "env", "reading"]
    grown = verdicts[verdicts.n_seeds_most > len(shared)].merge(at_shared, on=key, how="left", suffixes=("", "_at"))
    if grown.empty:
        return ""
    seeds, body = seed_ranges(shared), []
    for r in grown.itertuples():
        strong = "**" if r.primary else ""
        body.append([r.finding, r.env, f"{strong}{r.reading}{strong}",
                     f"{num(r.estimate_at)} [{num(r.low_at)}, {num(r.high_at)}]", fmt(r.verdict_at, ""),
                     needed_text(r.seeds_needed_at), seeds_text(r), f"{num(r.estimate)} [{num(r.low)}, {num(r.high)}]",
                     r.verdict, needed_text(r.seeds_needed)])
    changed = grown[grown.verdict_at.notna() & (grown.verdict != grown.verdict_at)]
    moves = "; ".join(f"finding {r.finding}, {r.env}, {r.reading}: {r.verdict_at} to {r.verdict}"
                      for r in changed.itertuples())
    return "\n".join([
        f"{len(grown)} readings use seeds beyond {seeds}; each beside the same reading at seeds {seeds} alone "
        f"(the same test on fewer runs). Verdicts changed ({len(changed)})" + (f": {moves}." if moves else "."), "",
        markdown_table(["#", "env", "reading", f"at seeds {seeds}: estimate [95% interval]", f"verdict at {seeds}",
                        f"seeds that would decide it, at {seeds}", "seeds per setting",
                        "at every seed: estimate [95% interval]", "verdict at every seed",
                        "seeds that would decide it, at every seed"], body)])


def grouped(readings):
    """Readings that share a head (the text before their last comma) named once, in the order heads first come:
    ['pair, per update, first third', 'trend', 'pair, per update, last third'] -> 'pair, per update (first third,
    last third) / trend'."""
    tails = {}
    for reading in readings:
        head, _, tail = reading.rpartition(", ")
        tails.setdefault(head or reading, []).append(tail if head else None)
    parts = []
    for head, ends in tails.items():
        whole = [head if end is None else f"{head}, {end}" for end in ends]
        parts += [f"{head} ({', '.join(ends)})"] if len(ends) > 1 and None not in ends else whole
    return " / ".join(parts)


def summary_lines(verdicts, envs):
    """Per finding: the primary reading's verdict in each env, and every reading that disagrees with it."""
    lines = []
    for finding, (claim, _, primary) in PAPER.items():
        rows = verdicts[verdicts.finding == finding]
        main = rows[rows.primary]
        by_verdict = []
        for verdict in VERDICTS:
            got = main[main.verdict == verdict]
            if len(got):
                names = [f"{r.env} ({seeds_text(r)} seeds"
                         + (f"; {needed_text(r.seeds_needed)} would decide it"
                            if verdict == "undetermined" and needed_text(r.seeds_needed) else "") + ")"
                         for r in got.itertuples()]
                by_verdict.append(f"{verdict} in {', '.join(names)}")
        untested = [env for env in envs if env not in set(main.env)]
        line = (f"- **{finding}. {claim}** (primary reading: {primary}): "
                + ("; ".join(by_verdict) if by_verdict else "not tested")
                + (f"; not testable in {', '.join(untested)} (no runs of the settings it needs)" if untested else "")
                + ".")
        disagree = {}
        for r in rows[~rows.primary].itertuples():
            own = main[main.env == r.env]
            if len(own) and r.verdict != "undetermined" and r.verdict != own.verdict.iloc[0]:
                disagree.setdefault((r.env, r.verdict), []).append(r.reading)
        if disagree:
            line += " Readings that disagree with it: " + "; ".join(
                f"{env}: {grouped(readings)} ({verdict})" for (env, verdict), readings in disagree.items()) + "."
        for r in rows[rows.env == "all"].itertuples():
            line += f" Across envs, {r.reading}: {r.verdict}, {num(r.estimate)} [{num(r.low)}, {num(r.high)}]."
        lines.append(line)
    return lines


def report(runs, table, verdicts, published=(), anatomy="", growth=""):
    """The generated results: the verdict lines, every reading, the per-setting table and the 500 x 100 returns
    beside CleanRL's published ones (claims.md's body, and the block plot_kl.py writes into the results README)."""
    envs = sorted(runs.env_id.unique())
    norm = ", ".join(sorted(runs.norm_stats.astype(str).unique())) if "norm_stats" in runs else "unknown"
    n_runs = len(distinct_runs(runs))
    seeds = sorted(set(verdicts.n_seeds) | set(verdicts.n_seeds_most)) if len(verdicts) else []
    kinds = sorted(set(table.get("kind", pd.Series(dtype=str))))
    head = [f"{n_runs} distinct runs in {len(envs)} env{'s' * (len(envs) != 1)} ({', '.join(envs)}); "
            f"observation/reward normalisation statistics: `--norm-stats {norm}`; seeds per setting in the "
            f"readings: {', '.join(map(str, seeds)) or 'none'}; returns compared as "
            + (" and ".join(RETURN_KIND[k] for k in kinds) or "nothing (no run has a return)") + "."]
    counts = verdicts[verdicts.primary].verdict.value_counts()
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
    return "\n".join([*head, "", "### Findings, per env", "",
                      f"Primary readings over findings and envs: {tally}.", "", *summary_lines(verdicts, envs), "",
                      verdicts_markdown(verdicts), "",
                      *(["### The pairs at the shared seeds and at every seed", "", growth, ""] if growth else []),
                      *(["### What sets the size of an update (finding 3's pair)", "", ANATOMY_NOTE, "", anatomy, ""]
                        if anatomy else []),
                      "### Per setting", "", f"Setting: {LABEL_FORM}", "", settings_markdown(table), "",
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


ANATOMY_NOTE = """\
Recorded only by the runs made since the training script logs each update's anatomy, so these ratios can rest on
fewer seeds than finding 3's rows (each row gives its own); Figure 4 draws the same quantities against the % of
the iteration's updates. Each row: the mean per update of the quantity, over each run's
iterations, then over seeds; the ratio is of geometric means over seeds, with Welch's interval on the log scale.
CleanRL clips the global gradient norm (actor and critic together) to 0.5, so a clipping factor below 1 shrinks
the actor's gradient with the critic's; Adam then divides each weight's step by its running gradient scale."""


RETURN_KIND = {
    "evaluation": "evaluation returns (`eval/episodic_return`) at the last evaluation all compared runs have",
    "training": "training returns (`charts/episodic_return`, smoothed over each run's last N_env episodes) "
                "interpolated at the last step all compared runs reach (the earliest run's last episode)",
}


# the envs of the two largest simulated effects at 10 seeds: where pooling runs unweighted would miss the most
UNEQUAL_ENV_SEEDS = (4, 4, 10, 10)


@functools.lru_cache(maxsize=None)
def coverages():
    """Each interval's simulated coverage at 4 seeds per setting (intervals.simulated_coverage), normal and
    heavy-tailed noise."""
    kinds = ("difference", "ratio", "rank", "across envs", "iqm across envs")
    cover = {(kind, noise): simulated_coverage(kind, noise, **({"sims": 400, "slope": 1.0} if "across envs" in kind
                                                               else {}))
             for kind in kinds for noise in ("normal", "t3")}
    # the paper's pairs at 10 seeds, and at 10 against 4 while a pair's second cell runs; across envs, two envs at
    # 10 seeds and two at 4, as while the pairs' cells run
    return cover | {(kind, noise, seeds): simulated_coverage(kind, noise, seeds=seeds)
                    for kind in ("difference", "ratio") for noise in ("normal", "t3") for seeds in (10, (10, 4))} | {
        ("iqm across envs", "normal", UNEQUAL_ENV_SEEDS): simulated_coverage(
            "iqm across envs", "normal", seeds=UNEQUAL_ENV_SEEDS, sims=400, slope=2.0)}  # t3 too in the tests


def method_text():
    """How claims.md reads each finding: the rule, each interval with its measured coverage, the paper's words."""
    cover = coverages()

    def measured(kind):
        return f"{cover[kind, 'normal']:.3f} on normal data, {cover[kind, 't3']:.3f} on heavy-tailed (t, 3 df)"

    def at_more_seeds(kind):
        return "; ".join(f"{cover[kind, 'normal', seeds]:.3f} and {cover[kind, 't3', seeds]:.3f} at {label}"
                         for seeds, label in ((10, "10 seeds a side"), ((10, 4), "10 against 4")))

    unequal = f"{cover['iqm across envs', 'normal', UNEQUAL_ENV_SEEDS]:.3f}"
    quotes = "\n".join(f"| {f} | {claim} | \"{words}\" | {primary} |" for f, (claim, words, primary) in PAPER.items())
    return f"""\
How to read it. Each finding is read per env in several ways (rows below), from the distinct runs of that env: a
run that serves both sweeps counts once. Returns are compared at one env step per comparison: the last
evaluation every compared run has. Each reading is an effect with a {CONFIDENCE:.0%} interval, and one bar on both
sides: **supported** when the interval lies wholly on the claim's side of the threshold, **contradicted** when it
lies wholly on the mirrored side, **undetermined** otherwise, and always with fewer than {MIN_SEEDS} seeds per
setting. Seeds of different settings are independent runs and are not paired by seed number. For an undetermined
reading, "seeds that would decide it" is the number of seeds per setting at which, at the observed effect and
spread, the interval would exclude the threshold.

The intervals, and their coverage measured at 4 seeds per setting on 2,000 simulated studies (a nominal 95%;
`intervals.simulated_coverage`; a percentile bootstrap over 4 seeds covers about 85%), for two settings also at
the paper's pairs' 10 seeds:
- a difference of two settings' means (returns): Welch's t interval (`scipy.stats.ttest_ind`): {measured("difference")}
  ({at_more_seeds("difference")});
- a ratio of two settings' means of a positive quantity (KL): Welch's interval of the logs, i.e. of the ratio of
  geometric means: {measured("ratio")}
  ({at_more_seeds("ratio")});
- a trend across settings: Spearman's rho of every run's value against its setting, with the Fisher z interval
  of Bonett and Wright (variance (1 + rho^2/2) / (N - 3), N runs) and a permutation p-value
  (`scipy.stats.permutation_test`): {measured("rank")} (5 settings);
- equivalence (finding 4, TOST): the Welch interval, supported when it lies within +- the margin, contradicted
  when it lies wholly outside; the returns' margin is {SIMILAR_RETURN:.0%} of the larger setting's mean, the
  sequential KL's half the log ratio of minibatch 50 to 1000 in the same env (an effect the paper calls one),
  and the profile's shape (the slope of log sequential KL against the % of the iteration's updates, on the 1%
  grid, per phase) half the same pair's difference in slope;
- a mean against a level (finding 2): Student's t interval over the runs;
- across envs (the return pairs of findings 1 and 4, env `all`, beside the per-env verdicts, which stay primary):
  the probability that a run of one setting beats a run of the other, averaged over envs, with a stratified
  bootstrap (seeds resampled within each env and setting; `rliable`, which does this, does not import beside
  pandas 3.1.1); a 95% percentile interval covers about 88-94% at 4 seeds, so the interval is the 99% percentile
  one: {measured("across envs")} (a run better by 1 std, 400 studies). Finding 4 reads similar when it lies
  within 0.5 +- {SIMILAR_IMPROVEMENT}. Beside it, the difference of interquartile means (IQM, the mean of the middle
  half) of every env's runs pooled, each env's returns as fractions of its pair's better mean (the scale of the
  per-env margin, so envs whose returns differ tenfold weigh alike) and each run weighted by one over its env's
  runs (so an env at 10 seeds weighs as one at 4), with the same bootstrap at 99%:
  {measured("iqm across envs")} (400 studies, the envs' effects
  unequal, up to sevenfold), and {unequal} on normal data with the envs at {", ".join(map(str, UNEQUAL_ENV_SEEDS))}
  seeds, the two largest effects at 10 and all twice as large (unweighted, the pool would cover less than 0.93:
  tested); finding 4 reads similar when it lies within +-{SIMILAR_RETURN}.

Which reading is primary, by the paper's words (`paper.txt`):

| # | claim | the paper | primary reading |
| --- | --- | --- | --- |
{quotes}

Finding 3 is read per update (the mean sequential KL, KL(pi_i+1 || pi_i), over an iteration's updates) and per
unit of data (the net change of an iteration, KL(pi_U || pi_0), from the same 50,000 samples), over the whole run
and over each third of its iterations. Finding 5 is read for both halves of its sentence: sequential KL and
convergence (gamma_D per 1% of the iteration's updates: higher is slower), each against the final return and the
area under the evaluation curve.

gamma_D summarises the reference KL's fall as geometric, KL(pi_U || pi_i) ~ C gamma_D^i. Where the profile
plateaus instead, the per-setting table shows it: ref KL at 90% of the updates over ref KL at 50% (a median over
runs and phases) beside what the fitted gamma_D predicts for it, and the fit's median R^2 (log ref KL against the %
of updates, on the 1% grid); an R^2 well below 1 or an observed ratio well above the predicted one means the
geometric model, and so gamma_D, describes that setting poorly.

Per setting: return mean and std over seeds at the step shown (the last step all of that sweep's runs in that
env reach). seq KL mean: mean sequential KL over all iterations, then over seeds. gamma_D: the fitted contraction
rate of KL(pi_U || pi_i) at the phase's iteration, per 1% of the iteration's updates (comparable across settings)
and per update (settings with 10,000 and 500 updates per iteration differ in it by construction).
"""


def claims_markdown(runs, table, verdicts, published=(), anatomy="", growth=""):
    return "\n".join(["# The paper's findings, checked", "", method_text(),
                      report(runs, table, verdicts, published, anatomy, growth)])
