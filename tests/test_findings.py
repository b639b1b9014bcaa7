"""findings.py on synthetic data frames whose answers are known by construction."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import ROOT  # noqa: F401  (puts the repository on sys.path)
from ppo_kl import findings, findings_text
from ppo_kl.findings import check_findings, distinct_runs, returns_at_common_step

FLAGS = "eval_every=0;kl_every=1;norm_stats=shared;total_timesteps=3000000"


def frames(specs, evals=()):
    """specs: dicts with sweep, env, shape (N_env, N_rollout), size, seed, ret (the return at `last`, reached
    linearly from 0 at step 0), last (the run's last episode step), kl (mean sequential KL), frac (decreasing
    reference-KL fraction). evals: (run, step, return) triples."""
    runs, returns, kl = [], [], []
    for s in specs:
        (n, m), env = s["shape"], s.get("env", "HalfCheetah-v5")
        run = s.get("run", f"{env}__{n}x{m}__mb{s['size']}__s{s['seed']}")
        runs.append(dict(sweep=s["sweep"], run=run, env_id=env, num_envs=n, num_steps=m, seed=s["seed"],
                         num_minibatches=n * m // s["size"], minibatch_size=s["size"], num_iterations=60,
                         wall_time_s=1.0, kl_every=1, norm_stats="shared", eval_every=0, flags=FLAGS))
        last = s.get("last", 3e6)
        returns += [dict(run=run, step=0.0, episodic_return=0.0), dict(run=run, step=last, episodic_return=s["ret"])]
        kl.append(dict(run=run, iteration=1, global_step=50000, seq_kl_mean=s.get("kl", 1e-5), ref_kl_start=1e-2,
                       ref_kl_decrease_frac=s.get("frac", 1.0), gamma_D=0.99, gamma_D_per_pct=0.95))
    evals = pd.DataFrame(list(evals), columns=["run", "step", "eval_return"])
    return pd.DataFrame(runs), pd.DataFrame(returns).drop_duplicates(), evals, pd.DataFrame(kl).drop_duplicates()


def minibatch(sizes, seeds, ret, kl=lambda size, seed: 1e-5, frac=1.0, env="HalfCheetah-v5"):
    return [dict(sweep="minibatch", env=env, shape=(500, 100), size=size, seed=seed, ret=ret(size, seed),
                 kl=kl(size, seed), frac=frac) for size in sizes for seed in seeds]


def row(rows, finding, env="HalfCheetah-v5", reading=None):
    """The primary reading of a finding in an env, or the named one."""
    got = rows[(rows.finding == finding) & (rows.env == env)]
    got = got[got.primary] if reading is None else got[got.reading == reading]
    assert len(got) == 1, (finding, env, reading, list(rows.reading))
    return got.iloc[0]


def check(specs, shapes=((1000, 50), (100, 500)), evals=(), sizes=(50, 1000)):
    runs, returns, ev, kl = frames(specs, evals)
    return check_findings(runs, returns, ev, kl,
                          pd.DataFrame(columns=["run", "phase", "iteration", "curve", "pct", "kl"]), sizes, shapes)


SIZES = (50, 100, 250, 500, 1000)


def test_findings_supported_by_construction():
    # 4 seeds; size 50 far worse, sequential KL falling with the size, reference KL always decreasing
    rows = check(minibatch(SIZES, (1, 2, 3, 4), ret=lambda size, seed: size + 10 * seed,
                           kl=lambda size, seed: 1e-3 / size * (1 + 0.01 * seed)))
    one, two, three = row(rows, 1), row(rows, 2), row(rows, 3)
    assert one.verdict == "supported" and one.estimate == pytest.approx(50 - 1000) and one.high < 0
    assert one.n_seeds == 4 and pd.isna(one.seeds_needed)
    assert two.verdict == "supported" and two.estimate == 1.0
    assert three.verdict == "supported" and three.estimate == pytest.approx(20, rel=0.01) and three.low > 1
    trend = row(rows, 3, reading="trend over 5 sizes, per update")
    assert trend.verdict == "supported" and trend.estimate < -0.9 and trend.p_value < 0.001
    assert set(rows.columns) == set(findings.COLUMNS)
    # every finding has exactly one primary reading in each env it is read in
    assert (rows.groupby(["finding", "env"]).primary.sum() == 1).all()


def test_findings_contradicted_by_construction():
    # the mirror: size 50 far better, sequential KL rising with the size, reference KL rarely decreasing
    rows = check(minibatch(SIZES, (1, 2, 3, 4), ret=lambda size, seed: 5000 - size + 10 * seed,
                           kl=lambda size, seed: 1e-8 * size * (1 + 0.01 * seed), frac=0.5))
    assert row(rows, 1).verdict == "contradicted" and row(rows, 1).low > 0
    assert row(rows, 2).verdict == "contradicted"
    assert row(rows, 3).verdict == "contradicted" and row(rows, 3).high < 1
    assert row(rows, 3, reading="trend over 5 sizes, per update").verdict == "contradicted"


def test_undetermined_findings_and_the_seeds_that_would_decide_them():
    # returns that overlap across seeds: no side; two seeds: undetermined whatever the interval
    noisy = check(minibatch((50, 1000), (1, 2, 3, 4), ret=lambda size, seed: 1000 + 300 * (-1) ** seed + size / 100))
    one = row(noisy, 1)
    assert one.verdict == "undetermined" and one.low < 0 < one.high
    assert one.seeds_needed == "more than 50" or int(one.seeds_needed) > 4
    two_seeds = check(minibatch((50, 1000), (1, 2), ret=lambda size, seed: size + seed))
    assert row(two_seeds, 1).verdict == "undetermined" and row(two_seeds, 1).n_seeds == 2
    assert row(two_seeds, 1).high < 0  # the interval alone would have decided it


def test_a_pair_whose_settings_differ_in_seeds_says_both_counts():
    # minibatch 50 at seeds 1-10, 1000 at 1-4 (a cell merged before its partner): the pair reads all 14 runs, and
    # its row names the fewest seeds, which its power rests on, and the most
    rows = check(minibatch((50,), range(1, 11), ret=lambda size, seed: size + seed)
                 + minibatch((1000,), range(1, 5), ret=lambda size, seed: size + seed))
    pair = row(rows, 1)
    assert (pair.n_seeds, pair.n_seeds_most) == (4, 10)
    line = next(x for x in findings_text.verdicts_markdown(rows).splitlines() if "**pair, final return**" in x)
    assert "| 4 and 10 |" in line
    even = check(minibatch((50, 1000), range(1, 5), ret=lambda size, seed: size + seed))
    assert (row(even, 1).n_seeds, row(even, 1).n_seeds_most) == (4, 4)
    line = next(x for x in findings_text.verdicts_markdown(even).splitlines() if "**pair, final return**" in x)
    assert "| 4 |" in line


def test_pairs_use_every_seed_and_readings_across_settings_the_common_ones():
    # the pair (50, 1000) at seeds 1-10, the other sizes at 1-4: the pair reads 10 seeds, the trend 4
    specs = minibatch((50, 1000), range(1, 11), ret=lambda size, seed: size + seed,
                      kl=lambda size, seed: 1e-3 / size * (1 + 0.01 * seed))
    specs += minibatch((100, 250, 500), range(1, 5), ret=lambda size, seed: size + seed,
                       kl=lambda size, seed: 1e-3 / size * (1 + 0.01 * seed))
    rows = check(specs)
    assert row(rows, 1).n_seeds == 10 and row(rows, 3).n_seeds == 10
    trend = row(rows, 3, reading="trend over 5 sizes, per update")
    assert trend.n_seeds == 4 and row(rows, 2).n_seeds == 4
    # the trend's rho over the 20 runs of seeds 1-4, recomputed
    x = np.repeat(SIZES, 4)
    y = np.array([1e-3 / size * (1 + 0.01 * seed) for size in SIZES for seed in range(1, 5)])
    assert trend.estimate == pytest.approx(stats.spearmanr(x, y).statistic)


def test_the_iqm_across_envs_weighs_envs_of_different_scale_alike():
    """Minibatch 50 at half of 1000's return in two envs whose returns differ tenfold: the IQM row compares
    fractions of each env's better mean, recomputed here by sorting; supported (50 is worse), and its mirror
    contradicted."""
    def specs(worse):
        out = []
        for env, scale in (("HalfCheetah-v5", 1000.0), ("Humanoid-v5", 100.0)):
            out += minibatch((50, 1000), (1, 2, 3, 4), env=env, ret=lambda size, seed, scale=scale:
                             scale * (1 + 0.05 * seed) * (0.5 if (size == 50) == worse else 1.0))
        return out
    got = row(check(specs(True)), 1, env="all", reading="pair, final return (IQM, 2 envs)")
    seeds = 1 + 0.05 * np.arange(1, 5)
    fractions = {size: np.sort(np.tile(seeds * factor, 2)) / seeds.mean() for size, factor in ((50, 0.5), (1000, 1))}
    middle = {size: f[2:6].mean() for size, f in fractions.items()}  # 8 values: the middle 4
    assert got.estimate == pytest.approx(middle[50] - middle[1000]) and got.verdict == "supported"
    assert got.high < 0 and got.n_seeds == 4
    assert row(check(specs(False)), 1, env="all", reading="pair, final return (IQM, 2 envs)").verdict == "contradicted"


def test_a_run_shared_by_two_sweeps_is_counted_once():
    seeds = (1, 2, 3)
    specs = minibatch((50, 1000), seeds, ret=lambda size, seed: {50: 100, 1000: 900}[size] + seed,
                      kl=lambda size, seed: {50: 3e-5, 1000: 1e-5}[size] * (1 + 0.01 * seed), frac=0.5)
    shared = [dict(s, sweep="env_rollout") for s in specs if s["size"] == 1000]  # copied into the other sweep
    renamed = [dict(shared[0], run="HalfCheetah-v5__500x100__mb1000__s1__copy")]  # the same run under a new name
    other = [dict(sweep="env_rollout", shape=(100, 500), size=1000, seed=seed, ret=500 + seed, kl=2e-5, frac=1.0)
             for seed in seeds]
    runs, returns, evals, kl = frames(specs + shared + renamed + other)
    assert len(runs) == 13 and len(distinct_runs(runs)) == 9
    profiles = pd.DataFrame(columns=["run", "phase", "iteration", "curve", "pct", "kl"])
    rows = check_findings(runs, returns, evals, kl, profiles, (50, 1000), ((1000, 50), (100, 500)))
    # finding 2 over the 9 distinct runs: 6 at 0.5 and 3 at 1.0 (0.5625 if the shared runs counted twice)
    assert row(rows, 2).estimate == pytest.approx(2 / 3)
    # finding 5 over 3 settings: returns 100 / 900 / 500 against KL 3e-5 / 1e-5 / 2e-5: the settings rank against
    # it (within a setting, seed by seed, return and KL rise together: not -1)
    five = row(rows, 5)
    assert -1 < five.estimate < -0.8 and five.verdict == "contradicted" and five.n_seeds == 3
    assert "over 3 settings" in five.effect
    assert findings_text.report(runs, findings.settings_table(runs, returns, evals, kl, profiles), rows).startswith(
        "9 distinct runs")


def test_runs_ending_at_different_steps_are_compared_at_a_common_step():
    # HalfCheetah's staircase: 1000 x 50 ends its last episodes at 2.0M, 100 x 500 at 2.9M; returns grow linearly
    specs = [dict(sweep="env_rollout", shape=shape, size=1000, seed=seed, ret=ret + seed, last=last)
             for shape, ret, last in (((1000, 50), 600, 2.0e6), ((100, 500), 1160, 2.9e6)) for seed in (1, 2, 3)]
    runs, returns, evals, kl = frames(specs)
    at, step, kind = returns_at_common_step(runs.run, returns, evals)
    assert step == 2.0e6 and kind == "training"
    assert at["HalfCheetah-v5__100x500__mb1000__s1"] == pytest.approx(1161 * 2.0 / 2.9)
    four = row(check(specs), 4)
    a, b = 602, 1162 * 2.0 / 2.9  # seed means at 2.0M: 800 against 602, not 1162 against 602
    assert four.estimate == pytest.approx(a - b) and four.threshold == pytest.approx(0.2 * b)
    # with evaluations, the last evaluation every run has: 100 x 500 evaluated on at 3M, 1000 x 50 up to 2M
    evals = [(r, s, s / 1e4 + i) for i, r in enumerate(runs.run) for s in (1e6, 2e6, 3e6)
             if not (s == 3e6 and "1000x50" in r)]
    at, step, kind = returns_at_common_step(runs.run, returns,
                                            pd.DataFrame(evals, columns=["run", "step", "eval_return"]))
    assert (step, kind) == (2e6, "evaluation") and at.iloc[-1] == 200 + len(runs) - 1
    # runs 0-2 are 1000 x 50 (returns 200, 201, 202 at 2M), runs 3-5 100 x 500 (203, 204, 205)
    assert row(check(specs, evals=evals), 4).estimate == pytest.approx(-3)


def test_intervals_are_welchs_by_the_textbook_formula():
    """The difference's interval, from the formula (Welch-Satterthwaite degrees of freedom), not from scipy."""
    x, y = np.array([3.0, 1.0, 4.0, 1.5]), np.array([5.0, 9.0, 2.0, 6.0, 5.0])
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(vx + vy)
    got = findings.two_settings(x, y, -1)
    d = x.mean() - y.mean()
    assert (got["estimate"], got["low"], got["high"]) == pytest.approx((d, d - half, d + half))


