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

from ppo_kl.grouped_wrappers import GroupedCleanRLWrappers


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
        # read once: the env's dt is a property computed through MuJoCo's bindings, costly at every step of one env
        self.dt = self.reference.dt
        self.healthy_matters = hasattr(self.reference, "_healthy_reward") or getattr(
            self.reference, "_terminate_when_unhealthy", False)
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
        """`seed`: None (each env keeps its RNG), an int (env i takes seed + i) or one seed or None per env, as
        SyncVectorEnv takes them."""
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
            for i, env_seed in enumerate(seeds):
                if env_seed is not None:
                    self.rngs[i] = gym.utils.seeding.np_random(env_seed)[0]
        self._reset_envs(np.arange(self.num_envs))
        self.needs_reset[:] = False
        return self._obs(), {}

    def step(self, actions):
        env = self.reference
        resetting = self.needs_reset
        any_resetting = resetting.any()
        stepping = np.flatnonzero(~resetting) if any_resetting else None  # None: every env
        x_before = self.x_position.copy()
        self.ctrl[:] = actions
        self.batch.step(ids=stepping, nstep=env.frame_skip)
        if self.contact_forces:
            for i in range(self.num_envs) if stepping is None else stepping:
                self.batch.get_data(i, self.scratch)
                mujoco.mj_rnePostConstraint(env.model, self.scratch)
                self.cfrc_ext[i] = self.scratch.cfrc_ext
        self.x_position = self._x_position()
        if any_resetting:
            self._reset_envs(np.flatnonzero(resetting))
        x_velocity = (self.x_position - x_before) / self.dt
        # Gymnasium's expressions in its order and dtypes: rewards - costs, the control cost in float32 as the
        # actions are (Humanoid's in float64: it squares data.ctrl)
        healthy = self._healthy() if self.healthy_matters else None
        rewards = env._forward_reward_weight * x_velocity
        if hasattr(env, "_healthy_reward"):
            rewards = rewards + healthy * env._healthy_reward
        costs = env._ctrl_cost_weight * np.square(self.ctrl if self.kind == "Humanoid" else actions).sum(axis=1)
        if self.kind == "Ant":
            clipped = np.clip(self.cfrc_ext, *env._contact_force_range).reshape(self.num_envs, -1)
            costs = costs + env._contact_cost_weight * np.sum(np.square(clipped), axis=1)
        elif self.kind == "Humanoid":
            forces = self.cfrc_ext.reshape(self.num_envs, -1)
            contact_cost = env._contact_cost_weight * np.sum(np.square(forces), axis=1)
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
        stage = mujoco.mjtStage.mjSTAGE_NONE if self.contact_forces else mujoco.mjtStage.mjSTAGE_ACC
        self.batch.reset(ids=ids, stage=stage)
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


