# --env-backend warp of ppo_continuous_kl.py: N copies of a Gymnasium v5 MuJoCo env simulated by MuJoCo Warp (GPU, or
# Warp's CPU device for tests) from the MJCF files Gymnasium ships, with observations, rewards, terminations,
# truncation, reset noise and next-step autoreset computed in torch on the same device, and CleanRL's wrappers
# (episode statistics, action clipping, observation and reward normalisation, clipping) as batched torch ops with
# the semantics of Gymnasium's vector wrappers. Nothing leaves the device during a rollout.
#
# Where it differs from Gymnasium (measured in docs/warp_backend.md): MuJoCo Warp computes in float32, MuJoCo in
# float64; MuJoCo Warp has no PGS solver, which Humanoid-v5's humanoid.xml selects, so Humanoid runs Newton (same
# contact problem; from equal states the two differ by ~6e-6 relative); Ant-v5 is refused, since MuJoCo Warp 4.0.0
# orients plane-capsule contact frames differently from MuJoCo, which changes Ant's contact forces.
import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import gymnasium.envs.mujoco
import mujoco
import numpy as np
import torch

from ppo_kl.grouped_wrappers import member_slices

WARP_ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Humanoid-v5")
WARP_REFUSED = {
    "Ant-v5": "MuJoCo Warp 4.0.0 orients plane-capsule contact frames unlike MuJoCo for capsules steeper than "
              "60 degrees (Ant's lower legs at touchdown); with Ant's pyramidal friction cones its contact forces, "
              "observations and rewards then differ (docs/warp_backend.md)",
}


# Each env as Gymnasium's *_v5.py defines it with default arguments. `v` is the WarpVectorEnv; v.qpos, v.qvel, ... are
# torch views of MuJoCo Warp's arrays, [num_envs, ...].
def obs_root_x_excluded(v):  # HalfCheetah
    return torch.cat([v.qpos[:, 1:], v.qvel], 1)


def obs_root_x_excluded_qvel_clipped(v):  # Hopper, Walker2d
    return torch.cat([v.qpos[:, 1:], v.qvel.clamp(-10.0, 10.0)], 1)


def ant_contact_forces(v):  # Ant clips every component of cfrc_ext to contact_force_range = (-1, 1)
    return v.cfrc_ext.clamp(-1.0, 1.0)


def obs_ant(v):  # x, y left out, then the clipped contact forces of the bodies (world excluded)
    return torch.cat([v.qpos[:, 2:], v.qvel, ant_contact_forces(v)[:, 1:].flatten(1)], 1)


def obs_humanoid(v):
    # x, y left out, then the bodies' (world excluded) cinert, cvel, cfrc_ext and the non-root actuator forces
    return torch.cat([v.qpos[:, 2:], v.qvel, v.cinert[:, 1:].flatten(1), v.cvel[:, 1:].flatten(1),
                      v.qfrc_actuator[:, 6:], v.cfrc_ext[:, 1:].flatten(1)], 1)


def root_x(v):
    return v.qpos[:, 0]


def torso_x(v):  # Ant's main_body (1, the torso): its frame's x
    return v.xpos[:, 1, 0]


def mass_center_x(v):  # Humanoid's mass_center(): the mass-weighted mean of the bodies' centres of mass
    return (v.xipos[:, :, 0] * v.body_mass).sum(1) / v.body_mass.sum()


def always_healthy(v):
    return torch.ones(v.num_envs, dtype=torch.bool, device=v.device)


def healthy_hopper(v):
    z, angle, state = v.qpos[:, 1], v.qpos[:, 2], torch.cat([v.qpos[:, 2:], v.qvel], 1)
    healthy_state = ((-100.0 < state) & (state < 100.0)).all(1)
    return healthy_state & (0.7 < z) & (z < float("inf")) & (-0.2 < angle) & (angle < 0.2)


