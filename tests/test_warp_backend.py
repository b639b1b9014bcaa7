"""--env-backend warp: MuJoCo Warp envs (on Warp's CPU device here) step by step against Gymnasium's own envs, the torch
wrappers against Gymnasium's vector wrappers, and tiny real training runs, stopped and resumed."""
import os
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.mujoco.humanoid_v5 import mass_center

from conftest import load_kl, run_script
from test_resume import assert_same_run, run_whole_and_stopped_then_resume, scalars
from ppo_kl.vector_envs import MujocoBatchEnv, env_state, get_norm_stats, make_envs, set_env_state
from ppo_kl.warp_envs import CleanRLWrappers

# MuJoCo Warp is an install of its own (requirements-warp.txt): without it this module skips, saying how to get it.
# CI installs it, so there a missing package is a failure, not a skip.
WARP_MISSING = "MuJoCo Warp not installed: pip install -r requirements-warp.txt"
if not os.environ.get("CI"):
    pytest.importorskip("warp", reason=WARP_MISSING)
    pytest.importorskip("mujoco_warp", reason=WARP_MISSING)
from ppo_kl.warp_envs import WarpVectorEnv  # noqa: E402

NUM_WORLDS = 3
# steps, TimeLimit (HalfCheetah never falls: a short limit puts truncations and the resets after them into the run),
# seed and tolerances. Warp computes in float32, MuJoCo in float64, and a contact solve amplifies the rounding:
# most in HalfCheetah's joint velocities (~2e-3 on values ~10) and Humanoid's contact and actuator forces (entries of
# hundreds; its Warp side also runs Newton in place of PGS). obs: |warp - gym| <= atol + 1e-3 |gym|.
CASES = {
    "HalfCheetah-v5": dict(steps=45, max_episode_steps=20, seed=1, obs_atol=1e-3),
    "Hopper-v5": dict(steps=30, max_episode_steps=1000, seed=2, obs_atol=1e-3),
    "Walker2d-v5": dict(steps=30, max_episode_steps=1000, seed=3, obs_atol=1e-3),
    "Humanoid-v5": dict(steps=30, max_episode_steps=1000, seed=5, obs_atol=1e-2),
    # refused by the script: its contact forces differ (docs/warp_backend.md); expected to fail until MuJoCo Warp
    # orients plane-capsule contact frames as MuJoCo does, when this test's strict xfail says to enable Ant
    "Ant-v5": dict(steps=60, max_episode_steps=40, seed=4, obs_atol=1e-3),
}
ANT_DIFFERS = pytest.mark.xfail(strict=True, reason="MuJoCo Warp 4.0.0's plane-capsule contact frame")


