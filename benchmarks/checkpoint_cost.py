"""What a checkpoint costs: the time to take out the envs' state and write checkpoint.pt, and its size, at the
study's env counts, beside the time of one rollout step of the same envs (an iteration is num_steps of them plus
the updates, so --checkpoint-every 1 costs a fraction of a rollout step count per iteration).

    python benchmarks/checkpoint_cost.py
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ppo_continuous_kl import Agent  # noqa: E402
from ppo_kl.checkpoints import save_checkpoint  # noqa: E402
from ppo_kl.vector_envs import env_state, make_envs, quiet_mujoco, set_env_state  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+",
                        default=["HalfCheetah-v5:500:gymnasium", "HalfCheetah-v5:500:mujoco-batch",
                                 "Humanoid-v5:1000:gymnasium"], help="ENV:NUM_ENVS:BACKEND")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    quiet_mujoco()
    print(f"{'setting':40s} {'checkpoint ms':>14s} {'restore ms':>11s} {'size MiB':>9s} {'env step ms':>12s}")
    for setting in args.settings:
        env_id, num_envs, backend = setting.split(":")
        envs = make_envs(env_id, int(num_envs), 0.99, "shared", backend=backend)
        envs.reset(seed=1)
        actions = np.zeros(envs.action_space.shape, dtype=np.float32)
        step_s = []
        for _ in range(10):
            start = time.perf_counter()
            envs.step(actions)
            step_s.append(time.perf_counter() - start)
        agent = Agent(envs.single_observation_space.shape[0], envs.single_action_space.shape[0])
        optimizer = torch.optim.Adam(agent.parameters())
        save_s, restore_s = [], []
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "checkpoint.pt")
            for _ in range(args.repeats):
                start = time.perf_counter()
                state = env_state(envs)
                save_checkpoint(path, dict(agent=agent.state_dict(), optimizer=optimizer.state_dict(), envs=state))
                save_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                set_env_state(envs, torch.load(path, weights_only=False)["envs"])
                restore_s.append(time.perf_counter() - start)
            size = os.path.getsize(path)
        envs.close()
        print(f"{setting:40s} {1e3 * np.median(save_s):14.1f} {1e3 * np.median(restore_s):11.1f} "
              f"{size / 2**20:9.2f} {1e3 * np.median(step_s):12.1f}", flush=True)


if __name__ == "__main__":
    main()
