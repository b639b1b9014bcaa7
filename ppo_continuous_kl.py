# PPO-Clip for continuous actions, following CleanRL's ppo_continuous_action.py, on Gymnasium 1.x,
# with the policy snapshotted after every minibatch update to profile KL divergences within each iteration
# (Honari, Creus Castanyer, Castro, Berseth: "Training PPO-Clip with Parallelized Data Generation").
import os
import random
import time
from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple, Optional

import numpy as np
import torch
import torch.optim as optim
import tyro
from torch.optim.adam import adam

from ppo_kl.agent import Agent
from ppo_kl.flags import resolve_args, parse_flags, use_compile
from ppo_kl.kl_profiling import SnapshotStore, sample_states
from ppo_kl.run_record import ANATOMY
from ppo_kl.run_session import RunSession
from ppo_kl.vector_envs import make_envs, quiet_mujoco


@dataclass
class Args:
    """PPO-Clip (CleanRL's ppo_continuous_action.py, same defaults) with per-minibatch KL profiling, for one seed
    or a population of seeds trained in lockstep in one process (--num-seeds).

    Differs from CleanRL where Gymnasium 1.x or the study requires it: env_id defaults to HalfCheetah-v5; autoreset
    is next-step, and the reset step after each episode's end is left out of the batch (it is no transition), so a
    minibatch can hold a few samples fewer than the minibatch size; torch runs one CPU thread by default (two make
    these small networks several times slower on a 2-core CPU); the MuJoCo envs are stepped by mujoco.batch (the
    same transitions bit for bit) and long runs compile their minibatch update; actions are sampled from a generator
    per seed; saving the model (--save-model) also saves the normalisation statistics and evaluates with them frozen;
    evaluations during training (--eval-every) run on separate envs at equal env steps; a run checkpoints itself,
    every iteration by default, stops cleanly on SIGTERM/SIGINT and resumes exactly when rerun; upload_model and
    hf_entity are not offered.
    """

    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """experiment label, part of the default run name"""
    seed: int = 1
    """seeds the run's generators and envs (env i gets seed + i)"""
    num_seeds: int = 1
    """train the seeds seed, seed+1, ..., seed+S-1 in lockstep in one process: S independent runs (own envs, statistics, weights, optimiser, random streams, run folder), each the same algorithm as a single run of its seed: on a GPU the way to fill the device, on a CPU about half the memory of S processes but no time per seed saved. With S > 1, a --run-name must contain {seed}"""  # noqa: E501
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
    """at the end, save the agent and its normalisation statistics into the run folder, then evaluate it for --eval-episodes episodes (TensorBoard: eval/saved_model_episodic_return)"""  # noqa: E501
    eval_every: int = 0
    """every N iterations and after the last, evaluate the policy for --eval-episodes episodes on separate envs of the same backend with the training normalisation statistics frozen; TensorBoard: eval/episodic_return (mean) and eval/episodic_returns (each episode) at that global_step, so that different settings compare at equal env steps (0: off)"""  # noqa: E501
    eval_episodes: int = 10
    """episodes of each evaluation (--eval-every, --save-model), run at once on as many envs"""
    eval_deterministic: bool = False
    """evaluate with the mean action instead of sampling actions as the policy trains"""
    runs_dir: str = "runs"
    """folder that receives one sub-folder per run (TensorBoard events, args.json, checkpoint.pt, kl/, model)"""
    run_name: Annotated[Optional[str], tyro.conf.arg(
        metavar="STR", help_behavior_hint="(default: {env_id}__{exp_name}__{seed}__{unix time}, as CleanRL)")] = None
    """name of the run folder inside --runs-dir; {seed} in it is replaced by the run's seed. Without it, the command continues the latest unfinished run of the same flags that was started without one, and says which"""  # noqa: E501
    num_threads: int = 1
    """torch intra-op CPU threads (CleanRL: torch's default, i.e. all cores)"""
    compile: Literal["auto", "on", "off"] = "auto"
    """compile each minibatch update (loss, gradient, clipping, Adam step) into one graph with torch.compile, which makes small-minibatch updates about twice as fast after a one-off compile of about half a minute (on a CPU it needs a C++ compiler). auto: on when the run has at least 50,000 minibatch updates and a compiler is present, else off, saying why"""  # noqa: E501
    checkpoint_every: int = 1
    """write the run folder's checkpoint.pt before the first iteration, then every N iterations and at the last (0: only those two). It holds everything an exact resume needs: agent, optimiser, envs' simulation and normalisation state, all RNGs (its cost: docs/benchmarks.md)"""  # noqa: E501
    resume: bool = False
    """continue the run --runs-dir/--run-name (without --run-name: the latest unfinished run of the same flags in --runs-dir) from its checkpoint.pt, and fail when there is none (rerunning the same command resumes too); on a CPU the result is the same bit for bit as an uninterrupted run. Flags must match the checkpoint's, except --cuda, --num-threads, --compile, --env-threads, --checkpoint-every, --runs-dir, --save-model, --eval-episodes and the tracking flags"""  # noqa: E501

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
    """stop an iteration's epochs once the approximate KL exceeds this, checked once per epoch on its last minibatch (CleanRL's semantics; one seed only)"""  # noqa: E501
    norm_stats: Literal["per-env", "shared"] = "per-env"
    """observation/reward normalisation statistics: one running mean/var per env (CleanRL's, and the paper's), or one for all of a run's envs"""  # noqa: E501
    env_backend: Literal["auto", "gymnasium", "mujoco-batch", "warp"] = "auto"
    """who steps the envs. auto: mujoco-batch for the envs it supports, else gymnasium. gymnasium: Gymnasium's SyncVectorEnv (the reference). mujoco-batch: MuJoCo's batched stepping (mujoco.batch), several times faster and equal to gymnasium bit for bit, for HalfCheetah-v5, Hopper-v5, Walker2d-v5, Ant-v5 and Humanoid-v5. warp: MuJoCo Warp on the training device (a GPU; Warp's CPU device is slow), in float32 and with the wrappers in torch, for HalfCheetah-v5, Hopper-v5, Walker2d-v5 and Humanoid-v5 (with Newton in place of its PGS solver; Ant-v5 refused); needs pip install -r requirements-warp.txt, and its kernels compile on first use (about a minute, cached in ~/.cache/warp)"""  # noqa: E501
    env_threads: int = 0
    """threads of --env-backend mujoco-batch (0: one per core this process may use, at most one per env; the sweeps give each run one core's worth, as they run one per core)"""  # noqa: E501

    # KL profiling
    kl: bool = True
    """profile seq_kl and ref_kl over every iteration's minibatch updates"""
    kl_num_states: Annotated[Optional[int], tyro.conf.arg(
        metavar="INT", help_behavior_hint="(default: 1024, or the whole batch when smaller)")] = None
    """rollout states the KL is averaged over, a fixed random sample per iteration (0: all)"""
    kl_every: int = 1
    """keep every K-th snapshot (and always the last). Memory: (updates/K + 2) x states x action-dim float32 means per seed, e.g. 0.65 GiB for Humanoid-v5 at 10000 updates and 1024 states"""  # noqa: E501
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
    if getattr(envs, "on_device", False):  # --env-backend warp: tensors in and out, no host round trip
        return collect_rollout_on_device(envs, agent, rollout, next_obs, next_done, generators)
    num_steps, num_seeds, num_envs = rollout.rewards.shape
    device = next_obs.device
    on_cpu = device.type == "cpu"
    act = agent.acting_step(generators)
    # At one env a numpy <-> torch conversion costs about as much as a layer of the policy, so the envs' outputs
    # are written into numpy views of the storage and the policy reads its observations from there; on a GPU they
    # go into host tensors, moved over once at the end
    obs, dones, rewards = (x if on_cpu else torch.zeros(x.shape) for x in (rollout.obs, rollout.dones, rollout.rewards))
    obs_np = obs.numpy().reshape(num_steps, num_seeds * num_envs, -1)
    dones_np, rewards_np = (x.numpy().reshape(num_steps, -1) for x in (dones, rewards))
    obs_steps = obs.unbind(0)
    actions, logprobs, values = (x.unbind(0) for x in (rollout.actions, rollout.logprobs, rollout.values))
    actions_np = rollout.actions.numpy().reshape(num_steps, num_seeds * num_envs, -1) if on_cpu else None
    next_obs, next_done = next_obs.flatten(0, 1).cpu().numpy(), next_done.flatten().cpu().numpy()
    episodes = [[] for _ in range(num_seeds)]
    with torch.no_grad():
        for step in range(num_steps):
            obs_np[step], dones_np[step] = next_obs, next_done
            act(obs_steps[step] if on_cpu else obs_steps[step].to(device), actions[step], logprobs[step],
                values[step])
            action = actions_np[step] if on_cpu else actions[step].flatten(0, 1).cpu().numpy()
            next_obs, reward, terminations, truncations, infos = envs.step(action)
            next_done = np.logical_or(terminations, truncations)
            rewards_np[step] = reward
            if "episode" in infos:
                ended_episode = infos["episode"]
                for i in np.flatnonzero(infos["_episode"]):
                    episodes[i // num_envs].append((step, float(ended_episode["r"][i]), int(ended_episode["l"][i])))
    if not on_cpu:
        for storage, host in zip((rollout.obs, rollout.dones, rollout.rewards), (obs, dones, rewards)):
            storage.copy_(host)
    return (torch.as_tensor(next_obs, dtype=torch.float32, device=device).view(num_seeds, num_envs, -1),
            torch.as_tensor(next_done, dtype=torch.float32, device=device).view(num_seeds, num_envs), episodes)


def collect_rollout_on_device(envs, agent, rollout, next_obs, next_done, generators):
    """collect_rollout for envs that take and return tensors on the device (--env-backend warp)."""
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
        obs, reward, terminations, truncations, infos = envs.step(action.flatten(0, 1))
        next_obs, next_done = obs.view(next_obs.shape), (terminations | truncations).float().view(next_done.shape)
        rollout.rewards[step] = reward.view(num_seeds, num_envs)
        ended[step], ended_returns[step], ended_lengths[step] = (
            infos[k].view(num_seeds, num_envs) for k in ("episode_done", "episode_return", "episode_length"))
    for step, member, env in ended.nonzero().tolist():  # the episodes that ended, read in one go
        episodes[member].append((step, ended_returns[step, member, env].item(),
                                 ended_lengths[step, member, env].item()))
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


class Batch(NamedTuple):
    """The transitions PPO learns from, [S, rows, ...]: a member's rows, or a minibatch's."""
    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor


def flatten_transitions(rollout, advantages, returns):
    """Each member's Batch over its (step, env) pairs that are real transitions, in a single run's (step, env)
    order: reset steps of next-step autoreset are left out. Members can have different counts: rows are
    [S, max count, ...], each member's real ones first; counts [S]."""
    valid = (rollout.dones == 0).transpose(0, 1).flatten(1)  # [S, T x N]
    counts = valid.sum(1)
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)[:, : int(counts.max())]

    def flat(x):
        x = x.transpose(0, 1).flatten(1, 2)  # [S, T x N, ...]
        return torch.take_along_dim(x, order.view(*order.shape, *[1] * (x.dim() - 2)), dim=1)

    return Batch(*map(flat, (rollout.obs, rollout.actions, rollout.logprobs, advantages, returns, rollout.values))), \
        counts.tolist()


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


