"""A finished single-seed run of ppo_continuous_kl.py trained again in the test process, from its args.json and the
script's own building blocks, in the script's order of random draws: the weights from the seed's generator, then per
iteration the rollout's actions from it, the KL states from a second generator of the same seed, and per epoch the
minibatch permutation from the first. What the script's loop decides on top of the building blocks (when it
snapshots the policy, which learning rate Adam gets, when --target-kl stops the epochs) is taken here from CleanRL's
definitions, not from the script, so the tests can hold the script's KL files and logs against it."""
import json
import os
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from ppo_kl.kl_profiling import sample_states
from ppo_continuous_kl import (Agent, Batch, Rollout, clip_grad_norm_per_member, collect_rollout, compute_gae,
                               flatten_transitions, loss_coefs, minibatch_indices, ppo_loss)
from ppo_kl.vector_envs import make_envs


@dataclass
class ReplayedIteration:
    iteration: int
    learning_rate: float  # what Adam was given for the iteration
    states: np.ndarray  # the KL states, their real rows [s, obs]
    means: np.ndarray  # the policy's means on them before the first update and after every update [U + 1, s, A]
    logstds: np.ndarray  # its log-stds [U + 1, A]
    approx_kl: list  # each update's approx_kl, as the loss computed it before the update
    anatomy: dict  # each update's grad_norm, actor_grad_norm, clip_scale, actor_step, clipfrac: lists, in float64
    params: torch.Tensor  # all weights at the iteration's end [1, P]
    dones: np.ndarray  # the rollout's dones [T, N]: dones[t] says obs[t] ended an episode
    next_done: np.ndarray  # [N], whether the rollout's last step ended an episode

    @property
    def num_updates(self):
        return len(self.approx_kl)


def replay(run_dir):
    """Replays every iteration of the run in run_dir; returns a ReplayedIteration for each."""
    with open(os.path.join(run_dir, "args.json")) as f:
        args = SimpleNamespace(**json.load(f))
    # the replay runs on the CPU, so it matches runs made there (--no-cuda) bit for bit
    assert args.num_seeds == 1 and not args.cuda, "replays single runs made with --no-cuda"
    threads = torch.get_num_threads()
    torch.set_num_threads(args.num_threads)  # as the script: float32 sums split alike
    try:
        return _replay(args)
    finally:
        torch.set_num_threads(threads)


def _replay(args):
    generators = [torch.Generator().manual_seed(args.seed)]  # weights, actions, minibatches
    kl_generators = [torch.Generator().manual_seed(args.seed)]  # KL states
    envs = make_envs(args.env_id, args.num_envs, args.gamma, args.norm_stats, backend=args.env_backend,
                     env_threads=args.env_threads or 1)
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    agent = Agent(obs_dim, act_dim, generators)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    shape = (args.num_steps, 1, args.num_envs)
    rollout = Rollout(obs=torch.zeros(shape + (obs_dim,)), actions=torch.zeros(shape + (act_dim,)),
                      logprobs=torch.zeros(shape), rewards=torch.zeros(shape), dones=torch.zeros(shape),
                      values=torch.zeros(shape))
    next_obs, _ = envs.reset(seed=[args.seed + i for i in range(args.num_envs)])
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32).view(1, args.num_envs, obs_dim)
    next_done = torch.zeros(1, args.num_envs)
    members_index = torch.zeros(1, 1, 1, dtype=torch.long)
    replayed = []
    try:
        for iteration in range(1, args.num_iterations + 1):
            if args.anneal_lr:  # CleanRL: frac = 1 - (iteration - 1) / num_iterations of the initial rate
                optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / args.num_iterations) * args.learning_rate
            next_obs, next_done, _ = collect_rollout(envs, agent, rollout, next_obs, next_done, generators)
            with torch.no_grad():
                advantages, returns = compute_gae(rollout.rewards, rollout.values, rollout.dones,
                                                  agent.get_value(next_obs), next_done, args.gamma, args.gae_lambda)
            batch, counts = flatten_transitions(rollout, advantages, returns)
            states, (real,) = sample_states(batch[0], counts, args.kl_num_states or args.batch_size, kl_generators)
            states = states[:, :real]

            def policy():
                with torch.no_grad():
                    return agent.actor_mean(states)[0].clone(), agent.layer("actor_logstd", agent.params)[0].clone()

            def actor_weights():  # by layer name, in float64: independent of the flat layout's slicing
                layers = [agent.layer(f"actor_mean.{i}", agent.params) for i in (0, 2, 4)]
                return torch.cat([w.detach().double().flatten() for layer in layers for w in layer]
                                 + [agent.layer("actor_logstd", agent.params).detach().double().flatten()])

            def norm(x):
                return float(np.sqrt(np.sum(x.double().numpy() ** 2)))

            snapshots, approx_kl = [policy()], []
            anatomy = {k: [] for k in ("grad_norm", "actor_grad_norm", "clip_scale", "actor_step", "clipfrac")}
            for epoch in range(args.update_epochs):
                indices, masks = minibatch_indices(counts, args.num_minibatches, args.minibatch_size, generators)
                shuffled = [x[members_index, indices] for x in batch]
                for minibatch in range(args.num_minibatches):
                    loss, stats = ppo_loss(agent, Batch(*(x[minibatch] for x in shuffled)),
                                           None if masks is None else masks[minibatch], **loss_coefs(args))
                    optimizer.zero_grad()
                    loss.sum().backward()
                    grad = {name: agent.layer(name, agent.params.grad) for name, *_ in agent.layout}
                    grad_norm = norm(torch.cat([g.flatten() for layer in grad.values() for g in layer]))
                    actor_grad_norm = norm(torch.cat([g.flatten() for name, layer in grad.items()
                                                      if name.startswith("actor") for g in layer]))
                    before = actor_weights()
                    clip_grad_norm_per_member(agent.params.grad, args.max_grad_norm)
                    optimizer.step()
                    snapshots.append(policy())
                    approx_kl.append(stats["approx_kl"].item())
                    # torch.nn.utils.clip_grad_norm_'s factor: max_norm / (norm + 1e-6), at most 1
                    anatomy["clip_scale"].append(min(1.0, args.max_grad_norm / (grad_norm + 1e-6)))
                    anatomy["grad_norm"].append(grad_norm)
                    anatomy["actor_grad_norm"].append(actor_grad_norm)
                    anatomy["actor_step"].append(float(torch.linalg.vector_norm(actor_weights() - before)))
                    anatomy["clipfrac"].append(stats["clipfrac"].item())
                # CleanRL: once per epoch, on the approx_kl of its last minibatch
                if args.target_kl is not None and approx_kl[-1] > args.target_kl:
                    break
            replayed.append(ReplayedIteration(
                iteration=iteration, learning_rate=optimizer.param_groups[0]["lr"], states=states[0].numpy(),
                means=torch.stack([m for m, _ in snapshots]).numpy(),
                logstds=torch.stack([s for _, s in snapshots]).numpy(), approx_kl=approx_kl, anatomy=anatomy,
                params=agent.params.detach().clone(), dones=rollout.dones[:, 0].numpy().copy(),
                next_done=next_done[0].numpy().copy()))
    finally:
        envs.close()
    return replayed
