# CleanRL's wrapper chain over a numpy vector env with next-step autoreset (episode statistics on the raw rewards,
# action clipping, observation and reward normalisation, both clipped to [-10, 10]) as whole-batch array operations,
# with the normalisation statistics kept per group of envs. One group per env reproduces Gymnasium's single-env
# wrappers inside SyncVectorEnv (CleanRL's own setup, --norm-stats per-env) and one group of all envs Gymnasium's
# vector wrappers, bit for bit; several members of a population each get their own groups.
import time

import gymnasium as gym
import numpy as np
from gymnasium.wrappers.utils import RunningMeanStd


def update_groups(rms, batch_mean, batch_var, batch_count, where):
    """Gymnasium's RunningMeanStd.update_from_moments for every group at once: rms.mean, rms.var [G, ...], rms.count
    and batch_count [G]; groups not in `where` keep their statistics. Gymnasium's count and batch count are Python
    numbers, which NumPy casts to the dtype of the array they multiply (the float32 variance of a fresh
    NormalizeObservation, the float32 batch variance of the vector NormalizeReward's float32 returns); here they are
    arrays, so they are cast to it by hand."""
    shape = (-1,) + (1,) * (rms.mean.ndim - 1)
    count, n = rms.count.reshape(shape), batch_count.reshape(shape)
    delta = batch_mean - rms.mean
    total = count + n
    mean = rms.mean + delta * n / total
    m_a = rms.var * count.astype(rms.var.dtype, copy=False)
    m_b = batch_var * n.astype(batch_var.dtype, copy=False)
    var = (m_a + m_b + np.square(delta) * count * n / total) / total
    if where.all():
        rms.mean, rms.var, rms.count = mean, var, total.reshape(-1)
    else:
        rms.mean, rms.var = np.where(where.reshape(shape), mean, rms.mean), np.where(where.reshape(shape), var, rms.var)
        rms.count = np.where(where, total.reshape(-1), rms.count)


def group_moments(x):
    """np.mean(x, axis=1) and np.var(x, axis=1) of x [G, n, ...]. With one env per group and floats they are the
    values themselves and (x - x)^2 (NumPy's arithmetic at n = 1, infinities and NaNs included), without NumPy's
    cost of several microseconds a call, which at one env is a good part of a step."""
    if x.shape[1] == 1 and x.dtype.kind == "f":
        value = x[:, 0]
        return value, np.square(value - value)
    return np.mean(x, axis=1), np.var(x, axis=1)


def member_slices(member, num_members, num_envs, num_groups):
    """The envs and the statistics groups of population member `member` (all of them with None), as slices."""
    if member is None:
        return slice(None), slice(None)
    if not 0 <= member < num_members:
        raise ValueError(f"member {member} of {num_members}")
    envs, groups = num_envs // num_members, num_groups // num_members
    return slice(member * envs, (member + 1) * envs), slice(member * groups, (member + 1) * groups)


