# PPO-Clip for continuous actions, following CleanRL's ppo_continuous_action.py, on Gymnasium 1.x,
# with the policy snapshotted after every minibatch update to profile KL divergences within each iteration
# (Honari, Creus Castanyer, Castro, Berseth: "Training PPO-Clip with Parallelized Data Generation").
import difflib
import importlib
import json
import math
import os
import queue
import random
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Literal, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import tyro
from torch.distributions.normal import Normal
from torch.utils.tensorboard import SummaryWriter

from run_folder import (disk_need_bytes, fail, open_run_folder, rng_states, save_checkpoint, save_npz_atomic,
                        set_rng_states, stop_on_signals)
from vector_envs import (MUJOCO_BATCH_ENVS, env_state, get_norm_stats, make_envs, quiet_mujoco, set_env_state,
                         set_norm_stats)
from warp_envs import WARP_ENVS, WARP_REFUSED, import_warp


@dataclass
class Args:
    """PPO-Clip (CleanRL's ppo_continuous_action.py, same defaults) with per-minibatch KL profiling.

    Differs from CleanRL where Gymnasium 1.x or the study requires it: env_id defaults to HalfCheetah-v5; autoreset
    is next-step, and the reset step after each episode's end is left out of the batch (it is no transition), so a
    minibatch can hold a few samples fewer than the minibatch size; observation/reward normalisation statistics are
    shared by all envs (`--norm-stats per-env` restores CleanRL's); torch runs one CPU thread by default (two make
    these small networks several times slower on a 2-core CPU); `--save-model` also saves the normalisation
    statistics and evaluates with them frozen; a run checkpoints itself (every iteration by default), stops cleanly
    on SIGTERM/SIGINT and resumes exactly when rerun; upload_model and hf_entity are not offered.
    """

    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """experiment label, part of the default run name"""
    seed: int = 1
    """seeds python, numpy, torch and the envs (env i gets seed + i)"""
    torch_deterministic: bool = True
    """sets `torch.backends.cudnn.deterministic` (runs on a CPU repeat bit for bit either way)"""
    cuda: bool = True
    """use a CUDA GPU when there is one; the CPU otherwise"""
    track: bool = False
    """mirror the run to Weights and Biases (needs `pip install wandb`)"""
    wandb_project_name: str = "cleanRL"
    """Weights and Biases project"""
    wandb_entity: Optional[str] = None
    """Weights and Biases team or user owning the project"""
    capture_video: bool = False
    """record videos of env 0 into the run folder (needs `pip install moviepy`)"""
    save_model: bool = False
    """at the end, save the agent and its normalisation statistics into the run folder, then evaluate it"""
    eval_episodes: int = 10
    """episodes of the evaluation that --save-model runs"""
    runs_dir: str = "runs"
    """folder that receives one sub-folder per run (TensorBoard events, args.json, kl/, model)"""
    run_name: Optional[str] = None
    """name of the run folder (default: {env_id}__{exp_name}__{seed}__{unix time}, as CleanRL)"""
    num_threads: int = 1
    """torch intra-op CPU threads (CleanRL: torch's default, i.e. all cores)"""
    compile: bool = False
    """compile the minibatch loss with torch.compile: faster updates after a compile of about half a minute (on a CPU it needs a C++ compiler)"""
    checkpoint_every: int = 1
    """write the run folder's checkpoint.pt before the first iteration, then every N iterations and at the last (0: only those two). It holds everything an exact resume needs: agent, optimiser, envs' simulation and normalisation state, all RNGs; a few ms and MiB at 1000 envs"""
    resume: bool = False
    """continue the run --runs-dir/--run-name from its checkpoint.pt (rerunning the same command does so too); on a CPU the result is the same bit for bit as an uninterrupted run. Flags must match the checkpoint's, except --cuda, --num-threads, --compile, --env-threads, --checkpoint-every, --runs-dir, --save-model, --eval-episodes and the tracking flags"""

    # PPO
    env_id: str = "HalfCheetah-v5"
    """Gymnasium env id; any env with a Box action space"""
    total_timesteps: int = 1000000
    """environment steps of the whole run, summed over the envs"""
    learning_rate: float = 3e-4
    """Adam step size (the start value when annealed)"""
    num_envs: int = 1
    """parallel environments, N_env"""
    num_steps: int = 2048
    """steps per environment in each rollout, N_rollout"""
    anneal_lr: bool = True
    """decay the learning rate linearly to zero over the run"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    num_minibatches: Optional[int] = None
    """minibatches per epoch (default 32 unless --minibatch-size is given)"""
    minibatch_size: Optional[int] = None
    """minibatch size, instead of --num-minibatches; must divide num_envs x num_steps"""
    update_epochs: int = 10
    """passes over the batch in each iteration"""
    norm_adv: bool = True
    """standardise the advantages within each minibatch"""
    clip_coef: float = 0.2
    """PPO clip range epsilon (also the value-clipping range)"""
    clip_vloss: bool = True
    """clip the value update around the rollout's values, as in the PPO paper's code"""
    ent_coef: float = 0.0
    """weight of the entropy bonus"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 0.5
    """clip the global gradient norm to this"""
    target_kl: Optional[float] = None
    """stop an iteration's epochs once the approximate KL of the last minibatch exceeds this"""
    norm_stats: Literal["shared", "per-env"] = "shared"
    """observation/reward normalisation: one running mean/var for all envs, or one per env (CleanRL)"""
    env_backend: Literal["gymnasium", "mujoco-batch", "warp"] = "gymnasium"
    """who steps the envs: Gymnasium's SyncVectorEnv (the reference); MuJoCo's batched stepping (mujoco.batch), several times faster and equal to it bit for bit, for HalfCheetah-v5, Hopper-v5, Walker2d-v5, Ant-v5 and Humanoid-v5; or MuJoCo Warp on the training device (a GPU; Warp's CPU device is slow), in float32 and with the wrappers in torch, for HalfCheetah-v5, Hopper-v5, Walker2d-v5 and Humanoid-v5 (with Newton in place of its PGS solver; Ant-v5 refused). Needs pip install mujoco-warp; kernels compile on first use (about a minute, cached in ~/.cache/warp)"""
    env_threads: int = 1
    """threads of --env-backend mujoco-batch; one per core is fastest for a single run (sweeps already run one job per core)"""

    # KL profiling
    kl: bool = True
    """profile seq_kl and ref_kl over every iteration's minibatch updates"""
    kl_num_states: Optional[int] = None
    """rollout states the KL is averaged over, a fixed random sample per iteration (default 1024, or the whole batch when smaller; 0 = all)"""
    kl_every: int = 1
    """keep every K-th snapshot (and always the last). Memory: (updates/K + 2) x states x action-dim float32 means, e.g. 0.65 GiB at Humanoid-v5 with 10,000 updates and 1024 states"""
    kl_save_snapshots: bool = False
    """also save the states, means and log-stds of every kept snapshot in the kl/ files"""

    # derived from the flags above
    batch_size: tyro.conf.Suppress[int] = 0
    num_iterations: tyro.conf.Suppress[int] = 0


