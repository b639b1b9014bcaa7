"""Intervals that keep their level at four seeds, and the verdict read off each with one bar on both sides:
`supported` when the 95% interval lies wholly on the claim's side of its threshold, `contradicted` when it lies
wholly on the mirrored side, `undetermined` otherwise. Seeds of different settings are independent runs: nothing
is paired by seed number.

The intervals (their coverage at four seeds: simulated_coverage, below; tests/test_intervals.py holds it to 0.93):
- difference of two settings' means: Welch's t interval (scipy.stats.ttest_ind);
- ratio of two settings' means of a positive quantity: Welch's interval on the log scale, i.e. of the ratio of
  geometric means;
- a mean against a fixed level: Student's one-sample t interval;
- equivalence (TOST): the same Welch interval, `supported` when it lies within the margin, `contradicted` when it
  lies wholly outside it;
- a rank correlation across settings: Spearman's rho of every run's value against its setting's rank, with the
  Fisher z interval of Bonett and Wright (variance (1 + rho^2 / 2) / (N - 3)); its p-value from the permutation
  distribution (scipy.stats.permutation_test).
"""
import numpy as np
from scipy import stats

CONFIDENCE = 0.95
MAX_SEEDS_NEEDED = 50
PERMUTATIONS = 9999
VERDICTS = ("supported", "contradicted", "undetermined")


# ---- one effect, its interval, its verdict ----

def welch(x, y, log=False):
    """mean(x) - mean(y) (log: of the logs, the ratio's log), its interval, and the standard errors' parts; over
    the last axis, so rows of x and y are that many comparisons at once."""
    x, y = (np.log(x), np.log(y)) if log else (np.asarray(x, float), np.asarray(y, float))
    res = stats.ttest_ind(x, y, equal_var=False, axis=-1)
    ci = res.confidence_interval(CONFIDENCE)
    return x.mean(-1) - y.mean(-1), ci.low, ci.high, (x.var(ddof=1, axis=-1), y.var(ddof=1, axis=-1))


def welch_df(v1, v2, n):
    """Welch-Satterthwaite degrees of freedom with n seeds per setting, at variances v1, v2."""
    a, b = v1 / n, v2 / n
    return (a + b) ** 2 / (a ** 2 / (n - 1) + b ** 2 / (n - 1)) if a + b > 0 else n - 1


def half_width(v1, v2, n):
    return stats.t.ppf(0.5 + CONFIDENCE / 2, welch_df(v1, v2, n)) * np.sqrt((v1 + v2) / n)


def bonett_wright(rho, n_points):
    """Fisher z interval of a Spearman rho over n_points points (Bonett and Wright's variance)."""
    if n_points <= 3 or not np.isfinite(rho):
        return np.nan, np.nan
    z, se = np.arctanh(np.clip(rho, -0.999999, 0.999999)), np.sqrt((1 + rho ** 2 / 2) / (n_points - 3))
    q = stats.norm.ppf(0.5 + CONFIDENCE / 2)
    return float(np.tanh(z - q * se)), float(np.tanh(z + q * se))


def side_verdict(low, high, threshold, sign):
    """The interval against a threshold: wholly on the claim's side (sign +1: above, -1: below) -> supported,
    wholly on the other -> contradicted."""
    if not np.isfinite([low, high]).all():
        return "undetermined"
    above, below = low > threshold, high < threshold
    if sign > 0:
        return "supported" if above else "contradicted" if below else "undetermined"
    return "supported" if below else "contradicted" if above else "undetermined"


def equivalence_verdict(low, high, margin):
    if not np.isfinite([low, high, margin]).all():
        return "undetermined"
    if -margin < low and high < margin:
        return "supported"
    return "contradicted" if high < -margin or low > margin else "undetermined"