def forward_position(env_id, env):
    """The position Gymnasium's env differences at its next step, read from its data."""
    if env_id == "Humanoid-v5":
        return mass_center(env.model, env.data)[0]
    if env_id == "Ant-v5":
        return env.data.body(1).xpos[0]
    return env.data.qpos[0]


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("env_id", list(CASES))
def test_warp_env_steps_as_gymnasium(env_id, device, request):
    """Same state, same actions, every step: observation, reward, terminated and truncated agree, through
    terminations, truncations and the autoreset steps after them.

    Before each step the Warp worlds take Gymnasium's carried state (qpos, qvel, solver warm start, forward position),
    so that each compared step holds one step's float32 error instead of a chaotic divergence; the step itself, the
    rewards, flags and resets run through the backend's own code. A Warp world resets to the state Gymnasium's env
    reset to (their noise RNGs differ by design)."""
    if env_id == "Ant-v5":
        request.applymarker(ANT_DIFFERS)
    case = CASES[env_id]
    n, gym_envs = NUM_WORLDS, gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id, max_episode_steps=case["max_episode_steps"])] * NUM_WORLDS,
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    sims = [e.unwrapped for e in gym_envs.envs]
    warp = WarpVectorEnv(env_id, n, device, max_episode_steps=case["max_episode_steps"])

    def gym_state(field):
        return torch.tensor(np.stack([getattr(sim.data, field) for sim in sims]), device=warp.device)

    assert warp.single_observation_space == gym_envs.single_observation_space
    assert warp.single_action_space == gym_envs.single_action_space
    warp.reset_state = lambda: (gym_state("qpos"), gym_state("qvel"))
    obs_gym, _ = gym_envs.reset(seed=case["seed"])
    obs_warp, _ = warp.reset()
    np.testing.assert_allclose(obs_warp.cpu().numpy(), obs_gym, atol=case["obs_atol"], rtol=1e-3)
    rng = np.random.default_rng(case["seed"])
    low, high = gym_envs.single_action_space.low, gym_envs.single_action_space.high
    seen = dict(terminated=0, truncated=0, resets=0)
    for step in range(case["steps"]):
        action = rng.uniform(low, high, size=(n, len(low))).astype(np.float32)
        for field in ("qpos", "qvel", "qacc_warmstart"):
            getattr(warp, field).copy_(gym_state(field))
        warp.x_position.copy_(torch.tensor([forward_position(env_id, sim) for sim in sims]))
        resetting = warp.needs_reset.cpu().numpy().copy()
        obs_gym, reward_gym, terminated_gym, truncated_gym, _ = gym_envs.step(action)
        # the reset state of the worlds that resets this step is the one Gymnasium just drew
        obs_warp, reward_warp, terminated_warp, truncated_warp = (
            x.cpu() for x in warp.step(torch.from_numpy(action).to(warp.device))[:4])
        where = f"{env_id} step {step}"
        np.testing.assert_array_equal(terminated_warp.numpy(), terminated_gym, err_msg=where)
        np.testing.assert_array_equal(truncated_warp.numpy(), truncated_gym, err_msg=where)
        np.testing.assert_allclose(obs_warp.numpy(), obs_gym, atol=case["obs_atol"], rtol=1e-3, err_msg=where)
        np.testing.assert_allclose(reward_warp.numpy(), reward_gym, atol=1e-3, rtol=0, err_msg=where)
        seen["terminated"] += terminated_gym.sum()
        seen["truncated"] += truncated_gym.sum()
        seen["resets"] += resetting.sum()
        assert (reward_warp.numpy()[resetting] == 0).all()
    # the run went through what it claims to test
    assert seen["resets"] > 0 and seen["terminated" if env_id != "HalfCheetah-v5" else "truncated"] > 0, seen
    gym_envs.close()


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5"])  # HalfCheetah never ends
def test_warp_env_healthy_ranges_are_gymnasiums(env_id):
    """Termination on 2,000 random states spread across the healthy ranges' bounds, against the env's is_healthy."""
    sim = gym.make(env_id).unwrapped
    warp = WarpVectorEnv(env_id, 2000, "cpu")
    rng = np.random.default_rng(0)
    qpos = sim.init_qpos + rng.uniform(-1.5, 1.5, (2000, sim.model.nq)) * rng.choice([0.1, 1.0], (2000, 1))
    qvel = rng.uniform(-150, 150, (2000, sim.model.nv)) * rng.choice([0.01, 1.0], (2000, 1))
    warp.qpos.copy_(torch.tensor(qpos)), warp.qvel.copy_(torch.tensor(qvel))
    expected = []
    for p, v in zip(qpos.astype(np.float32).astype(np.float64), qvel.astype(np.float32).astype(np.float64)):
        sim.set_state(p, v)
        expected.append(sim.is_healthy)
    assert 200 < sum(expected) < 1800  # both sides of the bounds are sampled
    np.testing.assert_array_equal(warp.spec.healthy(warp).numpy(), expected)


def test_warp_env_noise_and_autoreset_are_its_own():
    """Seeded reset noise reproduces, differs between seeds and worlds, and has Gymnasium's scale; the step after an
    episode's end ignores the action."""
    a, b = (WarpVectorEnv("Hopper-v5", 4, "cpu", max_episode_steps=2) for _ in range(2))
    first, _ = a.reset(seed=7)
    again, _ = b.reset(seed=7)
    assert torch.equal(first, again) and not torch.equal(first[0], first[1])
    init = gym.make("Hopper-v5").unwrapped.init_qpos
    assert 0 < (a.qpos.double() - torch.tensor(init)).abs().max() <= 5e-3 + 1e-6
    zeros, ones = torch.zeros(4, 3), torch.ones(4, 3)
    a.step(zeros), b.step(zeros)
    _, _, _, truncated, _ = a.step(zeros)
    b.step(ones)
    assert truncated.all()
    obs_a, reward_a, _, _, _ = a.step(zeros)  # the reset step: actions differ, results do not
    obs_b, reward_b, _, _, _ = b.step(ones)
    assert torch.equal(obs_a, obs_b) and (reward_a == 0).all() and (reward_b == 0).all()


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Humanoid-v5"])
def test_recorded_physics_equals_kernel_by_kernel(env_id):
    """The Warp graphs the backend replays compute what MuJoCo Warp's calls compute, bit for bit, resets included."""
    graphs, kernels = (WarpVectorEnv(env_id, 4, "cpu", graphs=g) for g in (True, False))
    results = [[env.reset(seed=3)[0]] for env in (graphs, kernels)]
    actions = torch.rand(40, 4, graphs.single_action_space.shape[0], generator=torch.Generator().manual_seed(0)) - 0.5
    for action in actions:
        for env, out in zip((graphs, kernels), results):
            out.extend(env.step(action)[:4])
    assert bool(torch.cat([kernels.needs_reset, *results[1][3::4]]).any())  # episodes ended on the way
    for x, y in zip(*results, strict=True):
        assert torch.equal(x, y)