def check_args(args: Args) -> Args:
    """Rejects bad flags before anything expensive starts, and fills in the derived sizes."""
    for flag in ("total_timesteps", "num_envs", "num_steps", "update_epochs", "num_threads", "env_threads", "kl_every",
                 "eval_episodes"):
        if getattr(args, flag) <= 0:
            fail(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if args.checkpoint_every < 0:
        fail(f"--checkpoint-every must be a non-negative integer (0: only before the first iteration and at the last), got {args.checkpoint_every}")
    if args.resume and args.run_name is None:
        fail("--resume needs --run-name (and --runs-dir, if not runs): the run whose checkpoint.pt to continue")
    for flag in ("learning_rate", "clip_coef"):
        if not getattr(args, flag) > 0:
            fail(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    for flag in ("gamma", "gae_lambda"):
        if not 0 <= getattr(args, flag) <= 1:
            fail(f"--{flag.replace('_', '-')} must be in [0, 1], got {getattr(args, flag)}")
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
    if args.target_kl is not None and not args.target_kl > 0:
        fail(f"--target-kl must be > 0 (or omitted), got {args.target_kl}")
    module, _, env_name = args.env_id.rpartition(":")  # Gymnasium's "package.module:EnvName-v0" form
    try:
        importlib.import_module(module) if module else None
    except ImportError as e:
        fail(f"--env-id {args.env_id!r}: cannot import {module!r} to register it ({e})")
    if env_name not in gym.registry:
        close = difflib.get_close_matches(env_name, list(gym.registry), n=5, cutoff=0.6)
        fail(f"--env-id {args.env_id!r} is not a registered Gymnasium env" + (f"; close matches: {', '.join(close)}" if close else ""))
    if args.env_backend == "warp" and args.env_id in WARP_REFUSED:
        fail(f"--env-backend warp refuses --env-id {args.env_id}: {WARP_REFUSED[args.env_id]}; "
             "--env-backend mujoco-batch or gymnasium runs it")
    if args.env_backend != "gymnasium":
        supported = MUJOCO_BATCH_ENVS if args.env_backend == "mujoco-batch" else WARP_ENVS
        if args.env_id not in supported:
            fail(f"--env-backend {args.env_backend} supports --env-id {', '.join(supported)} (Gymnasium's defaults), "
                 f"got {args.env_id!r}; --env-backend gymnasium runs any env")
        for flag, value, allowed in (("norm_stats", args.norm_stats, "shared"), ("capture_video", args.capture_video, False)):
            if value != allowed:
                fail(f"--{flag.replace('_', '-')} {value} needs --env-backend gymnasium; "
                     f"--env-backend {args.env_backend} allows only {allowed}")
    if args.env_backend == "warp":
        try:
            import_warp()
        except ImportError as e:
            fail(f"--env-backend warp needs MuJoCo Warp ({e}): pip install mujoco-warp==4.0.0")
    if args.run_name is not None and (not args.run_name or "/" in args.run_name):
        fail(f"--run-name must be a non-empty folder name without '/', got {args.run_name!r}")
    for flag, module in (("capture_video", "moviepy"), ("track", "wandb")):
        if getattr(args, flag):
            try:
                __import__(module)
            except ImportError:
                fail(f"--{flag.replace('_', '-')} needs the {module} package: pip install {module}")
    return args


def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_dim, act_dim):
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, act_dim), std=0.01),
        )
        # State-independent std: the paper's smoothness result (its Lemma 1) assumes exactly this policy.
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        action_mean = self.actor_mean(x)
        action_std = torch.exp(self.actor_logstd.expand_as(action_mean))
        probs = Normal(action_mean, action_std)
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action).sum(1), probs.entropy().sum(1), self.critic(x)