def two_settings(x, y, sign, kind="difference"):
    """A claim that setting x's mean exceeds (sign +1) or falls short of (-1) y's: kind `difference` (threshold
    0) or `ratio` (threshold 1, x and y positive). Returns the row's numbers."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    log = kind == "ratio"
    if log and ((x <= 0).any() or (y <= 0).any()):
        return undetermined_numbers(kind, "a ratio of values that are not all positive")
    if min(len(x), len(y)) < 2:
        return undetermined_numbers(kind, "no run has the data" if min(len(x), len(y)) == 0 else "fewer than 2 seeds")
    d, low, high, (v1, v2) = welch(x, y, log)
    p = stats.ttest_ind(np.log(x) if log else x, np.log(y) if log else y, equal_var=False,
                        alternative="greater" if sign > 0 else "less").pvalue
    verdict = side_verdict(low, high, 0.0, sign)
    needed = seeds_for(lambda n: half_width(v1, v2, n) < abs(d)) if verdict == "undetermined" else None
    if log:
        d, low, high = np.exp(d), np.exp(low), np.exp(high)
    return dict(estimate=d, low=low, high=high, threshold=1.0 if log else 0.0, p_value=p, verdict=verdict,
                seeds_needed=needed, method="Welch t on the log scale (ratio of geometric means)" if log else
                "Welch t (difference of means)")


def equivalence(x, y, margin):
    """Two one-sided Welch tests: is |mean(x) - mean(y)| below margin? The 95% interval is read as above."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if min(len(x), len(y)) < 2:
        return undetermined_numbers("equivalence", "fewer than 2 seeds")
    d, low, high, (v1, v2) = welch(x, y)
    p = max(stats.ttest_ind(x + margin, y, equal_var=False, alternative="greater").pvalue,
            stats.ttest_ind(x - margin, y, equal_var=False, alternative="less").pvalue)
    verdict = equivalence_verdict(low, high, margin)
    needed = None
    if verdict == "undetermined":
        def decided(n):
            return abs(abs(d) - margin) > half_width(v1, v2, n)
        needed = seeds_for(decided)
    return dict(estimate=d, low=low, high=high, threshold=margin, p_value=p, verdict=verdict, seeds_needed=needed,
                method=f"TOST, Welch t (equivalent when the interval lies within +-{margin:.4g})")


