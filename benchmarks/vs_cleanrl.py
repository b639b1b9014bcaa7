"""Whole-run throughput against CleanRL's ppo_continuous_action.py, same setting, runs side by side.

CleanRL's script runs on its own stack (Gymnasium 0.29, MuJoCo 2.3, so HalfCheetah-v4) from a virtual environment
of its own; nothing of it is part of this repository:

    python -m venv /tmp/cleanrl-venv
    /tmp/cleanrl-venv/bin/pip install torch==2.13.0 gymnasium==0.29.1 mujoco==2.3.7 "numpy<2" imageio tyro tensorboard
    # put a copy of cleanrl/ppo_continuous_action.py at /tmp/cleanrl_ppo_continuous_action.py, then:
    python benchmarks/vs_cleanrl.py --cleanrl-python /tmp/cleanrl-venv/bin/python \\
        --cleanrl-script /tmp/cleanrl_ppo_continuous_action.py --num-envs 500 --num-steps 100 --minibatch-size 50

Steps/s are over iterations 2 on (the first holds one-off costs: a compile, first allocations). CleanRL runs
with its default torch threads and with OMP_NUM_THREADS=1 (far faster for these small networks on few cores);
ours with each flag set of --ours (default: eager; --compile; --compile on the mujoco-batch env backend with 1 and
with 2 threads), each with KL profiling on, as it ships.
"""
import argparse
import os
import re
import subprocess
import tempfile

from wall_time_ab import (  # this folder is on the path when the script runs
    measure_ours,
    print_ratios,
)


def cleanrl_steps_per_s(python, script, setting, batch, threads_env, runs_dir):
    env = {**os.environ, **threads_env}
    out = subprocess.run([python, script, *setting], cwd=runs_dir, env=env, check=True, capture_output=True,
                         text=True).stdout
    sps = [int(s) for s in re.findall(r"^SPS: (\d+)", out, re.M)]
    # its SPS is cumulative: the end of iteration k is at k * batch / SPS_k seconds
    ends = [(k + 1) * batch / s for k, s in enumerate(sps)]
    return (len(ends) - 1) * batch / (ends[-1] - ends[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cleanrl-python", required=True, help="python of a venv with CleanRL's stack")
    parser.add_argument("--cleanrl-script", required=True, help="path to CleanRL's ppo_continuous_action.py")
    parser.add_argument("--num-envs", type=int, default=500)
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--minibatch-size", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=3, help="PPO iterations per run (the first is not timed)")
    parser.add_argument("--ours", nargs="+", default=["", "--compile", "--compile --env-backend mujoco-batch",
                                                      "--compile --env-backend mujoco-batch --env-threads 2"],
                        help="flag sets of our runs, one quoted string each")
    parser.add_argument("--skip-cleanrl-default-threads", action="store_true",
                        help="leave out CleanRL with torch's default threads (the slowest run by far)")
    opts = parser.parse_args()
    batch = opts.num_envs * opts.num_steps
    common = ["--num-envs", str(opts.num_envs), "--num-steps", str(opts.num_steps),
              "--num-minibatches", str(batch // opts.minibatch_size), "--total-timesteps", str(opts.iterations * batch)]
    print(f"setting: {opts.num_envs} envs x {opts.num_steps} steps, minibatch {opts.minibatch_size}, "
          f"iterations 2-{opts.iterations} timed")
    results = {}
    with tempfile.TemporaryDirectory() as runs_dir:
        cleanrl = [*common, "--env-id", "HalfCheetah-v4"]
        runs = [("CleanRL, OMP_NUM_THREADS=1", lambda: cleanrl_steps_per_s(
            opts.cleanrl_python, opts.cleanrl_script, cleanrl, batch, {"OMP_NUM_THREADS": "1"}, runs_dir))]
        if not opts.skip_cleanrl_default_threads:
            runs.append(("CleanRL, torch's default threads", lambda: cleanrl_steps_per_s(
                opts.cleanrl_python, opts.cleanrl_script, cleanrl, batch, {}, runs_dir)))
        for name, run in runs:
            results[name] = run()
            print(f"{name}: {results[name]:,.0f} steps/s", flush=True)
        measure_ours(results, runs_dir, [*common, "--env-id", "HalfCheetah-v5"], batch, opts.iterations, opts.ours)
    print_ratios(results, "CleanRL, OMP_NUM_THREADS=1")


if __name__ == "__main__":
    main()
