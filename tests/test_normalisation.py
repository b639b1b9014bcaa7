"""Normalisation statistics: shared by all envs or one set per env, one of either per member of a population, saved,
frozen for evaluation, and checkpointed with the envs, all members' or one's."""
import numpy as np
import pytest

from ppo_kl.vector_envs import (MujocoBatchEnv, env_state, get_norm_stats, make_envs, set_env_state, set_norm_stats,
                                vector_wrappers)


def step_randomly(envs, steps, seed=0):
    """Resets with `seed`, then takes `steps` uniform random actions drawn from `seed`; returns the last obs."""
    envs.reset(seed=seed)
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps, envs.num_envs, 3))
    for action in actions:
        obs, *_ = envs.step(action)
    return obs


@pytest.mark.parametrize("backend", ["gymnasium", "mujoco-batch"])
@pytest.mark.parametrize("norm_stats,rows", [("shared", 1), ("per-env", 3)])
def test_statistics_are_shared_or_per_env(norm_stats, rows, backend):
    envs = make_envs("Hopper-v5", 3, gamma=0.99, norm_stats=norm_stats, backend=backend)
    step_randomly(envs, 20)
    stats = get_norm_stats(envs)
    assert stats["obs_mean"].shape == (rows, 11) and stats["ret_var"].shape == (rows,)
    # reset and 20 steps: shared statistics saw every env's observations, per-env ones their own
    assert stats["obs_count"][0] > (60 if norm_stats == "shared" else 20)
    if norm_stats == "per-env":
        assert not np.allclose(stats["obs_mean"][0], stats["obs_mean"][1])
    envs.close()


@pytest.mark.parametrize("backend", ["gymnasium", "mujoco-batch"])
def test_frozen_statistics_normalise_and_stay_put(backend):
    train = make_envs("Hopper-v5", 2, gamma=0.99, norm_stats="shared")
    step_randomly(train, 50)
    saved = get_norm_stats(train)
    evaluation = make_envs("Hopper-v5", 1, gamma=0.99, norm_stats="shared", backend=backend)
    set_norm_stats(evaluation, saved, frozen=True)
    raw = make_envs("Hopper-v5", 1, gamma=0.99, norm_stats="shared")
    raw_obs = step_randomly(raw.unwrapped, 30, seed=5)  # the same episode, unnormalised
    obs = step_randomly(evaluation, 30, seed=5)
    expected = np.clip((raw_obs - saved["obs_mean"][0]) / np.sqrt(saved["obs_var"][0] + 1e-8), -10, 10)
    np.testing.assert_allclose(obs, expected, rtol=1e-5, atol=1e-5)
    after = get_norm_stats(evaluation)
    for key in saved:
        np.testing.assert_array_equal(after[key][0], saved[key][0], err_msg=key)
    for envs in (train, evaluation, raw):
        envs.close()


@pytest.mark.parametrize("backend", ["gymnasium", "mujoco-batch"])
@pytest.mark.parametrize("norm_stats", ["shared", "per-env"])
def test_one_members_statistics_loaded_and_frozen(backend, norm_stats):
    """set_norm_stats into member 1 of 2: its envs take the rows (row 0 for all when one was saved) and keep them,
    member 0's go on learning."""
    envs = make_envs("Hopper-v5", 2, 0.99, norm_stats, backend=backend, num_members=2)
    saved = {key: value[:1] for key, value in get_norm_stats(make_envs("Hopper-v5", 2, 0.99, norm_stats)).items()}
    saved["obs_mean"] = saved["obs_mean"] + 1.0
    set_norm_stats(envs, saved, frozen=True, member=1)
    step_randomly(envs, 30)
    loaded, learning = get_norm_stats(envs, member=1), get_norm_stats(envs, member=0)
    for key in saved:
        np.testing.assert_array_equal(loaded[key], np.repeat(saved[key], len(loaded[key]), axis=0), err_msg=key)
    assert (learning["obs_count"] > 30).all()


@pytest.mark.parametrize("backend", ["gymnasium", "mujoco-batch"])
def test_statistics_per_member(backend):
    envs = make_envs("Hopper-v5", 3, gamma=0.99, norm_stats="shared", backend=backend, num_members=2)
    step_randomly(envs, 20)
    stats, member = get_norm_stats(envs), get_norm_stats(envs, member=1)
    assert stats["obs_mean"].shape == (2, 11) and member["obs_mean"].shape == (1, 11)
    assert stats["obs_count"][0] > 60 and not np.allclose(stats["obs_mean"][0], stats["obs_mean"][1])
    for key in stats:
        np.testing.assert_array_equal(member[key], stats[key][1:])


