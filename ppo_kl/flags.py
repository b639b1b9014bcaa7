# The flag checks of ppo_continuous_kl.py: every bad flag refused with one line that names it and what is allowed,
# before any run folder or env is made; then the sizes derived from the flags, and whether compiling pays.
import contextlib
import difflib
import importlib
import io
import math
import os
import re
import shutil
import sys

import gymnasium as gym
import torch
import tyro

from ppo_kl.run_folder import check_paths
from ppo_kl.run_record import fail
from ppo_kl.vector_envs import MUJOCO_BATCH_ENVS, quiet_mujoco
from ppo_kl.warp_envs import WARP_ENVS, WARP_REFUSED, import_warp


def parse_flags(args_class, args=None, prog=None):
    """tyro's parse of the command line (or of `args`, as the sweeps check their runs' commands), its boxed error
    messages folded into the one `error: ...` line every other bad flag gets (--help passes through untouched)."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(args_class, args=args, prog=prog)
    except SystemExit as e:
        if not e.code:
            raise
        lines = [re.sub(r"[│╭╮╰╯]", "", line).strip() for line in captured.getvalue().splitlines()]
        title = re.sub(r"^─\s*|\s*─*$", "", lines[0]) if lines else "bad flags"
        body = []
        for line in lines[1:]:  # the rules between the box's parts are "-" where tyro draws it in ASCII
            if not line or set(line) <= {"─", "-"} or line.startswith("For full helptext"):
                if body:
                    break
                continue
            body.append(line)
        message = " ".join(body)
        fail(f"{message if message.lower().startswith(title.lower()) else f'{title}: {message}'} (see --help)")


# Compiling costs about 30-60 s once; it saves about 1 ms per minibatch update on a CPU.
COMPILE_PAYS_UPDATES = 50_000


def use_compile(args):
    """Whether to compile, and the reason when the answer differs from the flag's."""
    updates = args.num_iterations * args.update_epochs * args.num_minibatches
    if args.compile == "off" or (args.compile == "auto" and updates < COMPILE_PAYS_UPDATES):
        return False
    device_is_cuda = torch.cuda.is_available() and args.cuda
    if not device_is_cuda and not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")):
        print(f"--compile {args.compile}: no C++ compiler found (set CXX or install g++), so the update runs eagerly",
              file=sys.stderr, flush=True)
        return False
    # torch's default cache is /tmp/torchinductor_$USER: gone at a reboot, and one per node of a cluster. In the
    # user's cache folder (on a cluster's shared home) every run of every sweep on every node reuses one compile
    # of each graph; TORCHINDUCTOR_CACHE_DIR, when set, wins
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", compile_cache_dir())
    return True


def compile_cache_dir():
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ppo_kl", "torchinductor")