@dataclass
class Rollout:
    """One iteration's storage, [num_steps, num_envs, ...]; dones[t] says obs[t] ended an episode, so under
    next-step autoreset step t is the env's reset step: its action was ignored and it is no transition."""
    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    values: torch.Tensor


def collect_rollout(envs, agent, rollout, next_obs, next_done, device):
    """Steps every env num_steps times with the current policy; returns the next obs/done and the
    (step, return, length) of every episode that finished."""
    on_device = getattr(envs, "on_device", False)  # --env-backend warp: tensors in and out, no host round trip
    episodes = []
    ended = torch.zeros(rollout.rewards.shape, dtype=torch.bool, device=device)
    ended_returns = torch.zeros(rollout.rewards.shape, dtype=torch.float64, device=device)
    ended_lengths = torch.zeros(rollout.rewards.shape, dtype=torch.int64, device=device)
    for step in range(rollout.obs.shape[0]):
        rollout.obs[step] = next_obs
        rollout.dones[step] = next_done
        with torch.no_grad():
            action, logprob, _, value = agent.get_action_and_value(next_obs)
        rollout.values[step] = value.flatten()
        rollout.actions[step] = action
        rollout.logprobs[step] = logprob
        if on_device:
            next_obs, rollout.rewards[step], terminations, truncations, infos = envs.step(action)
            next_done = (terminations | truncations).float()
            ended[step], ended_returns[step], ended_lengths[step] = (
                infos["episode_done"], infos["episode_return"], infos["episode_length"])
        else:
            obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            next_obs = torch.as_tensor(obs, dtype=torch.float32, device=device)
            next_done = torch.as_tensor(np.logical_or(terminations, truncations), dtype=torch.float32, device=device)
            rollout.rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device)
            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    episodes.append((step, float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])))
    if on_device:  # the episodes that ended, read in one go
        steps, envs_ended = ended.nonzero(as_tuple=True)
        episodes = list(zip(steps.tolist(), ended_returns[steps, envs_ended].tolist(),
                            ended_lengths[steps, envs_ended].tolist()))
    return next_obs, next_done, episodes


def flatten_transitions(rollout, advantages, returns):
    """The iteration's batch (obs, actions, logprobs, advantages, returns, values) over every (step, env) that is
    a real transition: reset steps of next-step autoreset are left out."""
    valid = (rollout.dones.reshape(-1) == 0).nonzero().squeeze(1)
    return tuple(x.flatten(0, 1)[valid] for x in (
        rollout.obs, rollout.actions, rollout.logprobs, advantages, returns, rollout.values))