def test_diverged_world_is_reported_not_averaged_in_silently():
    env = WarpVectorEnv("HalfCheetah-v5", 3, "cpu")
    env.reset(seed=0)
    env.step(torch.zeros(3, 6))
    assert env.physics_problem() is None
    env.qvel[1, 3] = 1e12  # MuJoCo would reset this simulation with a warning
    env.step(torch.zeros(3, 6))
    problem = env.physics_problem()
    assert problem is not None and problem.startswith("1 world(s) diverged"), problem


class TensorEnv:
    """A numpy vector env seen through tensors, as the torch wrappers see WarpVectorEnv."""

    def __init__(self, envs):
        self.envs, self.num_envs, self.device = envs, envs.num_envs, torch.device("cpu")
        self.single_observation_space = envs.single_observation_space
        self.single_action_space = envs.single_action_space

    def reset(self, seed=None):
        obs, info = self.envs.reset(seed=seed)
        return torch.from_numpy(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.envs.step(action.numpy())
        return (torch.from_numpy(obs), torch.from_numpy(reward), torch.from_numpy(terminated),
                torch.from_numpy(truncated), info)


@pytest.mark.parametrize("norm_stats,num_members", [("shared", 1), ("per-env", 1), ("shared", 2)])
def test_torch_wrappers_match_gymnasium_wrappers(norm_stats, num_members):
    """CleanRL's wrapper chain in torch against Gymnasium's wrappers over the same Hopper envs and actions, 300 steps
    with many episode ends: its vector wrappers (shared statistics), its single-env wrappers inside SyncVectorEnv
    (per-env), and for two members of a population the numpy grouped wrappers (equal to two runs of Gymnasium's
    vector wrappers, tests/test_env_backend.py). Observations, rewards, episode statistics and every group's
    normalisation statistics agree to float rounding."""
    n, gamma = 5, 0.99
    reference = make_envs("Hopper-v5", n, gamma, norm_stats, num_members=num_members)
    ours = CleanRLWrappers(TensorEnv(MujocoBatchEnv("Hopper-v5", n * num_members)), gamma, norm_stats, num_members)
    obs_ref, _ = reference.reset(seed=3)
    obs_ours, _ = ours.reset(seed=3)
    np.testing.assert_allclose(obs_ours.numpy(), obs_ref, rtol=1e-6, atol=1e-6)
    rng = np.random.default_rng(0)
    episodes = 0
    for step in range(300):
        if step == 250:  # the per-env discounted return outlives a reset of the vector env, the shared one does not
            np.testing.assert_allclose(ours.reset()[0].numpy(), reference.reset()[0], rtol=1e-5, atol=1e-5)
        # beyond the action box: clipping matters
        action = rng.normal(0, 1.5, size=(n * num_members, 3)).astype(np.float32)
        obs_ref, reward_ref, terminated_ref, truncated_ref, info = reference.step(action)
        obs_ours, reward_ours, terminated, truncated, info_ours = ours.step(torch.from_numpy(action))
        np.testing.assert_allclose(obs_ours.numpy(), obs_ref, rtol=1e-5, atol=1e-5, err_msg=f"step {step}")
        np.testing.assert_allclose(reward_ours.numpy(), reward_ref, rtol=1e-5, atol=1e-6, err_msg=f"step {step}")
        done = terminated_ref | truncated_ref
        np.testing.assert_array_equal(info_ours["episode_done"].numpy(), done)
        if done.any():
            episodes += done.sum()
            np.testing.assert_allclose(info_ours["episode_return"].numpy()[done], info["episode"]["r"][done],
                                       rtol=1e-12)
            np.testing.assert_array_equal(info_ours["episode_length"].numpy()[done], info["episode"]["l"][done])
    assert episodes > 20
    # per env, each statistic takes one float64 value at a time on either side; shared ones are float32 returns'
    # means, summed in float32 by NumPy, in float64 here
    stats_ref, stats_ours = get_norm_stats(reference), ours.norm_stats()
    for key in stats_ref:
        assert stats_ours[key].shape == stats_ref[key].shape, key
        np.testing.assert_allclose(stats_ours[key], stats_ref[key], rtol=1e-9 if norm_stats == "per-env" else 1e-6,
                                   err_msg=key)
    if num_members > 1:
        for key, value in ours.norm_stats(member=1).items():
            np.testing.assert_array_equal(value, stats_ours[key][1:], err_msg=key)


@pytest.mark.parametrize("norm_stats", ["shared", "per-env"])
def test_warp_population_member_is_a_single_run(norm_stats):
    """Two members of a warp population on Warp's CPU device: member 1 steps as a single run of its seed, bit for
    bit, resets included; its state, taken mid-run and put into a fresh single run, continues it; a row of
    statistics per member or per env."""
    population = make_envs("Hopper-v5", 2, 0.99, norm_stats, backend="warp", num_members=2)
    single, fresh = (make_envs("Hopper-v5", 2, 0.99, norm_stats, backend="warp") for _ in range(2))
    population.reset(seed=[1, 2, 11, 12])
    single.reset(seed=11)
    fresh.reset(seed=5)
    actions = torch.rand(45, 4, 3, generator=torch.Generator().manual_seed(0)) * 3 - 1.5
    ended = 0
    for step, action in enumerate(actions):
        if step == 30:
            set_env_state(fresh, env_state(population, member=1))
        got, want = population.step(action)[:4], single.step(action[2:])[:4]
        stacks = [want] + ([fresh.step(action[2:])[:4]] if step >= 30 else [])
        for other in stacks:
            for x, y in zip(got, other):
                assert torch.equal(x[2:], y), step
        ended += int((want[2] | want[3]).sum())
    assert ended > 0
    stats, member = get_norm_stats(population), get_norm_stats(population, member=1)
    for key, value in get_norm_stats(single).items():
        assert stats[key].shape[0] == 2 * len(value)
        np.testing.assert_array_equal(member[key], value, err_msg=key)
        np.testing.assert_array_equal(get_norm_stats(fresh)[key], value, err_msg=key)


# Humanoid falls within ~20 steps of a fresh policy, so episodes end, reset and get logged on both sides of the stop
WARP_RUN = ["--env-backend", "warp", "--env-id", "Humanoid-v5", "--num-envs", "4", "--num-steps", "16",
            "--minibatch-size", "32", "--total-timesteps", str(5 * 64)]


def test_warp_run_stopped_and_resumed_equals_uninterrupted_run(tmp_path):
    whole, cut, resumed = run_whole_and_stopped_then_resume(tmp_path, WARP_RUN, signal.SIGTERM, 2)
    assert "Newton solver in place of humanoid.xml's PGS" in resumed.stderr
    assert_same_run(whole, cut)
    assert len(scalars(whole)["charts/episodic_return"]) > 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_warp_run_on_the_gpu(tmp_path):
    """The whole training loop with the envs, wrappers and rollout on the GPU (no resume check there: GPU contact
    solves use atomics, so runs need not repeat bit for bit)."""
    proc, run_dir = run_script(tmp_path / "runs", "gpu", *WARP_RUN[:-1], str(2 * 64))
    assert "on cuda" in proc.stdout and len(load_kl(run_dir)) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_warp_steps_never_wait_for_the_gpu():
    """No host sync per step, resets included: torch raises on any synchronising call in this mode."""
    envs = CleanRLWrappers(WarpVectorEnv("Humanoid-v5", 64, "cuda"), 0.99)
    envs.reset(seed=0)
    action = torch.zeros(64, envs.single_action_space.shape[0], device=envs.device)
    envs.step(action)  # loads the kernels, records the graphs
    wp = envs.env.wp

    def refuse(*args, **kwargs):
        raise AssertionError("Warp synchronised with the host")

    saved = wp.synchronize, wp.synchronize_stream, wp.synchronize_device
    wp.synchronize = wp.synchronize_stream = wp.synchronize_device = refuse
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(30):  # Humanoid falls within ~20 steps: episodes end and worlds reset
            envs.step(action)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        wp.synchronize, wp.synchronize_stream, wp.synchronize_device = saved
