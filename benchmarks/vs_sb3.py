"""Whole-run throughput against Stable-Baselines3's PPO, same setting, runs side by side.

SB3 runs from a virtual environment of its own (nothing of it is part of this repository):

    python -m venv /tmp/sb3-venv
    /tmp/sb3-venv/bin/pip install stable-baselines3==2.9.2 torch==2.13.0 "gymnasium[mujoco]==1.4.0" mujoco==4.0.0
    python benchmarks/vs_sb3.py --sb3-python /tmp/sb3-venv/bin/python --minibatch-size 50

SB3: PPO("MlpPolicy") on HalfCheetah-v5 in a DummyVecEnv under VecNormalize (observation and reward
normalisation, both clipped at 10, as ours), 64-64 tanh actor and critic, n_steps = N_rollout,
batch_size = the minibatch size, 10 epochs, torch.set_num_threads(1) (two threads are an order of magnitude
slower for these networks on this CPU). Ours: the same setting with each flag set of --ours, KL profiling on.
Steps/s over iterations 2 on (SB3: from the start of its second rollout to the end of learn()).
"""
import argparse
import json
import subprocess
import tempfile

from wall_time_ab import (  # this folder is on the path when the script runs
    measure_ours,
    print_ratios,
)

SB3_PROGRAM = r"""
import json, sys, time
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

num_envs, num_steps, minibatch_size, iterations = map(int, sys.argv[1:5])
torch.set_num_threads(1)


class RolloutStarts(BaseCallback):
    def __init__(self):
        super().__init__()
        self.starts = []

    def _on_rollout_start(self):
        self.starts.append(time.perf_counter())

    def _on_step(self):
        return True


envs = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=num_envs, seed=1, vec_env_cls=DummyVecEnv), gamma=0.99)
model = PPO("MlpPolicy", envs, n_steps=num_steps, batch_size=minibatch_size, n_epochs=10, device="cpu", seed=1,
            policy_kwargs=dict(activation_fn=torch.nn.Tanh, net_arch=dict(pi=[64, 64], vf=[64, 64])))
starts = RolloutStarts()
model.learn(total_timesteps=iterations * num_envs * num_steps, callback=starts)
print(json.dumps({"seconds": time.perf_counter() - starts.starts[1], "iterations": len(starts.starts)}))
"""


def sb3_steps_per_s(python, setting, runs_dir):
    out = subprocess.run([python, "-c", SB3_PROGRAM, *map(str, setting)], cwd=runs_dir, check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    num_envs, num_steps, _, iterations = setting
    assert result["iterations"] == iterations, result
    return (iterations - 1) * num_envs * num_steps / result["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sb3-python", required=True, help="python of a venv with stable-baselines3")
    parser.add_argument("--num-envs", type=int, default=500)
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--minibatch-size", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=3, help="PPO iterations per run (the first is not timed)")
    parser.add_argument("--ours", nargs="+", default=["", "--compile --env-backend mujoco-batch"],
                        help="flag sets of our runs, one quoted string each")
    opts = parser.parse_args()
    batch = opts.num_envs * opts.num_steps
    print(f"setting: HalfCheetah-v5, {opts.num_envs} envs x {opts.num_steps} steps, minibatch {opts.minibatch_size}, "
          f"iterations 2-{opts.iterations} timed")
    results = {}
    with tempfile.TemporaryDirectory() as runs_dir:
        results["SB3 PPO, 1 torch thread"] = sb3_steps_per_s(
            opts.sb3_python, (opts.num_envs, opts.num_steps, opts.minibatch_size, opts.iterations), runs_dir)
        print(f"SB3 PPO, 1 torch thread: {results['SB3 PPO, 1 torch thread']:,.0f} steps/s", flush=True)
        ours = ["--env-id", "HalfCheetah-v5", "--num-envs", str(opts.num_envs), "--num-steps", str(opts.num_steps),
                "--minibatch-size", str(opts.minibatch_size), "--total-timesteps", str(opts.iterations * batch)]
        measure_ours(results, runs_dir, ours, batch, opts.iterations, opts.ours)
    print_ratios(results, "SB3 PPO, 1 torch thread")

if __name__ == "__main__":
    main()
