"""findings.py on synthetic data frames whose answers are known by construction."""
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import ROOT  # noqa: F401  (puts the repository on sys.path)
import findings
from findings import check_findings, distinct_runs, finding_verdicts, returns_at_common_step

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


def row(rows, finding, env="HalfCheetah-v5", which=0):
    return [r for r in rows if r["finding"] == finding and r["env"] == env][which]


def check(specs, shapes=((1000, 50), (100, 500)), evals=()):
    runs, returns, ev, kl = frames(specs, evals)
    return check_findings(runs, returns, ev, kl, shapes)


SIZES = (50, 100, 250, 500, 1000)


def test_findings_that_hold_by_construction():
    # 4 seeds; size 50 far worse, sequential KL falling with the size, reference KL always decreasing
    rows = check(minibatch(SIZES, (1, 2, 3, 4), ret=lambda size, seed: size + 10 * seed,
                           kl=lambda size, seed: 1e-3 / size * (1 + 0.01 * seed)))
    one, two, three = row(rows, 1), row(rows, 2), row(rows, 3)
    assert one["verdict"] == "holds" and one["estimate"] == pytest.approx(50 - 1000) and one["high"] < 0
    assert two["verdict"] == "holds" and two["estimate"] == 1.0
    assert three["verdict"] == "holds" and three["estimate"] == -1 and three["settings"] == 5
    assert one["seeds"] == 4 and one["why"] == ""


def test_findings_that_fail_by_construction():
    rows = check(minibatch((50, 1000), (1, 2, 3, 4), ret=lambda size, seed: 5000 - size + seed, frac=0.6)
                 + [dict(sweep="env_rollout", shape=shape, size=1000, seed=seed, ret=r + seed, kl=1e-5, frac=0.6)
                    for shape, r in (((1000, 50), 500), ((100, 500), 1000)) for seed in (1, 2, 3, 4)])
    assert row(rows, 1)["verdict"] == "does not hold" and row(rows, 1)["low"] > 0
    assert row(rows, 2)["verdict"] == "does not hold" and row(rows, 2)["estimate"] == pytest.approx(0.6)
    returns4, kl4 = row(rows, 4, which=0), row(rows, 4, which=1)
    assert returns4["verdict"] == "does not hold"  # 500 against 1000: 50% apart, the band is 20%
    assert returns4["estimate"] == pytest.approx((502.5 - 1002.5) / 1002.5)
    assert kl4["verdict"] == "holds" and kl4["estimate"] == pytest.approx(1.0)
    assert finding_verdicts(rows)[4] == {"HalfCheetah-v5": "does not hold"}


def test_inconclusive_findings():
    # the same clear effect as above, but from 2 seeds: inconclusive, though the interval alone would hold
    rows = check(minibatch((50, 1000), (1, 2), ret=lambda size, seed: size + seed))
    one = row(rows, 1)
    assert one["verdict"] == "inconclusive" and one["reading"] == "holds" and "2 seeds" in one["why"]
    # 2 minibatch sizes: a rank correlation is +-1 by construction, whatever the seeds
    assert row(rows, 3)["verdict"] == "inconclusive" and "2 settings" in row(rows, 3)["why"]
    # 4 seeds whose noise hides the effect: the interval straddles 0
    noise = {50: [600, -600, 600, -600], 1000: [600, 600, -600, -600]}  # not shared by a seed's two runs
    noisy = check(minibatch((50, 1000), (1, 2, 3, 4), ret=lambda size, seed: size / 10 + noise[size][seed - 1]))
    assert row(noisy, 1)["verdict"] == "inconclusive" and row(noisy, 1)["low"] < 0 < row(noisy, 1)["high"]
    assert row(noisy, 1)["why"] == "the interval straddles the threshold"