def test_summary_lines_name_each_verdict_and_the_readings_that_disagree():
    """Each env with its seeds per setting; readings that share a head (before the last comma) are named once."""
    rows = pd.DataFrame([
        dict(finding=1, env="A", reading="pair", primary=True, verdict="supported", seeds_needed=None),
        dict(finding=1, env="A", reading="trend", primary=False, verdict="contradicted", seeds_needed=None),
        dict(finding=1, env="A", reading="pair, per unit, first third", primary=False, verdict="contradicted",
             seeds_needed=None),
        dict(finding=1, env="A", reading="pair, per unit, last third", primary=False, verdict="contradicted",
             seeds_needed=None),
        dict(finding=1, env="B", reading="pair", primary=True, verdict="undetermined", seeds_needed=7),
        dict(finding=1, env="B", reading="trend", primary=False, verdict="undetermined", seeds_needed=9)]).assign(
        n_seeds=[4, 4, 4, 4, 4, 4], n_seeds_most=[10, 4, 10, 10, 4, 4])
    line = findings_text.summary_lines(rows, ["A", "B", "C"])[0]
    assert ("supported in A (4 and 10 seeds); undetermined in B (4 seeds; 7 would decide it); not testable in C ("
            in line)
    assert "Readings that disagree with it: A: trend / pair, per unit (first third, last third) (contradicted)." in line
    # a reading without a comma keeps its name beside one that begins with it; a lone reading keeps its own
    assert findings_text.grouped(["trend", "trend, final return"]) == "trend / trend, final return"
    assert findings_text.grouped(["pair, speed: area", "b", "pair, x"]) == "pair (speed: area, x) / b"
    assert findings_text.grouped(["pair, speed: area"]) == "pair, speed: area"