def ppo_loss(agent, minibatch, mask, clip_coef, norm_adv, clip_vloss, ent_coef, vf_coef, params=None):
    """CleanRL's clipped surrogate + clipped value loss on one minibatch (a Batch), of the agent's weights or
    `params`. Written for one run; tensors carry a leading member axis [S, B, ...], and every mean is over the
    member's own samples (`mask`: its real ones when minibatches are padded), so each member's loss [S] is what a
    single run computes."""
    def mean(x):
        return x.mean(-1) if mask is None else (x * mask).sum(-1) / mask.sum(-1)

    _, newlogprob, entropy, newvalue = agent.get_action_and_value(minibatch.obs, minibatch.actions, params=params)
    logratio = newlogprob - minibatch.logprobs
    ratio = logratio.exp()
    advantages, returns, old_values = minibatch.advantages, minibatch.returns, minibatch.values
    with torch.no_grad():
        # two estimators of KL(old || new) from the ratio: -log r, and the unbiased, lower-variance (r - 1) - log r
        old_approx_kl = mean(-logratio)
        approx_kl = mean((ratio - 1) - logratio)
        clipfrac = mean(((ratio - 1.0).abs() > clip_coef).float())
    if norm_adv:
        centred = advantages - mean(advantages).unsqueeze(-1)
        n = advantages.shape[-1] if mask is None else mask.sum(-1)
        std = torch.sqrt(mean(centred**2) * n / (n - 1))  # unbiased, as Tensor.std
        advantages = centred / (std.unsqueeze(-1) + 1e-8)
    pg_loss = mean(torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)))
    if clip_vloss:
        v_loss_unclipped = (newvalue - returns) ** 2
        v_clipped = old_values + torch.clamp(newvalue - old_values, -clip_coef, clip_coef)
        v_loss = 0.5 * mean(torch.max(v_loss_unclipped, (v_clipped - returns) ** 2))
    else:
        v_loss = 0.5 * mean((newvalue - returns) ** 2)
    entropy_loss = mean(entropy)
    loss = pg_loss - ent_coef * entropy_loss + v_loss * vf_coef
    return loss, dict(policy_loss=pg_loss, value_loss=v_loss, entropy=entropy_loss,
                      old_approx_kl=old_approx_kl, approx_kl=approx_kl, clipfrac=clipfrac)


