"""Whole-process wall time of CleanRL's default job, ours against CleanRL's ppo_continuous_action.py, both on one
torch thread, one program at a time.

    python benchmarks/default_job.py                          # the whole job, 488 iterations (1M steps)
    python benchmarks/default_job.py --iterations 200 --rounds 2
    python benchmarks/default_job.py --iterations 2           # a quick check that both run

The job: HalfCheetah, 1 env x 2048 steps, 32 minibatches of 64, 10 epochs, seed 1. What is measured: the seconds
from each program's start to its exit (imports, env construction, a compile if any, every iteration, logs), in
rounds of ours then CleanRL, so that machine noise falls on both alike; the ratio is CleanRL's time over ours
(2.00x: ours takes half its time). Target: at least 2x.

- ours: ppo_continuous_kl.py at its default flags (KL profiling on, --env-backend auto: mujoco-batch, one torch
  thread, --compile auto) on HalfCheetah-v5, plus --ours-flags. --compile auto compiles the update from 157
  iterations on (50,000 updates), so a short check runs eagerly; the first line of its log, printed once, says.
- CleanRL: its script on its own stack (Gymnasium 0.29.1, MuJoCo 2.3.7, so HalfCheetah-v4) with OMP_NUM_THREADS=1;
  benchmarks/vs_peers.py's docstring says how to build its venv and get the script.
"""
import argparse
import os
import shlex
import statistics
import sys
import tempfile

from processes import cleanrl_command, ours_command, ours_setting, run_one  # this folder is on the path

NUM_ENVS, NUM_STEPS, MINIBATCH_SIZE = 1, 2048, 64


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=488,
                        help="PPO iterations of 2048 steps per run (default: %(default)s, CleanRL's 1M steps)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of ours then CleanRL (default: %(default)s)")
    parser.add_argument("--ours-flags", default="", help="extra flags for our script, one quoted string after =")
    parser.add_argument("--cleanrl-python", default="/tmp/cleanrl-venv/bin/python",
                        help="python of a venv with CleanRL's stack (default: %(default)s)")
    parser.add_argument("--cleanrl-script", default="/tmp/cleanrl_ppo_continuous_action.py",
                        help="CleanRL's ppo_continuous_action.py (default: %(default)s)")
    opts = parser.parse_args()
    for path in (opts.cleanrl_python, opts.cleanrl_script):
        if not os.path.exists(path):
            sys.exit(f"error: {path} does not exist; benchmarks/vs_peers.py's docstring says how to build it")

    print(f"setting: HalfCheetah (ours -v5, CleanRL -v4), {NUM_ENVS} env x {NUM_STEPS} steps, minibatch "
          f"{MINIBATCH_SIZE}, 10 epochs, {opts.iterations} iterations, whole process, one torch thread", flush=True)
    seconds = {"ours": [], "CleanRL": []}
    with tempfile.TemporaryDirectory() as runs_dir:
        for round_ in range(1, opts.rounds + 1):
            ours = ours_command(runs_dir, f"ours_r{round_}", NUM_ENVS, NUM_STEPS, MINIBATCH_SIZE, opts.iterations,
                                ["--num-threads", "1", *shlex.split(opts.ours_flags)])
            cleanrl, cleanrl_env = cleanrl_command(opts.cleanrl_python, opts.cleanrl_script, NUM_ENVS, NUM_STEPS,
                                                   MINIBATCH_SIZE, opts.iterations)
            for program, cmd, env in (("ours", ours, None), ("CleanRL", cleanrl, cleanrl_env)):
                log = f"{program}_r{round_}.log"
                s, peak = run_one(cmd, runs_dir, log, env)
                seconds[program].append(s)
                print(f"round {round_}: {program} {s:.1f} s (peak RSS {peak / 2**20:,.0f} MiB)", flush=True)
                if program == "ours" and round_ == 1:
                    print(f"  ours ran: {ours_setting(os.path.join(runs_dir, log))}", flush=True)
    ours, cleanrl = statistics.median(seconds["ours"]), statistics.median(seconds["CleanRL"])
    print(f"median of {opts.rounds} round(s): ours {ours:.1f} s, CleanRL {cleanrl:.1f} s, CleanRL / ours "
          f"{cleanrl / ours:.2f}x (target: at least 2x)")


if __name__ == "__main__":
    main()