def test_returns_beside_the_published_ones():
    """The 500 x 100 runs' returns at 1M steps (the last evaluation at or before it) and at the end, per env and
    minibatch size, beside CleanRL's published figure; envs it does not publish say so; no evaluations: the
    training curves interpolated at 1M."""
    seeds = (1, 2, 3)
    specs = (minibatch((50, 1000), seeds, ret=lambda size, seed: 3000 + size + seed)
             + minibatch((50,), seeds, ret=lambda size, seed: 900 * seed, env="Ant-v5")
             + [dict(sweep="env_rollout", shape=(100, 500), size=1000, seed=1, ret=5.0)])  # not 500 x 100: left out
    runs, returns, _, _ = frames(specs)
    # evaluations every 0.8M steps: the one at 0.8M is the last at or before 1M; each return encodes run and step
    evals = pd.DataFrame([(r, s, i * 1e3 + s / 1e5) for i, r in enumerate(runs.run) for s in (0.8e6, 1.6e6, 2.4e6)],
                         columns=["run", "step", "eval_return"])
    rows = findings.beside_published(runs, returns, evals)
    assert [(r["env"], r["minibatch_size"]) for r in rows] == [("Ant-v5", 50), ("HalfCheetah-v5", 50),
                                                                ("HalfCheetah-v5", 1000)]
    ant, cheetah = rows[0], rows[2]
    assert ant["published"] is None and cheetah["published"] == findings.PUBLISHED["HalfCheetah"]
    index = {r: i for i, r in enumerate(runs.run)}
    at_1m = [index[f"HalfCheetah-v5__500x100__mb1000__s{s}"] * 1e3 + 8 for s in seeds]
    assert (cheetah["budget_step"], cheetah["budget_kind"]) == (0.8e6, "evaluation")
    assert (cheetah["budget_mean"] == pytest.approx(np.mean(at_1m))
            and cheetah["budget_std"] == pytest.approx(np.std(at_1m, ddof=1)))
    assert cheetah["end_step"] == 2.4e6 and cheetah["end_mean"] == pytest.approx(np.mean(at_1m) + 16)
    # without evaluations: returns grow linearly from 0 to `ret` at 3M, so at 1M they are a third of it
    rows = findings.beside_published(runs, returns, evals.iloc[:0])
    assert rows[0]["budget_kind"] == "training" and rows[0]["budget_mean"] == pytest.approx(900 * 2 / 3)
    text = findings_text.published_markdown(rows)
    assert "| Ant-v5 | 500 x 100, minibatch 50 | 3 | 600 +- 300 at 1.000M (training) |" in text
    assert "none published" in text and "1443 +- 46" in text


