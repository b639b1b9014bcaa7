"""Envs whose runs fail before their first iteration finishes, registered when the training script is given
`--env-id tests.failed_start_envs:...`: a crash while the envs start, and a non-finite loss at iteration 1."""
import gymnasium as gym

from tests.fault_envs import NaNRewardEnv


class CrashOnResetEnv(NaNRewardEnv):
    """Builds (the flag checks build one env for its spaces), then fails as the run resets its envs."""

    def reset(self, *, seed=None, options=None):
        raise RuntimeError("this env fails on reset, on purpose")


gym.register("CrashOnReset-v0", entry_point=CrashOnResetEnv)
gym.register("NaNFromStart-v0", entry_point=NaNRewardEnv, kwargs=dict(nan_after=0))