class GroupedCleanRLWrappers(gym.vector.VectorWrapper):
    """CleanRL's wrappers with statistics per group: env i normalises with group i // group_size's statistics,
    arrays with a leading group axis [G, ...]. `num_members` members own num_envs / num_members contiguous envs each;
    norm_stats "shared" makes one group per member, "per-env" one per env.

    Shared groups follow Gymnasium's vector wrappers: each group's statistics are updated with the mean and variance
    over its envs, computed as NumPy computes them for a whole batch; the discounted return NormalizeReward tracks is
    float32 and zeroed by reset. Per-env follows the single-env wrappers inside SyncVectorEnv: the return is float64
    and survives a reset (single-env NormalizeReward has no reset), and the episode statistics come with
    SyncVectorEnv's per-key masks ("_r", "_l", "_t"). Either way the reset step after an episode's end updates the
    observation statistics with the reset observation, and neither the return statistics nor the episode's."""

    # per-env arrays, then per-group ones: what the envs' next steps depend on, sliceable by member
    ENV_STATE = ("episode_returns", "episode_lengths", "episode_start_times", "prev_dones", "accumulated_reward")
    GROUP_STATE = ("obs_mean", "obs_var", "obs_count", "ret_mean", "ret_var", "ret_count", "frozen")

    def __init__(self, env, gamma, norm_stats="shared", num_members=1, epsilon=1e-8):
        super().__init__(env)
        n = env.num_envs
        if n % num_members:
            raise ValueError(f"{n} envs do not split into {num_members} members")
        self.per_env, self.num_members, self.gamma, self.epsilon = norm_stats == "per-env", num_members, gamma, epsilon
        self.group_size = 1 if self.per_env else n // num_members
        self.num_groups = n // self.group_size
        self.group = np.arange(n) // self.group_size
        self.action_low, self.action_high = env.single_action_space.low, env.single_action_space.high
        obs_shape = env.single_observation_space.shape
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, obs_shape, np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, n)
        # as Gymnasium's: observation statistics float32 until their first update, counts from 1e-4
        self.obs_rms = RunningMeanStd(shape=(self.num_groups,) + obs_shape, dtype=np.float32)
        self.return_rms = RunningMeanStd(shape=(self.num_groups,))
        self.obs_rms.count, self.return_rms.count = np.full(self.num_groups, 1e-4), np.full(self.num_groups, 1e-4)
        self.frozen = np.zeros(self.num_groups, dtype=bool)
        self.accumulated_reward = np.zeros(n, dtype=np.float64 if self.per_env else np.float32)
        self.episode_returns, self.episode_lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.episode_start_times, self.prev_dones = np.zeros(n), np.zeros(n, dtype=bool)

    def reset(self, *, seed=None, options=None):
        obs, infos = self.env.reset(seed=seed, options=options)
        n = self.num_envs
        self.episode_returns, self.episode_lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.episode_start_times, self.prev_dones = np.full(n, time.perf_counter()), np.zeros(n, dtype=bool)
        if not self.per_env:
            self.accumulated_reward = np.zeros_like(self.accumulated_reward)
        return self._normalize_obs(obs), infos

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(np.clip(actions, self.action_low, self.action_high))
        active = ~self.prev_dones  # the reset step after an episode's end belongs to no episode
        self.episode_returns = np.where(active, self.episode_returns + rewards, 0.0)
        self.episode_lengths = np.where(active, self.episode_lengths + 1, 0)
        self.episode_start_times = np.where(active, self.episode_start_times, time.perf_counter())
        dones = terminated | truncated
        if dones.any():
            episode = dict(r=np.where(dones, self.episode_returns, 0.0), l=np.where(dones, self.episode_lengths, 0),
                           t=np.where(dones, np.round(time.perf_counter() - self.episode_start_times, 6), 0.0))
            if self.per_env:
                episode.update({f"_{key}": dones.copy() for key in ("r", "l", "t")})
            infos = dict(infos, episode=episode, _episode=dones)

        # Gymnasium's expression and dtypes: float32 returns times gamma stay float32, times (1 - terminated) float64
        returns = self.accumulated_reward * self.gamma * (1 - terminated) + rewards
        accumulated = self.accumulated_reward
        self.accumulated_reward = np.where(active, returns, accumulated).astype(accumulated.dtype)
        self._update_return_rms(active)
        self.prev_dones = dones
        rewards = np.clip(rewards / np.sqrt(self._per_env(self.return_rms.var) + self.epsilon), -10, 10)
        return self._normalize_obs(obs), rewards, terminated, truncated, infos

    def _normalize_obs(self, obs):
        if not self.frozen.all():
            x = obs.reshape((self.num_groups, self.group_size) + obs.shape[1:])
            update_groups(self.obs_rms, *group_moments(x), np.full(self.num_groups, self.group_size), ~self.frozen)
        mean, var = self._per_env(self.obs_rms.mean), self._per_env(self.obs_rms.var)
        return np.clip(((obs - mean) / np.sqrt(var + self.epsilon)).astype(np.float32), -10, 10)

    def _per_env(self, group_stats):
        """Each env's row of the group statistics [G, ...]."""
        return group_stats if self.group_size == 1 else group_stats[self.group]

    def _update_return_rms(self, active):
        """The returns of the envs not resetting, each group's over its own: a subset of a different size per group,
        so a shared group's moments are NumPy's over that subset, group by group."""
        returns, groups = self.accumulated_reward, self.num_groups
        if self.group_size == 1:
            mean, var = group_moments(returns[:, None])
            count = active.astype(np.int64)
        else:
            mean, var = np.zeros(groups, returns.dtype), np.zeros(groups, returns.dtype)
            count = np.zeros(groups, np.int64)
            for g, (group_returns, taking) in enumerate(zip(returns.reshape(groups, -1), active.reshape(groups, -1))):
                if taking.any():
                    x = group_returns[taking]
                    mean[g], var[g], count[g] = np.mean(x), np.var(x), len(x)
        update_groups(self.return_rms, mean, var, count, (count > 0) & ~self.frozen)

    # statistics and state, of all members or of one: a member's are what a stack of its envs alone holds

    def _member(self, member):
        return member_slices(member, self.num_members, self.num_envs, self.num_groups)

    def _holder(self, key):
        """Where group array `key` (obs_mean, ..., ret_count, frozen) lives: (object, attribute)."""
        kind, _, field = key.partition("_")
        return {"obs": self.obs_rms, "ret": self.return_rms}.get(kind, self), field or key

    def _put_rows(self, key, rows, groups):
        holder, field = self._holder(key)
        # still float32 (fresh), observation statistics take float64 rows as float64, as Gymnasium's turn when set
        array = getattr(holder, field).astype(np.result_type(getattr(holder, field), rows))
        array[groups] = rows
        setattr(holder, field, array)

    def norm_stats(self, member=None):
        groups = self._member(member)[1]
        return {key: np.asarray(getattr(*self._holder(key))[groups], dtype=np.float64) for key in self.GROUP_STATE[:-1]}

    def set_norm_stats(self, stats, frozen, member=None):
        """Group i of the member (or of all) takes row i of `stats`, or row 0 when fewer rows were saved."""
        groups = np.arange(self.num_groups)[self._member(member)[1]]
        rows = np.arange(len(groups))
        rows = np.where(rows < len(stats["obs_mean"]), rows, 0)
        for key in self.GROUP_STATE[:-1]:
            self._put_rows(key, np.asarray(stats[key], dtype=np.float64)[rows], groups)
        self.frozen[groups] = frozen

    def state(self, member=None):
        envs, groups = self._member(member)
        return ({name: getattr(self, name)[envs].copy() for name in self.ENV_STATE}
                | {key: getattr(*self._holder(key))[groups].copy() for key in self.GROUP_STATE})

    def set_state(self, state, member=None):
        envs, groups = self._member(member)
        for name in self.ENV_STATE:
            array = getattr(self, name).copy()  # step hands prev_dones out as infos["_episode"]
            array[envs] = state[name]
            setattr(self, name, array)
        for key in self.GROUP_STATE:
            if member is None:  # as saved, dtypes included
                setattr(*self._holder(key), state[key].copy())
            else:
                self._put_rows(key, state[key], groups)
