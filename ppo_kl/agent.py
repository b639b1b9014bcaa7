"""CleanRL's PPO agent (64-64 tanh actor and critic, state-independent log-std) for a population of S independent
runs, its weights one flat parameter [S, P] with a leading member axis."""
import math

import numpy as np
import torch
import torch.nn as nn


def layer_init(weight, bias, std=np.sqrt(2), bias_const=0.0, generator=None):
    torch.nn.init.orthogonal_(weight, std, generator=generator)
    torch.nn.init.constant_(bias, bias_const)


def agent_layout(obs_dim, act_dim):
    """Name, shape and init gain of every weight of CleanRL's agent, the actor first and its log-std last among
    the actor's: a snapshot for the KL profile is then one contiguous slice."""
    return [("actor_mean.0", (64, obs_dim), np.sqrt(2)), ("actor_mean.2", (64, 64), np.sqrt(2)),
            ("actor_mean.4", (act_dim, 64), 0.01), ("actor_logstd", (act_dim,), None),
            ("critic.0", (64, obs_dim), np.sqrt(2)), ("critic.2", (64, 64), np.sqrt(2)), ("critic.4", (1, 64), 1.0)]


def mlp(x, layers):
    """tanh MLP on [S, B, in] with per-member layers [(weight [S, out, in], bias [S, out]), ...]."""
    for i, (weight, bias) in enumerate(layers):
        x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        x = torch.tanh(x) if i < len(layers) - 1 else x
    return x


