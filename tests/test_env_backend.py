"""--env-backend mujoco-batch against Gymnasium's own envs: the same transitions step by step, bit for bit, the
same normalisation (shared, per env, per member of a population) as Gymnasium's wrappers, and the same training run
end to end."""
import json
import os

import gymnasium as gym
import numpy as np
import pytest

from ppo_kl import vector_envs
from conftest import TINY, load_kl, run_script
from test_resume import scalars


def gymnasium_envs(env_id, num_envs):
    return gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * num_envs,
                                    autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)


@pytest.mark.parametrize("env_id", vector_envs.MUJOCO_BATCH_ENVS)
@pytest.mark.parametrize("env_threads", [1, 2])
def test_transitions_equal_gymnasium_step_by_step(env_id, env_threads):
    num_envs, num_steps = 4, 1050  # past the 1000-step truncation
    reference, batched = gymnasium_envs(env_id, num_envs), vector_envs.MujocoBatchEnv(env_id, num_envs, env_threads)
    obs_ref, _ = reference.reset(seed=11)
    obs, _ = batched.reset(seed=11)
    np.testing.assert_array_equal(obs, obs_ref)
    assert obs.dtype == obs_ref.dtype and obs.shape == (num_envs,) + reference.single_observation_space.shape
    # Actions beyond the bounds, clipped as ClipAction does, make the hoppers and walkers fall every few dozen steps.
    rng = np.random.default_rng(0)
    actions = np.clip(rng.uniform(-1.5, 1.5, (num_steps, num_envs) + reference.single_action_space.shape), -1, 1)
    terminations = truncations = 0
    for t, action in enumerate(actions.astype(np.float32)):
        expected, got = reference.step(action), batched.step(action)
        for name, want, have in zip(("obs", "reward", "terminated", "truncated"), expected[:4], got[:4]):
            assert have.dtype == want.dtype, (name, t)
            np.testing.assert_array_equal(have, want, err_msg=f"{name} differs at step {t}")
        terminations += expected[2].sum()
        truncations += expected[3].sum()
    # the sequence went through the episode ends of this env, and the resets after them
    if env_id.startswith("HalfCheetah"):
        assert truncations == num_envs and terminations == 0
    else:
        assert terminations >= 10 * num_envs


def test_wrapped_envs_and_episode_statistics_equal_gymnasium():
    """The training script's whole env stack (normalisation, clipping, episode statistics) on either backend."""
    stacks = [vector_envs.make_envs("Walker2d-v5", 3, 0.99, "shared", backend=backend)
              for backend in ("gymnasium", "mujoco-batch")]
    first = [envs.reset(seed=5)[0] for envs in stacks]
    np.testing.assert_array_equal(first[0], first[1])
    rng = np.random.default_rng(1)
    episodes = 0
    for t in range(300):
        action = rng.normal(size=(3, 6)).astype(np.float32)
        ((obs_ref, rew_ref, term_ref, trunc_ref, info_ref),
         (obs, rew, term, trunc, info)) = (envs.step(action) for envs in stacks)
        np.testing.assert_array_equal(obs, obs_ref)
        np.testing.assert_array_equal(rew, rew_ref)
        np.testing.assert_array_equal(term | trunc, term_ref | trunc_ref)
        assert ("episode" in info) == ("episode" in info_ref)
        if "episode" in info:
            np.testing.assert_array_equal(info["_episode"], info_ref["_episode"])
            np.testing.assert_array_equal(info["episode"]["r"][info["_episode"]],
                                          info_ref["episode"]["r"][info_ref["_episode"]])
            episodes += info["_episode"].sum()
    assert episodes >= 5
    stats, stats_ref = (vector_envs.get_norm_stats(envs) for envs in reversed(stacks))
    for key in stats_ref:
        np.testing.assert_array_equal(stats[key], stats_ref[key], err_msg=key)


def assert_same_step(got, want, where, envs=slice(None)):
    """Two vector envs' step results (of `envs` of `got`'s) bit for bit, episode statistics included (all but
    their wall-clock times); returns how many episodes ended."""
    for name, have, expected in zip(("obs", "reward", "terminated", "truncated"), got[:4], want[:4]):
        assert have.dtype == expected.dtype, (name, where)
        np.testing.assert_array_equal(have[envs], expected, err_msg=f"{name} differs at {where}")
    info, info_ref = got[4], want[4]
    ended = "_episode" in info and info["_episode"][envs].any()
    assert ended == ("_episode" in info_ref), where
    if ended:
        assert info["episode"].keys() == info_ref["episode"].keys(), where
        np.testing.assert_array_equal(info["_episode"][envs], info_ref["_episode"], err_msg=where)
        for key in info_ref["episode"]:
            if key != "t":
                assert info["episode"][key].dtype == info_ref["episode"][key].dtype, (key, where)
                np.testing.assert_array_equal(info["episode"][key][envs], info_ref["episode"][key],
                                              err_msg=f"{key} at {where}")
    return info_ref["_episode"].sum() if ended else 0


def assert_same_stats(got, want, where):
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key} at {where}")


