"""Step-by-step equivalence of WarpVectorEnv (MuJoCo Warp, float32, Warp's CPU device) with Gymnasium v5 envs
(CPU MuJoCo, float64) in a SyncVectorEnv with next-step autoreset.

Both sides start from the states Gymnasium's reset drew and, whenever Gymnasium autoresets a world, the Warp
world is reset to the same qpos/qvel (reset noise RNGs differ by design). Then both get the same actions and
obs, reward, terminated, truncated are compared at every step, through terminations, truncations and resets.

Run `python test_warp_envs.py` to print the measured errors per env instead of asserting.
"""

import time

import warp as wp

wp.config.quiet = True  # silence per-module compile lines

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch
from gymnasium.envs.mujoco.humanoid_v5 import mass_center

from warp_envs import WarpVectorEnv

NUM_WORLDS = 3

# env_id: steps, action scale (x the ctrl range), TimeLimit override (to see truncation within the run), seed,
# obs tolerance (atol, rtol: |warp - gym| <= atol + rtol * |gym|) and reward atol. Warp computes in float32,
# MuJoCo in float64, and contact solves amplify the rounding (most in HalfCheetah's contact-rich velocities,
# ~2e-3 abs on values ~10). Humanoid needs atol 1e-2: its cfrc_ext/qfrc_actuator entries reach hundreds and the
# Warp side runs Newton instead of PGS.
CASES = {
    "HalfCheetah-v5": dict(steps=60, scale=1.0, max_episode_steps=40, seed=1, obs_tol=(1e-3, 1e-3), rew_tol=1e-3),
    "Hopper-v5": dict(steps=60, scale=1.0, max_episode_steps=1000, seed=2, obs_tol=(1e-3, 1e-3), rew_tol=1e-3),
    "Walker2d-v5": dict(steps=60, scale=1.0, max_episode_steps=1000, seed=3, obs_tol=(1e-3, 1e-3), rew_tol=1e-3),
    "Ant-v5": dict(steps=60, scale=1.0, max_episode_steps=40, seed=4, obs_tol=(1e-3, 1e-3), rew_tol=1e-3),
    "Humanoid-v5": dict(steps=60, scale=1.0, max_episode_steps=1000, seed=5, obs_tol=(1e-2, 1e-3), rew_tol=1e-3),
}


def _plane_capsule_frame_differs():
    """True for MuJoCo Warp versions whose plane-capsule contact tangent differs from MuJoCo's (see REPORT.md).

    MuJoCo (mju_makeFrame) projects the capsule axis onto the plane and uses it as the first tangent unless the
    unprojected axis is degenerate; MuJoCo Warp 4.0.0 falls back to a fixed (0, 1, 0) tangent whenever the
    projection is shorter than 0.5, i.e. for capsules steeper than 60 degrees. With pyramidal friction cones
    (Ant) the rotated pyramid gives different contact forces.
    """
    import inspect

    from mujoco_warp._src import collision_primitive_core

    return "b_norm < 0.5" in inspect.getsource(collision_primitive_core.plane_capsule.func)


# MuJoCo Warp has no PGS solver; its Humanoid runs Newton (see warp_envs.py) and is compared with stock (PGS) Gymnasium
SUBSTITUTE_SOLVER = {"Humanoid-v5": "newton"}


def make_gym_vector_env(env_id, n, max_episode_steps):
    def thunk():
        # stock Gymnasium envs; for Humanoid that means PGS on this side and Newton on Warp's. Both solvers solve
        # the same convex contact problem, and from equal states they agree to ~6e-6 (pgs_vs_newton_gap below)
        return gym.make(env_id, max_episode_steps=max_episode_steps)

    return gym.vector.SyncVectorEnv([thunk] * n, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)


def gym_states(genv):
    qpos = np.stack([e.unwrapped.data.qpos for e in genv.envs])
    qvel = np.stack([e.unwrapped.data.qvel for e in genv.envs])
    return torch.tensor(qpos, dtype=torch.float32), torch.tensor(qvel, dtype=torch.float32)


def gym_forward_position(env_id, env):
    """What the Gymnasium env will difference over dt at its next step (read from its current data)."""
    u = env.unwrapped
    if env_id == "Ant-v5":
        return u.data.body(1).xpos[0]
    if env_id == "Humanoid-v5":
        return mass_center(u.model, u.data)[0]
    return u.data.qpos[0]


def resync(wenv, genv, env_id):
    """Copies Gymnasium's whole carried-over simulation state into the Warp worlds.

    qpos, qvel and the solver warmstart are all MuJoCo carries from one step to the next (no activations in
    these models); the forward position is what the reward differences against. Float32 rounding of that state
    is the only difference left, so what remains is the error of a single step.
    """
    wenv.qpos.copy_(torch.tensor(np.stack([e.unwrapped.data.qpos for e in genv.envs])))
    wenv.qvel.copy_(torch.tensor(np.stack([e.unwrapped.data.qvel for e in genv.envs])))
    wenv.qacc_warmstart.copy_(torch.tensor(np.stack([e.unwrapped.data.qacc_warmstart for e in genv.envs])))
    wenv._pos_before.copy_(torch.tensor([gym_forward_position(env_id, e) for e in genv.envs]))