def against_level(x, level, sign):
    """A claim that the mean of x lies above (sign +1) or below (-1) a fixed level: Student's t interval."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return undetermined_numbers("level", "fewer than 2 runs")
    if np.ptp(x) == 0:  # every run alike: the mean is known exactly
        return dict(estimate=x[0], low=x[0], high=x[0], threshold=level, p_value=float((x[0] - level) * sign <= 0),
                    verdict=side_verdict(x[0], x[0], level, sign), seeds_needed=None,
                    method="Student t (every run has the same value)")
    res = stats.ttest_1samp(x, level, alternative="greater" if sign > 0 else "less")
    ci = stats.ttest_1samp(x, level).confidence_interval(CONFIDENCE)
    verdict = side_verdict(ci.low, ci.high, level, sign)
    s, d = x.std(ddof=1), abs(x.mean() - level)
    needed = seeds_for(lambda n: stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * s / np.sqrt(n) < d) \
        if verdict == "undetermined" else None
    return dict(estimate=x.mean(), low=ci.low, high=ci.high, threshold=level, p_value=res.pvalue, verdict=verdict,
                seeds_needed=needed, method="Student t (mean of the runs against a fixed level)")


def rank_trend(x, y, sign, settings):
    """A claim that y rises (sign +1) or falls (-1) with x across settings: Spearman's rho over every run
    (x: its setting's value), the Bonett-Wright interval, a permutation p-value."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(np.unique(x)) < 2 or len(x) < 4 or np.ptp(y) == 0:
        return undetermined_numbers("rank", "too few runs or settings")
    rho = float(stats.spearmanr(x, y).statistic)
    low, high = bonett_wright(rho, len(x))
    rx = stats.rankdata(x) - (len(x) + 1) / 2

    def rho_of(v, axis=-1):  # Spearman's rho against x of every permuted v at once
        rv = stats.rankdata(v, axis=-1)
        rv = rv - rv.mean(-1, keepdims=True)
        return (rv * rx).sum(-1) / np.sqrt((rv ** 2).sum(-1) * (rx ** 2).sum())

    p = stats.permutation_test((y,), rho_of, permutation_type="pairings", vectorized=True, n_resamples=PERMUTATIONS,
                               alternative="greater" if sign > 0 else "less", rng=0).pvalue
    verdict = side_verdict(low, high, 0.0, sign)
    needed = None
    if verdict == "undetermined":
        def decided(n):
            lo, hi = bonett_wright(rho, n * settings)
            return lo > 0 or hi < 0
        needed = seeds_for(decided)
    return dict(estimate=rho, low=low, high=high, threshold=0.0, p_value=p, verdict=verdict, seeds_needed=needed,
                method="Spearman rho over runs, Bonett-Wright interval, permutation p")


# The stratified bootstrap's percentile level for a 95% interval across envs: at 4 seeds per env and setting a
# 95% percentile interval covers about 88-94% of the time, a 99% one at least 93% (simulated_coverage, tested)
AGGREGATE_LEVEL = 0.99
RESAMPLES = 4000


def improvement(x, y):
    """P(X > Y) + P(X = Y) / 2 of every run of one setting against every run of the other, along the last axes."""
    return (np.sign(x[..., :, None] - y[..., None, :]) + 1).mean((-1, -2)) / 2


def stratified_bootstrap(pairs, statistic, centre, sign, margin, rng, method, similar=""):
    """An effect across envs (pairs: (x, y) per env) with its interval from a stratified bootstrap: each env's seeds
    resampled within their env and setting, statistic(xs, ys) of the envs' samples (resampled ones carry a leading
    axis of resamples), percentile interval at AGGREGATE_LEVEL. `supported` when the interval lies on the claim's
    side of centre (sign +1: x higher), or within centre +- margin for an equivalence (said by `similar`)."""
    pairs = [(np.asarray(x, float), np.asarray(y, float)) for x, y in pairs]
    if not pairs or min(min(len(x), len(y)) for x, y in pairs) < 2:
        return undetermined_numbers("level", "fewer than 2 seeds in some env")
    rng = np.random.default_rng(rng)
    resampled = [[s[rng.integers(0, len(s), (RESAMPLES, len(s)))] for s in pair] for pair in pairs]
    estimate = float(statistic(*zip(*pairs)))
    low, high = np.quantile(statistic(*zip(*resampled)), [(1 - AGGREGATE_LEVEL) / 2, (1 + AGGREGATE_LEVEL) / 2])
    if margin is None:
        verdict, threshold = side_verdict(low, high, centre, sign), centre
    else:
        verdict, threshold = equivalence_verdict(low - centre, high - centre, margin), margin
    return dict(estimate=estimate, low=float(low), high=float(high), threshold=threshold, p_value=np.nan,
                verdict=verdict, seeds_needed=None, method=f"{method}, stratified bootstrap (percentile at "
                f"{AGGREGATE_LEVEL:.0%}, which covers 95% at 4 seeds)" + ("" if margin is None else similar))


def across_envs(pairs, sign, margin=None, rng=0):
    """The probability that a run of setting x beats one of setting y, averaged over envs (pairs: (x, y) per env):
    `supported` when its interval lies on the claim's side of 1/2 (sign +1: x better, -1: y better), or within
    1/2 +- margin for an equivalence."""
    return stratified_bootstrap(pairs, lambda xs, ys: np.mean([improvement(x, y) for x, y in zip(xs, ys)], 0),
                                0.5, sign, margin, rng, "probability of improvement averaged over envs",
                                f"; similar when within 0.5 +- {margin}")


def iqm(values, weights):
    """The weighted interquartile mean along the last axis: the mean of the values in the middle half of the total
    weight (one weight per value along the last axis), a value on a quartile counted in part. Equal weights give
    scipy's trim_mean, which cuts whole values, when the values are a multiple of 4; otherwise the trimmed mean of
    each value repeated 4 times."""
    order = np.argsort(values, axis=-1)
    values = np.take_along_axis(values, order, -1)
    weights = np.take_along_axis(np.broadcast_to(weights, values.shape), order, -1)
    above = np.cumsum(weights, -1) / weights.sum(-1, keepdims=True)  # the share of the weight up to each value
    below = np.concatenate([np.zeros_like(above[..., :1]), above[..., :-1]], -1)
    kept = np.clip(np.minimum(above, 0.75) - np.maximum(below, 0.25), 0, None)
    return (kept * values).sum(-1) / kept.sum(-1)


def iqm_across_envs(pairs, sign, margin=None, rng=0):
    """The IQM of setting x's scores minus setting y's, every env's scores pooled (pairs: (x, y) per env, on a
    scale common to the envs) and weighted so that each env weighs alike whatever its number of seeds (an env
    run at 10 seeds beside envs at 4 would otherwise pull the IQM toward its own effect): `supported` when its
    interval lies on the claim's side of 0 (sign +1: x higher), or within +- margin for an equivalence."""
    def pooled(scores):
        weights = np.concatenate([np.full(np.shape(s)[-1], 1 / np.shape(s)[-1]) for s in scores])
        return iqm(np.concatenate(scores, -1), weights)

    return stratified_bootstrap(pairs, lambda xs, ys: pooled(xs) - pooled(ys), 0.0, sign, margin, rng,
                                "difference of IQMs over envs, each env weighing alike",
                                f"; similar when within +-{margin:.3g}" if margin is not None else "")


def seeds_for(decided):
    """The fewest seeds per setting (from 2) at which the observed effect and spread would decide the reading."""
    for n in range(2, MAX_SEEDS_NEEDED + 1):
        if decided(n):
            return n
    return f"more than {MAX_SEEDS_NEEDED}"


def undetermined_numbers(kind, why):
    return dict(estimate=np.nan, low=np.nan, high=np.nan, threshold=1.0 if kind == "ratio" else 0.0,
                p_value=np.nan, verdict="undetermined", seeds_needed=None, method=f"none: {why}")


ENV_EFFECTS = (0.25, 0.75, 1.25, 1.75)  # the simulated envs' effects, unequal (mean 1) as the study's are


def simulated_coverage(kind, noise, seeds=4, sims=2000, settings=5, slope=0.4, rng=0, interval=None):
    """The share of simulated studies whose 95% interval covers the truth, at `seeds` seeds per setting (for two
    settings, a pair (x's, y's) when they differ, as in a pair one of whose settings has more seeds so far): two
    settings with unequal spreads (kind `difference`), or with multiplicative noise (`ratio`), or `settings`
    settings along a trend of `slope` (`rank`, the truth from 100,000 runs per setting), or 4 envs whose setting x
    is `slope` above y (`across envs`: the probability of improvement) or `slope` times ENV_EFFECTS above
    (`iqm across envs`), their seeds one count or one per env; noise `normal` or `t3`
    (Student's t with 3 degrees of freedom: heavy tails). interval(x, y) -> (low, high) replaces Welch's for a
    difference, to measure another method the same way."""
    rng = np.random.default_rng(rng)

    def draw(shape):
        return rng.standard_normal(shape) if noise == "normal" else rng.standard_t(3, shape)

    covered = 0
    env_seeds = [seeds] * len(ENV_EFFECTS) if np.isscalar(seeds) else seeds
    if "across envs" in kind and len(env_seeds) != len(ENV_EFFECTS):
        raise ValueError(f"{kind}: seeds takes one count or {len(ENV_EFFECTS)}, one per env; got {seeds}")
    if kind == "across envs":  # 4 envs, setting x shifted by `slope` standard deviations
        big = draw(400_000)
        truth = float(np.mean(big + slope > draw(400_000)))
        for i in range(sims):
            numbers = across_envs([(draw(n) + slope, draw(n)) for n in env_seeds], +1, rng=i)
            covered += numbers["low"] <= truth <= numbers["high"]
    if kind == "iqm across envs":
        # 4 envs at different levels, setting x above y by slope x ENV_EFFECTS: the truth is the difference of the
        # IQMs of the 4 envs' populations pooled in equal parts (100,000 runs each)
        shifts = [(3 * e + slope * effect, 3 * e) for e, effect in enumerate(ENV_EFFECTS)]
        population_x = np.concatenate([draw(100_000) + x for x, _ in shifts])
        population_y = np.concatenate([draw(100_000) + y for _, y in shifts])
        truth = stats.trim_mean(population_x, 0.25) - stats.trim_mean(population_y, 0.25)
        for i in range(sims):
            numbers = iqm_across_envs([(draw(n) + x, draw(n) + y) for n, (x, y) in zip(env_seeds, shifts)], +1,
                                      rng=i)
            covered += numbers["low"] <= truth <= numbers["high"]
    if kind == "rank":
        big = np.repeat(np.arange(settings), 100_000)
        truth = stats.spearmanr(big, slope * big + draw(len(big))).statistic
        x = np.repeat(np.arange(settings), seeds)
        for _ in range(sims):
            low, high = bonett_wright(stats.spearmanr(x, slope * x + draw(len(x))).statistic, len(x))
            covered += low <= truth <= high
    if kind in ("difference", "ratio"):
        # each study's draws in turn, then every study's Welch interval in one call
        seeds_x, seeds_y = (seeds, seeds) if np.isscalar(seeds) else seeds
        x, y = (np.array(side) for side in zip(*[(draw(seeds_x), draw(seeds_y)) for _ in range(sims)]))
        if kind == "difference":  # the truth: 3 - 1 = 2
            x, y, truth = 3.0 + x, 1.0 + 2.5 * y, 2.0
            low, high = np.array([interval(a, b) for a, b in zip(x, y)]).T if interval else welch(x, y)[1:3]
        else:  # the ratio of geometric means: 1.5
            (_, low, high, _), truth = welch(1.5 * np.exp(0.3 * x), np.exp(0.6 * y), log=True), np.log(1.5)
        covered = int(np.sum((low <= truth) & (truth <= high)))
    return covered / sims
