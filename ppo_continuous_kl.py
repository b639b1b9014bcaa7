# PPO-Clip for continuous actions, following CleanRL's ppo_continuous_action.py, on Gymnasium 1.x,
# with the policy snapshotted after every minibatch update to profile KL divergences within each iteration
# (Honari, Creus Castanyer, Castro, Berseth: "Training PPO-Clip with Parallelized Data Generation").
import json
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Literal, Optional

import numpy as np
import torch
import torch.optim as optim
import tyro
from torch.optim.adam import adam
from torch.utils.tensorboard import SummaryWriter

from agent import Agent
from check_flags import check_args, parse_flags, use_compile
from evaluation import evaluate, freeze_training_stats, log_evaluation
from kl_profiling import ANATOMY, SnapshotStore, sample_states, write_kl_profile
from run_folder import (code_version, discard_kl_after, disk_need_bytes, fail, member_adam_state, resolve_runs,
                        resume_hint, rng_states, save_checkpoint, set_rng_states, stacked_adam_state, stop_on_signals,
                        write_hparams, write_tensorboard_layout)
from vector_envs import env_state, get_norm_stats, make_envs, quiet_mujoco, set_env_state


@dataclass
class Args:
    """PPO-Clip (CleanRL's ppo_continuous_action.py, same defaults) with per-minibatch KL profiling, for one seed
    or a population of seeds trained in lockstep in one process (--num-seeds).

    Differs from CleanRL where Gymnasium 1.x or the study requires it: env_id defaults to HalfCheetah-v5; autoreset
    is next-step, and the reset step after each episode's end is left out of the batch (it is no transition), so a
    minibatch can hold a few samples fewer than the minibatch size; torch runs one CPU thread by default (two make
    these small networks several times slower on a 2-core CPU); the MuJoCo envs are stepped by mujoco.batch (the
    same transitions bit for bit) and long runs compile their minibatch update; actions are sampled from a generator per seed;
    saving the model (--save-model) also saves the normalisation statistics and evaluates with them frozen;
    evaluations during training (--eval-every) run on separate envs at equal env steps; a run checkpoints itself,
    every iteration by default, stops cleanly on SIGTERM/SIGINT and resumes exactly when rerun; upload_model and
    hf_entity are not offered.
    """

    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """experiment label, part of the default run name"""
    seed: int = 1
    """seeds the run's generators and envs (env i gets seed + i)"""
    num_seeds: int = 1
    """train the seeds seed, seed+1, ..., seed+S-1 in lockstep in one process: S independent runs (own envs, statistics, weights, optimiser, random streams, run folder), each the same algorithm as a single run of its seed: on a GPU the way to fill the device, on a CPU about half the memory of S processes but no time per seed saved. With S > 1, a --run-name must contain {seed}"""
    torch_deterministic: bool = True
    """sets `torch.backends.cudnn.deterministic` (runs on a CPU repeat bit for bit either way)"""
    cuda: bool = True
    """use a CUDA GPU when there is one; the CPU otherwise"""
    track: bool = False
    """mirror the run to Weights and Biases (needs `pip install wandb`)"""
    wandb_project_name: str = "cleanRL"
    """Weights and Biases project"""
    wandb_entity: Annotated[Optional[str], tyro.conf.arg(
        metavar="STR", help_behavior_hint="(default: your W&B default entity)")] = None
    """Weights and Biases team or user owning the project"""
    capture_video: bool = False
    """record videos of env 0 into the run folder (needs `pip install moviepy`)"""
    save_model: bool = False
    """at the end, save the agent and its normalisation statistics into the run folder, then evaluate it for --eval-episodes episodes (TensorBoard: eval/saved_model_episodic_return)"""
    eval_every: int = 0
    """every N iterations and after the last, evaluate the policy for --eval-episodes episodes on separate envs of the same backend with the training normalisation statistics frozen; TensorBoard: eval/episodic_return (mean) and eval/episodic_returns (each episode) at that global_step, so that different settings compare at equal env steps (0: off)"""
    eval_episodes: int = 10
    """episodes of each evaluation (--eval-every, --save-model), run at once on as many envs"""
    eval_deterministic: bool = False
    """evaluate with the mean action instead of sampling actions as the policy trains"""
    runs_dir: str = "runs"
    """folder that receives one sub-folder per run (TensorBoard events, args.json, checkpoint.pt, kl/, model)"""
    run_name: Annotated[Optional[str], tyro.conf.arg(
        metavar="STR", help_behavior_hint="(default: {env_id}__{exp_name}__{seed}__{unix time}, as CleanRL)")] = None
    """name of the run folder inside --runs-dir; {seed} in it is replaced by the run's seed. Without it, the command continues the latest unfinished run of the same flags that was started without one, and says which"""
    num_threads: int = 1
    """torch intra-op CPU threads (CleanRL: torch's default, i.e. all cores)"""
    compile: Literal["auto", "on", "off"] = "auto"
    """compile each minibatch update (loss, gradient, clipping, Adam step) into one graph with torch.compile, which makes small-minibatch updates about twice as fast after a one-off compile of about half a minute (on a CPU it needs a C++ compiler). auto: on when the run has at least 50,000 minibatch updates and a compiler is present, else off, saying why"""
    checkpoint_every: int = 1
    """write the run folder's checkpoint.pt before the first iteration, then every N iterations and at the last (0: only those two). It holds everything an exact resume needs: agent, optimiser, envs' simulation and normalisation state, all RNGs (its cost: docs/benchmarks.md)"""
    resume: bool = False
    """continue the run --runs-dir/--run-name (without --run-name: the latest unfinished run of the same flags in --runs-dir) from its checkpoint.pt, and fail when there is none (rerunning the same command resumes too); on a CPU the result is the same bit for bit as an uninterrupted run. Flags must match the checkpoint's, except --cuda, --num-threads, --compile, --env-threads, --checkpoint-every, --runs-dir, --save-model, --eval-episodes and the tracking flags"""

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
    num_minibatches: Annotated[Optional[int], tyro.conf.arg(
        metavar="INT", help_behavior_hint="(default: 32, or num_envs x num_steps / --minibatch-size)")] = None
    """minibatches per epoch; give this or --minibatch-size"""
    minibatch_size: Annotated[Optional[int], tyro.conf.arg(
        metavar="INT", help_behavior_hint="(default: num_envs x num_steps / --num-minibatches)")] = None
    """minibatch size, instead of --num-minibatches (the paper speaks in sizes); must divide num_envs x num_steps"""
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
    target_kl: Annotated[Optional[float], tyro.conf.arg(
        metavar="FLOAT", help_behavior_hint="(default: off)")] = None
    """stop an iteration's epochs once the approximate KL exceeds this, checked once per epoch on its last minibatch (CleanRL's semantics; one seed only)"""
    norm_stats: Literal["per-env", "shared"] = "per-env"
    """observation/reward normalisation statistics: one running mean/var per env (CleanRL's, and the paper's), or one for all of a run's envs"""
    env_backend: Literal["auto", "gymnasium", "mujoco-batch", "warp"] = "auto"
    """who steps the envs. auto: mujoco-batch for the envs it supports, else gymnasium. gymnasium: Gymnasium's SyncVectorEnv (the reference). mujoco-batch: MuJoCo's batched stepping (mujoco.batch), several times faster and equal to gymnasium bit for bit, for HalfCheetah-v5, Hopper-v5, Walker2d-v5, Ant-v5 and Humanoid-v5. warp: MuJoCo Warp on the training device (a GPU; Warp's CPU device is slow), in float32 and with the wrappers in torch, for HalfCheetah-v5, Hopper-v5, Walker2d-v5 and Humanoid-v5 (with Newton in place of its PGS solver; Ant-v5 refused); needs pip install -r requirements-warp.txt, and its kernels compile on first use (about a minute, cached in ~/.cache/warp)"""
    env_threads: int = 0
    """threads of --env-backend mujoco-batch (0: one per core this process may use, at most one per env; the sweeps give each run one core's worth, as they run one per core)"""

    # KL profiling
    kl: bool = True
    """profile seq_kl and ref_kl over every iteration's minibatch updates"""
    kl_num_states: Annotated[Optional[int], tyro.conf.arg(
        metavar="INT", help_behavior_hint="(default: 1024, or the whole batch when smaller)")] = None
    """rollout states the KL is averaged over, a fixed random sample per iteration (0: all)"""
    kl_every: int = 1
    """keep every K-th snapshot (and always the last). Memory: (updates/K + 2) x states x action-dim float32 means per seed, e.g. 0.65 GiB for Humanoid-v5 at 10000 updates and 1024 states"""
    kl_save_snapshots: bool = False
    """also save the states, means and log-stds of every kept snapshot in the kl/ files"""

    # derived from the flags above
    batch_size: tyro.conf.Suppress[int] = 0
    num_iterations: tyro.conf.Suppress[int] = 0