def run_pair(env_id, steps, scale, max_episode_steps, seed, n=NUM_WORLDS, resync_every_step=True, **_):
    """Steps both implementations side by side; returns per-step arrays of both sides' outputs.

    resync_every_step=False lets both run free, which measures how float32/float64 differences grow.
    """
    genv = make_gym_vector_env(env_id, n, max_episode_steps)
    wenv = WarpVectorEnv(
        env_id, n, device="cpu", max_episode_steps=max_episode_steps, substitute_solver=SUBSTITUTE_SOLVER.get(env_id)
    )
    # each Warp reset takes the state Gymnasium just reset to (read right after Gymnasium's step/reset)
    wenv.reset_state_fn = lambda env: pending_state

    obs_g, _ = genv.reset(seed=seed)
    pending_state = gym_states(genv)
    obs_w, _ = wenv.reset()
    rows = [(obs_g, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), obs_w.numpy(), np.zeros(n), np.zeros(n, bool), np.zeros(n, bool))]
    rng = np.random.default_rng(seed)
    low, high = genv.single_action_space.low, genv.single_action_space.high
    for _ in range(steps):
        action = (rng.uniform(low, high, size=(n, len(low))) * scale).astype(np.float32)
        if resync_every_step:
            resync(wenv, genv, env_id)
        obs_g, rew_g, term_g, trunc_g, _ = genv.step(action)
        pending_state = gym_states(genv)
        obs_w, rew_w, term_w, trunc_w, _ = wenv.step(torch.from_numpy(action))
        rows.append((obs_g, rew_g, term_g, trunc_g, obs_w.numpy(), rew_w.numpy(), term_w.numpy(), trunc_w.numpy()))
    genv.close()
    return [np.stack(x) for x in zip(*rows)]


def errors(env_id, out, obs_tol, **_):
    obs_g, rew_g, term_g, trunc_g, obs_w, rew_w, term_w, trunc_w = out
    atol, rtol = obs_tol
    obs_err = np.abs(obs_w - obs_g)
    return dict(
        obs_max_abs=float(obs_err.max()),
        obs_max_excess=float((obs_err - rtol * np.abs(obs_g)).max()),  # <= atol passes
        rew_max_abs=float(np.abs(rew_w - rew_g).max()),
        term_mismatch=int((term_w != term_g).sum()),
        trunc_mismatch=int((trunc_w != trunc_g).sum()),
        terminations=int(term_g.sum()),
        truncations=int(trunc_g.sum()),
    )


@pytest.mark.parametrize("env_id", list(CASES))
def test_matches_gymnasium(env_id, request):
    if env_id == "Ant-v5" and _plane_capsule_frame_differs():
        request.applymarker(pytest.mark.xfail(reason="MuJoCo Warp plane-capsule tangent frame", strict=True))
    case = CASES[env_id]
    err = errors(env_id, run_pair(env_id, **case), **case)
    print(env_id, err)
    assert err["term_mismatch"] == 0 and err["trunc_mismatch"] == 0
    assert err["terminations"] + err["truncations"] > 0, "the run should pass through at least one reset"
    assert err["obs_max_excess"] <= case["obs_tol"][0]
    assert err["rew_max_abs"] <= case["rew_tol"]


def test_humanoid_refuses_pgs():
    with pytest.raises(NotImplementedError, match="mjSOL_PGS"):
        WarpVectorEnv("Humanoid-v5", 1)


def test_autoreset_step_semantics():
    # the step after an end returns reward 0, both flags False, and the reset obs, whatever the action
    env = WarpVectorEnv("HalfCheetah-v5", 2, max_episode_steps=3)
    env.reset(seed=0)
    for _ in range(3):
        _, _, term, trunc, info = env.step(torch.ones(2, 6))
    assert trunc.all() and not term.any() and (info["episode_length"] == 3).all()
    obs, rew, term, trunc, _ = env.step(torch.ones(2, 6) * 1e3)
    assert (rew == 0).all() and not (term | trunc).any()
    assert torch.allclose(obs[:, :8], env.qpos[:, 1:]) and (obs[:, :8] - env.init_qpos[1:]).abs().max() <= 0.1


def pgs_vs_newton_gap(steps=60, seed=5):
    """CPU MuJoCo only: Humanoid-v5 stepped from identical states with its stock PGS solver and with Newton.

    Measures how far the Newton substitution moves one step's observation and reward (what Warp cannot match).
    """
    pgs, newton = gym.make("Humanoid-v5"), gym.make("Humanoid-v5")
    newton.unwrapped.model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
    pgs.reset(seed=seed)
    newton.reset(seed=seed)
    rng = np.random.default_rng(seed)
    obs_err, rew_err = [], []
    for _ in range(steps):
        a, b = pgs.unwrapped, newton.unwrapped
        b.set_state(a.data.qpos.copy(), a.data.qvel.copy())
        b.data.qacc_warmstart[:] = a.data.qacc_warmstart
        b.data.xipos[:] = a.data.xipos  # what its reward differences against
        action = rng.uniform(-0.4, 0.4, 17)
        o1, r1, t1, _, _ = pgs.step(action)
        o2, r2, _, _, _ = newton.step(action)
        obs_err.append(np.abs(o1 - o2).max() / max(1.0, np.abs(o1).max()))
        rew_err.append(abs(r1 - r2))
        if t1:
            pgs.reset()
    return dict(obs_max_rel=float(max(obs_err)), rew_max_abs=float(max(rew_err)))


if __name__ == "__main__":
    import sys

    if "--pgs-gap" in sys.argv:
        print("Humanoid-v5 PGS vs Newton, one step from equal states (CPU MuJoCo):", pgs_vs_newton_gap())
        sys.exit()
    free = "--free" in sys.argv  # let both sides run without resyncing, to see how errors grow
    for env_id in [a for a in sys.argv[1:] if not a.startswith("--")] or CASES:
        t0 = time.time()
        out = run_pair(env_id, **CASES[env_id], resync_every_step=not free)
        print(env_id, errors(env_id, out, **CASES[env_id]), f"{time.time() - t0:.1f}s", flush=True)