def test_anatomy_rows_compare_the_pair_per_update_by_thirds():
    """Finding 3's pair, per update: minibatch 50's clipping factor half of 1000's in every iteration, its
    gradient norm twice; runs without the anatomy (empty columns) are left out."""
    runs, _, _, kl = frames(minibatch((50, 1000), (1, 2, 3), ret=lambda size, seed: size)
                            + minibatch((50, 1000), (4,), ret=lambda size, seed: size))
    rows = []
    for run in runs.itertuples():
        small = run.minibatch_size == 50
        for it in range(1, 61):
            jitter = 1 + 0.01 * run.seed
            rows.append(dict(run=run.run, iteration=it, seq_kl_mean=1e-5,
                             grad_norm_mean=(2.0 if small else 1.0) * jitter,
                             actor_grad_norm_mean=1.0, clip_scale_mean=(0.25 if small else 0.5) * jitter,
                             actor_step_mean=1e-3, approx_kl_mean=1e-3, clipfrac_mean=0.1))
    anatomy = pd.DataFrame(rows)
    anatomy.loc[anatomy.run.str.endswith("__s4"), ["grad_norm_mean", "clip_scale_mean"]] = np.nan  # made before it
    got = findings.anatomy_rows(runs, anatomy, (50, 1000)).set_index(["phase", "quantity"])
    assert set(got.index.get_level_values("phase")) == {"whole run", "first third", "middle third", "last third"}
    assert got.loc[("whole run", "clip_scale"), "ratio"] == pytest.approx(0.5)
    assert got.loc[("last third", "grad_norm"), "ratio"] == pytest.approx(2.0)
    assert (got.seeds == 3).all()
    text = findings_text.anatomy_markdown(got.reset_index(), (50, 1000))
    assert "clipping factor x0.5," in text and "gradient norm before clipping x2 " in text