@dataclass
class Rollout:
    """One iteration's storage, [num_steps, num_seeds, num_envs, ...]; dones[t] says obs[t] ended an episode, so
    under next-step autoreset step t is the env's reset step: its action was ignored and it is no transition."""
    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    values: torch.Tensor


def collect_rollout(envs, agent, rollout, next_obs, next_done, generators):
    """Steps every env num_steps times with its member's current policy; returns the next obs/done and, per member,
    the (step, return, length) of every episode that finished."""
    on_device = getattr(envs, "on_device", False)  # --env-backend warp: tensors in and out, no host round trip
    num_steps, num_seeds, num_envs = rollout.rewards.shape
    device = next_obs.device
    episodes = [[] for _ in range(num_seeds)]
    ended = torch.zeros(rollout.rewards.shape, dtype=torch.bool, device=device)
    ended_returns = torch.zeros(rollout.rewards.shape, dtype=torch.float64, device=device)
    ended_lengths = torch.zeros(rollout.rewards.shape, dtype=torch.int64, device=device)
    for step in range(num_steps):
        rollout.obs[step] = next_obs
        rollout.dones[step] = next_done
        with torch.no_grad():
            action, logprob, _, value = agent.get_action_and_value(next_obs, generators=generators)
        rollout.values[step] = value
        rollout.actions[step] = action
        rollout.logprobs[step] = logprob
        if on_device:
            obs, reward, terminations, truncations, infos = envs.step(action.flatten(0, 1))
            next_obs, next_done = obs.view(next_obs.shape), (terminations | truncations).float().view(next_done.shape)
            rollout.rewards[step] = reward.view(num_seeds, num_envs)
            ended[step], ended_returns[step], ended_lengths[step] = (
                infos[k].view(num_seeds, num_envs) for k in ("episode_done", "episode_return", "episode_length"))
        else:
            obs, reward, terminations, truncations, infos = envs.step(action.flatten(0, 1).cpu().numpy())
            next_obs = torch.as_tensor(obs, dtype=torch.float32, device=device).view(next_obs.shape)
            next_done = torch.as_tensor(np.logical_or(terminations, truncations), dtype=torch.float32,
                                        device=device).view(next_done.shape)
            rollout.rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device).view(num_seeds, num_envs)
            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    episodes[i // num_envs].append((step, float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])))
    if on_device:  # the episodes that ended, read in one go
        for step, member, env in ended.nonzero().tolist():
            episodes[member].append((step, ended_returns[step, member, env].item(), ended_lengths[step, member, env].item()))
    return next_obs, next_done, episodes


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


def flatten_transitions(rollout, advantages, returns):
    """Each member's batch (obs, actions, logprobs, advantages, returns, values) over its (step, env) pairs that
    are real transitions, in a single run's (step, env) order: reset steps of next-step autoreset are left out.
    Members can have different counts: rows are [S, max count, ...], each member's real ones first; counts [S]."""
    valid = (rollout.dones == 0).transpose(0, 1).flatten(1)  # [S, T x N]
    counts = valid.sum(1)
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)[:, : int(counts.max())]
    batch = []
    for x in (rollout.obs, rollout.actions, rollout.logprobs, advantages, returns, rollout.values):
        x = x.transpose(0, 1).flatten(1, 2)  # [S, T x N, ...]
        batch.append(torch.take_along_dim(x, order.view(*order.shape, *[1] * (x.dim() - 2)), dim=1))
    return batch, counts.tolist()


