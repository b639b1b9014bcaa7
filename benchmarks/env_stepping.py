"""Transitions/s of the env backends against Gymnasium's SyncVectorEnv, measured side by side, rounds interleaved.

    python benchmarks/env_stepping.py                                # HalfCheetah-v5 and Humanoid-v5, 500 and 1000 envs
    python benchmarks/env_stepping.py --env-ids Walker2d-v5 --num-envs 64 500 --threads 1 2 4
    python benchmarks/env_stepping.py --wrapped                      # with the training script's wrappers
    python benchmarks/env_stepping.py --warp cuda --num-envs 1000 4096 16384 --threads 16   # and MuJoCo Warp

Each measurement steps the vector env with uniform random actions (drawn beforehand) for at least --seconds,
autoresets included; the envs are built and reset outside the timing. Raw envs by default: Gymnasium's
SyncVectorEnv (the reference, next-step autoreset), vector_envs.MujocoBatchEnv on each thread count and, with
--warp DEVICE, warp_envs.WarpVectorEnv on that device (actions drawn there, time measured to the device's last
step). --wrapped puts each inside the training script's wrappers (normalisation, clipping, episode statistics:
Gymnasium's for the first two, warp_envs.CleanRLWrappers for Warp), as a training run steps them. Ratios are taken
within each round, then their median is printed.
"""
import argparse
import os
import statistics
import sys
import time

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ppo_kl import vector_envs
from ppo_kl import warp_envs


def build(env_id, num_envs, backend, threads, wrapped, device=None):
    if wrapped:
        return vector_envs.make_envs(env_id, num_envs, 0.99, "shared", backend=backend, env_threads=threads,
                                     device=device)
    if backend == "warp":
        return warp_envs.WarpVectorEnv(env_id, num_envs, device)
    if backend == "mujoco-batch":
        return vector_envs.MujocoBatchEnv(env_id, num_envs, threads)
    return gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * num_envs,
                                    autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)


def transitions_per_s(envs, seconds, seed):
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    space = envs.single_action_space
    actions = rng.uniform(space.low, space.high, (32, envs.num_envs) + space.shape).astype(np.float32)
    device = getattr(envs, "device", None)
    if device is not None:  # MuJoCo Warp: actions on its device; its first steps load (or compile) the kernels
        actions = torch.as_tensor(actions, device=device)
        envs.step(actions[0])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions:
            envs.step(action)
        steps += len(actions)
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
    return steps * envs.num_envs / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-ids", nargs="+", default=["HalfCheetah-v5", "Humanoid-v5"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[500, 1000])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="thread counts of mujoco-batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum stepping time of one measurement")
    parser.add_argument("--wrapped", action="store_true", help="step through the training script's wrappers")
    parser.add_argument("--warp", metavar="DEVICE", help="also MuJoCo Warp on this device (cuda, cpu)")
    opts = parser.parse_args()
    vector_envs.quiet_mujoco()
    print(f"{os.cpu_count()} CPUs; {'wrapped' if opts.wrapped else 'raw'} envs, random actions, "
          f"{opts.rounds} rounds of >= {opts.seconds:g} s per measurement; transitions/s, median over rounds")
    for env_id in opts.env_ids:
        backends = [("gymnasium", 1)]
        if env_id in vector_envs.MUJOCO_BATCH_ENVS:
            backends += [("mujoco-batch", t) for t in opts.threads]
        else:
            print(f"{env_id}: mujoco-batch does not support it")
        if opts.warp and env_id in warp_envs.WARP_ENVS:
            backends.append(("warp", 1))
        elif opts.warp:
            print(f"{env_id}: the warp backend does not support it")
        for num_envs in opts.num_envs:
            envs = {(b, t): build(env_id, num_envs, b, t, opts.wrapped, opts.warp) for b, t in backends}
            rates = {key: [] for key in envs}
            for r in range(opts.rounds):
                for key, vec in envs.items():
                    rates[key].append(transitions_per_s(vec, opts.seconds, seed=r))
            reference = rates[("gymnasium", 1)]
            for (backend, threads), rate in rates.items():
                label = {"gymnasium": "gymnasium SyncVectorEnv", "warp": f"MuJoCo Warp on {opts.warp}"}.get(
                    backend, f"mujoco-batch, {threads} thread(s)")
                ratio = statistics.median(x / y for x, y in zip(rate, reference))
                print(f"{env_id:15s} N={num_envs:5d}  {label:26s} {statistics.median(rate):9,.0f}/s  "
                      f"x{ratio:.2f} of Sync (rounds: {', '.join(f'{x:,.0f}' for x in rate)})", flush=True)
            for vec in envs.values():
                vec.close()


if __name__ == "__main__":
    main()
