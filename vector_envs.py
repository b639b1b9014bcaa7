# The vector envs of ppo_continuous_kl.py: Gymnasium's own (the reference) or N copies of a Gymnasium v5 MuJoCo env
# stepped together by mujoco.batch and equal to them bit for bit, CleanRL's wrappers around either, and the envs'
# whole state for exact checkpoints.
import collections
import copy
import os
import warnings

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv


def quiet_mujoco():
    """MuJoCo 4.0 warns that HalfCheetah/Humanoid's XML uses `settotalmass`, once per env built, on the console
    and into ./MUJOCO_LOG.TXT; drop that one and pass any other MuJoCo warning on to Python's warnings."""
    def on_warning(message):
        if "settotalmass" not in message:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning)
    mujoco.set_mju_user_warning(on_warning)


MUJOCO_BATCH_ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5")


class MujocoBatchEnv(gym.vector.VectorEnv):
    """N copies of a Gymnasium v5 MuJoCo env (default arguments) stepped together by mujoco.batch.Batch on
    `num_threads` threads. Same model, same mj_step calls, same float operations as Gymnasium's env, and one RNG
    per env seeded as SyncVectorEnv seeds them, so observations, rewards, terminations and truncations equal
    SyncVectorEnv's bit for bit; autoreset is next-step. The reward and health constants are read from
    Gymnasium's own env instance."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, env_id, num_envs, num_threads=1):
        import mujoco.batch

        self.reference = gym.make(env_id).unwrapped
        self.kind = env_id.split("-")[0]
        self.num_envs = num_envs
        self.single_observation_space = self.reference.observation_space
        self.single_action_space = self.reference.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.max_episode_steps = gym.spec(env_id).max_episode_steps
        model = self.reference.model
        # Ant and Humanoid observe the contact forces cfrc_ext, which Gymnasium computes after each step with
        # mj_rnePostConstraint, a call mujoco.batch does not make. A persistent batch keeps every env's whole
        # MjData, so each env's can be copied out after the step and the call made on the copy.
        self.contact_forces = self.kind in ("Ant", "Humanoid")
        self.batch = mujoco.batch.Batch(model, num_envs, num_threads, persistent=self.contact_forces)
        self.qpos, self.qvel, self.ctrl = (self.batch.bind(field) for field in ("qpos", "qvel", "ctrl"))
        if self.contact_forces:
            self.xpos, self.xipos, self.cinert, self.cvel, self.qfrc_actuator = (
                self.batch.bind(field) for field in ("xpos", "xipos", "cinert", "cvel", "qfrc_actuator"))
            self.cfrc_ext = np.zeros((num_envs, model.nbody, 6))
            self.scratch = mujoco.MjData(model)
        self.rngs = [None] * num_envs
        self.elapsed_steps = np.zeros(num_envs, dtype=np.int64)
        self.needs_reset = np.zeros(num_envs, dtype=bool)
        # where each env was after its last step or reset: the start of the next step's forward velocity
        self.x_position = np.zeros(num_envs)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rngs = [gym.utils.seeding.np_random(seed + i)[0] for i in range(self.num_envs)]
        self._reset_envs(np.arange(self.num_envs))
        self.needs_reset[:] = False
        return self._obs(), {}

    def step(self, actions):
        env = self.reference
        resetting = self.needs_reset
        stepping = np.flatnonzero(~resetting)
        x_before = self.x_position.copy()
        self.ctrl[:] = actions
        self.batch.step(ids=None if len(stepping) == self.num_envs else stepping, nstep=env.frame_skip)
        if self.contact_forces:
            for i in stepping:
                self.batch.get_data(i, self.scratch)
                mujoco.mj_rnePostConstraint(env.model, self.scratch)
                self.cfrc_ext[i] = self.scratch.cfrc_ext
        self.x_position = self._x_position()
        if resetting.any():
            self._reset_envs(np.flatnonzero(resetting))
        x_velocity = (self.x_position - x_before) / env.dt
        # Gymnasium's expressions in its order and dtypes: rewards - costs, the control cost in float32 as the
        # actions are (Humanoid's in float64: it squares data.ctrl)
        healthy = self._healthy()
        rewards = env._forward_reward_weight * x_velocity
        if hasattr(env, "_healthy_reward"):
            rewards = rewards + healthy * env._healthy_reward
        costs = env._ctrl_cost_weight * np.sum(np.square(self.ctrl if self.kind == "Humanoid" else actions), axis=1)
        if self.kind == "Ant":
            clipped = np.clip(self.cfrc_ext, *env._contact_force_range).reshape(self.num_envs, -1)
            costs = costs + env._contact_cost_weight * np.sum(np.square(clipped), axis=1)
        elif self.kind == "Humanoid":
            contact_cost = env._contact_cost_weight * np.sum(np.square(self.cfrc_ext.reshape(self.num_envs, -1)), axis=1)
            costs = costs + np.clip(contact_cost, *env._contact_cost_range)
        reward = rewards - costs
        terminated = ~healthy if getattr(env, "_terminate_when_unhealthy", False) else np.zeros(self.num_envs, bool)
        self.elapsed_steps += 1
        self.elapsed_steps[resetting] = 0
        truncated = self.elapsed_steps >= self.max_episode_steps
        reward[resetting], terminated[resetting], truncated[resetting] = 0.0, False, False
        self.needs_reset = terminated | truncated
        return self._obs(), reward, terminated, truncated, {}

    def _reset_envs(self, ids):
        """mj_resetData, then Gymnasium's reset noise, drawn from each env's own RNG in Gymnasium's order."""
        env = self.reference
        # Gymnasium's set_state ends with mj_forward, whose positions and velocities Ant and Humanoid observe
        self.batch.reset(ids=ids, stage=mujoco.mjtStage.mjSTAGE_NONE if self.contact_forces else mujoco.mjtStage.mjSTAGE_ACC)
        scale = env._reset_noise_scale
        for i in ids:
            if self.rngs[i] is None:
                self.rngs[i] = gym.utils.seeding.np_random()[0]
            rng = self.rngs[i]
            self.qpos[i] = env.init_qpos + rng.uniform(low=-scale, high=scale, size=env.model.nq)
            if self.kind in ("HalfCheetah", "Ant"):
                self.qvel[i] = env.init_qvel + scale * rng.standard_normal(env.model.nv)
            else:
                self.qvel[i] = env.init_qvel + rng.uniform(low=-scale, high=scale, size=env.model.nv)
        if self.contact_forces:
            self.batch.forward(ids=ids)
            self.cfrc_ext[ids] = 0.0  # zeroed by mj_resetData; mj_forward does not compute it
        self.x_position[ids] = self._x_position()[ids]
        self.elapsed_steps[ids] = 0

    def _x_position(self):
        """The x coordinate whose change over a step is the forward velocity: the root joint's, Ant's torso's,
        Humanoid's centre of mass."""
        if self.kind == "Ant":
            return self.xpos[:, self.reference._main_body, 0].copy()
        if self.kind == "Humanoid":
            mass = self.reference.model.body_mass
            return np.einsum("b,nbj->nj", mass, self.xipos)[:, 0] / mass.sum()
        return self.qpos[:, 0].copy()

    def _obs(self):
        n = self.num_envs
        if self.kind == "HalfCheetah":
            return np.concatenate((self.qpos[:, 1:], self.qvel), axis=1)
        if self.kind == "Ant":
            contact = np.clip(self.cfrc_ext, *self.reference._contact_force_range)[:, 1:].reshape(n, -1)
            return np.concatenate((self.qpos[:, 2:], self.qvel, contact), axis=1)
        if self.kind == "Humanoid":
            return np.concatenate((self.qpos[:, 2:], self.qvel, self.cinert[:, 1:].reshape(n, -1),
                                   self.cvel[:, 1:].reshape(n, -1), self.qfrc_actuator[:, 6:],
                                   self.cfrc_ext[:, 1:].reshape(n, -1)), axis=1)
        return np.concatenate((self.qpos[:, 1:], np.clip(self.qvel, -10, 10)), axis=1)

    def _healthy(self):
        env, z = self.reference, self.qpos[:, 2] if self.contact_forces else self.qpos[:, 1]
        min_z, max_z = getattr(env, "_healthy_z_range", (-np.inf, np.inf))
        if self.kind == "Ant":
            finite = np.isfinite(np.concatenate((self.qpos, self.qvel), axis=1)).all(axis=1)
            return finite & (min_z <= z) & (z <= max_z)
        healthy = (min_z < z) & (z < max_z)
        if hasattr(env, "_healthy_angle_range"):
            min_angle, max_angle = env._healthy_angle_range
            healthy &= (min_angle < self.qpos[:, 2]) & (self.qpos[:, 2] < max_angle)
        if hasattr(env, "_healthy_state_range"):
            low, high = env._healthy_state_range
            state = np.concatenate((self.qpos[:, 2:], self.qvel), axis=1)
            healthy &= np.all((low < state) & (state < high), axis=1)
        return healthy