def minibatch_indices(counts, num_minibatches, length, generators):
    """Each member's random permutation of its own transitions, cut as a single run cuts it (tensor_split into
    num_minibatches parts), every part padded to the minibatch size `length`, whatever the other members' counts
    (so a member's arithmetic does not depend on them): indices [num_minibatches, S, length] into the member's
    rows, and a mask of the real entries (None when nothing is padded)."""
    device = generators[0].device
    parts, lanes = torch.arange(num_minibatches, device=device), torch.arange(length, device=device)
    indices, masks = [], []
    for n, generator in zip(counts, generators):
        perm = torch.randperm(n, generator=generator, device=device)
        q, r = divmod(n, num_minibatches)
        starts, sizes = parts * q + parts.clamp(max=r), q + (parts < r).long()
        indices.append(perm[(starts[:, None] + lanes).clamp(max=n - 1)])
        masks.append(lanes < sizes[:, None])
    indices, mask = torch.stack(indices, 1), torch.stack(masks, 1)
    return indices, None if bool(mask.all()) else mask.float()


def ppo_loss(agent, obs, actions, old_logprobs, advantages, returns, old_values, mask, args, params=None):
    """CleanRL's clipped surrogate + clipped value loss on one minibatch, of the agent's weights or `params`.
    Written for one run; tensors carry a leading member axis [S, B, ...], and every mean is over the member's own
    samples (`mask`: its real ones when minibatches are padded), so each member's loss [S] is what a single run
    computes."""
    def mean(x):
        return x.mean(-1) if mask is None else (x * mask).sum(-1) / mask.sum(-1)

    _, newlogprob, entropy, newvalue = agent.get_action_and_value(obs, actions, params=params)
    logratio = newlogprob - old_logprobs
    ratio = logratio.exp()
    with torch.no_grad():
        # two estimators of KL(old || new) from the ratio: -log r, and the unbiased, lower-variance (r - 1) - log r
        old_approx_kl = mean(-logratio)
        approx_kl = mean((ratio - 1) - logratio)
        clipfrac = mean(((ratio - 1.0).abs() > args.clip_coef).float())
    if args.norm_adv:
        centred = advantages - mean(advantages).unsqueeze(-1)
        n = advantages.shape[-1] if mask is None else mask.sum(-1)
        std = torch.sqrt(mean(centred**2) * n / (n - 1))  # unbiased, as Tensor.std
        advantages = centred / (std.unsqueeze(-1) + 1e-8)
    pg_loss = mean(torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)))
    if args.clip_vloss:
        v_loss_unclipped = (newvalue - returns) ** 2
        v_clipped = old_values + torch.clamp(newvalue - old_values, -args.clip_coef, args.clip_coef)
        v_loss = 0.5 * mean(torch.max(v_loss_unclipped, (v_clipped - returns) ** 2))
    else:
        v_loss = 0.5 * mean((newvalue - returns) ** 2)
    entropy_loss = mean(entropy)
    loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
    return loss, dict(policy_loss=pg_loss, value_loss=v_loss, entropy=entropy_loss,
                      old_approx_kl=old_approx_kl, approx_kl=approx_kl, clipfrac=clipfrac)


