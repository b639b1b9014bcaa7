"""Peak memory of a training run: resident set size on the CPU, allocated bytes on a GPU.

    python benchmarks/peak_memory.py                          # Humanoid-v5, 1000 envs x 50 steps, minibatch 50
    python benchmarks/peak_memory.py --iterations 2 -- --no-kl

Runs ppo_continuous_kl.py in a child process for --iterations iterations and prints the child's peak RSS
(getrusage's ru_maxrss, which counts the whole process: interpreter, torch, the envs, rollout storage, the KL
store). On a CUDA machine the script's summary also holds torch.cuda.max_memory_allocated(), printed when present.
Flags after -- go to the training script.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="Humanoid-v5")
    parser.add_argument("--num-envs", type=int, default=1000)
    parser.add_argument("--num-steps", type=int, default=50)
    parser.add_argument("--minibatch-size", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="flags for the training script, after --")
    opts = parser.parse_args()
    flags = ["--env-id", opts.env_id, "--num-envs", str(opts.num_envs), "--num-steps", str(opts.num_steps),
             "--minibatch-size", str(opts.minibatch_size),
             "--total-timesteps", str(opts.iterations * opts.num_envs * opts.num_steps), *opts.extra]
    with tempfile.TemporaryDirectory() as runs_dir:
        cmd = [sys.executable, os.path.join(ROOT, "ppo_continuous_kl.py"), "--runs-dir", runs_dir,
               "--run-name", "mem", *flags]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
        with open(os.path.join(runs_dir, "mem", "summary.json")) as f:
            summary = json.load(f)
    print(f"{' '.join(flags)}")
    print(f"peak RSS: {peak_rss / 2**20:,.0f} MiB; wall time {summary['wall_time_s']:.0f} s")
    if "cuda_max_memory_allocated" in summary:
        print(f"peak GPU memory allocated: {summary['cuda_max_memory_allocated'] / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