def make_envs(env_id, num_envs, gamma, norm_stats="shared", capture_video=False, run_dir="", backend="gymnasium",
              env_threads=1, device="cpu"):
    """N envs stepped in one process, next-step autoreset, with CleanRL's wrappers: episode statistics on the raw
    rewards, action clipping, observation and reward normalisation, both clipped to [-10, 10]. The warp backend
    lives on `device` and brings its own wrappers, in torch."""
    if backend == "warp":
        from warp_envs import CleanRLWrappers, WarpVectorEnv  # imports MuJoCo Warp only when asked for
        return CleanRLWrappers(WarpVectorEnv(env_id, num_envs, device), gamma)

    def make_one(idx):
        def thunk():
            if capture_video and idx == 0:
                env = gym.wrappers.RecordVideo(gym.make(env_id, render_mode="rgb_array"), os.path.join(run_dir, "videos"))
            else:
                env = gym.make(env_id)
            if norm_stats == "per-env":
                env = gym.wrappers.FlattenObservation(env)
                env = gym.wrappers.RecordEpisodeStatistics(env)
                env = gym.wrappers.ClipAction(env)
                env = gym.wrappers.NormalizeObservation(env)
                env = gym.wrappers.TransformObservation(env, lambda obs: np.clip(obs, -10, 10), env.observation_space)
                env = gym.wrappers.NormalizeReward(env, gamma=gamma)
                env = gym.wrappers.TransformReward(env, lambda reward: np.clip(reward, -10, 10))
            return env
        return thunk

    if backend == "mujoco-batch":
        envs = MujocoBatchEnv(env_id, num_envs, env_threads)
    else:
        envs = gym.vector.SyncVectorEnv([make_one(i) for i in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    if norm_stats == "shared":
        # Gymnasium's vector ClipAction, ClipReward and FlattenObservation run once per env in Python; at hundreds of
        # envs that costs as much as the physics, so clip the whole batch at once (same values), and flatten only
        # observations that are not flat already.
        if len(envs.single_observation_space.shape) != 1:
            envs = gym.wrappers.vector.FlattenObservation(envs)
        envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
        low, high = envs.single_action_space.low, envs.single_action_space.high
        envs = gym.wrappers.vector.TransformAction(envs, lambda actions: np.clip(actions, low, high))
        envs = gym.wrappers.vector.NormalizeObservation(envs)
        envs = gym.wrappers.vector.TransformObservation(envs, lambda obs: np.clip(obs, -10, 10))
        envs = gym.wrappers.vector.NormalizeReward(envs, gamma=gamma)
        envs = gym.wrappers.vector.TransformReward(envs, lambda rewards: np.clip(rewards, -10, 10))
    return envs


def wrapper_chain(env):
    """The env and every env it wraps, outermost first."""
    while env is not None:
        yield env
        env = getattr(env, "env", None)


def normalizers(envs):
    """The (observation, reward) normalisation wrappers: one pair shared by all envs, or one pair per env."""
    holders = [envs] if any(hasattr(w, "obs_rms") for w in wrapper_chain(envs)) else envs.unwrapped.envs
    pairs = []
    for holder in holders:
        wrappers = list(wrapper_chain(holder))
        pairs.append((next(w for w in wrappers if hasattr(w, "obs_rms")), next(w for w in wrappers if hasattr(w, "return_rms"))))
    return pairs


def get_norm_stats(envs):
    if getattr(envs, "on_device", False):  # --env-backend warp keeps its statistics in tensors
        return envs.norm_stats()
    pairs = normalizers(envs)
    stats = {}
    for key, rms in (("obs", lambda p: p[0].obs_rms), ("ret", lambda p: p[1].return_rms)):
        for field in ("mean", "var", "count"):
            stats[f"{key}_{field}"] = np.stack([np.asarray(getattr(rms(p), field), dtype=np.float64) for p in pairs])
    return stats


def set_norm_stats(envs, stats, frozen):
    """Loads saved statistics (env i takes row i, or row 0 when fewer were saved) and optionally freezes them."""
    for i, (obs_norm, ret_norm) in enumerate(normalizers(envs)):
        row = i if i < len(stats["obs_mean"]) else 0
        for key, rms in (("obs", obs_norm.obs_rms), ("ret", ret_norm.return_rms)):
            rms.mean, rms.var, rms.count = (np.array(stats[f"{key}_{f}"][row]) for f in ("mean", "var", "count"))
        obs_norm.update_running_mean = ret_norm.update_running_mean = not frozen


# Gymnasium's wrappers keep what changes as the envs step (time limits, episode statistics, normalisation statistics
# and discounted returns) in attributes of these types; the rest of a wrapper is fixed at construction.
WRAPPER_STATE_TYPES = (np.ndarray, np.generic, int, float, bool, collections.deque,
                       gym.wrappers.utils.RunningMeanStd)


def env_state(envs):
    """Everything the envs' next steps depend on. Gymnasium's MuJoCo envs pickle only their constructor arguments,
    so the simulation state (mj_getState's integration state: qpos, qvel, warm start, ...), each env's RNG and the
    wrappers' bookkeeping are taken out one by one; other envs are copied attribute by attribute."""
    if getattr(envs, "on_device", False):  # --env-backend warp: tensors on the device
        return envs.state()

    def wrappers(env):
        return [{k: copy.deepcopy(v) for k, v in vars(w).items() if isinstance(v, WRAPPER_STATE_TYPES)}
                for w in wrapper_chain(env) if isinstance(w, (gym.Wrapper, gym.vector.VectorWrapper))]

    base = envs.unwrapped
    state = dict(wrappers=wrappers(envs))
    if isinstance(base, MujocoBatchEnv):
        state.update(sims=base.batch.state.copy(), rngs=[rng.bit_generator.state for rng in base.rngs],
                     elapsed_steps=base.elapsed_steps.copy(), needs_reset=base.needs_reset.copy(),
                     x_position=base.x_position.copy(), cfrc_ext=base.cfrc_ext.copy() if base.contact_forces else None)
        return state
    state["autoreset_envs"] = base._autoreset_envs.copy()
    state["envs"] = []
    for env in base.envs:
        sim = env.unwrapped
        if isinstance(sim, MujocoEnv):
            physics = np.empty(mujoco.mj_stateSize(sim.model, mujoco.mjtState.mjSTATE_INTEGRATION))
            mujoco.mj_getState(sim.model, sim.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
            # body positions too: not integration state, but some envs' next reward starts from them (Ant's torso,
            # Humanoid's centre of mass, Reacher's fingertip)
            own = dict(physics=physics, xpos=sim.data.xpos.copy(), xipos=sim.data.xipos.copy(),
                       rng=sim.np_random.bit_generator.state)
        else:
            own = dict(attributes=copy.deepcopy(vars(sim)))
        state["envs"].append(dict(wrappers=wrappers(env), **own))
    return state


def set_env_state(envs, state):
    """Puts back what env_state took out, into envs built and reset as the saved ones were."""
    if getattr(envs, "on_device", False):
        return envs.set_state(state)

    def set_wrappers(env, saved):
        layers = [w for w in wrapper_chain(env) if isinstance(w, (gym.Wrapper, gym.vector.VectorWrapper))]
        for w, attributes in zip(layers, saved, strict=True):
            for k, v in attributes.items():
                setattr(w, k, copy.deepcopy(v))

    base = envs.unwrapped
    set_wrappers(envs, state["wrappers"])
    if isinstance(base, MujocoBatchEnv):
        base.batch.state[:] = state["sims"]
        for rng, saved in zip(base.rngs, state["rngs"], strict=True):
            rng.bit_generator.state = saved
        base.elapsed_steps[:], base.needs_reset[:] = state["elapsed_steps"], state["needs_reset"]
        base.x_position[:] = state["x_position"]
        if base.contact_forces:
            base.cfrc_ext[:] = state["cfrc_ext"]
        return
    base._autoreset_envs[:] = state["autoreset_envs"]
    for env, saved in zip(base.envs, state["envs"], strict=True):
        set_wrappers(env, saved["wrappers"])
        sim = env.unwrapped
        if "physics" in saved:
            mujoco.mj_setState(sim.model, sim.data, saved["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
            sim.data.xpos[:], sim.data.xipos[:] = saved["xpos"], saved["xipos"]
            sim.np_random.bit_generator.state = saved["rng"]
        else:
            vars(sim).update(copy.deepcopy(saved["attributes"]))