@pytest.mark.parametrize("env_id", ["Hopper-v5", "HalfCheetah-v5"])
def test_per_env_statistics_equal_gymnasiums_single_env_wrappers(env_id):
    """--norm-stats per-env on mujoco-batch against CleanRL's setup, Gymnasium's single-env wrappers inside
    SyncVectorEnv, step by step: observations, rewards, episode statistics, each env's statistics and discounted
    return, through terminations (Hopper), the truncation at 1000 steps (HalfCheetah), the autoreset steps
    after them, and a reset of the whole vector env just after an episode's end (which leaves the single-env
    discounted return as it was)."""
    num_envs, num_steps = 2, 1050
    reference = vector_envs.make_envs(env_id, num_envs, 0.99, norm_stats="per-env")
    batched = vector_envs.make_envs(env_id, num_envs, 0.99, norm_stats="per-env", backend="mujoco-batch")
    first, first_ref = batched.reset(seed=7)[0], reference.reset(seed=7)[0]
    assert first.dtype == first_ref.dtype and batched.single_observation_space == reference.single_observation_space
    np.testing.assert_array_equal(first, first_ref)
    rng = np.random.default_rng(2)
    shape = (num_steps + 30, num_envs) + reference.single_action_space.shape
    actions = rng.uniform(-1.5, 1.5, shape).astype(np.float32)
    episodes, ended, was_reset = 0, 0, False
    for t, action in enumerate(actions):
        if t >= 1000 and ended and not was_reset:  # the whole vector env, just after an episode's end
            np.testing.assert_array_equal(batched.reset()[0], reference.reset()[0])
            was_reset = True
        ended = assert_same_step(batched.step(action), reference.step(action), f"step {t}")
        episodes += ended
        assert_same_stats(vector_envs.get_norm_stats(batched), vector_envs.get_norm_stats(reference), f"step {t}")
        returns_ref = [ret_norm.discounted_reward[0] for _, ret_norm in vector_envs.normalizers(reference)]
        np.testing.assert_array_equal(vector_envs.grouped(batched).accumulated_reward, returns_ref, err_msg=f"step {t}")
    assert was_reset and episodes >= (2 if env_id == "HalfCheetah-v5" else 20)


@pytest.mark.parametrize("backend", ["gymnasium", "mujoco-batch"])
@pytest.mark.parametrize("norm_stats", ["shared", "per-env"])
def test_population_equals_separate_runs(backend, norm_stats):
    """Two members of a population in one vector env, each with its own statistics, against two single runs of
    Gymnasium's wrappers (vector ones for shared statistics, single-env ones per env) with the same seeds, through
    episode ends and a reset of the whole vector env."""
    n, num_steps = 3, 200
    population = vector_envs.make_envs("Hopper-v5", n, 0.99, norm_stats, backend=backend, num_members=2)
    runs = [vector_envs.make_envs("Hopper-v5", n, 0.99, norm_stats) for _ in range(2)]
    seeds = (11, 21)
    obs = population.reset(seed=[seed + i for seed in seeds for i in range(n)])[0]
    for m, (run, seed) in enumerate(zip(runs, seeds)):
        np.testing.assert_array_equal(obs[m * n:(m + 1) * n], run.reset(seed=seed)[0])
    rng = np.random.default_rng(3)
    episodes, ended, was_reset = 0, 0, False
    for t in range(num_steps):
        if t >= 100 and ended and not was_reset:  # all envs, just after an episode's end
            obs = population.reset()[0]
            for m, run in enumerate(runs):
                np.testing.assert_array_equal(obs[m * n:(m + 1) * n], run.reset()[0])
            was_reset = True
        action = rng.uniform(-1.5, 1.5, (2 * n, 3)).astype(np.float32)
        got, ended = population.step(action), 0
        for m, run in enumerate(runs):
            envs = slice(m * n, (m + 1) * n)
            ended += assert_same_step(got, run.step(action[envs]), f"member {m} step {t}", envs)
            assert_same_stats(vector_envs.get_norm_stats(population, member=m), vector_envs.get_norm_stats(run),
                              f"member {m} step {t}")
        episodes += ended
    assert was_reset and episodes >= 20
    rows = vector_envs.get_norm_stats(population)["obs_mean"]
    assert rows.shape == ((2 if norm_stats == "shared" else 2 * n), 11) and not np.array_equal(rows[0], rows[-1])


@pytest.mark.parametrize("norm_stats", ["shared", "per-env"])
def test_training_run_is_the_same_on_either_backend(tmp_path, norm_stats):
    """Switching the backend changes who steps the envs, nothing else: the same KL files and returns."""
    runs = {backend: run_script(tmp_path, backend, *TINY, "--env-id", "Hopper-v5", "--env-backend", backend,
                                "--norm-stats", norm_stats)[1]
            for backend in ("gymnasium", "mujoco-batch")}
    kl_ref, kl = load_kl(runs["gymnasium"]), load_kl(runs["mujoco-batch"])
    assert len(kl) == len(kl_ref) == 2
    for got, want in zip(kl, kl_ref):
        for key in ("seq_kl", "ref_kl", "num_transitions"):
            np.testing.assert_array_equal(got[key], want[key])
    returns = []
    for run_dir in runs.values():
        with open(os.path.join(run_dir, "summary.json")) as f:
            returns.append(json.load(f)["final_returns"])
    assert returns[0] and returns[0] == returns[1]
    logged = [scalars(run_dir)["charts/episodic_return"] for run_dir in runs.values()]
    assert len(logged[0]) > 4 and logged[0] == logged[1]