def healthy_walker2d(v):
    z, angle = v.qpos[:, 1], v.qpos[:, 2]
    return (0.8 < z) & (z < 2.0) & (-1.0 < angle) & (angle < 1.0)


def healthy_humanoid(v):
    z = v.qpos[:, 2]
    return (1.0 < z) & (z < 2.0)


def healthy_ant(v):  # inclusive bounds, unlike the others, and a non-finite state is unhealthy
    z = v.qpos[:, 2]
    return torch.isfinite(torch.cat([v.qpos, v.qvel], 1)).all(1) & (0.2 <= z) & (z <= 1.0)


def contact_cost_ant(v):  # over every body, the world's (zero) included
    return 5e-4 * ant_contact_forces(v).square().sum((1, 2))


def no_contact_cost(v):
    return torch.zeros(v.num_envs, device=v.device)


def contact_cost_humanoid(v):  # the cost, not the forces, is clipped (contact_cost_range = (-inf, 10))
    return (5e-7 * v.cfrc_ext.square().sum((1, 2))).clamp(max=10.0)


def uniform_noise(rng, shape, scale):
    return (torch.rand(shape, generator=rng, device=rng.device, dtype=torch.float64) * 2.0 - 1.0) * scale


def normal_noise(rng, shape, scale):
    return torch.randn(shape, generator=rng, device=rng.device, dtype=torch.float64) * scale


@dataclass(frozen=True)
class EnvSpec:
    xml_file: str
    frame_skip: int
    forward_reward_weight: float
    ctrl_cost_weight: float
    healthy_reward: float
    reset_noise_scale: float
    qvel_noise: Callable  # HalfCheetah draws qvel noise from a standard normal, the others uniformly
    obs: Callable
    forward_position: Callable  # its change over dt is the forward velocity
    healthy: Callable  # terminated = not healthy
    contact_cost: Callable
    contact_forces: bool  # Gymnasium's MujocoEnv computes cfrc_ext (mj_rnePostConstraint) after every step
    nconmax: int  # contacts per world and constraint rows per world: generous for these models, checked each iteration
    njmax: int


SPECS = {
    "HalfCheetah-v5": EnvSpec("half_cheetah.xml", 5, 1.0, 0.1, 0.0, 0.1, normal_noise, obs_root_x_excluded, root_x,
                              always_healthy, no_contact_cost, False, 32, 128),
    "Hopper-v5": EnvSpec("hopper.xml", 4, 1.0, 1e-3, 1.0, 5e-3, uniform_noise, obs_root_x_excluded_qvel_clipped, root_x,
                         healthy_hopper, no_contact_cost, False, 16, 64),
    "Walker2d-v5": EnvSpec("walker2d_v5.xml", 4, 1.0, 1e-3, 1.0, 5e-3, uniform_noise, obs_root_x_excluded_qvel_clipped,
                           root_x, healthy_walker2d, no_contact_cost, False, 16, 64),
    "Ant-v5": EnvSpec("ant.xml", 5, 1.0, 0.5, 1.0, 0.1, normal_noise, obs_ant, torso_x, healthy_ant, contact_cost_ant,
                      True, 48, 192),
    "Humanoid-v5": EnvSpec("humanoid.xml", 5, 1.25, 0.1, 5.0, 1e-2, uniform_noise, obs_humanoid, mass_center_x,
                           healthy_humanoid, contact_cost_humanoid, True, 48, 256),
}


def import_warp():
    """mujoco_warp and warp, quiet: Warp otherwise prints a line per loaded module."""
    import warp as wp
    wp.config.log_level = wp.LOG_WARNING
    wp.init()
    import mujoco_warp as mjw
    return wp, mjw