def clip_grad_norm_per_member(grad, max_norm):
    """nn.utils.clip_grad_norm_ for each member on its own: grad [S, P], each row scaled to global norm <= max_norm.
    Returns each row's norm before clipping and the factor it was scaled by (1 when not clipped)."""
    norm = torch.linalg.vector_norm(grad, dim=1)
    scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    grad.mul_(scale.unsqueeze(1))
    return norm, scale


def clipped_step(agent, grad, max_grad_norm, step):
    """Clips each member's gradient to its global norm, then takes the optimiser step `step()`. Returns the
    update's anatomy: the gradient's global and actor norms before clipping, the clipping factor, and the L2 norm
    of the actor's change (its weights and log-std). Reading them changes nothing the update computes."""
    actor_size = agent.actor_size
    actor_before = agent.params.detach()[:, :actor_size].clone()
    actor_grad_norm = torch.linalg.vector_norm(grad[:, :actor_size], dim=1)
    grad_norm, clip_scale = clip_grad_norm_per_member(grad, max_grad_norm)
    step()
    actor_step = torch.linalg.vector_norm(agent.params.detach()[:, :actor_size] - actor_before, dim=1)
    return dict(grad_norm=grad_norm, actor_grad_norm=actor_grad_norm, clip_scale=clip_scale, actor_step=actor_step)


def minibatch_update(agent, optimizer, minibatch, mask, args):
    """One update of every member on its minibatch: the gradient of its own loss (the members' weights are
    disjoint, so the gradient of the summed loss is each member's own), clipped to its own global norm, then one
    Adam step. Returns the losses [S] and the minibatch's statistics, the update's ANATOMY among them."""
    loss, stats = ppo_loss(agent, *minibatch, mask, args)
    optimizer.zero_grad()
    loss.sum().backward()
    stats |= clipped_step(agent, agent.params.grad, args.max_grad_norm, optimizer.step)
    return loss.detach(), stats


@torch.no_grad()
def minibatch_update_graph(agent, optimizer, minibatch, mask, args):
    """minibatch_update written for torch.compile to make one graph of: the gradient from torch.func.grad and the
    step from torch's functional Adam on the optimizer's own state, where backward() and optimizer.step() would
    each break the graph. Compiled, it costs about half of minibatch_update with a compiled loss (docs/benchmarks.md);
    eagerly, more than minibatch_update."""
    def summed_loss(params):
        loss, stats = ppo_loss(agent, *minibatch, mask, args, params=params)
        return loss.sum(), (loss, stats)

    grad, (loss, stats) = torch.func.grad(summed_loss, has_aux=True)(agent.params)
    group, state = optimizer.param_groups[0], optimizer.state[agent.params]

    def adam_step():
        adam([agent.params], [grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]], foreach=False,
             amsgrad=False, beta1=group["betas"][0], beta2=group["betas"][1], lr=group["lr"], weight_decay=0.0,
             eps=group["eps"], maximize=False)

    return loss, stats | clipped_step(agent, grad, args.max_grad_norm, adam_step)