def test_chance_level_is_the_exact_permutation_quantile_of_spearmans_rho():
    # independently: every ordering of n settings, rho = 1 - 6 sum(d^2) / (n^3 - n), and the smallest value that
    # at most 5% of the orderings reach or pass
    for n in range(2, 9):
        perms = np.array(list(itertools.permutations(range(n))))
        rhos = 1 - 6 * ((perms - np.arange(n)) ** 2).sum(1) / (n ** 3 - n)
        tail = {v: np.mean(rhos >= v - 1e-12) for v in np.unique(rhos)}
        assert findings.chance_level(n) == pytest.approx(min([v for v, p in tail.items() if p <= 0.05],
                                                             default=np.inf)), n
    # the one-tailed 5% critical values of Spearman's rho in published tables
    assert [findings.chance_level(n) for n in range(1, 9)] == pytest.approx(
        [np.inf, np.inf, np.inf, 1.0, 0.9, 0.829, 0.714, 0.643], abs=5e-4)


def test_rank_correlation_readings():
    read, level = findings.read_interval, findings.chance_level(5)  # 0.9
    claims_negative, claims_positive = ("rank", -1, level), ("rank", +1, level)
    assert [read(-1, -0.9, claims_negative), read(-0.9, -0.9, claims_negative), read(-0.8, -0.1, claims_negative),
            read(-0.5, 0.5, claims_negative), read(0, 0, claims_negative), read(0.1, 0.9, claims_negative)] == \
           ["holds", "holds", "inconclusive", "inconclusive", "does not hold", "does not hold"]
    assert [read(0.9, 1, claims_positive), read(0.2, 0.8, claims_positive), read(-0.9, -0.1, claims_positive)] == \
           ["holds", "inconclusive", "does not hold"]
    never = ("rank", +1, findings.chance_level(3))  # no chance level: 3 settings can refute, never support
    assert [read(1, 1, never), read(-1, -0.5, never)] == ["inconclusive", "does not hold"]
    assert findings.rule_text(claims_negative) == "<= -0.9 (chance level); does not hold >= 0"
    assert findings.rule_text(never) == "never (no chance level); does not hold <= 0"
    assert findings.inconclusive_why(never, 3, 1, 1) == "no ordering of 3 settings is rarer than 5% by chance"
    assert findings.inconclusive_why(claims_negative, 5, -0.5, 0.5) == "the interval straddles 0"


def test_a_stable_but_weak_rank_correlation_is_not_support():
    # Ant-v5's hump: sequential KL ranks 250 > 500 > 100 > 50 > 1000 at every seed, rank correlation -0.1.
    # Every resample of seeds gives -0.1, so the interval is the point [-0.1, -0.1]: below 0, yet a ranking that
    # 57 of the 120 orderings of 5 sizes reach or pass
    hump = {50: 2, 100: 3, 250: 5, 500: 4, 1000: 1}
    rows = check(minibatch(SIZES, (1, 2, 3, 4), ret=lambda size, seed: 100.0 + seed,
                           kl=lambda size, seed: hump[size] * 1e-6 * (1 + 0.01 * seed)))
    three = row(rows, 3)
    assert three["estimate"] == pytest.approx(-0.1) and (three["low"], three["high"]) == pytest.approx((-0.1, -0.1))
    assert three["verdict"] == "inconclusive"
    assert three["why"] == "the interval is on the claim's side of 0 but not wholly at or beyond the chance level"
    assert three["rule"] == "<= -0.9 (chance level); does not hold >= 0"
    # one swap of neighbours from a perfect order, at every seed: -0.9, exactly the chance level of 5, holds
    near = {50: 5, 100: 4, 250: 3, 500: 1, 1000: 2}
    rows = check(minibatch(SIZES, (1, 2, 3, 4), ret=lambda size, seed: 100.0 + seed,
                           kl=lambda size, seed: near[size] * 1e-6 * (1 + 0.01 * seed)))
    assert row(rows, 3)["estimate"] == pytest.approx(-0.9) and row(rows, 3)["verdict"] == "holds"
    # 8 sizes ranked at exactly the chance level of 8 (sum of d^2 = 30: rho = -0.642857...), which is rounded
    eight = (50, 100, 125, 200, 250, 400, 500, 1000)
    ranks = dict(zip(eight, (4, 6, 8, 5, 7, 3, 2, 1)))  # d = -4, -1, 2, 0, 3, 0, 0, 0 from the reversed order
    rows = check(minibatch(eight, (1, 2, 3, 4), ret=lambda size, seed: 100.0 + seed,
                           kl=lambda size, seed: ranks[size] * 1e-6 * (1 + 0.01 * seed)))
    assert row(rows, 3)["estimate"] == pytest.approx(-1 + 6 * 30 / (8 ** 3 - 8))
    assert row(rows, 3)["verdict"] == "holds"