def test_anatomy_reading_names_what_sets_the_step():
    """Equal steps with a 4x gradient: Adam sets the length, the KL per squared step is the KL ratio, and 4 is
    sqrt(20)'s 89%. A step twice as long is reported as a difference, with the KL per squared step quartered."""
    def whole(step, low, high):
        return pd.DataFrame(dict(ratio=[step, 0.6, 4.0, 0.25], low=[low, 0.5, 3.5, 0.2], high=[high, 0.7, 4.5, 0.3]),
                            index=["actor_step", "seq_kl", "grad_norm", "clip_scale"])
    same = findings_text.anatomy_reading(whole(1.0, 0.98, 1.02), 50, 1000)
    assert "Adam's per-weight normalisation" in same and "moves x0.6 as much" in same
    assert "direction, not its length" in same and "x4.47" in same and "is 89% of that" in same
    longer = findings_text.anatomy_reading(whole(2.0, 1.9, 2.1), 50, 1000)
    assert "Adam" not in longer and "differs (x2, [1.9, 2.1])" in longer and "moves x0.15 as much" in longer


def test_profile_shapes_tell_a_geometric_fall_from_a_plateau():
    """A reference KL falling geometrically, 0.97 per 1% of the updates: tau -1, R^2 1, and the plateau ratio at
    90% / 50% is what gamma_D predicts (0.97^40). One that falls, then stays flat: tau above -1, R^2 below 1, and
    its ratio well above the prediction of a geometric fit to it."""
    pct = np.arange(100) + 0.5
    geometric = 0.97 ** pct
    plateau = np.where(pct < 40, 0.95 ** pct, 0.95 ** 40 * (1 + 0.01 * np.sin(pct)))
    profiles = pd.DataFrame([dict(run=run, phase="early", iteration=1, curve="ref_kl", pct=p, kl=k)
                             for run, kls in (("geo", geometric), ("flat", plateau)) for p, k in zip(pct, kls)])
    fitted = {run: float(np.exp(np.polyfit(pct, np.log(kls), 1)[0])) for run, kls in (("geo", geometric),
                                                                                     ("flat", plateau))}
    kl_iterations = pd.DataFrame([dict(run=run, iteration=1, gamma_D_per_pct=g) for run, g in fitted.items()])
    got = findings.profile_shapes(profiles, kl_iterations).set_index("run")
    assert got.loc["geo", "tau"] == pytest.approx(-1) and got.loc["geo", "r2"] == pytest.approx(1)
    assert got.loc["geo", "plateau"] == pytest.approx(0.97 ** 40) == pytest.approx(got.loc["geo", "plateau_fit"])
    assert got.loc["flat", "tau"] > -0.9 and got.loc["flat", "r2"] < 0.9
    assert got.loc["flat", "plateau"] > 2 * got.loc["flat", "plateau_fit"]