def check_memory(args, obs_dim, act_dim):
    """Refuses sizes whose storage cannot fit, before any env is built: the rollout and its copies (the batch, each
    epoch's shuffle) and the KL snapshot store, against the memory available now."""
    transitions = args.num_seeds * args.batch_size
    need = 3 * 4 * transitions * (obs_dim + act_dim + 4)
    if args.kl:
        states = args.kl_num_states or args.batch_size
        need += 4 * (args.update_epochs * args.num_minibatches // args.kl_every + 2) * args.num_seeds * states * act_dim
    if torch.cuda.is_available() and args.cuda:
        free = torch.cuda.mem_get_info()[0]
    else:
        try:
            with open("/proc/meminfo") as f:
                free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        except (OSError, StopIteration):
            return
    if need > free:
        fail(f"--num-envs {args.num_envs} x --num-steps {args.num_steps} x --num-seeds {args.num_seeds}"
             + (f" with --kl-num-states {args.kl_num_states} and --kl-every {args.kl_every}" if args.kl else "")
             + f" needs about {need / 2**30:.1f} GiB for its storage, {free / 2**30:.1f} GiB are available; "
             "make them smaller (or --kl-every larger)")


def resolve_args(args):
    """Checks every flag before anything expensive starts, and resolves what the flags leave open: the batch and
    minibatch sizes, the iterations, --kl-num-states and --env-backend auto."""
    def need(flag, ok, allowed):
        if not ok:
            fail(f"--{flag.replace('_', '-')} must be {allowed}, got {getattr(args, flag)}")

    for flag in ("total_timesteps", "num_envs", "num_steps", "update_epochs", "num_threads", "kl_every",
                 "eval_episodes", "num_seeds"):
        need(flag, getattr(args, flag) > 0, "a positive integer")
    need("env_threads", args.env_threads >= 0, "a non-negative integer (0: one per core)")
    need("checkpoint_every", args.checkpoint_every >= 0,
         "a non-negative integer (0: only before the first iteration and at the last)")
    need("eval_every", args.eval_every >= 0, "a non-negative integer (0: no evaluation during training)")
    # every env of every member, and its eval envs, get a seed of their own, which Gymnasium takes in [0, 2**32)
    seeds_used = args.num_seeds + max(args.num_envs, 10_000 + args.eval_episodes)
    need("seed", 0 <= args.seed and args.seed + seeds_used < 2**32,
         f"in [0, 2**32 - {seeds_used}] (env seeds are seed + i)")
    # a NaN fails every comparison below, and an infinity is no meaningful value of any of them
    for flag, low, high, allowed in (("learning_rate", 0, None, "> 0 and finite"),
                                     ("clip_coef", 0, None, "> 0 and finite"),
                                     ("max_grad_norm", 0, None, "> 0 and finite (a negative norm flips the gradient)"),
                                     ("ent_coef", None, None, ">= 0 and finite"),
                                     ("vf_coef", None, None, ">= 0 and finite"),
                                     ("gamma", None, 1, "in [0, 1]"), ("gae_lambda", None, 1, "in [0, 1]")):
        value = getattr(args, flag)
        need(flag, math.isfinite(value) and (value > low if low is not None else value >= 0)
             and (high is None or value <= high), allowed)
    if args.target_kl is not None:
        need("target_kl", math.isfinite(args.target_kl) and args.target_kl > 0, "> 0 and finite (or omitted)")
        if args.num_seeds > 1:
            fail("--target-kl stops a single run's epochs; with --num-seeds > 1 it is not offered (the members would "
                 "stop at different updates); run the seeds as single runs")
    if args.num_seeds > 1 and args.run_name is not None and "{seed}" not in args.run_name:
        fail(f"--run-name must contain {{seed}} with --num-seeds {args.num_seeds} (one run folder per seed), "
             f"got {args.run_name!r}")
    args.batch_size = args.num_envs * args.num_steps
    b = args.batch_size
    for flag in ("minibatch_size", "num_minibatches"):
        value = getattr(args, flag)
        if value is not None and (value <= 0 or b % value):
            divisors = {d for i in range(1, math.isqrt(b) + 1) if b % i == 0 for d in (i, b // i)}
            nearest = sorted(divisors, key=lambda d: abs(d - value))[:4]
            fail(f"--{flag.replace('_', '-')} must be a positive divisor of num_envs x num_steps = {b} "
                 f"(nearest: {', '.join(map(str, sorted(nearest)))}), got {value}")
    if args.minibatch_size is not None and args.num_minibatches is not None \
            and args.minibatch_size * args.num_minibatches != b:
        fail(f"--minibatch-size {args.minibatch_size} and --num-minibatches {args.num_minibatches} disagree: "
             f"their product must be num_envs x num_steps = {b}; give only one")
    if args.minibatch_size is None:
        args.num_minibatches = args.num_minibatches or 32
        if b % args.num_minibatches:
            fail(f"--num-minibatches defaults to 32, which does not divide num_envs x num_steps = {b}; "
                 "give --num-minibatches or --minibatch-size")
        args.minibatch_size = b // args.num_minibatches
    args.num_minibatches = b // args.minibatch_size
    if args.norm_adv and args.minibatch_size < 2:
        fail("--minibatch-size must be >= 2 with --norm-adv (advantages are normalised by their std)")
    if args.total_timesteps < b:
        fail(f"--total-timesteps {args.total_timesteps} is less than one iteration (num_envs x num_steps = {b})")
    args.num_iterations = args.total_timesteps // b
    if args.kl_num_states is None:
        args.kl_num_states = min(1024, b)
    if not 0 <= args.kl_num_states <= b:
        fail(f"--kl-num-states must be in [0, num_envs x num_steps = {b}] (0 = all), got {args.kl_num_states}")
    module, _, env_name = args.env_id.rpartition(":")  # Gymnasium's "package.module:EnvName-v0" form
    try:
        importlib.import_module(module) if module else None
    except ImportError as e:
        fail(f"--env-id {args.env_id!r}: cannot import {module!r} to register it ({e})")
    if env_name not in gym.registry:
        close = difflib.get_close_matches(env_name, list(gym.registry), n=5, cutoff=0.6)
        fail(f"--env-id {args.env_id!r} is not a registered Gymnasium env"
             + (f"; close matches: {', '.join(close)}" if close else ""))
    if args.env_backend == "auto":
        args.env_backend = "mujoco-batch" if args.env_id in MUJOCO_BATCH_ENVS else "gymnasium"
    if args.env_backend == "warp" and args.env_id in WARP_REFUSED:
        fail(f"--env-backend warp refuses --env-id {args.env_id}: {WARP_REFUSED[args.env_id]}; "
             "--env-backend mujoco-batch or gymnasium runs it")
    if args.env_backend != "gymnasium":
        supported = MUJOCO_BATCH_ENVS if args.env_backend == "mujoco-batch" else WARP_ENVS
        if args.env_id not in supported:
            fail(f"--env-backend {args.env_backend} supports --env-id {', '.join(supported)} (Gymnasium's defaults), "
                 f"got {args.env_id!r}; --env-backend gymnasium runs any env")
        if args.capture_video:
            fail(f"--capture-video needs --env-backend gymnasium; --env-backend {args.env_backend} renders no video")
    if args.env_backend == "warp":
        try:
            import_warp()
        except ImportError as e:
            fail(f"--env-backend warp needs MuJoCo Warp ({e}): pip install -r requirements-warp.txt")
    quiet_mujoco()
    probe = gym.make(args.env_id)  # one env, for its spaces: cheap next to the run's envs
    action_space, observation_space = probe.action_space, probe.observation_space
    max_steps = probe.spec.max_episode_steps
    probe.close()
    if not isinstance(action_space, gym.spaces.Box):
        fail(f"--env-id {args.env_id} has a {type(action_space).__name__} action space; this script trains continuous "
             "(Box) action spaces only")
    if (args.eval_every or args.save_model) and max_steps is None:
        fail(f"--eval-every and --save-model evaluate whole episodes, and --env-id {args.env_id} has no time limit")
    check_memory(args, gym.spaces.flatdim(observation_space), action_space.shape[0])
    check_paths(args)
    for flag, module in (("capture_video", "moviepy"), ("track", "wandb")):
        if getattr(args, flag):
            try:
                __import__(module)
            except ImportError:
                fail(f"--{flag.replace('_', '-')} needs the {module} package: pip install {module}")
    return args