def compute_gae(rewards, values, dones, next_value, next_done, gamma, gae_lambda):
    """Generalised advantage estimation as CleanRL (a truncated episode is not bootstrapped). The value and
    reward of a reset step never reach a real transition: the transition before it has nextnonterminal = 0."""
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = 0
    for t in reversed(range(num_steps)):
        if t == num_steps - 1:
            nextnonterminal = 1.0 - next_done
            nextvalues = next_value
        else:
            nextnonterminal = 1.0 - dones[t + 1]
            nextvalues = values[t + 1]
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
    return advantages, advantages + values


def ppo_loss(agent, obs, actions, old_logprobs, advantages, returns, old_values, args):
    """CleanRL's clipped surrogate + clipped value loss on one minibatch; returns the loss and its diagnostics."""
    _, newlogprob, entropy, newvalue = agent.get_action_and_value(obs, actions)
    logratio = newlogprob - old_logprobs
    ratio = logratio.exp()
    with torch.no_grad():
        # two estimators of KL(old || new) from the ratio: -log r, and the unbiased, lower-variance (r - 1) - log r
        old_approx_kl = (-logratio).mean()
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > args.clip_coef).float().mean()
    if args.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg_loss = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)).mean()
    newvalue = newvalue.view(-1)
    if args.clip_vloss:
        v_loss_unclipped = (newvalue - returns) ** 2
        v_clipped = old_values + torch.clamp(newvalue - old_values, -args.clip_coef, args.clip_coef)
        v_loss = 0.5 * torch.max(v_loss_unclipped, (v_clipped - returns) ** 2).mean()
    else:
        v_loss = 0.5 * ((newvalue - returns) ** 2).mean()
    entropy_loss = entropy.mean()
    loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
    return loss, dict(policy_loss=pg_loss, value_loss=v_loss, entropy=entropy_loss,
                      old_approx_kl=old_approx_kl, approx_kl=approx_kl, clipfrac=clipfrac)


# ---- KL profiling: the paper's sequential and reference KL within one iteration ----

def diag_gaussian_kl(mean_p, logstd_p, mean_q, logstd_q):
    """KL(p || q) of diagonal Gaussians, summed over the last (action) dimension."""
    return kl_from_mean_gap((mean_p - mean_q) ** 2, logstd_p, logstd_q)


def kl_from_mean_gap(sq_gap, logstd_p, logstd_q):
    """The diagonal-Gaussian KL(p || q) from the squared gap between the means. It is linear in the gap, so the
    mean KL over states is this of the mean squared gap. expm1 keeps the tiny divergences between consecutive
    snapshots from drowning in cancellation."""
    r = logstd_q - logstd_p
    return (0.5 * (torch.expm1(-2 * r) + 2 * r) + 0.5 * sq_gap * torch.exp(-2 * logstd_q)).sum(-1)


def mean_sq_gap(means_p, means_q):
    """E_s (mu_p(s) - mu_q(s))^2 per action dim: [k, S, A] against [k or 1, S, A] -> [k, A], summed in float64."""
    return torch.linalg.vector_norm(means_p - means_q, dim=1, dtype=torch.float64) ** 2 / means_p.shape[1]


