"""Normalisation statistics: shared by all envs or one set per env, saved, and frozen for evaluation."""
import numpy as np
import pytest

from vector_envs import get_norm_stats, make_envs, set_norm_stats


def step_randomly(envs, steps, seed=0):
    """Resets with `seed`, then takes `steps` uniform random actions drawn from `seed`; returns the last obs."""
    envs.reset(seed=seed)
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps, envs.num_envs, 3))
    for action in actions:
        obs, *_ = envs.step(action)
    return obs


@pytest.mark.parametrize("norm_stats,rows", [("shared", 1), ("per-env", 3)])
def test_statistics_are_shared_or_per_env(norm_stats, rows):
    envs = make_envs("Hopper-v5", 3, gamma=0.99, norm_stats=norm_stats)
    step_randomly(envs, 20)
    stats = get_norm_stats(envs)
    assert stats["obs_mean"].shape == (rows, 11) and stats["ret_var"].shape == (rows,)
    # reset and 20 steps: shared statistics saw every env's observations, per-env ones their own
    assert stats["obs_count"][0] > (60 if norm_stats == "shared" else 20)
    if norm_stats == "per-env":
        assert not np.allclose(stats["obs_mean"][0], stats["obs_mean"][1])
    envs.close()


def test_frozen_statistics_normalise_and_stay_put():
    train = make_envs("Hopper-v5", 2, gamma=0.99)
    step_randomly(train, 50)
    saved = get_norm_stats(train)
    evaluation = make_envs("Hopper-v5", 1, gamma=0.99)
    set_norm_stats(evaluation, saved, frozen=True)
    raw = make_envs("Hopper-v5", 1, gamma=0.99)
    raw_obs = step_randomly(raw.unwrapped, 30, seed=5)  # the same episode, unnormalised
    obs = step_randomly(evaluation, 30, seed=5)
    expected = np.clip((raw_obs - saved["obs_mean"][0]) / np.sqrt(saved["obs_var"][0] + 1e-8), -10, 10)
    np.testing.assert_allclose(obs, expected, rtol=1e-5, atol=1e-5)
    after = get_norm_stats(evaluation)
    for key in saved:
        np.testing.assert_array_equal(after[key][0], saved[key][0], err_msg=key)
    for envs in (train, evaluation, raw):
        envs.close()
