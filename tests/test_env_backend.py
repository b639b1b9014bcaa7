"""--env-backend mujoco-batch against Gymnasium's own envs: the same transitions step by step, bit for bit, and
the same training run end to end."""
import json
import os

import gymnasium as gym
import numpy as np
import pytest

import vector_envs
from conftest import TINY, load_kl, run_script


def gymnasium_envs(env_id, num_envs):
    return gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * num_envs, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)


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
    stacks = [vector_envs.make_envs("Walker2d-v5", 3, 0.99, backend=backend) for backend in ("gymnasium", "mujoco-batch")]
    first = [envs.reset(seed=5)[0] for envs in stacks]
    np.testing.assert_array_equal(first[0], first[1])
    rng = np.random.default_rng(1)
    episodes = 0
    for t in range(300):
        action = rng.normal(size=(3, 6)).astype(np.float32)
        (obs_ref, rew_ref, term_ref, trunc_ref, info_ref), (obs, rew, term, trunc, info) = (envs.step(action) for envs in stacks)
        np.testing.assert_array_equal(obs, obs_ref)
        np.testing.assert_array_equal(rew, rew_ref)
        np.testing.assert_array_equal(term | trunc, term_ref | trunc_ref)
        assert ("episode" in info) == ("episode" in info_ref)
        if "episode" in info:
            np.testing.assert_array_equal(info["_episode"], info_ref["_episode"])
            np.testing.assert_array_equal(info["episode"]["r"][info["_episode"]], info_ref["episode"]["r"][info_ref["_episode"]])
            episodes += info["_episode"].sum()
    assert episodes >= 5
    for (obs_norm, ret_norm), (obs_norm_ref, ret_norm_ref) in zip(vector_envs.normalizers(stacks[1]), vector_envs.normalizers(stacks[0])):
        np.testing.assert_array_equal(obs_norm.obs_rms.mean, obs_norm_ref.obs_rms.mean)
        np.testing.assert_array_equal(ret_norm.return_rms.var, ret_norm_ref.return_rms.var)


def test_training_run_is_the_same_on_either_backend(tmp_path):
    """Switching the backend changes who steps the envs, nothing else: the same KL files and returns."""
    runs = {backend: run_script(tmp_path, backend, *TINY, "--env-id", "Hopper-v5", "--env-backend", backend)[1]
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
