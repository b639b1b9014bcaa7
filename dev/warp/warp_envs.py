"""Batched MuJoCo Warp versions of Gymnasium's v5 locomotion envs, scored in torch on Warp's device.

One `WarpVectorEnv` holds `num_envs` worlds of one model (the MJCF file Gymnasium ships) in a single
`mujoco_warp.Data`. Warp's arrays are viewed zero-copy as torch tensors (`wp.to_torch`), so observations,
rewards, terminations, truncations, reset noise and autoreset are all computed on the same device with no
host round trip per step.

Semantics follow gymnasium/envs/mujoco/*_v5.py with default arguments, wrapped in TimeLimit(1000) and
vectorised as SyncVectorEnv with AutoresetMode.NEXT_STEP: the step after an episode ends returns the reset
observation, reward 0, terminated = truncated = False, and ignores that world's action.

Known gaps (details and measurements in REPORT.md):
- MuJoCo Warp has no PGS solver (`mjtSolver.mjSOL_PGS`), which Humanoid-v5's humanoid.xml selects. Humanoid
  refuses to build unless `substitute_solver` names a supported one ("newton" or "cg"). Newton solves the same
  contact problem; from equal states it matched Gymnasium's PGS Humanoid to the float32 tolerance in our tests.
- MuJoCo Warp 4.0.0 orients plane-capsule contact frames differently from MuJoCo when the capsule is steeper
  than 60 degrees; with Ant's pyramidal friction cones that changes contact forces (Ant-v5 does not match).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Callable

import gymnasium.envs.mujoco
import mujoco
import mujoco_warp as mjw
import numpy as np
import torch
import warp as wp

ASSET_DIR = os.path.join(os.path.dirname(gymnasium.envs.mujoco.__file__), "assets")


# ----------------------------------------------------------------------------------------------------------
# Per-env definitions. `v` is the env itself; v.qpos, v.qvel, ... are torch views of Warp's data.
# ----------------------------------------------------------------------------------------------------------


def _ctrl_cost(v, action):
    return v.spec.ctrl_cost_weight * action.square().sum(1)


# observations --------------------------------------------------------------------------------------------


def _obs_qpos_qvel(v):
    # HalfCheetah: the x position is left out (exclude_current_positions_from_observation=True)
    return torch.cat([v.qpos[:, 1:], v.qvel], 1)


def _obs_qpos_clipped_qvel(v):
    # Hopper, Walker2d: as above, with velocities clipped to [-10, 10]
    return torch.cat([v.qpos[:, 1:], v.qvel.clamp(-10.0, 10.0)], 1)


def _ant_contact_forces(v):
    # Ant clips every component of cfrc_ext to contact_force_range = (-1, 1) for both cost and observation
    return v.cfrc_ext.clamp(-1.0, 1.0)


def _obs_ant(v):
    # x, y left out; cfrc_ext of every body but the world (include_cfrc_ext_in_observation=True)
    return torch.cat([v.qpos[:, 2:], v.qvel, _ant_contact_forces(v)[:, 1:].flatten(1)], 1)


def _obs_humanoid(v):
    # x, y left out; then cinert, cvel, qfrc_actuator (minus the free joint's 6 dofs) and cfrc_ext, each of
    # every body but the world. cinert/cvel/xipos are those MuJoCo left in data after the last substep.
    return torch.cat(
        [
            v.qpos[:, 2:],
            v.qvel,
            v.cinert[:, 1:].flatten(1),
            v.cvel[:, 1:].flatten(1),
            v.qfrc_actuator[:, 6:],
            v.cfrc_ext[:, 1:].flatten(1),
        ],
        1,
    )


# the position whose finite difference over dt is the forward velocity ---------------------------------------


def _pos_root_x(v):
    # HalfCheetah, Hopper, Walker2d: qpos[0], the root's slide-x joint
    return v.qpos[:, 0]


def _pos_main_body_x(v):
    # Ant: x of body `main_body` (= 1, the torso) frame, data.xpos; Gymnasium differences x and y but
    # rewards only x velocity
    return v.xpos[:, 1, 0]


def _pos_mass_center_x(v):
    # Humanoid: x of the mass-weighted mean of body COMs (data.xipos), Gymnasium's mass_center()
    return (v.body_mass[:, None] * v.xipos[:, :, 0].T).sum(0) / v.body_mass.sum()


# healthy predicates (terminated = not healthy, as terminate_when_unhealthy=True) --------------------------


def _always_healthy(v):
    return torch.ones(v.num_envs, dtype=torch.bool, device=v.device)


def _healthy_hopper(v):
    z, angle = v.qpos[:, 1], v.qpos[:, 2]
    state = torch.cat([v.qpos, v.qvel], 1)[:, 2:]  # state_vector()[2:]
    healthy_state = ((-100.0 < state) & (state < 100.0)).all(1)
    return healthy_state & (0.7 < z) & (z < float("inf")) & (-0.2 < angle) & (angle < 0.2)


def _healthy_walker2d(v):
    z, angle = v.qpos[:, 1], v.qpos[:, 2]
    return (0.8 < z) & (z < 2.0) & (-1.0 < angle) & (angle < 1.0)


def _healthy_ant(v):
    # inclusive bounds here, unlike the others; non-finite state is unhealthy
    z = v.qpos[:, 2]
    finite = torch.isfinite(torch.cat([v.qpos, v.qvel], 1)).all(1)
    return finite & (0.2 <= z) & (z <= 1.0)


def _healthy_humanoid(v):
    z = v.qpos[:, 2]
    return (1.0 < z) & (z < 2.0)


# contact costs ----------------------------------------------------------------------------------------------


def _no_contact_cost(v):
    return torch.zeros(v.num_envs, device=v.device)


def _contact_cost_ant(v):
    # over all bodies, the world included (its cfrc_ext is zero)
    return 5e-4 * _ant_contact_forces(v).square().sum((1, 2))


def _contact_cost_humanoid(v):
    # raw cfrc_ext, then the cost (not the forces) is clipped to contact_cost_range = (-inf, 10)
    return (5e-7 * v.cfrc_ext.square().sum((1, 2))).clamp(max=10.0)


# reset noise --------------------------------------------------------------------------------------------------


def _uniform(v, shape, scale):
    return (torch.rand(shape, generator=v.rng, device=v.device) * 2.0 - 1.0) * scale


def _normal(v, shape, scale):
    return torch.randn(shape, generator=v.rng, device=v.device) * scale


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    xml_file: str
    frame_skip: int
    forward_reward_weight: float
    ctrl_cost_weight: float
    healthy_reward: float  # paid when healthy; 0 for HalfCheetah
    reset_noise_scale: float
    qvel_noise: Callable  # _uniform or _normal (HalfCheetah and Ant use a standard normal for qvel)
    obs: Callable
    forward_position: Callable
    healthy: Callable
    contact_cost: Callable
    needs_cfrc_ext: bool  # run rne_postconstraint after the substeps, as Gymnasium's MujocoEnv always does
    needs_forward_on_reset: bool  # reset obs/positions read derived quantities (xpos, cinert, ...)
    nconmax: int  # contacts per world; generous versus what the envs produce (see REPORT.md)
    njmax: int  # constraint rows per world


SPECS = {
    "HalfCheetah-v5": EnvSpec(
        "half_cheetah.xml", 5, 1.0, 0.1, 0.0, 0.1, _normal,
        _obs_qpos_qvel, _pos_root_x, _always_healthy, _no_contact_cost, False, False, 32, 128,
    ),
    "Hopper-v5": EnvSpec(
        "hopper.xml", 4, 1.0, 1e-3, 1.0, 5e-3, _uniform,
        _obs_qpos_clipped_qvel, _pos_root_x, _healthy_hopper, _no_contact_cost, False, False, 16, 64,
    ),
    "Walker2d-v5": EnvSpec(
        "walker2d_v5.xml", 4, 1.0, 1e-3, 1.0, 5e-3, _uniform,
        _obs_qpos_clipped_qvel, _pos_root_x, _healthy_walker2d, _no_contact_cost, False, False, 16, 64,
    ),
    "Ant-v5": EnvSpec(
        "ant.xml", 5, 1.0, 0.5, 1.0, 0.1, _normal,
        _obs_ant, _pos_main_body_x, _healthy_ant, _contact_cost_ant, True, True, 48, 192,
    ),
    "Humanoid-v5": EnvSpec(
        "humanoid.xml", 5, 1.25, 0.1, 5.0, 1e-2, _uniform,
        _obs_humanoid, _pos_mass_center_x, _healthy_humanoid, _contact_cost_humanoid, True, True, 48, 256,
    ),
}


def load_model(env_id: str) -> mujoco.MjModel:
    """The host model exactly as Gymnasium builds it (MjModel.from_xml_path on its bundled asset)."""
    return mujoco.MjModel.from_xml_path(os.path.join(ASSET_DIR, SPECS[env_id].xml_file))


# ----------------------------------------------------------------------------------------------------------
# The vector env
# ----------------------------------------------------------------------------------------------------------


class WarpVectorEnv:
    """`num_envs` copies of a Gymnasium v5 MuJoCo env simulated by MuJoCo Warp.

    step(action) -> (obs, reward, terminated, truncated, info), all torch tensors on `self.device`
    (float32 obs/reward, bool flags). `info["episode_return"]`/`info["episode_length"]` hold the totals of
    episodes that ended at this step (valid where terminated | truncated).

    `reset_state_fn`, if set, replaces the reset noise: called with the env, it returns (qpos, qvel) for all
    worlds, of which the resetting worlds' rows are used. The equivalence test uses it to start Warp worlds
    from the states Gymnasium drew.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        device: str = "cpu",
        seed: int = 0,
        max_episode_steps: int = 1000,
        substitute_solver: str | None = None,
    ):
        self.env_id, self.spec, self.num_envs = env_id, SPECS[env_id], num_envs
        self.max_episode_steps = max_episode_steps
        self.mjm = load_model(env_id)
        if self.mjm.opt.solver == mujoco.mjtSolver.mjSOL_PGS:
            # MuJoCo Warp implements only CG and Newton; do not swap silently
            if substitute_solver is None:
                raise NotImplementedError(
                    f"{env_id}: MuJoCo Warp does not implement mjtSolver.mjSOL_PGS, which {self.spec.xml_file} "
                    "selects; pass substitute_solver='newton' or 'cg' to run it with different dynamics"
                )
            self.mjm.opt.solver = {"newton": mujoco.mjtSolver.mjSOL_NEWTON, "cg": mujoco.mjtSolver.mjSOL_CG}[
                substitute_solver
            ]
        self.dt = self.mjm.opt.timestep * self.spec.frame_skip  # MujocoEnv.dt

        self.wp_device = wp.get_device(device)
        self.device = torch.device(wp.device_to_torch(self.wp_device))
        with self._warp_scope():
            self.m = mjw.put_model(self.mjm)
            self.d = mjw.put_data(
                self.mjm, mujoco.MjData(self.mjm), nworld=num_envs, nconmax=self.spec.nconmax, njmax=self.spec.njmax
            )

        # zero-copy torch views of the Warp arrays the envs read or write
        for name in ("qpos", "qvel", "ctrl", "qacc_warmstart", "time", "xpos", "xipos", "cinert", "cvel",
                     "qfrc_actuator", "cfrc_ext"):
            setattr(self, name, wp.to_torch(getattr(self.d, name)))
        self.body_mass = torch.tensor(self.mjm.body_mass, dtype=torch.float32, device=self.device)
        self.init_qpos = torch.tensor(self.mjm.qpos0, dtype=torch.float32, device=self.device)
        self.init_qvel = torch.zeros(self.mjm.nv, device=self.device)
        low, high = self.mjm.actuator_ctrlrange.T.astype(np.float32)
        self.action_low, self.action_high = (torch.tensor(x, device=self.device) for x in (low, high))

        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(seed)
        self.reset_state_fn = None

        # per-world episode bookkeeping, all on the device
        self._needs_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)  # ended at the previous step
        self._elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._episode_return = torch.zeros(num_envs, device=self.device)
        self._pos_before = torch.zeros(num_envs, device=self.device)

    @contextlib.contextmanager
    def _warp_scope(self):
        # on CUDA, launch Warp kernels on torch's current stream so torch ops on the views are ordered with them
        with wp.ScopedDevice(self.wp_device):
            if self.wp_device.is_cuda:
                with wp.ScopedStream(wp.stream_from_torch(torch.cuda.current_stream(self.device))):
                    yield
            else:
                yield

    # reset ------------------------------------------------------------------------------------------------

    def _sample_reset_state(self):
        if self.reset_state_fn is not None:
            qpos, qvel = self.reset_state_fn(self)
            return qpos.to(self.qpos), qvel.to(self.qvel)
        s = self.spec
        qpos = self.init_qpos + _uniform(self, self.qpos.shape, s.reset_noise_scale)
        qvel = self.init_qvel + s.qvel_noise(self, self.qvel.shape, s.reset_noise_scale)
        return qpos, qvel

    def _reset_worlds(self, mask):
        """Reset the worlds in `mask` (bool tensor) as MujocoEnv.reset does; returns their observation rows.

        mj_resetData -> reset_model (qpos/qvel = init + noise) -> mj_forward. All worlds compute the returned
        observation, only masked rows are meaningful. Other worlds' qpos/qvel/ctrl/warmstart are untouched.
        Reset noise is drawn for every world each call: a fixed amount of work, no host-side branching.
        """
        qpos, qvel = self._sample_reset_state()
        # mj_resetData, restricted to what these five models carry from step to step: qpos, qvel, ctrl, the
        # solver warmstart and time (they have no activations, mocap bodies, applied forces, sleeping or
        # plasticity); everything else is recomputed by the next forward pass. mjw.reset_data(m, d, mask) does
        # all of it, but costs ~10 ms per call on the CPU device whatever the size, as much as a physics substep.
        m = mask[:, None]
        self.qpos.copy_(torch.where(m, qpos, self.qpos))
        self.qvel.copy_(torch.where(m, qvel, self.qvel))
        self.ctrl.masked_fill_(m, 0.0)
        self.qacc_warmstart.masked_fill_(m, 0.0)
        self.time.masked_fill_(mask, 0.0)
        # observed by Ant and Humanoid: zero after mj_resetData, and mj_forward does not recompute it
        self.cfrc_ext.masked_fill_(mask[:, None, None], 0.0)
        with self._warp_scope():
            if self.spec.needs_forward_on_reset:
                # recomputes derived quantities (xpos, xipos, cinert, cvel, qfrc_actuator) of every world; the
                # others' observations were already taken and the next mjw.step recomputes them anyway
                mjw.forward(self.m, self.d)
        self._elapsed.masked_fill_(mask, 0)
        self._episode_return.masked_fill_(mask, 0.0)
        self._pos_before.copy_(torch.where(mask, self.spec.forward_position(self), self._pos_before))
        return self.spec.obs(self)

    def reset(self, seed: int | None = None):
        if seed is not None:
            self.rng.manual_seed(seed)
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        obs = self._reset_worlds(everyone)
        self._needs_reset.zero_()
        return obs, {}

    # step -----------------------------------------------------------------------------------------------

    def step(self, action: torch.Tensor):
        s = self.spec
        action = action.to(device=self.device, dtype=torch.float32)
        # worlds that ended last step are stepped too (batched kernels), but their results are replaced below
        self.ctrl.copy_(action)  # MuJoCo clamps ctrl to ctrlrange itself; the ctrl cost uses the raw action
        with self._warp_scope():
            for _ in range(s.frame_skip):
                mjw.step(self.m, self.d)
            if s.needs_cfrc_ext:
                mjw.rne_postconstraint(self.m, self.d)

        pos_after = s.forward_position(self).clone()  # a view of qpos for some envs; reset rewrites qpos
        x_velocity = (pos_after - self._pos_before) / self.dt
        healthy = s.healthy(self)
        reward = (
            s.forward_reward_weight * x_velocity
            + s.healthy_reward * healthy
            - _ctrl_cost(self, action)
            - s.contact_cost(self)
        )
        obs = s.obs(self)
        terminated = ~healthy
        self._elapsed += 1
        truncated = self._elapsed >= self.max_episode_steps  # TimeLimit
        self._pos_before = pos_after

        # next-step autoreset of the worlds that ended at the previous step
        resetting = self._needs_reset
        reset_obs = self._reset_worlds(resetting)
        obs = torch.where(resetting[:, None], reset_obs, obs)
        reward = reward.masked_fill(resetting, 0.0)
        terminated = terminated & ~resetting
        truncated = truncated & ~resetting

        self._episode_return += reward
        done = terminated | truncated
        info = {"episode_return": self._episode_return.clone(), "episode_length": self._elapsed.clone()}
        self._needs_reset = done
        return obs, reward, terminated, truncated, info
