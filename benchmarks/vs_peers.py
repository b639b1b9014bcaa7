"""Whole-process wall time of our training script against CleanRL's ppo_continuous_action.py and Stable-Baselines3's
PPO, the same setting, run one at a time side by side in one invocation.

    python benchmarks/vs_peers.py                       # 500 x 100, minibatch 50 and 1000, 5 iterations, 1 round
    python benchmarks/vs_peers.py --rounds 3
    python benchmarks/vs_peers.py --num-envs 20 --num-steps 50 --iterations 2    # a quick check that all runs

What is measured: for each minibatch size, the seconds from the start of each program to its exit (imports, env
construction, a compile if any, every iteration, writing logs), for --iterations PPO iterations of
num_envs x num_steps steps on HalfCheetah, 10 epochs. The programs run in rounds, ours, CleanRL, SB3, then again,
so that machine noise falls on all alike; the table shows the median over rounds and the peers' time divided by
ours (2.00x: ours takes half their time).

- ours: ppo_continuous_kl.py at its default flags (KL profiling on, --env-backend auto, --compile auto, one torch
  thread, --env-threads 0: one env thread per core) on HalfCheetah-v5, plus --ours-flags. At 500 x 100 and 5
  iterations, auto means the mujoco-batch env backend, and a compiled update at minibatch 50 (50,000 updates)
  but not at 1000 (2,500 updates); fewer iterations at minibatch 50 run eagerly. The first line of its output,
  printed once per minibatch size, says which. Besides its env threads, its KL worker thread uses a second core.
- CleanRL: its ppo_continuous_action.py on its own stack (Gymnasium 0.29.1, MuJoCo 2.3.7, so HalfCheetah-v4)
  with OMP_NUM_THREADS=1: with torch's default threads it is several times slower on a 2-core CPU.
- SB3: PPO("MlpPolicy") on HalfCheetah-v5 in a DummyVecEnv under VecNormalize (observation and reward
  normalisation, both clipped at 10, as ours), 64-64 tanh actor and critic, n_steps = num_steps, batch_size =
  the minibatch size, 10 epochs, torch.set_num_threads(1) (two threads are an order of magnitude slower for these
  networks on a 2-core CPU).

Targets (5 iterations, default flags): minibatch 50, at least 2x both CleanRL and SB3; minibatch 1000, at least
2x CleanRL and 1.5x SB3.

The peers run from virtual environments of their own, outside this repository:

    python3 -m venv /tmp/cleanrl-venv
    /tmp/cleanrl-venv/bin/pip install torch==2.13.0 gymnasium==0.29.1 mujoco==2.3.7 "numpy<2" imageio tyro tensorboard
    # CleanRL's script, e.g. from a clone of github.com/vwxyzjn/cleanrl (measured at its commit fe8d8a03):
    git -C cleanrl show HEAD:cleanrl/ppo_continuous_action.py > /tmp/cleanrl_ppo_continuous_action.py

    python3 -m venv /tmp/sb3-venv
    /tmp/sb3-venv/bin/pip install stable-baselines3==2.9.2 torch==2.13.0 "gymnasium[mujoco]==1.4.0" mujoco==4.0.0
"""
import argparse
import os
import shlex
import statistics
import sys
import tempfile

from processes import cleanrl_command, ours_command, ours_setting, run_one  # this folder is on the path

SB3_PROGRAM = r"""
import sys
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

num_envs, num_steps, minibatch_size, iterations = map(int, sys.argv[1:5])
torch.set_num_threads(1)
envs = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=num_envs, seed=1, vec_env_cls=DummyVecEnv), gamma=0.99)
model = PPO("MlpPolicy", envs, n_steps=num_steps, batch_size=minibatch_size, n_epochs=10, device="cpu", seed=1,
            policy_kwargs=dict(activation_fn=torch.nn.Tanh, net_arch=dict(pi=[64, 64], vf=[64, 64])))
model.learn(total_timesteps=iterations * num_envs * num_steps)
assert model.num_timesteps == iterations * num_envs * num_steps, model.num_timesteps
"""

PROGRAMS = ("ours", "CleanRL", "SB3")


