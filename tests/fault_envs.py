"""Envs that misbehave on purpose, registered when the training script is given `--env-id tests.fault_envs:...`."""
import gymnasium as gym
import numpy as np


class NaNRewardEnv(gym.Env):
    """A harmless 3-d random walk that starts returning NaN rewards after `nan_after` steps of its life."""

    def __init__(self, nan_after=200):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.nan_after, self.steps = nan_after, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.normal(size=3)
        return self.state.copy(), {}

    def step(self, action):
        self.steps += 1
        self.state = self.state + 0.1 * self.np_random.normal(size=3)
        reward = float("nan") if self.steps > self.nan_after else -float(np.sum(action**2))
        return self.state.copy(), reward, False, self.steps % 50 == 0, {}


gym.register("NaNReward-v0", entry_point=NaNRewardEnv)