def make_envs(env_id, num_envs, gamma, norm_stats="per-env", capture_video=False, run_dir="", backend="gymnasium",
              env_threads=1, device="cpu", num_members=1):
    """num_members x num_envs envs stepped in one process, next-step autoreset, with CleanRL's wrappers: episode
    statistics on the raw rewards, action clipping, observation and reward normalisation, both clipped to [-10, 10].
    Member m of a population owns envs [m * num_envs, (m + 1) * num_envs) and normalises with statistics of its own:
    one set for its envs ("shared") or one per env ("per-env"). The gymnasium backend keeps Gymnasium's own wrappers
    where they do that (single-env ones per env, vector ones for one member's shared statistics: the reference);
    elsewhere GroupedCleanRLWrappers does it, equal to them bit for bit. The warp backend lives on `device` and brings
    its own wrappers, in torch."""
    total = num_members * num_envs
    if backend == "warp":
        from ppo_kl.warp_envs import CleanRLWrappers, WarpVectorEnv  # imports MuJoCo Warp only when asked for
        envs = CleanRLWrappers(WarpVectorEnv(env_id, total, device, num_members=num_members), gamma, norm_stats,
                               num_members)
    elif backend == "mujoco-batch":
        envs = GroupedCleanRLWrappers(MujocoBatchEnv(env_id, total, env_threads), gamma, norm_stats, num_members)
    else:
        def make_one(idx):
            def thunk():
                if capture_video and idx == 0:
                    env = gym.wrappers.RecordVideo(gym.make(env_id, render_mode="rgb_array"),
                                                   os.path.join(run_dir, "videos"))
                else:
                    env = gym.make(env_id)
                if norm_stats == "per-env":
                    env = gym.wrappers.FlattenObservation(env)
                    env = gym.wrappers.RecordEpisodeStatistics(env)
                    env = gym.wrappers.ClipAction(env)
                    env = gym.wrappers.NormalizeObservation(env)
                    env = gym.wrappers.TransformObservation(env, lambda obs: np.clip(obs, -10, 10),
                                                            env.observation_space)
                    env = gym.wrappers.NormalizeReward(env, gamma=gamma)
                    env = gym.wrappers.TransformReward(env, lambda reward: np.clip(reward, -10, 10))
                return env
            return thunk

        envs = gym.vector.SyncVectorEnv([make_one(i) for i in range(total)],
                                        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
        if norm_stats == "shared":
            # Flatten only observations that are not flat already: Gymnasium's vector FlattenObservation runs once
            # per env in Python.
            if len(envs.single_observation_space.shape) != 1:
                envs = gym.wrappers.vector.FlattenObservation(envs)
            envs = (vector_wrappers(envs, gamma) if num_members == 1
                    else GroupedCleanRLWrappers(envs, gamma, "shared", num_members))
    if num_members > 1:  # for member_envs; a single run's stack holds Gymnasium's attributes only, as before
        envs.num_members = num_members
    return envs


def vector_wrappers(envs, gamma):
    """Gymnasium's vector wrappers, statistics shared by all envs. Its vector ClipAction and ClipReward run once per
    env in Python; at hundreds of envs that costs as much as the physics, so the whole batch is clipped at once
    (same values)."""
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    envs = gym.wrappers.vector.TransformAction(envs, lambda actions: np.clip(actions, low, high))
    envs = gym.wrappers.vector.NormalizeObservation(envs)
    envs = gym.wrappers.vector.TransformObservation(envs, lambda obs: np.clip(obs, -10, 10))
    envs = gym.wrappers.vector.NormalizeReward(envs, gamma=gamma)
    return gym.wrappers.vector.TransformReward(envs, lambda rewards: np.clip(rewards, -10, 10))


def wrapper_chain(env):
    """The env and every env it wraps, outermost first."""
    while env is not None:
        yield env
        env = getattr(env, "env", None)


def grouped(envs):
    """The stack's GroupedCleanRLWrappers, or None where Gymnasium's own wrappers normalise."""
    return next((w for w in wrapper_chain(envs) if isinstance(w, GroupedCleanRLWrappers)), None)


def member_envs(envs, member):
    """The envs of population member `member` (all with None), as a slice."""
    if member is None:
        return slice(None)
    num_members = getattr(envs, "num_members", 1)
    if not 0 <= member < num_members:
        raise ValueError(f"member {member} of {num_members}")
    n = envs.num_envs // num_members
    return slice(member * n, (member + 1) * n)


def normalizers(envs):
    """Gymnasium's (observation, reward) normalisation wrappers: one pair shared by all envs, or one pair per env."""
    holders = [envs] if any(hasattr(w, "obs_rms") for w in wrapper_chain(envs)) else envs.unwrapped.envs
    pairs = []
    for holder in holders:
        wrappers = list(wrapper_chain(holder))
        obs_normalizer = next(w for w in wrappers if hasattr(w, "obs_rms"))
        return_normalizer = next(w for w in wrappers if hasattr(w, "return_rms"))
        pairs.append((obs_normalizer, return_normalizer))
    return pairs


def get_norm_stats(envs, member=None):
    """The statistics, a row per set (one per env, or one shared), of all members or of `member`: then the rows a
    single run of that member's envs saves."""
    if getattr(envs, "on_device", False):  # --env-backend warp keeps its statistics in tensors
        return envs.norm_stats(member)
    if grouped(envs) is not None:
        return grouped(envs).norm_stats(member)
    pairs = normalizers(envs)[member_envs(envs, member)]
    stats = {}
    for key, rms in (("obs", lambda p: p[0].obs_rms), ("ret", lambda p: p[1].return_rms)):
        for field in ("mean", "var", "count"):
            stats[f"{key}_{field}"] = np.stack([np.asarray(getattr(rms(p), field), dtype=np.float64) for p in pairs])
    return stats


def set_norm_stats(envs, stats, frozen, member=None):
    """Loads saved statistics into all sets, or into `member`'s (set i takes row i, or row 0 when fewer were saved),
    and optionally freezes them."""
    if getattr(envs, "on_device", False):
        return envs.set_norm_stats(stats, frozen, member)
    if grouped(envs) is not None:
        return grouped(envs).set_norm_stats(stats, frozen, member)
    for i, (obs_norm, ret_norm) in enumerate(normalizers(envs)[member_envs(envs, member)]):
        row = i if i < len(stats["obs_mean"]) else 0
        for key, rms in (("obs", obs_norm.obs_rms), ("ret", ret_norm.return_rms)):
            rms.mean, rms.var, rms.count = (np.array(stats[f"{key}_{f}"][row]) for f in ("mean", "var", "count"))
        obs_norm.update_running_mean = ret_norm.update_running_mean = not frozen


# Gymnasium's wrappers keep what changes as the envs step (time limits, episode statistics, normalisation statistics
# and discounted returns) in attributes of these types; the rest of a wrapper is fixed at construction.
WRAPPER_STATE_TYPES = (np.ndarray, np.generic, int, float, bool, collections.deque,
                       gym.wrappers.utils.RunningMeanStd)


def layers(env):
    return [w for w in wrapper_chain(env) if isinstance(w, (gym.Wrapper, gym.vector.VectorWrapper))]


def wrapper_states(env, member=None):
    return [w.state(member) if isinstance(w, GroupedCleanRLWrappers) else
            {k: copy.deepcopy(v) for k, v in vars(w).items() if isinstance(v, WRAPPER_STATE_TYPES)}
            for w in layers(env)]


def set_wrapper_states(env, saved, member=None):
    for w, attributes in zip(layers(env), saved, strict=True):
        if isinstance(w, GroupedCleanRLWrappers):
            w.set_state(attributes, member)
        else:
            for k, v in attributes.items():
                setattr(w, k, copy.deepcopy(v))


def env_state(envs, member=None):
    """Everything the envs' next steps depend on: of all envs, or of population member `member`'s, in the layout a
    single run of that member's envs saves. Gymnasium's MuJoCo envs pickle only their constructor arguments, so the
    simulation state (mj_getState's integration state: qpos, qvel, warm start, ...), each env's RNG and the wrappers'
    bookkeeping are taken out one by one; other envs are copied attribute by attribute."""
    if getattr(envs, "on_device", False):  # --env-backend warp: tensors on the device
        return envs.state(member)
    base, ids = envs.unwrapped, member_envs(envs, member)
    state = dict(wrappers=wrapper_states(envs, member))
    if member is not None and gymnasium_population(envs):
        state["wrappers"] = as_vector_wrappers(envs, state["wrappers"])
    if isinstance(base, MujocoBatchEnv):
        state.update(sims=base.batch.state[ids].copy(), rngs=[rng.bit_generator.state for rng in base.rngs[ids]],
                     elapsed_steps=base.elapsed_steps[ids].copy(), needs_reset=base.needs_reset[ids].copy(),
                     x_position=base.x_position[ids].copy(),
                     cfrc_ext=base.cfrc_ext[ids].copy() if base.contact_forces else None)
        return state
    state["autoreset_envs"] = base._autoreset_envs[ids].copy()
    state["envs"] = []
    for env in base.envs[ids]:
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
        state["envs"].append(dict(wrappers=wrapper_states(env), **own))
    return state


def set_env_state(envs, state, member=None):
    """Puts back what env_state took out (of all envs, or of `member`'s), into envs built and reset as the saved
    ones were."""
    if getattr(envs, "on_device", False):
        return envs.set_state(state, member)
    base, ids = envs.unwrapped, member_envs(envs, member)
    wrappers = state["wrappers"]
    if grouped(envs) is not None and "obs_mean" not in wrappers[0]:
        # Gymnasium's vector wrappers saved these: a single run's, into a gymnasium population's member, or a
        # mujoco-batch run's from before GroupedCleanRLWrappers
        wrappers = from_vector_wrappers(wrappers)
    set_wrapper_states(envs, wrappers, member)
    if isinstance(base, MujocoBatchEnv):
        base.batch.state[ids] = state["sims"]
        for rng, saved in zip(base.rngs[ids], state["rngs"], strict=True):
            rng.bit_generator.state = saved
        base.elapsed_steps[ids], base.needs_reset[ids] = state["elapsed_steps"], state["needs_reset"]
        base.x_position[ids] = state["x_position"]
        if base.contact_forces:
            base.cfrc_ext[ids] = state["cfrc_ext"]
        return
    base._autoreset_envs[ids] = state["autoreset_envs"]
    for env, saved in zip(base.envs[ids], state["envs"], strict=True):
        set_wrapper_states(env, saved["wrappers"])
        sim = env.unwrapped
        if "physics" in saved:
            mujoco.mj_setState(sim.model, sim.data, saved["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
            sim.data.xpos[:], sim.data.xipos[:] = saved["xpos"], saved["xipos"]
            sim.np_random.bit_generator.state = saved["rng"]
        else:
            vars(sim).update(copy.deepcopy(saved["attributes"]))


def gymnasium_population(envs):
    """Whether `envs` are several members' on the gymnasium backend with shared statistics: there a single member's
    run has Gymnasium's vector wrappers (vector_wrappers), the population GroupedCleanRLWrappers."""
    return isinstance(envs.unwrapped, gym.vector.SyncVectorEnv) and grouped(envs) is not None


def as_vector_wrappers(envs, states):
    """A gymnasium population member's wrapper state (GroupedCleanRLWrappers', then any inner layers') in the layout
    Gymnasium's vector wrappers save, outermost first. RecordEpisodeStatistics' episode count and queues of recent
    episodes, which no output depends on, come back empty."""
    g, (s, *inner) = grouped(envs), states
    update = not s["frozen"][0]
    obs_rms, return_rms = gym.wrappers.utils.RunningMeanStd(), gym.wrappers.utils.RunningMeanStd()
    obs_rms.mean, obs_rms.var, obs_rms.count = s["obs_mean"][0].copy(), s["obs_var"][0].copy(), float(s["obs_count"][0])
    return_rms.mean, return_rms.var, return_rms.count = (np.array(s["ret_mean"][0]), np.array(s["ret_var"][0]),
                                                         float(s["ret_count"][0]))
    normalize_reward = dict(return_rms=return_rms, accumulated_reward=s["accumulated_reward"], gamma=g.gamma,
                            epsilon=g.epsilon, _update_running_mean=update,
                            _prev_dones=s["prev_dones"].astype(np.float32))
    normalize_observation = dict(obs_rms=obs_rms, epsilon=g.epsilon, _update_running_mean=update)
    episode_statistics = dict(episode_count=0, episode_start_times=s["episode_start_times"],
                              episode_returns=s["episode_returns"], episode_lengths=s["episode_lengths"],
                              prev_dones=s["prev_dones"], time_queue=collections.deque(maxlen=100),
                              return_queue=collections.deque(maxlen=100), length_queue=collections.deque(maxlen=100))
    return [{}, normalize_reward, {}, normalize_observation, {}, episode_statistics, *inner]


def from_vector_wrappers(states):
    """as_vector_wrappers' inverse."""
    _, normalize_reward, _, normalize_observation, _, episode_statistics, *inner = states
    obs_rms, return_rms = normalize_observation["obs_rms"], normalize_reward["return_rms"]
    s = dict(obs_mean=obs_rms.mean[None], obs_var=obs_rms.var[None],
             obs_count=np.array([obs_rms.count], dtype=np.float64),
             ret_mean=np.reshape(return_rms.mean, 1), ret_var=np.reshape(return_rms.var, 1),
             ret_count=np.array([return_rms.count], dtype=np.float64),
             frozen=np.array([not normalize_observation["_update_running_mean"]]),
             accumulated_reward=normalize_reward["accumulated_reward"],
             **{k: episode_statistics[k]
                for k in ("episode_start_times", "episode_returns", "episode_lengths", "prev_dones")})
    return [s, *inner]