def loss_coefs(args):
    """The flags ppo_loss reads."""
    return dict(clip_coef=args.clip_coef, norm_adv=args.norm_adv, clip_vloss=args.clip_vloss, ent_coef=args.ent_coef,
                vf_coef=args.vf_coef)


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
    loss, stats = ppo_loss(agent, minibatch, mask, **loss_coefs(args))
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
        loss, stats = ppo_loss(agent, minibatch, mask, **loss_coefs(args), params=params)
        return loss.sum(), (loss, stats)

    grad, (loss, stats) = torch.func.grad(summed_loss, has_aux=True)(agent.params)
    group, state = optimizer.param_groups[0], optimizer.state[agent.params]

    def adam_step():
        adam([agent.params], [grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]], foreach=False,
             amsgrad=False, beta1=group["betas"][0], beta2=group["betas"][1], lr=group["lr"], weight_decay=0.0,
             eps=group["eps"], maximize=False)

    return loss, stats | clipped_step(agent, grad, args.max_grad_norm, adam_step)


def ppo_update(agent, optimizer, update_minibatch, batch, counts, args, generators, on_update=None):
    """CleanRL's update epochs: update_epochs passes over each member's batch in num_minibatches minibatches,
    each an update_minibatch (minibatch_update, or minibatch_update_graph compiled), stopping at --target-kl.
    on_update(update, epoch, minibatch) runs after each update (the KL snapshot). Returns each update's losses
    [U, S] and ANATOMY [U, len(ANATOMY), S], and the last minibatch's statistics."""
    members = torch.arange(len(counts), device=batch.obs.device).view(1, -1, 1)
    losses, anatomy = [], []
    for epoch in range(args.update_epochs):
        # one gather per epoch, then each minibatch is a contiguous slice: same samples, far fewer index ops
        indices, masks = minibatch_indices(counts, args.num_minibatches, args.minibatch_size, generators)
        shuffled = Batch(*(x[members, indices] for x in batch))
        for minibatch in range(args.num_minibatches):
            loss, stats = update_minibatch(agent, optimizer, Batch(*(x[minibatch] for x in shuffled)),
                                           None if masks is None else masks[minibatch], args)
            losses.append(loss)
            anatomy.append(torch.stack([stats[name] for name in ANATOMY]))
            if on_update is not None:
                on_update(len(losses), epoch, minibatch)
        if args.target_kl is not None and stats["approx_kl"].item() > args.target_kl:
            break
    return torch.stack(losses), torch.stack(anatomy), stats