def test_finding_4_reads_the_profiles_shape_against_the_minibatch_pairs():
    """Sequential-KL profiles whose log falls 0.01 per % of updates at 1000 x 50 and 100 x 500 (seeds jitter it),
    against 0.03 at minibatch 50 and 0.01 at 1000: the shapes are equivalent within half the pair's difference.
    With 100 x 500 falling as steeply as minibatch 50, they are not."""
    def study(steep_100x500):
        specs = minibatch((50, 1000), (1, 2, 3, 4), ret=lambda size, seed: 1000 + seed)
        specs += [dict(sweep="env_rollout", shape=shape, size=1000, seed=seed, ret=1000 + seed)
                  for shape in ((1000, 50), (100, 500)) for seed in (1, 2, 3, 4)]
        runs, returns, evals, kl = frames(specs)
        pct, rows = np.arange(100) + 0.5, []
        for r in distinct_runs(runs).itertuples():
            slope = 0.03 if r.minibatch_size == 50 or (steep_100x500 and r.num_envs == 100) else 0.01
            for phase in findings.PHASES:
                rows += [dict(run=r.run, phase=phase, iteration=1, curve="seq_kl", pct=p,
                              kl=np.exp(-(slope + 0.0005 * r.seed) * p)) for p in pct]
        rows = check_findings(runs, returns, evals, kl, pd.DataFrame(rows), (50, 1000), ((1000, 50), (100, 500)))
        return row(rows, 4, reading="sequential KL profile shape equivalent, late phase")

    alike, unlike = study(False), study(True)
    assert alike.verdict == "supported" and alike.threshold == pytest.approx(0.01, rel=0.01)
    assert alike.estimate == pytest.approx(0, abs=1e-9)
    assert unlike.verdict == "contradicted" and unlike.estimate == pytest.approx(0.02, rel=0.05)