def kl_profile(means, logstds, max_elements=2**22):
    """For snapshots 0..n-1 (means [n, S, A] on S states, logstds [n, A]): seq_kl[i] = E_s KL(pi_{i+1} || pi_i)
    and ref_kl[i] = E_s KL(pi_{n-1} || pi_i), in float64, in chunks that bound temporary memory."""
    n, num_states, act_dim = means.shape
    chunk = max(1, max_elements // (num_states * act_dim))
    ref_gap = torch.empty(n, act_dim, dtype=torch.float64, device=means.device)
    seq_gap = torch.empty(n - 1, act_dim, dtype=torch.float64, device=means.device)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        ref_gap[lo:hi] = mean_sq_gap(means[-1:], means[lo:hi])
        top = min(hi, n - 1)
        if lo < top:
            seq_gap[lo:top] = mean_sq_gap(means[lo + 1:top + 1], means[lo:top])
    logstds = logstds.double()
    return kl_from_mean_gap(seq_gap, logstds[1:], logstds[:-1]), kl_from_mean_gap(ref_gap, logstds[-1:], logstds)


def contraction_rate(ref_kl, updates):
    """gamma_D of the paper's Assumption 4, KL(pi^U || pi^i) ~ C gamma_D^i: exp of the least-squares slope of
    log ref_kl against the update index (the final, zero entry excluded). NaN when under two points."""
    keep = ref_kl[:-1] > 0
    if keep.sum() < 2:
        return float("nan")
    return float(np.exp(np.polyfit(updates[:-1][keep], np.log(ref_kl[:-1][keep]), 1)[0]))


def actor_means(states, weights):
    """Agent.actor_mean(states) under n copies of its weights (w1, b1, w2, b2, w3, b3), each [n, ...]: [n, S, A]."""
    w1, b1, w2, b2, w3, b3 = weights
    hidden = torch.tanh(torch.baddbmm(b1.unsqueeze(1), states.expand(len(w1), -1, -1), w1.transpose(1, 2)))
    hidden = torch.tanh(torch.baddbmm(b2.unsqueeze(1), hidden, w2.transpose(1, 2)))
    return torch.baddbmm(b3.unsqueeze(1), hidden, w3.transpose(1, 2))


class SnapshotStore:
    """The policy after every kept minibatch update, as its Gaussian on a fixed sample of the iteration's states.
    The update loop only copies the actor's weights into a block on the device (one kernel; no module copies, no
    host sync); a worker thread turns each full block into means with a few batched kernels, so on a CPU the
    forward passes run on a core the single-threaded update loop leaves idle, and seldom wait on Python's lock.
    A bounded queue caps the weights waiting in memory."""

    block_size = 16

    def __init__(self, max_updates, kl_every, num_states, actor, device):
        self.kl_every, self.device = kl_every, device
        self.actor_params = list(actor.parameters())  # updated in place by the optimiser: a live view
        self.shapes = [p.shape for p in self.actor_params]
        self.sizes = [p.numel() for p in self.actor_params]
        capacity, act_dim = max_updates // kl_every + 2, self.shapes[-1][0]
        self.means = torch.zeros(capacity, num_states, act_dim, device=device)
        self.logstds = torch.zeros(capacity, act_dim, device=device)
        self.pending = queue.Queue(maxsize=64)
        self.error = None
        threading.Thread(target=self._evaluate_pending, daemon=True).start()

    def nbytes(self):
        return self.means.nelement() * self.means.element_size() + self.logstds.nelement() * self.logstds.element_size()

    @torch.no_grad()
    def _evaluate_pending(self):
        while True:
            first, states, block = self.pending.get()
            try:
                weights = [w.reshape(len(block), *shape) for w, shape in zip(block.split(self.sizes, 1), self.shapes)]
                self.means[first:first + len(block), : len(states)] = actor_means(states, weights)
            except Exception as e:  # surfaced by finish_iteration; the queue must still drain
                self.error = e
            self.pending.task_done()

    @torch.no_grad()
    def _take(self, agent, update, epoch, minibatch):
        k = len(self.updates)
        if self.filled == 0:
            self.block, self.block_start = torch.empty(self.block_size, sum(self.sizes), device=self.device), k
        torch.cat([p.reshape(-1) for p in self.actor_params], out=self.block[self.filled])
        self.filled += 1
        self.logstds[k] = agent.actor_logstd[0]
        self.updates.append(update)
        self.epochs.append(epoch)
        self.minibatches.append(minibatch)
        if self.filled == self.block_size:
            self._flush()

    def _flush(self):
        if self.filled:
            self.pending.put((self.block_start, self.states, self.block[: self.filled]))
            self.filled = 0

    def begin_iteration(self, agent, states):
        self.states, self.updates, self.epochs, self.minibatches, self.filled = states, [], [], [], 0
        self._take(agent, 0, -1, -1)
        self.last = (0, -1, -1)

    def record(self, agent, update, epoch, minibatch):
        self.last = (update, epoch, minibatch)
        if update % self.kl_every == 0:
            self._take(agent, update, epoch, minibatch)

    def finish_iteration(self, agent):
        """Keeps the final policy pi^U, waits for the worker, and returns the iteration's profile (numpy)."""
        if self.updates[-1] != self.last[0]:
            self._take(agent, *self.last)
        self._flush()
        self.pending.join()
        if self.error is not None:
            raise RuntimeError("KL snapshot evaluation failed") from self.error
        n, s = len(self.updates), len(self.states)
        seq_kl, ref_kl = kl_profile(self.means[:n, :s], self.logstds[:n])
        updates = np.array(self.updates)
        profile = dict(seq_kl=seq_kl.cpu().numpy(), ref_kl=ref_kl.cpu().numpy(), update=updates,
                       epoch=np.array(self.epochs[1:]), minibatch=np.array(self.minibatches[1:]))
        profile["gamma_D"] = contraction_rate(profile["ref_kl"], updates)
        profile["ref_kl_decrease_frac"] = float(np.mean(np.diff(profile["ref_kl"]) < 0)) if n > 1 else float("nan")
        return profile

    def snapshots(self):
        n, s = len(self.updates), len(self.states)
        return dict(states=self.states.cpu().numpy(), means=self.means[:n, :s].cpu().numpy(), logstds=self.logstds[:n].cpu().numpy())


def evaluate(model_path, env_id, eval_episodes, device, gamma, norm_stats):
    """Runs the saved agent with the saved normalisation statistics frozen; returns the episodic returns."""
    saved = torch.load(model_path, map_location=device, weights_only=False)
    envs = make_envs(env_id, 1, gamma, norm_stats)
    set_norm_stats(envs, saved["norm_stats"], frozen=True)
    agent = Agent(envs.single_observation_space.shape[0], envs.single_action_space.shape[0]).to(device)
    agent.load_state_dict(saved["agent"])
    obs, _ = envs.reset(seed=saved["args"]["seed"] + 10_000)
    episodic_returns = []
    while len(episodic_returns) < eval_episodes:
        with torch.no_grad():
            actions, _, _, _ = agent.get_action_and_value(torch.as_tensor(obs, dtype=torch.float32, device=device))
        obs, _, _, _, infos = envs.step(actions.cpu().numpy())
        if "episode" in infos and infos["_episode"][0]:
            episodic_returns.append(float(infos["episode"]["r"][0]))
    envs.close()
    return episodic_returns


if __name__ == "__main__":
    args = check_args(tyro.cli(Args))
    run_name = args.run_name or f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.join(args.runs_dir, run_name)
    checkpoint_path = os.path.join(run_dir, "checkpoint.pt")
    checkpoint = open_run_folder(args, run_name, run_dir)
    stop_signals = stop_on_signals()

    # seeding and devices
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.num_threads)
    # Argument checks cost a host sync per call; a non-finite policy is caught once per iteration below instead.
    torch.distributions.Distribution.set_default_validate_args(False)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # environments
    quiet_mujoco()
    envs = make_envs(args.env_id, args.num_envs, args.gamma, args.norm_stats, args.capture_video, run_dir,
                     args.env_backend, args.env_threads, device)
    if not isinstance(envs.single_action_space, gym.spaces.Box):
        fail(f"--env-id {args.env_id} has a {type(envs.single_action_space).__name__} action space; only continuous (Box) action spaces are supported")
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]

    agent = Agent(obs_dim, act_dim).to(device)
    # Adam and the clipping as CleanRL's, in a few fused kernels: the small-minibatch updates are overhead-bound.
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    minibatch_loss = torch.compile(ppo_loss) if args.compile else ppo_loss
    num_updates_max = args.update_epochs * args.num_minibatches
    kl_states = args.kl_num_states or args.batch_size
    store = SnapshotStore(num_updates_max, args.kl_every, kl_states, agent.actor_mean, device) if args.kl else None
    # Its own generator, so that profiling on or off leaves the training run bit-for-bit the same.
    kl_generator = torch.Generator(device=device).manual_seed(args.seed)
    print(f"{run_dir}: {args.env_id} on {device}, {args.num_envs} envs x {args.num_steps} steps, "
          f"{args.num_minibatches} minibatches x {args.minibatch_size} x {args.update_epochs} epochs, "
          f"{args.num_iterations} iterations" + (f", KL store {store.nbytes() / 2**20:.0f} MiB" if store else ""), flush=True)

    # rollout storage, on the device
    shape = (args.num_steps, args.num_envs)
    rollout = Rollout(
        obs=torch.zeros(shape + (obs_dim,), device=device), actions=torch.zeros(shape + (act_dim,), device=device),
        logprobs=torch.zeros(shape, device=device), rewards=torch.zeros(shape, device=device),
        dones=torch.zeros(shape, device=device), values=torch.zeros(shape, device=device),
    )
    update_losses = torch.zeros(num_updates_max, device=device)

    # the run, from its start or from its checkpoint
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device)
    next_done = torch.zeros(args.num_envs, device=device)
    global_step, checkpointed, elapsed_s, recent_returns, iteration_wall_s = 0, 0, 0.0, [], []
    if checkpoint is not None:
        agent.load_state_dict(checkpoint["agent"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if args.env_backend == "warp" and checkpoint["envs"]["device"] != device.type:
            fail(f"{checkpoint_path} was written by MuJoCo Warp on the {checkpoint['envs']['device']} device: a --env-backend "
                 f"warp run resumes only there (its simulation state and RNG are the device's), not on {device.type}")
        set_env_state(envs, checkpoint["envs"])
        set_rng_states(checkpoint["rngs"], kl_generator)
        next_obs, next_done = checkpoint["next_obs"].to(device), checkpoint["next_done"].to(device)
        global_step, checkpointed, elapsed_s = checkpoint["global_step"], checkpoint["iteration"], checkpoint["wall_time_s"]
        recent_returns, iteration_wall_s = checkpoint["recent_returns"], checkpoint["iteration_wall_s"]
        print(f"resuming {run_dir} after iteration {checkpointed} (step {global_step}) from its checkpoint", flush=True)
    start_time = time.time() - elapsed_s

    def write_checkpoint(iteration):
        save_checkpoint(checkpoint_path, dict(
            format=1, args=asdict(args) | {"run_name": run_name}, iteration=iteration, global_step=global_step,
            wall_time_s=time.time() - start_time, agent=agent.state_dict(), optimizer=optimizer.state_dict(),
            envs=env_state(envs), next_obs=next_obs, next_done=next_done, recent_returns=recent_returns,
            iteration_wall_s=iteration_wall_s, rngs=rng_states(kl_generator)))
        return iteration

    def stop_for_signal():
        signum = stop_signals[0]
        print(f"stopped by {signum.name}; {checkpoint_path} holds the run after iteration {checkpointed}: rerun the same "
              "command to resume it", file=sys.stderr, flush=True)
        sys.exit(128 + signum.value)

    if checkpoint is None:
        write_checkpoint(0)  # which also proves the run folder writable before any training
    need = disk_need_bytes(args, args.num_iterations - checkpointed, obs_dim, act_dim, os.path.getsize(checkpoint_path))
    free = shutil.disk_usage(run_dir).free
    if need > free:
        fail(f"--runs-dir {args.runs_dir}: the run needs about {need / 2**20:.1f} MiB more, only {free / 2**20:.1f} MiB "
             "are free; free space and rerun the same command, or pick another --runs-dir")

    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True, config=vars(args),
                   name=run_name, monitor_gym=True, save_code=True, dir=run_dir)
    # On a resume, TensorBoard drops whatever the interrupted session logged after its checkpoint: no step twice.
    writer = SummaryWriter(run_dir, purge_step=global_step + 1 if checkpoint is not None else None)
    if checkpoint is None:
        writer.add_text(
            "hyperparameters",
            "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])),
        )

    try:
        for iteration in range(checkpointed + 1, args.num_iterations + 1):
            # a signal leaves at once when the checkpoint on disk is this iteration's start, else after the iteration
            if stop_signals and checkpointed == iteration - 1:
                stop_for_signal()
            iteration_start = time.time()
            # linear learning-rate decay: the first iteration at the full rate, the last at 1/num_iterations of it
            if args.anneal_lr:
                frac = 1.0 - (iteration - 1.0) / args.num_iterations
                optimizer.param_groups[0]["lr"] = frac * args.learning_rate

            next_obs, next_done, episodes = collect_rollout(envs, agent, rollout, next_obs, next_done, device)
            if args.env_backend == "warp" and (problem := envs.physics_problem()):
                fail(f"iteration {iteration}: {problem}; stopping. Everything logged before it is in {run_dir}")
            global_step += args.batch_size
            recent_returns = [r for _, r, _ in episodes] or recent_returns

            # advantages; the value of the state after the rollout closes the last unfinished episodes
            with torch.no_grad():
                next_value = agent.get_value(next_obs).reshape(1, -1)
                advantages, returns = compute_gae(rollout.rewards, rollout.values, rollout.dones, next_value, next_done,
                                                  args.gamma, args.gae_lambda)

            batch = flatten_transitions(rollout, advantages, returns)
            b_obs, _, _, _, b_returns, b_values = batch
            num_transitions = len(b_obs)

            if args.kl:
                kl_idx = torch.randperm(num_transitions, device=device, generator=kl_generator)[:kl_states]
                store.begin_iteration(agent, b_obs[kl_idx])

            # update_epochs passes of minibatch updates over the batch
            minibatch_sizes = [len(part) for part in torch.arange(num_transitions).tensor_split(args.num_minibatches)]
            clipfrac_sum = torch.zeros((), device=device)
            update = 0
            for epoch in range(args.update_epochs):
                # one gather per epoch, then each minibatch is a contiguous slice: same samples, far fewer index ops
                b_inds = torch.randperm(num_transitions, device=device)
                shuffled = [x[b_inds] for x in batch]
                for minibatch, mb_batch in enumerate(zip(*(torch.split(x, minibatch_sizes) for x in shuffled))):
                    loss, stats = minibatch_loss(agent, *mb_batch, args)
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
                    optimizer.step()
                    update_losses[update] = loss.detach()
                    clipfrac_sum += stats["clipfrac"]
                    update += 1
                    if args.kl:
                        store.record(agent, update, epoch, minibatch)
                    if stop_signals and checkpointed == iteration - 1:
                        stop_for_signal()
                if args.target_kl is not None and stats["approx_kl"] > args.target_kl:
                    break

            nonfinite = (~torch.isfinite(update_losses[:update])).nonzero()
            if len(nonfinite):
                first = int(nonfinite[0])
                fail(f"non-finite loss at iteration {iteration} (epoch {first // args.num_minibatches}, minibatch "
                     f"{first % args.num_minibatches}); stopping. Everything logged before it is in {run_dir}")

            y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
            var_y = np.var(y_true)
            explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

            # logging, with CleanRL's tags
            for step, episodic_return, episodic_length in episodes:
                episode_step = global_step - args.batch_size + (step + 1) * args.num_envs
                writer.add_scalar("charts/episodic_return", episodic_return, episode_step)
                writer.add_scalar("charts/episodic_length", episodic_length, episode_step)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            for name in ("value_loss", "policy_loss", "entropy", "old_approx_kl", "approx_kl"):
                writer.add_scalar(f"losses/{name}", stats[name].item(), global_step)
            writer.add_scalar("losses/clipfrac", (clipfrac_sum / update).item(), global_step)
            writer.add_scalar("losses/explained_variance", explained_var, global_step)
            sps = int(global_step / (time.time() - start_time))
            writer.add_scalar("charts/SPS", sps, global_step)

            line = f"iter {iteration}/{args.num_iterations} step {global_step} SPS {sps}"
            if recent_returns:
                line += f" return {np.mean(recent_returns):.1f}"
            if args.kl:
                profile = store.finish_iteration(agent)
                writer.add_scalar("kl/seq_kl_mean", profile["seq_kl"].mean(), global_step)
                writer.add_scalar("kl/ref_kl_start", profile["ref_kl"][0], global_step)
                writer.add_scalar("kl/ref_kl_decrease_frac", profile["ref_kl_decrease_frac"], global_step)
                writer.add_scalar("kl/gamma_D", profile["gamma_D"], global_step)
                writer.add_scalar("kl/num_updates", update, global_step)
                # An iteration redone after a resume computes the same profile; the file written first stays.
                kl_path = os.path.join(run_dir, "kl", f"iter_{iteration:05d}.npz")
                if not os.path.exists(kl_path):
                    save_npz_atomic(
                        kl_path,
                        iteration=iteration, global_step=global_step, num_envs=args.num_envs, num_steps=args.num_steps,
                        minibatch_size=args.minibatch_size, num_minibatches=args.num_minibatches, num_updates=update,
                        kl_every=args.kl_every, num_transitions=num_transitions, env_id=args.env_id, seed=args.seed,
                        **profile, **(store.snapshots() if args.kl_save_snapshots else {}),
                    )
                line += f" seq_kl {profile['seq_kl'].mean():.2e} KL(U||0) {profile['ref_kl'][0]:.2e}"
            print(line, flush=True)
            writer.flush()
            iteration_wall_s.append(time.time() - iteration_start)
            if stop_signals or iteration == args.num_iterations or (
                    args.checkpoint_every and iteration % args.checkpoint_every == 0):
                checkpointed = write_checkpoint(iteration)
            if stop_signals:
                stop_for_signal()

        summary = dict(global_step=global_step, iterations=args.num_iterations, wall_time_s=time.time() - start_time,
                       iteration_wall_s=iteration_wall_s, final_returns=recent_returns)
        if device.type == "cuda":
            summary["cuda_max_memory_allocated"] = torch.cuda.max_memory_allocated(device)
        if args.save_model:
            model_path = os.path.join(run_dir, f"{args.exp_name}.pt")
            torch.save(dict(agent=agent.state_dict(), norm_stats=get_norm_stats(envs), args=asdict(args)), model_path)
            print(f"model saved to {model_path}")
            eval_returns = evaluate(model_path, args.env_id, args.eval_episodes, device, args.gamma, args.norm_stats)
            for idx, episodic_return in enumerate(eval_returns):
                writer.add_scalar("eval/episodic_return", episodic_return, idx)
            summary["eval_returns"] = eval_returns
            print(f"evaluation over {len(eval_returns)} episodes: {np.mean(eval_returns):.1f} +- {np.std(eval_returns):.1f}")
        with open(os.path.join(run_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    finally:
        envs.close()
        writer.close()