def commands(opts, runs_dir, minibatch_size, round_):
    """The three programs' command lines and environments for one minibatch size."""
    ours = ours_command(runs_dir, f"ours_mb{minibatch_size}_r{round_}", opts.num_envs, opts.num_steps, minibatch_size,
                        opts.iterations, shlex.split(opts.ours_flags))
    cleanrl = cleanrl_command(opts.cleanrl_python, opts.cleanrl_script, opts.num_envs, opts.num_steps, minibatch_size,
                              opts.iterations)
    sb3 = [opts.sb3_python, "-c", SB3_PROGRAM, str(opts.num_envs), str(opts.num_steps), str(minibatch_size),
           str(opts.iterations)]
    return {"ours": (ours, None), "CleanRL": cleanrl, "SB3": (sb3, None)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cleanrl-python", default="/tmp/cleanrl-venv/bin/python",
                        help="python of a venv with CleanRL's stack (default: %(default)s)")
    parser.add_argument("--cleanrl-script", default="/tmp/cleanrl_ppo_continuous_action.py",
                        help="CleanRL's ppo_continuous_action.py (default: %(default)s)")
    parser.add_argument("--sb3-python", default="/tmp/sb3-venv/bin/python",
                        help="python of a venv with stable-baselines3 (default: %(default)s)")
    parser.add_argument("--minibatch-sizes", default="50 1000",
                        help="minibatch sizes, space-separated, each dividing num_envs x num_steps "
                             "(default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=5, help="PPO iterations per run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of ours, CleanRL, SB3 per minibatch size; the table takes the median "
                             "(default: %(default)s)")
    parser.add_argument("--ours-flags", default="",
                        help="extra flags for our script, one quoted string after = "
                             "(e.g. --ours-flags=\"--compile off\"; default: none, i.e. its default flags)")
    parser.add_argument("--num-envs", type=int, default=500, help="(default: %(default)s)")
    parser.add_argument("--num-steps", type=int, default=100, help="(default: %(default)s)")
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.minibatch_sizes.split()]
    batch = opts.num_envs * opts.num_steps
    for path in (opts.cleanrl_python, opts.cleanrl_script, opts.sb3_python):
        if not os.path.exists(path):
            sys.exit(f"error: {path} does not exist; the docstring (--help) says how to build the peers' venvs")
    if any(batch % size for size in sizes):
        sys.exit(f"error: each minibatch size must divide num_envs x num_steps = {batch}")

    print(f"setting: HalfCheetah (ours and SB3 -v5, CleanRL -v4), {opts.num_envs} envs x {opts.num_steps} steps, "
          f"{opts.iterations} iterations of {batch:,} steps, 10 epochs, whole process; ours: default flags"
          + (f" + {opts.ours_flags}" if opts.ours_flags else ""), flush=True)
    seconds = {(size, program): [] for size in sizes for program in PROGRAMS}
    with tempfile.TemporaryDirectory() as runs_dir:
        for round_ in range(1, opts.rounds + 1):
            for size in sizes:
                for program, (cmd, env) in commands(opts, runs_dir, size, round_).items():
                    log = f"{program}_mb{size}_r{round_}.log"
                    s, peak = run_one(cmd, runs_dir, log, env)
                    seconds[size, program].append(s)
                    print(f"round {round_}, minibatch {size}: {program} {s:.1f} s (peak RSS {peak / 2**20:,.0f} MiB)",
                          flush=True)
                    if program == "ours" and round_ == 1:
                        print(f"  ours ran: {ours_setting(os.path.join(runs_dir, log))}", flush=True)

    print(f"\nwhole-process seconds, median of {opts.rounds} round(s); a peer's time / ours")
    print(f"| minibatch | {' | '.join(PROGRAMS)} | CleanRL / ours | SB3 / ours |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        median = {program: statistics.median(seconds[size, program]) for program in PROGRAMS}
        print(f"| {size} | " + " | ".join(f"{median[p]:.1f} s" for p in PROGRAMS)
              + f" | {median['CleanRL'] / median['ours']:.2f}x | {median['SB3'] / median['ours']:.2f}x |")
    print("targets at 500 x 100, 5 iterations, default flags: minibatch 50 >= 2x CleanRL and >= 2x SB3; "
          "minibatch 1000 >= 2x CleanRL and >= 1.5x SB3")


if __name__ == "__main__":
    main()