class Agent(nn.Module):
    """CleanRL's agent (64-64 tanh actor and critic, state-independent log-std) for S = --num-seeds independent
    runs at once. Every weight carries a leading member axis, and all of them are views of one flat parameter
    [S, P]: a layer is one batched matmul for every member, a member's global gradient norm is one reduction over
    its row, and Adam is one fused kernel, elementwise, so each member's update is its own. Member m is
    initialised as CleanRL initialises one agent (orthogonal weights, zero biases), from its own generator."""

    def __init__(self, obs_dim, act_dim, generators=(None,), device=None):
        super().__init__()
        self.layout, self.views = agent_layout(obs_dim, act_dim), {}
        sizes = [math.prod(shape) + (shape[0] if len(shape) == 2 else 0) for _, shape, _ in self.layout]
        # each member's row padded to 64 bytes: every member's weights then sit at the same memory alignment, and
        # vectorised kernels round its arithmetic alike wherever it is in the population
        self.params = nn.Parameter(torch.zeros(len(generators), -(-sum(sizes) // 16) * 16, device=device))
        self.actor_size = sum(sizes[:4])
        offset = 0
        for (name, shape, _), size in zip(self.layout, sizes):
            self.views[name] = (offset, shape)
            offset += size
        with torch.no_grad():
            for m, generator in enumerate(generators):
                for name, shape, gain in self.layout:
                    if gain is not None:
                        weight, bias = self.layer(name, self.params)
                        layer_init(weight[m], bias[m], gain, generator=generator)

    def layer(self, name, params):
        """(weight [n, out, in], bias [n, out]) of layer `name`, or the log-std [n, A], as views of params [n, P]."""
        offset, shape = self.views[name]
        if len(shape) == 1:
            return params[:, offset:offset + shape[0]]
        size = math.prod(shape)
        return (params[:, offset:offset + size].view(-1, *shape), params[:, offset + size:offset + size + shape[0]])

    def actor_mean(self, x, params=None):
        """The action means of observations x [S, B, obs]; of the weights `params` [S, P or actor_size] if given."""
        params = self.params if params is None else params
        return mlp(x, [self.layer(f"actor_mean.{i}", params) for i in (0, 2, 4)])

    def snapshot_means(self, states, weights):
        """The action means of n weight sets of every member's actor, weights [n, S, actor_size], each on its
        member's states [S, St, obs]: [n, S, St, A]. actor_mean's arithmetic, with the first layer, most of the
        work where observations are wide, as one matmul per member over all n weight sets instead of n small ones
        over n copies of the states (on a CPU about twice as fast for Humanoid's 348 inputs)."""
        n, members = weights.shape[:2]
        weights = weights.reshape(n * members, -1)
        (w1, b1), *layers = [self.layer(f"actor_mean.{i}", weights) for i in (0, 2, 4)]
        hidden, inputs = w1.shape[1:]
        w1 = w1.view(n, members, hidden, inputs)
        x = torch.stack([(states[m] @ w1[:, m].reshape(n * hidden, inputs).T).view(-1, n, hidden).transpose(0, 1)
                         for m in range(members)], 1)
        x = torch.tanh(x.reshape(n * members, -1, hidden) + b1.unsqueeze(1))
        return mlp(x, layers).view(n, members, states.shape[1], -1)

    def get_value(self, x, params=None):
        params = self.params if params is None else params
        return mlp(x, [self.layer(f"critic.{i}", params) for i in (0, 2, 4)]).squeeze(-1)

    def get_action_and_value(self, x, action=None, generators=None, params=None):
        """On x [S, B, obs]: actions (sampled from each member's generator unless given), their log-probabilities,
        the policy's entropy and the values, each [S, B, ...], of the weights `params` if given. The Gaussian is
        written out rather than built as a torch.distributions object: the same expressions, without the per-call
        overhead that dominates small minibatch updates."""
        params = self.params if params is None else params
        action_mean = self.actor_mean(x, params)
        action_logstd = self.layer("actor_logstd", params).unsqueeze(1).expand_as(action_mean)
        action_std = torch.exp(action_logstd)
        if action is None:
            noise = torch.stack([torch.randn(action_mean.shape[1:], generator=g, device=x.device) for g in generators])
            action = action_mean + action_std * noise
        logprob = (-((action - action_mean) ** 2) / (2 * action_std**2) - action_logstd
                   - math.log(math.sqrt(2 * math.pi)))
        entropy = 0.5 + 0.5 * math.log(2 * math.pi) + action_logstd
        return action, logprob.sum(-1), entropy.sum(-1), self.get_value(x, params)

    @torch.no_grad()
    def acting_step(self, generators):
        """get_action_and_value(x, generators=generators) for a rollout, during which the weights stay put: returns
        act(x, action, logprob, value), which writes a step's actions [S, B, A], log-probabilities and values [S, B]
        into the given tensors (the rollout's storage). The expressions and draws are get_action_and_value's, so the
        numbers are the same bit for bit, but at one env its cost is per-op overhead, so: the layers' views, the
        std and 2 std^2 are taken once, not at every step; every intermediate goes into a buffer of its own (out=,
        in place) instead of a fresh tensor; the entropy is left out. Call it under torch.no_grad()."""
        params = self.params.detach()

        def prepared(net):
            return [(weight.transpose(1, 2), bias.unsqueeze(1))
                    for weight, bias in (self.layer(f"{net}.{i}", params) for i in (0, 2, 4))]

        actor, critic = prepared("actor_mean"), prepared("critic")
        logstd = self.layer("actor_logstd", params).unsqueeze(1)
        std = torch.exp(logstd)
        two_var = 2 * std**2
        log_sqrt_2pi = math.log(math.sqrt(2 * math.pi))
        hidden, mean, noise, scratch = None, None, None, None

        def mlp_into(x, layers, out):
            for (weight, bias), h in zip(layers[:-1], hidden):
                x = torch.tanh_(torch.baddbmm(bias, x, weight, out=h))
            weight, bias = layers[-1]
            torch.baddbmm(bias, x, weight, out=out)

        def act(x, action, logprob, value):
            nonlocal hidden, mean, noise, scratch
            if mean is None or mean.shape != action.shape:
                hidden = [action.new_empty(*action.shape[:2], bias.shape[-1]) for _, bias in actor[:-1]]
                mean, noise, scratch = (torch.empty_like(action) for _ in range(3))
            mlp_into(x, actor, mean)
            for m, generator in enumerate(generators):
                torch.randn(noise.shape[1:], generator=generator, out=noise[m])
            torch.add(mean, torch.mul(std, noise, out=scratch), out=action)
            torch.sub(action, mean, out=scratch).pow_(2).neg_().div_(two_var).sub_(logstd).sub_(log_sqrt_2pi)
            torch.sum(scratch, -1, out=logprob)
            mlp_into(x, critic, value.unsqueeze(-1))

        return act