def test_a_rank_correlation_over_four_settings_holds_only_if_every_resample_orders_them_perfectly():
    # finding 5 over Humanoid-v5's phase 2 settings: returns and sequential KL in the same order, so the
    # correlation is 1 (a 1-in-24 ordering by chance)
    def specs(swapped_seed):
        order = {(500, 100, 50): 1, (500, 100, 1000): 2, (1000, 50, 1000): 3, (100, 500, 1000): 4}
        out = []
        for (n, m, size), rank in order.items():
            for seed in (1, 2, 3, 4):
                kl = {1: 2.5, 2: 0.5}.get(rank, rank) if seed == swapped_seed else rank
                out.append(dict(sweep="minibatch" if (n, m) == (500, 100) else "env_rollout", shape=(n, m),
                                size=size, seed=seed, ret=1000.0 * rank, kl=1e-6 * kl))
        return out
    five = row(check(specs(None)), 5)
    assert five["settings"] == 4 and (five["estimate"], five["low"], five["high"]) == pytest.approx((1, 1, 1))
    assert five["verdict"] == "holds" and five["rule"] == ">= 1 (chance level); does not hold <= 0"
    # one seed's KL swaps the two lowest settings: resamples that draw it twice or more fall short of a perfect order
    five = row(check(specs(4)), 5)
    assert five["estimate"] == pytest.approx(1) and five["low"] < 1 and five["low"] > 0
    assert five["verdict"] == "inconclusive"


def test_a_run_shared_by_two_sweeps_is_counted_once():
    seeds = (1, 2, 3)
    specs = minibatch((50, 1000), seeds, ret=lambda size, seed: {50: 100, 1000: 900}[size] + seed,
                      kl=lambda size, seed: {50: 3e-5, 1000: 1e-5}[size], frac=0.5)
    shared = [dict(s, sweep="env_rollout") for s in specs if s["size"] == 1000]  # copied into the other sweep
    renamed = [dict(shared[0], run="HalfCheetah-v5__500x100__mb1000__s1__copy")]  # the same run under a new name
    other = [dict(sweep="env_rollout", shape=(100, 500), size=1000, seed=seed, ret=500 + seed, kl=2e-5, frac=1.0)
             for seed in seeds]
    runs, returns, evals, kl = frames(specs + shared + renamed + other)
    assert len(runs) == 13 and len(distinct_runs(runs)) == 9
    rows = check_findings(runs, returns, evals, kl, ((1000, 50), (100, 500)))
    # finding 2 over the distinct runs: 3 settings with fractions 0.5, 0.5 and 1.0 (0.625 if the shared setting
    # counted twice)
    assert row(rows, 2)["estimate"] == pytest.approx(2 / 3) and row(rows, 2)["settings"] == 3
    # finding 5 over 3 settings: returns 100 / 900 / 500 against KL 3e-5 / 1e-5 / 2e-5: rank correlation -1
    five = row(rows, 5)
    assert five["settings"] == 3 and five["estimate"] == pytest.approx(-1) and five["verdict"] == "does not hold"
    assert findings.report(runs, findings.settings_table(runs, returns, evals, kl, pd.DataFrame(
        columns=["run", "phase", "iteration"])), rows).startswith("9 distinct runs")


