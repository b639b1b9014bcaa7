"""Transitions per second: WarpVectorEnv (MuJoCo Warp on Warp's device) vs Gymnasium's SyncVectorEnv (CPU MuJoCo).

Random actions in the action box; each cell runs until `--seconds` have passed (after a warm-up), so the
table stays cheap to produce on a small CPU. Humanoid on Warp uses the Newton solver (Warp has no PGS), so its
Warp and Gymnasium columns do not simulate quite the same dynamics; Gymnasium runs its stock PGS.

    python bench_warp.py --device cpu --nums 64 256 1000 --envs HalfCheetah-v5 Humanoid-v5
"""

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
import warp as wp

wp.config.quiet = True

from warp_envs import WarpVectorEnv  # noqa: E402


def bench_warp(env_id, n, device, seconds):
    env = WarpVectorEnv(env_id, n, device=device, substitute_solver="newton" if env_id == "Humanoid-v5" else None)
    env.reset(seed=0)
    low, high = env.action_low, env.action_high

    def step():
        action = low + (high - low) * torch.rand(n, len(low), device=env.device)
        env.step(action)

    step()  # compiles or loads the kernels
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        steps += 1
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    return steps * n / (time.perf_counter() - t0)


def bench_gym(env_id, n, seconds):
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * n, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    envs.step(rng.uniform(low, high, (n, len(low))).astype(np.float32))
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        envs.step(rng.uniform(low, high, (n, len(low))).astype(np.float32))
        steps += 1
    envs.close()
    return steps * n / (time.perf_counter() - t0)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--nums", type=int, nargs="+", default=[64, 256, 1000])
    p.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Humanoid-v5"])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--torch-threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.torch_threads)

    print(f"| env | worlds | Warp ({args.device}) transitions/s | Gymnasium SyncVectorEnv transitions/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for env_id in args.envs:
        for n in args.nums:
            w = bench_warp(env_id, n, args.device, args.seconds)
            g = bench_gym(env_id, n, args.seconds)
            print(f"| {env_id} | {n} | {w:,.0f} | {g:,.0f} | {w / g:.2f} |", flush=True)
