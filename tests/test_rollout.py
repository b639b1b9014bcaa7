"""collect_rollout's acting step and host loop against the plain per-step loop they stand for: get_action_and_value
on each step's observation, every output converted to torch and indexed into the storage."""
import numpy as np
import pytest
import torch
from torch.distributions import Normal

from ppo_continuous_kl import Agent, Rollout, collect_rollout
from ppo_kl.vector_envs import make_envs


def generators(seeds):
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def test_acting_step_is_get_action_and_value_bit_for_bit():
    agent = Agent(11, 3, generators([0, 1]))
    with torch.no_grad():
        agent.layer("actor_logstd", agent.params).uniform_(-1, 0.5)
    x = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(2))
    act, reference = agent.acting_step(generators([7, 8])), generators([7, 8])
    action, logprob, value = torch.zeros(2, 5, 3), torch.zeros(2, 5), torch.zeros(2, 5)
    for _ in range(3):  # the draws go on from the generators' state, as at every step of a rollout
        with torch.no_grad():
            act(x, action, logprob, value)
            expected, expected_logprob, _, expected_value = agent.get_action_and_value(x, generators=reference)
        assert torch.equal(action, expected) and torch.equal(logprob, expected_logprob)
        assert torch.equal(value, expected_value)
    # and the log-probability is the Gaussian's, computed independently
    with torch.no_grad():
        std = agent.layer("actor_logstd", agent.params).exp().unsqueeze(1).expand_as(action)
        torch.testing.assert_close(logprob, Normal(agent.actor_mean(x), std).log_prob(action).sum(-1),
                                   rtol=1e-6, atol=1e-5)


def step_by_step(envs, agent, rollout, next_obs, next_done, gens):
    """The rollout loop written plainly, as CleanRL writes it."""
    num_steps, num_seeds, num_envs = rollout.rewards.shape
    episodes = [[] for _ in range(num_seeds)]
    for step in range(num_steps):
        rollout.obs[step], rollout.dones[step] = next_obs, next_done
        with torch.no_grad():
            action, logprob, _, value = agent.get_action_and_value(next_obs, generators=gens)
        rollout.values[step], rollout.actions[step], rollout.logprobs[step] = value, action, logprob
        obs, reward, terminations, truncations, infos = envs.step(action.flatten(0, 1).numpy())
        next_obs = torch.as_tensor(obs, dtype=torch.float32).view(next_obs.shape)
        next_done = torch.as_tensor(np.logical_or(terminations, truncations), dtype=torch.float32).view(
            next_done.shape)
        rollout.rewards[step] = torch.as_tensor(reward, dtype=torch.float32).view(num_seeds, num_envs)
        if "episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                episodes[i // num_envs].append((step, float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])))
    return next_obs, next_done, episodes


@pytest.mark.parametrize("backend, norm_stats, num_members, num_envs", [
    ("mujoco-batch", "per-env", 1, 1), ("mujoco-batch", "shared", 2, 2), ("gymnasium", "per-env", 1, 2),
    ("gymnasium", "shared", 1, 2)])
def test_rollout_is_the_step_by_step_loop(backend, norm_stats, num_members, num_envs):
    """Hoppers fall within a few dozen steps: episodes end, reset steps come, statistics move, bit for bit."""
    seeds = [3 + m for m in range(num_members)]
    runs = []
    for collect in (collect_rollout, step_by_step):
        envs = make_envs("Hopper-v5", num_envs, 0.99, norm_stats, backend=backend, num_members=num_members)
        obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
        gens = generators(seeds)
        agent = Agent(obs_dim, act_dim, gens)
        shape = (60, num_members, num_envs)
        rollout = Rollout(obs=torch.zeros(shape + (obs_dim,)), actions=torch.zeros(shape + (act_dim,)),
                          logprobs=torch.zeros(shape), rewards=torch.zeros(shape), dones=torch.zeros(shape),
                          values=torch.zeros(shape))
        obs, _ = envs.reset(seed=[seed * 10 + i for seed in seeds for i in range(num_envs)])
        next_obs = torch.as_tensor(obs, dtype=torch.float32).view(num_members, num_envs, obs_dim)
        next_done = torch.zeros(num_members, num_envs)
        outputs = []
        for _ in range(2):
            next_obs, next_done, episodes = collect(envs, agent, rollout, next_obs, next_done, gens)
            outputs.append([x.clone() for x in vars(rollout).values()] + [next_obs, next_done, episodes])
            with torch.no_grad():  # the next rollout acts with other weights
                agent.params.mul_(1.01)
        envs.close()
        runs.append(outputs)
    assert any(any(outputs[-1]) for outputs in runs[1])  # episodes ended
    for fast, plain in zip(*runs):
        for a, b in zip(fast[:-1], plain[:-1]):
            assert a.dtype == b.dtype and torch.equal(a, b)
        assert fast[-1] == plain[-1]