def run_past_an_episode_end(envs, seed, min_steps=40):
    """Resets with `seed` and steps until at least `min_steps` are done and an episode just ended, so that the next
    step is an autoreset step; returns the action generator, to go on with."""
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for step in range(1000):
        _, _, terminated, truncated, _ = envs.step(rng.uniform(-1.5, 1.5, (envs.num_envs, 3)).astype(np.float32))
        if step >= min_steps and (terminated | truncated).any():
            return rng
    raise AssertionError("no episode ended")


def assert_same_steps(envs, others, rng, steps=50):
    """Steps `envs` and the `others`, (member, stack) pairs, with the same actions: each stack gives what the member
    gives in `envs` (all of `envs` with member None), statistics included."""
    for step in range(steps):
        action = rng.uniform(-1.5, 1.5, (envs.num_envs, 3)).astype(np.float32)
        got = envs.step(action)
        for member, other in others:
            n = other.num_envs if member is not None else 0
            ids = slice(None) if member is None else slice(member * n, (member + 1) * n)
            want = other.step(action[ids])
            for name, x, y in zip(("obs", "reward", "terminated", "truncated"), got[:4], want[:4]):
                np.testing.assert_array_equal(x[ids], y, err_msg=f"{name}, member {member}, step {step}")
            assert ("_episode" in want[4]) == ("_episode" in got[4] and got[4]["_episode"][ids].any())
            if "_episode" in want[4]:
                np.testing.assert_array_equal(got[4]["episode"]["r"][ids], want[4]["episode"]["r"])
            stats, expected = get_norm_stats(envs, member=member), get_norm_stats(other)
            for key in expected:
                np.testing.assert_array_equal(stats[key], expected[key], err_msg=f"{key}, member {member}, step {step}")


CHECKPOINTED = [("mujoco-batch", "per-env", 1), ("mujoco-batch", "shared", 2), ("gymnasium", "shared", 2),
                ("gymnasium", "per-env", 2)]


@pytest.mark.parametrize("backend,norm_stats,num_members", CHECKPOINTED)
def test_checkpointed_state_continues_the_run(backend, norm_stats, num_members):
    """env_state taken just after an episode's end, put into fresh envs reset from another seed: the next 50 steps
    are those of the run it was taken from."""
    def build():
        return make_envs("Hopper-v5", 3, 0.99, norm_stats, backend=backend, num_members=num_members)

    envs, fresh = build(), build()
    rng = run_past_an_episode_end(envs, seed=1)
    fresh.reset(seed=2)
    set_env_state(fresh, env_state(envs))
    assert_same_steps(envs, [(None, fresh)], rng)


@pytest.mark.parametrize("backend,norm_stats", [("mujoco-batch", "per-env"), ("mujoco-batch", "shared"),
                                                ("gymnasium", "shared"), ("gymnasium", "per-env")])
def test_member_state_is_a_single_runs(backend, norm_stats):
    """A member's env_state and statistics, taken from a population mid-run, are a single run's: put into single
    runs of its envs, those continue as the members do in the population; put back into a fresh population, member
    by member, that continues as the first."""
    def build(num_members):
        return make_envs("Hopper-v5", 3, 0.99, norm_stats, backend=backend, num_members=num_members)

    population, fresh, singles = build(2), build(2), [build(1), build(1)]
    rng = run_past_an_episode_end(population, seed=1)
    fresh.reset(seed=5)
    for member, single in enumerate(singles):
        single.reset(seed=7)
        state = env_state(population, member=member)
        assert same_layout(state, env_state(single))
        set_env_state(single, state)
        set_env_state(fresh, state, member=member)
    assert_same_steps(population, [(0, singles[0]), (1, singles[1]), (None, fresh)], rng)


def same_layout(a, b):
    """Whether two states have the same nested keys and types, and arrays of the same dtypes and shapes."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_layout(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_layout(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
    return type(a) is type(b) or all(isinstance(x, (int, float, np.number)) for x in (a, b))


def test_mujoco_batch_checkpoint_of_gymnasiums_vector_wrappers_continues():
    """A mujoco-batch checkpoint written when Gymnasium's vector wrappers normalised its envs resumes in
    GroupedCleanRLWrappers."""
    old = vector_wrappers(MujocoBatchEnv("Hopper-v5", 3), 0.99)
    envs = make_envs("Hopper-v5", 3, 0.99, "shared", backend="mujoco-batch")
    rng = run_past_an_episode_end(old, seed=1)
    envs.reset(seed=2)
    set_env_state(envs, env_state(old))
    assert_same_steps(envs, [(None, old)], rng)