if __name__ == "__main__":
    args = resolve_args(parse_flags(Args))
    session = RunSession(args)  # the run folders (one per seed), before anything expensive
    seeds, S = session.seeds, args.num_seeds

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
    envs = make_envs(args.env_id, args.num_envs, args.gamma, args.norm_stats, args.capture_video,
                     session.run_dirs[0], args.env_backend, env_threads, device, num_members=S)
    eval_envs = make_envs(args.env_id, args.eval_episodes, args.gamma, args.norm_stats, backend=args.env_backend,
                          env_threads=env_threads, device=device, num_members=S) if args.eval_every or args.save_model \
        else None
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]

    compiled = use_compile(args)  # before Adam, whose fused CPU kernel settles torch's compile cache folder
    agent = Agent(obs_dim, act_dim, generators, device)
    # Adam as CleanRL's, one fused kernel; the small-minibatch updates are overhead-bound
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    update_minibatch = torch.compile(minibatch_update_graph) if compiled else minibatch_update
    kl_num_states = args.kl_num_states or args.batch_size
    store = SnapshotStore(args.update_epochs * args.num_minibatches, args.kl_every, S, kl_num_states,
                          agent.params[:, :agent.actor_size], act_dim, agent.snapshot_means) if args.kl else None

    # rollout storage, on the device
    shape = (args.num_steps, S, args.num_envs)
    rollout = Rollout(
        obs=torch.zeros(shape + (obs_dim,), device=device), actions=torch.zeros(shape + (act_dim,), device=device),
        logprobs=torch.zeros(shape, device=device), rewards=torch.zeros(shape, device=device),
        dones=torch.zeros(shape, device=device), values=torch.zeros(shape, device=device),
    )

    # the runs, from their start or from their checkpoints
    next_obs, _ = envs.reset(seed=[seed + i for seed in seeds for i in range(args.num_envs)])
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device).view(S, args.num_envs, obs_dim)
    next_done = torch.zeros(S, args.num_envs, device=device)
    try:
        first_iteration, global_step, next_obs, next_done = session.start(
            agent, optimizer, envs, eval_envs, generators, kl_generators, next_obs, next_done, compiled, store)
        for iteration in range(first_iteration, args.num_iterations + 1):
            session.stop_if_signalled(iteration)
            iteration_start = time.time()
            # linear learning-rate decay: the first iteration at the full rate, the last at 1/num_iterations of it.
            # A float64 CPU tensor, which Adam takes as it takes the float, and a compiled update reads without
            # compiling again
            frac = 1.0 - (iteration - 1.0) / args.num_iterations if args.anneal_lr else 1.0
            optimizer.param_groups[0]["lr"] = torch.tensor(frac * args.learning_rate, dtype=torch.float64)

            next_obs, next_done, episodes = collect_rollout(envs, agent, rollout, next_obs, next_done, generators)
            global_step += args.batch_size

            # advantages; the value of the state after the rollout closes the last unfinished episodes
            with torch.no_grad():
                next_value = agent.get_value(next_obs)
                advantages, returns = compute_gae(rollout.rewards, rollout.values, rollout.dones, next_value,
                                                  next_done, args.gamma, args.gae_lambda)
            batch, counts = flatten_transitions(rollout, advantages, returns)

            if args.kl:
                store.begin_iteration(*sample_states(batch.obs, counts, kl_num_states, kl_generators))

            def after_update(update, epoch, minibatch):
                if args.kl:
                    store.record(update, epoch, minibatch)
                session.stop_if_signalled(iteration)

            losses, anatomy, stats = ppo_update(agent, optimizer, update_minibatch, batch, counts, args, generators,
                                                after_update)
            profiles = store.finish_iteration() if args.kl else None
            session.end_iteration(iteration, global_step, next_obs, next_done, episodes, batch, counts, losses,
                                  anatomy, stats, profiles, store, iteration_start)
        session.finish()
    finally:
        if store is not None:
            store.close()
        envs.close()
        if eval_envs is not None:
            eval_envs.close()
        session.close()