def test_runs_ending_at_different_steps_are_compared_at_a_common_step():
    # HalfCheetah's staircase: 1000 x 50 ends its last episodes at 2.0M, 100 x 500 at 2.9M; returns grow linearly
    specs = [dict(sweep="env_rollout", shape=shape, size=1000, seed=seed, ret=ret + seed, last=last)
             for shape, ret, last in (((1000, 50), 600, 2.0e6), ((100, 500), 1160, 2.9e6)) for seed in (1, 2, 3)]
    runs, returns, evals, kl = frames(specs)
    at, step, kind = returns_at_common_step(runs.run, returns, evals)
    assert step == 2.0e6 and kind == "training"
    assert at["HalfCheetah-v5__100x500__mb1000__s1"] == pytest.approx(1161 * 2.0 / 2.9)
    four = row(check(specs), 4)
    assert four["step"] == 2.0e6
    a, b = 602, 1162 * 2.0 / 2.9  # seed means at 2.0M: 800 against 602, not 1162 against 602
    assert four["estimate"] == pytest.approx((a - b) / b)
    # with evaluations, the last evaluation every run has: 100 x 500 evaluated on at 3M, 1000 x 50 up to 2M
    evals = [(r, s, s / 1e4 + i) for i, r in enumerate(runs.run) for s in (1e6, 2e6, 3e6)
             if not (s == 3e6 and "1000x50" in r)]
    at, step, kind = returns_at_common_step(runs.run, returns, pd.DataFrame(evals, columns=["run", "step", "eval_return"]))
    assert (step, kind) == (2e6, "evaluation") and at.iloc[-1] == 200 + len(runs) - 1
    assert row(check(specs, evals=evals), 4)["kind"] == "evaluation"


def test_intervals_are_scipy_bootstrap_over_seeds():
    values = np.array([3.0, 1.0, 4.0, 1.5, 5.0])
    estimate, low, high = findings.bootstrap([values[:, None]], lambda m: m.mean(-2)[..., 0])
    direct = stats.bootstrap((values,), np.mean, n_resamples=findings.RESAMPLES, method="percentile", rng=0)
    assert estimate == values.mean()
    assert (low, high) == pytest.approx((direct.confidence_interval.low, direct.confidence_interval.high))


def test_interval_readings_and_summary_lines():
    read = findings.read_interval
    assert [read(-2, -1, ("below", 0)), read(1, 2, ("below", 0)), read(-1, 1, ("below", 0))] == \
           ["holds", "does not hold", "inconclusive"]
    assert [read(0.1, 0.3, ("within", -0.2, 0.2)), read(0.3, 0.4, ("within", -0.2, 0.2)),
            read(-0.1, 0.1, ("within", -0.2, 0.2))] == ["inconclusive", "does not hold", "holds"]
    rows = [dict(finding=1, env="A", verdict="holds"), dict(finding=1, env="B", verdict="inconclusive")]
    line = findings.summary_lines(rows, ["A", "B", "C"])[0]
    assert "held in 1 of 2 envs tested (A: holds, B: inconclusive); not testable in C" in line


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
    assert cheetah["budget_mean"] == pytest.approx(np.mean(at_1m)) and cheetah["budget_std"] == pytest.approx(np.std(at_1m, ddof=1))
    assert cheetah["end_step"] == 2.4e6 and cheetah["end_mean"] == pytest.approx(np.mean(at_1m) + 16)
    # without evaluations: returns grow linearly from 0 to `ret` at 3M, so at 1M they are a third of it
    rows = findings.beside_published(runs, returns, evals.iloc[:0])
    assert rows[0]["budget_kind"] == "training" and rows[0]["budget_mean"] == pytest.approx(900 * 2 / 3)
    text = findings.published_markdown(rows)
    assert "| Ant-v5 | 500 x 100, minibatch 50 | 3 | 600 +- 300 at 1.000M (training) |" in text
    assert "none published" in text and "1443 +- 46" in text