def hms(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


if __name__ == "__main__":
    args = check_args(parse_flags(Args))
    S = args.num_seeds
    seeds = list(range(args.seed, args.seed + S))
    # each member is an ordinary run of its seed, in its own folder
    members = [replace(args, seed=seed) for seed in seeds]
    run_names, run_dirs, checkpoints = resolve_runs(args, members)
    checkpoint_paths = [os.path.join(run_dir, "checkpoint.pt") for run_dir in run_dirs]
    # the code each run started under, then this process's when it differs: a resume under other code says so
    this_code = code_version()
    code_versions = [list(dict.fromkeys([c["args"].get("code_version", "unknown") if c else this_code, this_code]))
                     for c in checkpoints]
    if len({c is None for c in checkpoints}) > 1 or len({c["iteration"] for c in checkpoints if c}) > 1:
        fail(f"the run folders of seeds {seeds[0]}..{seeds[-1]} hold checkpoints of different iterations (or only "
             "some do): resume them as single runs (--num-seeds 1), or delete them")
    stop_signals = stop_on_signals()

    # seeding and devices: every member draws from generators of its own, so a member's run does not depend on
    # the others
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.num_threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]  # weights, actions, minibatches
    # KL states from generators of their own, so that profiling on or off leaves training bit-for-bit the same
    kl_generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]

    # environments: member m's num_envs envs are envs m x num_envs ... (m + 1) x num_envs - 1 of one vector env
    quiet_mujoco()
    env_threads = args.env_threads or min(len(os.sched_getaffinity(0)), S * args.num_envs)
    envs = make_envs(args.env_id, args.num_envs, args.gamma, args.norm_stats, args.capture_video, run_dirs[0],
                     args.env_backend, env_threads, device, num_members=S)
    eval_envs = make_envs(args.env_id, args.eval_episodes, args.gamma, args.norm_stats, backend=args.env_backend,
                          env_threads=env_threads, device=device, num_members=S) if args.eval_every or args.save_model else None
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]

    agent = Agent(obs_dim, act_dim, generators, device)
    # Adam as CleanRL's, one fused kernel; the small-minibatch updates are overhead-bound
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    update_minibatch = torch.compile(minibatch_update_graph) if use_compile(args) else minibatch_update
    num_updates_max = args.update_epochs * args.num_minibatches
    kl_states = args.kl_num_states or args.batch_size
    store = SnapshotStore(num_updates_max, args.kl_every, S, kl_states, agent.params[:, :agent.actor_size], act_dim,
                          agent.actor_mean) if args.kl else None
    print(f"{run_dirs[0] if S == 1 else f'{len(run_dirs)} runs: ' + ', '.join(run_dirs)}: {args.env_id} on {device} "
          f"({args.env_backend}), {args.num_envs} envs x {args.num_steps} steps, {args.num_minibatches} minibatches x "
          f"{args.minibatch_size} x {args.update_epochs} epochs, {args.num_iterations} iterations"
          + (", compiled update" if update_minibatch is not minibatch_update else "")
          + (f", {S} seeds in lockstep" if S > 1 else "") + (f", KL store {store.nbytes() / 2**20:.0f} MiB" if store else ""),
          flush=True)

    # rollout storage, on the device
    shape = (args.num_steps, S, args.num_envs)
    rollout = Rollout(
        obs=torch.zeros(shape + (obs_dim,), device=device), actions=torch.zeros(shape + (act_dim,), device=device),
        logprobs=torch.zeros(shape, device=device), rewards=torch.zeros(shape, device=device),
        dones=torch.zeros(shape, device=device), values=torch.zeros(shape, device=device),
    )
    update_losses = torch.zeros(num_updates_max, S, device=device)
    update_anatomy = torch.zeros(num_updates_max, len(ANATOMY), S, device=device)

    # the runs, from their start or from their checkpoints
    next_obs, _ = envs.reset(seed=[seed + i for seed in seeds for i in range(args.num_envs)])
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device).view(S, args.num_envs, obs_dim)
    next_done = torch.zeros(S, args.num_envs, device=device)
    global_step, checkpointed, elapsed_s = 0, 0, 0.0
    recent_returns, iteration_wall_s = [[] for _ in seeds], []
    if checkpoints[0] is not None:
        if args.env_backend == "warp" and checkpoints[0]["envs"]["device"] != device.type:
            fail(f"{checkpoint_paths[0]} was written by MuJoCo Warp on the {checkpoints[0]['envs']['device']} device: a "
                 f"--env-backend warp run resumes only there (its simulation state and RNG are the device's), not on {device.type}")
        with torch.no_grad():
            agent.params.copy_(torch.cat([c["agent"]["params"] for c in checkpoints]))
        optimizer.load_state_dict(stacked_adam_state([c["optimizer"] for c in checkpoints]))
        for m, c in enumerate(checkpoints):
            set_env_state(envs, c["envs"], member=m)
            set_rng_states(c["rngs"], kl_generators[m], generators[m])
            next_obs[m], next_done[m] = c["next_obs"].to(device), c["next_done"].to(device)
            recent_returns[m] = c["recent_returns"]
        global_step, checkpointed = checkpoints[0]["global_step"], checkpoints[0]["iteration"]
        elapsed_s, iteration_wall_s = checkpoints[0]["wall_time_s"], checkpoints[0]["iteration_wall_s"]
        print(f"resuming {', '.join(run_dirs)} after iteration {checkpointed} (step {global_step}) from "
              f"{'its checkpoint' if S == 1 else 'their checkpoints'}", flush=True)
    if not optimizer.state:  # torch makes Adam's state at its first step; the compiled update needs it before
        optimizer.state[agent.params] = dict(step=torch.zeros((), device=device), exp_avg=torch.zeros_like(agent.params),
                                             exp_avg_sq=torch.zeros_like(agent.params))
    start_time = time.time() - elapsed_s
    session_wall_s = []

    def write_checkpoints(iteration):
        """One checkpoint per member, each what a single run of its seed would hold."""
        adam_state = optimizer.state_dict()
        for m in range(S):
            save_checkpoint(checkpoint_paths[m], dict(
                format=2, args=asdict(members[m]) | {"run_name": run_names[m], "code_version": code_versions[m][0]},
                iteration=iteration,
                global_step=global_step, wall_time_s=time.time() - start_time,
                agent={"params": agent.params[m:m + 1].detach().clone()}, optimizer=member_adam_state(adam_state, m),
                envs=env_state(envs, member=m), next_obs=next_obs[m], next_done=next_done[m],
                recent_returns=recent_returns[m], iteration_wall_s=iteration_wall_s,
                rngs=rng_states(kl_generators[m], generators[m])))
        return iteration

    def stop_for_signal():
        signum = stop_signals[0]
        print(f"stopped by {signum.name}; {', '.join(checkpoint_paths)} hold{'s' if S == 1 else ''} the run after "
              f"iteration {checkpointed}: {resume_hint(args, run_names)}", file=sys.stderr, flush=True)
        sys.exit(128 + signum.value)

    if checkpoints[0] is None:
        write_checkpoints(0)  # which also proves the run folders writable before any training
    need = S * disk_need_bytes(args, args.num_iterations - checkpointed, obs_dim, act_dim, os.path.getsize(checkpoint_paths[0]))
    free = shutil.disk_usage(run_dirs[0]).free
    if need > free:
        fail(f"--runs-dir {args.runs_dir}: the run needs about {need / 2**20:.1f} MiB more, only {free / 2**20:.1f} MiB "
             "are free; free space and rerun the same command, or pick another --runs-dir")

    if args.track:
        import wandb

        for m in range(S):
            wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                       config=vars(members[m]), name=run_names[m], monitor_gym=True, save_code=True, dir=run_dirs[m],
                       reinit="create_new")
    # On a resume, TensorBoard drops whatever the interrupted session logged after its checkpoint: no step twice.
    # The KL files of those iterations go too; the iterations redone write them again.
    if checkpoints[0] is not None:
        for run_dir in run_dirs:
            discard_kl_after(run_dir, checkpointed)
    writers = [SummaryWriter(d, purge_step=global_step + 1 if checkpoints[0] is not None else None) for d in run_dirs]
    if checkpoints[0] is None:
        for writer, member in zip(writers, members):
            write_tensorboard_layout(writer)
            write_hparams(writer, member)
            writer.add_text("hyperparameters", "|param|value|\n|-|-|\n%s" % (
                "\n".join([f"|{key}|{value}|" for key, value in vars(member).items()])))

    members_index = torch.arange(S, device=device).view(1, S, 1)
    try:
        for iteration in range(checkpointed + 1, args.num_iterations + 1):
            # a signal leaves at once when the checkpoint on disk is this iteration's start, else after the iteration
            if stop_signals and checkpointed == iteration - 1:
                stop_for_signal()
            iteration_start = time.time()
            # linear learning-rate decay: the first iteration at the full rate, the last at 1/num_iterations of it.
            # A float64 CPU tensor, which Adam takes as it takes the float, and a compiled update reads without
            # compiling again
            frac = 1.0 - (iteration - 1.0) / args.num_iterations if args.anneal_lr else 1.0
            optimizer.param_groups[0]["lr"] = torch.tensor(frac * args.learning_rate, dtype=torch.float64)

            next_obs, next_done, episodes = collect_rollout(envs, agent, rollout, next_obs, next_done, generators)
            if args.env_backend == "warp" and (problem := envs.physics_problem()):
                fail(f"iteration {iteration}: {problem}; stopping. Everything logged before it is in {', '.join(run_dirs)}")
            global_step += args.batch_size
            recent_returns = [[r for _, r, _ in member] or last for member, last in zip(episodes, recent_returns)]

            # advantages; the value of the state after the rollout closes the last unfinished episodes
            with torch.no_grad():
                next_value = agent.get_value(next_obs)
                advantages, returns = compute_gae(rollout.rewards, rollout.values, rollout.dones, next_value, next_done,
                                                  args.gamma, args.gae_lambda)

            batch, counts = flatten_transitions(rollout, advantages, returns)
            b_obs, _, _, _, b_returns, b_values = batch

            if args.kl:
                store.begin_iteration(*sample_states(b_obs, counts, kl_states, kl_generators))

            # update_epochs passes of minibatch updates over each member's batch
            clipfrac_sum = torch.zeros(S, device=device)
            update = 0
            for epoch in range(args.update_epochs):
                # one gather per epoch, then each minibatch is a contiguous slice: same samples, far fewer index ops
                indices, masks = minibatch_indices(counts, args.num_minibatches, args.minibatch_size, generators)
                shuffled = [x[members_index, indices] for x in batch]
                for minibatch in range(args.num_minibatches):
                    loss, stats = update_minibatch(agent, optimizer, [x[minibatch] for x in shuffled],
                                                   None if masks is None else masks[minibatch], args)
                    update_losses[update] = loss
                    update_anatomy[update] = torch.stack([stats[name] for name in ANATOMY])
                    clipfrac_sum += stats["clipfrac"]
                    update += 1
                    if args.kl:
                        store.record(update, epoch, minibatch)
                    if stop_signals and checkpointed == iteration - 1:
                        stop_for_signal()
                if args.target_kl is not None and stats["approx_kl"].item() > args.target_kl:
                    break

            nonfinite = (~torch.isfinite(update_losses[:update])).nonzero()
            if len(nonfinite):
                first, member = nonfinite[0].tolist()
                fail(f"non-finite loss at iteration {iteration} (seed {seeds[member]}, epoch {first // args.num_minibatches}, "
                     f"minibatch {first % args.num_minibatches}); stopping. Everything logged before it is in "
                     f"{', '.join(run_dirs)}")

            # logging, with CleanRL's tags, into each member's own run folder
            profiles = store.finish_iteration() if args.kl else None
            anatomy = update_anatomy[:update].cpu().numpy()
            sps = int(global_step / (time.time() - start_time))
            for m, writer in enumerate(writers):
                y_pred, y_true = b_values[m, :counts[m]].cpu().numpy(), b_returns[m, :counts[m]].cpu().numpy()
                var_y = np.var(y_true)
                explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
                for step, episodic_return, episodic_length in episodes[m]:
                    episode_step = global_step - args.batch_size + (step + 1) * args.num_envs
                    writer.add_scalar("charts/episodic_return", episodic_return, episode_step)
                    writer.add_scalar("charts/episodic_length", episodic_length, episode_step)
                writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"].item(), global_step)
                for name in ("value_loss", "policy_loss", "entropy", "old_approx_kl", "approx_kl"):
                    writer.add_scalar(f"losses/{name}", stats[name][m].item(), global_step)
                writer.add_scalar("losses/clipfrac", (clipfrac_sum[m] / update).item(), global_step)
                writer.add_scalar("losses/explained_variance", explained_var, global_step)
                writer.add_scalar("charts/SPS", sps, global_step)
                member_anatomy = {name: anatomy[:, i, m] for i, name in enumerate(ANATOMY)}
                for name, values in member_anatomy.items():
                    writer.add_scalar(f"update/{name}_mean", values.mean(), global_step)
                    writer.add_scalar(f"update/{name}_max", values.max(), global_step)
                if args.kl:
                    write_kl_profile(
                        writer, os.path.join(run_dirs[m], "kl", f"iter_{iteration:05d}.npz"),
                        profiles[m] | member_anatomy, global_step,
                        store.snapshots(m) if args.kl_save_snapshots else {}, iteration=iteration,
                        num_envs=args.num_envs, num_steps=args.num_steps, minibatch_size=args.minibatch_size,
                        num_minibatches=args.num_minibatches, num_updates=update, kl_every=args.kl_every,
                        num_transitions=counts[m], env_id=args.env_id, seed=seeds[m])

            # evaluation at equal env steps, on its own envs: training's envs, statistics and generators untouched
            line = ""
            if args.eval_every and (iteration % args.eval_every == 0 or iteration == args.num_iterations):
                eval_start = time.time()
                freeze_training_stats(eval_envs, envs, args.norm_stats, S, args.num_envs)
                eval_returns, eval_lengths = evaluate(agent, eval_envs, S, seeds, args.eval_deterministic)
                log_evaluation(writers, eval_returns, eval_lengths, global_step)
                line = f" eval {eval_returns.mean():.1f} ({time.time() - eval_start:.1f} s)"

            elapsed = time.time() - start_time
            # time left from this session's recent iterations; its first holds one-off costs (a compile)
            session_wall_s.append(time.time() - iteration_start)
            typical = np.median((session_wall_s[1:] or session_wall_s)[-10:])
            compiling = len(session_wall_s) == 1 and update_minibatch is not minibatch_update
            left = "estimating" if compiling and iteration < args.num_iterations else hms(
                typical * (args.num_iterations - iteration))
            line = (f"iter {iteration}/{args.num_iterations} step {global_step} SPS {sps}{' per seed' if S > 1 else ''} "
                    f"elapsed {hms(elapsed)} left {left}") + line
            if any(recent_returns):
                line += f" return {np.mean([np.mean(r) for r in recent_returns if r]):.1f}"
            if args.kl:
                line += (f" seq_kl {np.mean([p['seq_kl'].mean() for p in profiles]):.2e}"
                         f" KL(U||0) {np.mean([p['ref_kl'][0] for p in profiles]):.2e}")
            print(line, flush=True)
            for writer in writers:
                writer.flush()
            iteration_wall_s.append(session_wall_s[-1])
            if stop_signals or iteration == args.num_iterations or (
                    args.checkpoint_every and iteration % args.checkpoint_every == 0):
                checkpointed = write_checkpoints(iteration)
            if stop_signals:
                stop_for_signal()

        summaries = [dict(global_step=global_step, iterations=args.num_iterations, wall_time_s=time.time() - start_time,
                          iteration_wall_s=iteration_wall_s, final_returns=recent_returns[m], num_seeds=S,
                          code_version=code_versions[m][-1], code_versions=code_versions[m]) for m in range(S)]
        if device.type == "cuda":
            for summary in summaries:
                summary["cuda_max_memory_allocated"] = torch.cuda.max_memory_allocated(device)
        if args.save_model:
            for m in range(S):
                model_path = os.path.join(run_dirs[m], f"{args.exp_name}.pt")
                torch.save(dict(agent={"params": agent.params[m:m + 1].detach().cpu()}, obs_dim=obs_dim, act_dim=act_dim,
                                norm_stats=get_norm_stats(envs, member=m), args=asdict(members[m])), model_path)
                print(f"model saved to {model_path}")
            freeze_training_stats(eval_envs, envs, args.norm_stats, S, args.num_envs)
            eval_returns, _ = evaluate(agent, eval_envs, S, seeds, args.eval_deterministic)
            for m, writer in enumerate(writers):
                for idx, episodic_return in enumerate(eval_returns[m]):
                    writer.add_scalar("eval/saved_model_episodic_return", episodic_return, idx)
                summaries[m]["eval_returns"] = eval_returns[m].tolist()
            print(f"evaluation over {args.eval_episodes} episodes: " + ", ".join(
                f"{r.mean():.1f} +- {r.std():.1f}" for r in eval_returns))
        for run_dir, summary in zip(run_dirs, summaries):
            with open(os.path.join(run_dir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
    finally:
        envs.close()
        if eval_envs is not None:
            eval_envs.close()
        for writer in writers:
            writer.close()