class WarpVectorEnv:
    """`num_envs` worlds of one Gymnasium v5 MuJoCo env in one mujoco_warp.Data, as SyncVectorEnv of TimeLimit(1000)
    envs with next-step autoreset: the step after an episode's end returns the reset observation, reward 0 and no
    termination or truncation, and ignores that world's action. step() takes and returns torch tensors on `device`.
    The physics runs as Warp graphs recorded on first use (`graphs=False`: kernel by kernel, for tests).
    `num_members` members of a population own num_envs / num_members contiguous worlds each, whose reset noise comes
    from a generator of the member's own, drawn as a single run of its worlds draws it."""

    def __init__(self, env_id, num_envs, device="cpu", max_episode_steps=1000, graphs=True, num_members=1):
        wp, mjw = self.wp, self.mjw = import_warp()
        self.spec, self.num_envs, self.max_episode_steps = SPECS[env_id], num_envs, max_episode_steps
        if num_envs % num_members:
            raise ValueError(f"{num_envs} envs do not split into {num_members} members")
        self.num_members = num_members
        model = mujoco.MjModel.from_xml_path(
            os.path.join(os.path.dirname(gymnasium.envs.mujoco.__file__), "assets", self.spec.xml_file))
        if env_id in WARP_REFUSED:  # kept for the test that watches whether MuJoCo Warp still differs
            warnings.warn(f"{env_id} on MuJoCo Warp differs from Gymnasium's: {WARP_REFUSED[env_id]}", stacklevel=2)
        if model.opt.solver == mujoco.mjtSolver.mjSOL_PGS:
            model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
            warnings.warn(f"{env_id} on MuJoCo Warp: Newton solver in place of {self.spec.xml_file}'s PGS, which "
                          "MuJoCo Warp does not implement (same contact problem; docs/warp_backend.md)", stacklevel=2)
        self.dt = model.opt.timestep * self.spec.frame_skip
        self.wp_device = wp.device_from_torch(torch.device(device))
        self.device = torch.device(wp.device_to_torch(self.wp_device))
        # On a GPU the physics runs on a stream of its own, ordered with torch's current stream by events: a graph
        # cannot be recorded on the legacy default stream torch uses.
        self.torch_stream = torch.cuda.Stream(self.device) if self.wp_device.is_cuda else None
        self.stream = wp.stream_from_torch(self.torch_stream) if self.torch_stream is not None else None
        with wp.ScopedDevice(self.wp_device):
            self.model = mjw.put_model(model)
            self.data = mjw.put_data(model, mujoco.MjData(model), nworld=num_envs, nconmax=self.spec.nconmax,
                                     njmax=self.spec.njmax)
        # zero-copy torch views of what the envs read and write
        for name in ("qpos", "qvel", "ctrl", "qacc_warmstart", "time", "xpos", "xipos", "cinert", "cvel",
                     "qfrc_actuator", "cfrc_ext", "overflow"):
            setattr(self, name, wp.to_torch(getattr(self.data, name)))
        self.body_mass = torch.tensor(model.body_mass, dtype=torch.float32, device=self.device)
        self.init_qpos = torch.tensor(model.qpos0, dtype=torch.float64, device=self.device)
        obs_dim = self.spec.obs(self).shape[1]  # Gymnasium's space, without building its env for it
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        low, high = model.actuator_ctrlrange.T.astype(np.float32)
        self.single_action_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.rngs = [torch.Generator(device=self.device) for _ in range(num_members)]
        self.needs_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self.elapsed_steps = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.x_position = torch.zeros(num_envs, device=self.device)  # after the last step or reset
        # physics problems of the stepped worlds, gathered on the device and read once per rollout
        self.lost = {flag: name for flag, name in ((mjw.OverflowType.NEFC, "constraint rows (njmax)"),
                                                   (mjw.OverflowType.NJMAX_NNZ, "constraint Jacobian entries"),
                                                   (mjw.OverflowType.BROADPHASE, "broadphase pairs"),
                                                   (mjw.OverflowType.NARROWPHASE, "contacts (nconmax)"))}
        self.lost_flags = torch.zeros_like(self.overflow)
        self.diverged = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self.graphs = {} if graphs else None

    def _physics(self, name):
        """"step" (frame_skip mj_step, then the contact forces where observed) or "forward" (mj_forward), recorded
        as a Warp graph at its first call and replayed after: one launch instead of hundreds, and on a GPU no host
        sync (run kernel by kernel, MuJoCo Warp's solver reads its convergence flag back at every iteration)."""
        def run():
            if name == "forward":
                return self.mjw.forward(self.model, self.data)
            for _ in range(self.spec.frame_skip):
                self.mjw.step(self.model, self.data)
            if self.spec.contact_forces:
                self.mjw.rne_postconstraint(self.model, self.data)

        wp = self.wp
        with wp.ScopedDevice(self.wp_device):
            if self.graphs is not None and name not in self.graphs:
                with wp.ScopedCapture(device=self.wp_device, stream=self.stream) as capture:
                    run()  # recorded, not run
                self.graphs[name] = capture.graph
            if self.stream is not None:  # after torch's writes of ctrl, qpos, ... and before its reads
                self.torch_stream.wait_stream(torch.cuda.current_stream(self.device))
            with wp.ScopedStream(self.stream) if self.stream is not None else contextlib.nullcontext():
                if self.graphs is not None:
                    wp.capture_launch(self.graphs[name], stream=self.stream)
                else:
                    run()
            if self.stream is not None:
                torch.cuda.current_stream(self.device).wait_stream(self.torch_stream)

    def reset_state(self):
        """Every world's init + noise state (qpos, qvel), drawn as MujocoEnv.reset_model draws them (tests replace
        it)."""
        s, n = self.spec, self.num_envs // self.num_members
        noise = [(uniform_noise(rng, (n,) + self.qpos.shape[1:], s.reset_noise_scale),
                  s.qvel_noise(rng, (n,) + self.qvel.shape[1:], s.reset_noise_scale)) for rng in self.rngs]
        return self.init_qpos + torch.cat([qpos for qpos, _ in noise]), torch.cat([qvel for _, qvel in noise])

    def _reset_worlds(self, mask):
        """MujocoEnv.reset for the worlds in `mask`: mj_resetData (of what these models carry between steps: qpos,
        qvel, ctrl, warm start, time, and the cfrc_ext they observe), init + noise, mj_forward. Noise is drawn for
        every world and forward runs on all: fixed work, no host sync. mjw.reset_data would do the first part, at a
        fixed ~10 ms per call on Warp's CPU device."""
        s, m = self.spec, mask[:, None]
        qpos, qvel = self.reset_state()
        self.qpos.copy_(torch.where(m, qpos.float(), self.qpos))
        self.qvel.copy_(torch.where(m, qvel.float(), self.qvel))
        self.ctrl.masked_fill_(m, 0.0)
        self.qacc_warmstart.masked_fill_(m, 0.0)
        self.time.masked_fill_(mask, 0.0)
        self.cfrc_ext.masked_fill_(mask[:, None, None], 0.0)
        if s.contact_forces:  # Ant's and Humanoid's reset observations and positions read xpos, xipos, cinert, ...
            self._physics("forward")
        self.elapsed_steps.masked_fill_(mask, 0)
        self.x_position.copy_(torch.where(mask, s.forward_position(self), self.x_position))
        return s.obs(self)

    def reset(self, seed=None):
        """`seed`: None, an int (env i's seed is seed + i) or a seed per env, as SyncVectorEnv takes them; each
        member's generator takes its first env's seed, as a single run of its envs seeded with that int would."""
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
            for rng, first in zip(self.rngs, seeds[::self.num_envs // self.num_members]):
                if first is not None:
                    rng.manual_seed(first)
        obs = self._reset_worlds(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        self.needs_reset.zero_()
        return obs, {}

    def step(self, action):
        s, resetting = self.spec, self.needs_reset
        self.ctrl.copy_(action)  # worlds about to reset step too (batched kernels); their results are replaced below
        self._physics("step")
        # MuJoCo resets a simulation whose state turns non-finite or beyond 1e10, with a warning; MuJoCo Warp does
        # not, so such worlds (and lost contacts or constraints) are gathered here and stop the run after the rollout,
        # before their NaNs reach a checkpoint.
        stepped = ~resetting
        self.diverged |= stepped & ~(torch.cat([self.qpos, self.qvel], 1).abs() <= 1e10).all(1)
        self.lost_flags |= self.overflow * stepped
        self.overflow.zero_()

        x_before, x_after = self.x_position, s.forward_position(self).clone()
        healthy = s.healthy(self)
        reward = (s.forward_reward_weight * (x_after - x_before) / self.dt + s.healthy_reward * healthy
                  - s.ctrl_cost_weight * action.square().sum(1) - s.contact_cost(self))
        obs = s.obs(self)
        terminated = ~healthy
        self.elapsed_steps += 1
        truncated = self.elapsed_steps >= self.max_episode_steps
        self.x_position = x_after

        obs = torch.where(resetting[:, None], self._reset_worlds(resetting), obs)
        reward = reward.masked_fill(resetting, 0.0)
        terminated, truncated = terminated & stepped, truncated & stepped
        self.needs_reset = terminated | truncated
        return obs, reward, terminated, truncated, {}

    def physics_problem(self):
        """None, or what went wrong in the stepped worlds' physics (one host sync: call once per rollout)."""
        flags = torch.tensor([int(flag) for flag in self.lost], dtype=self.lost_flags.dtype, device=self.device)
        seen = ((self.lost_flags[:, None] & flags) != 0).any(0).tolist()
        problems = [f"MuJoCo Warp ran out of {name} in some worlds, which lost contacts or constraints"
                    for name, hit in zip(self.lost.values(), seen) if hit]
        diverged = int(self.diverged.sum())
        if diverged:
            problems.append(f"{diverged} world(s) diverged (a state non-finite or beyond 1e10, which MuJoCo would "
                            "reset and MuJoCo Warp does not)")
        return "; ".join(problems) or None

    # What the next steps depend on: MuJoCo's integration state (these models have no activations or mocap bodies),
    # the cfrc_ext a reset zeroes, the position the next forward velocity starts from, the time limit and autoreset
    # bookkeeping; and the noise RNG. All of a member's is what a single run of its worlds holds.
    STATE = ("qpos", "qvel", "ctrl", "qacc_warmstart", "time", "cfrc_ext", "x_position", "elapsed_steps", "needs_reset")

    def _member(self, member):
        """The worlds (a slice) and the noise generators of `member`, all with None."""
        if member is None:
            return slice(None), self.rngs
        if not 0 <= member < self.num_members:
            raise ValueError(f"member {member} of {self.num_members}")
        n = self.num_envs // self.num_members
        return slice(member * n, (member + 1) * n), self.rngs[member:member + 1]

    def state(self, member=None):
        worlds, rngs = self._member(member)
        state = {name: getattr(self, name)[worlds].clone() for name in self.STATE}
        return state | (dict(rng=rngs[0].get_state()) if len(rngs) == 1 else dict(rngs=[g.get_state() for g in rngs]))

    def set_state(self, state, member=None):
        worlds, rngs = self._member(member)
        for name in self.STATE:
            getattr(self, name)[worlds].copy_(state[name])  # in place: these are views of MuJoCo Warp's arrays
        for rng, saved in zip(rngs, [state["rng"]] if "rng" in state else state["rngs"], strict=True):
            rng.set_state(saved)

    def close(self):
        pass  # Warp frees its arrays with the env


def running_mean_var_update(rms, x, group_size, frozen, mask=None):
    """Gymnasium's RunningMeanStd.update (the parallel-variance merge) of the float64 statistics in `rms` ([G, ...],
    count [G]), group g with rows [g * group_size, (g + 1) * group_size) of `x` (those in `mask`); no update of a
    group with no row selected or `frozen`, decided on the device."""
    x = x.double().reshape(-1, group_size, *x.shape[1:])
    if mask is None:
        n = group_size  # a Python number: a tensor made from it would cost a host-to-device copy every step
        batch_mean, batch_var = x.mean(1), x.var(1, unbiased=False)
    else:
        w = mask.double().reshape(-1, group_size, *[1] * (x.dim() - 2))
        n = w.sum(1)
        batch_mean = (w * x).sum(1) / n.clamp(min=1)
        batch_var = (w * (x - batch_mean.unsqueeze(1)).square()).sum(1) / n.clamp(min=1)
    count = rms["count"].reshape(-1, *[1] * (rms["mean"].dim() - 1))
    delta = batch_mean - rms["mean"]
    total = count + n
    merged = dict(mean=rms["mean"] + delta * n / total,
                  var=(rms["var"] * count + batch_var * n + delta.square() * count * n / total) / total,
                  count=total.reshape(-1))
    keep = frozen if mask is None else (n == 0).reshape(-1) | frozen
    for key, value in merged.items():
        rms[key] = torch.where(keep.reshape(-1, *[1] * (value.dim() - 1)), rms[key], value)


class CleanRLWrappers:
    """CleanRL's wrapper chain over a tensor vector env, in torch, with the normalisation statistics per group of
    envs as grouped_wrappers.GroupedCleanRLWrappers keeps them (one group per member's envs with norm_stats "shared",
    one per env with "per-env"; member m owns envs [m * n, (m + 1) * n)), and the semantics of Gymnasium's wrappers
    under next-step autoreset: RecordEpisodeStatistics (raw rewards; the reset step is no part of an episode),
    ClipAction, NormalizeObservation (updated on reset and step observations), observation clip to [-10, 10],
    NormalizeReward (its discounted return over the envs not resetting: float32 and zeroed by reset as the vector
    wrapper's, or per env float64 and kept over a reset as the single-env wrapper's), reward clip to [-10, 10].
    Statistics are float64 on the env's device."""

    on_device = True  # takes and returns tensors on `device`: collect_rollout skips the host round trip

    def __init__(self, env, gamma, norm_stats="shared", num_members=1, epsilon=1e-8):
        self.env, self.gamma, self.epsilon, self.num_envs, self.device = env, gamma, epsilon, env.num_envs, env.device
        if self.num_envs % num_members:
            raise ValueError(f"{self.num_envs} envs do not split into {num_members} members")
        self.per_env, self.num_members = norm_stats == "per-env", num_members
        self.group_size = 1 if self.per_env else self.num_envs // num_members
        self.num_groups = self.num_envs // self.group_size
        device = self.device
        self.single_action_space = env.single_action_space
        obs_dim = env.single_observation_space.shape[0]
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_low, self.action_high = (torch.as_tensor(b, device=device) for b in
                                             (self.single_action_space.low, self.single_action_space.high))

        def zeros(dtype=torch.float64):
            return torch.zeros(env.num_envs, dtype=dtype, device=device)

        def rms(shape):
            return dict(mean=torch.zeros((self.num_groups,) + shape, dtype=torch.float64, device=device),
                        var=torch.ones((self.num_groups,) + shape, dtype=torch.float64, device=device),
                        count=torch.full((self.num_groups,), 1e-4, dtype=torch.float64, device=device))

        self.obs_rms, self.return_rms = rms((obs_dim,)), rms(())
        self.frozen = torch.zeros(self.num_groups, dtype=torch.bool, device=device)
        self.group = torch.arange(self.num_envs, device=device) // self.group_size
        self.episode_returns, self.episode_lengths = zeros(), zeros(torch.int64)
        self.accumulated_reward = zeros(torch.float64 if self.per_env else torch.float32)
        self.prev_dones = zeros(torch.bool)

    def _normalize_obs(self, obs):
        running_mean_var_update(self.obs_rms, obs, self.group_size, self.frozen)
        mean, var = self.obs_rms["mean"][self.group], self.obs_rms["var"][self.group]
        return ((obs.double() - mean) / torch.sqrt(var + self.epsilon)).float().clamp(-10.0, 10.0)

    def reset(self, seed=None):
        obs, info = self.env.reset(seed=seed)
        for bookkeeping in (self.episode_returns, self.episode_lengths, self.prev_dones):
            bookkeeping.zero_()
        if not self.per_env:  # the single-env NormalizeReward has no reset
            self.accumulated_reward.zero_()
        return self._normalize_obs(obs), info

    def step(self, action):
        action = torch.minimum(torch.maximum(action, self.action_low), self.action_high)
        obs, reward, terminated, truncated, info = self.env.step(action)
        reward, active = reward.double(), ~self.prev_dones
        self.episode_returns = torch.where(active, self.episode_returns + reward, 0.0)
        self.episode_lengths = torch.where(active, self.episode_lengths + 1, 0)
        dones = terminated | truncated
        info = dict(info, episode_return=self.episode_returns.clone(), episode_length=self.episode_lengths.clone(),
                    episode_done=dones)
        discounted = self.accumulated_reward * self.gamma * (~terminated).double() + reward
        accumulated = self.accumulated_reward
        self.accumulated_reward = torch.where(active, discounted.to(accumulated.dtype), accumulated)
        running_mean_var_update(self.return_rms, self.accumulated_reward, self.group_size, self.frozen, active)
        self.prev_dones = dones
        reward = (reward / torch.sqrt(self.return_rms["var"][self.group] + self.epsilon)).clamp(-10.0, 10.0)
        return self._normalize_obs(obs), reward.float(), terminated, truncated, info

    def _member(self, member):
        return member_slices(member, self.num_members, self.num_envs, self.num_groups)

    def norm_stats(self, member=None):
        """In get_norm_stats' layout: a row per group (of `member`), numpy float64."""
        groups = self._member(member)[1]
        return {f"{key}_{field}": rms[field][groups].cpu().numpy() for key, rms in
                (("obs", self.obs_rms), ("ret", self.return_rms)) for field in ("mean", "var", "count")}

    def set_norm_stats(self, stats, frozen, member=None):
        """Group i (of `member`) takes row i of `stats`, or row 0 when fewer rows were saved."""
        groups = torch.arange(self.num_groups)[self._member(member)[1]]
        rows = torch.arange(len(groups))
        rows = torch.where(rows < len(stats["obs_mean"]), rows, 0)
        for key, rms in (("obs", self.obs_rms), ("ret", self.return_rms)):
            for field in ("mean", "var", "count"):
                saved = torch.as_tensor(stats[f"{key}_{field}"], dtype=torch.float64)[rows]
                rms[field][groups.to(self.device)] = saved.to(self.device)
        self.frozen[groups.to(self.device)] = frozen

    WRAPPER_STATE = ("episode_returns", "episode_lengths", "accumulated_reward", "prev_dones")

    def state(self, member=None):
        """All members', or `member`'s: then what a single run of its envs holds."""
        envs, groups = self._member(member)
        wrappers = {name: getattr(self, name)[envs].clone() for name in self.WRAPPER_STATE}
        wrappers["frozen"] = self.frozen[groups].clone()
        return dict(device=self.env.device.type, env=self.env.state(member), wrappers=wrappers,
                    obs_rms={k: v[groups].clone() for k, v in self.obs_rms.items()},
                    return_rms={k: v[groups].clone() for k, v in self.return_rms.items()})

    def set_state(self, state, member=None):
        envs, groups = self._member(member)
        self.env.set_state(state["env"], member)
        for name, value in state["wrappers"].items():
            getattr(self, name)[groups if name == "frozen" else envs].copy_(value)
        for rms in ("obs_rms", "return_rms"):
            for k, v in state[rms].items():
                getattr(self, rms)[k][groups].copy_(v)

    def physics_problem(self):
        return self.env.physics_problem()

    def close(self):
        self.env.close()

