"""Next-step autoreset: the reset step after an episode's end never enters the batch or the advantages, and every
finished episode is logged exactly once."""
import gymnasium as gym
import numpy as np
import torch

from ppo_continuous_kl import Agent, Rollout, collect_rollout, compute_gae, flatten_transitions
from ppo_kl.vector_envs import make_envs


class Recorder(gym.vector.VectorWrapper):
    """Keeps what every step returned."""

    def __init__(self, env):
        super().__init__(env)
        self.steps = []

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.steps.append((obs.copy(), np.array(reward), terminated.copy(), truncated.copy()))
        return obs, reward, terminated, truncated, info


def test_reset_steps_stay_out_of_the_batch_and_episodes_are_logged_once():
    num_envs, num_steps, iterations = 3, 40, 2
    envs = make_envs("InvertedPendulum-v5", num_envs, gamma=0.99, norm_stats="shared")
    # one recorder on the raw env (true rewards and ends), one on top (what the agent sees)
    inner = envs
    while not isinstance(inner.env, gym.vector.SyncVectorEnv):
        inner = inner.env
    raw = inner.env = Recorder(inner.env)
    envs = Recorder(envs)
    agent, generators = Agent(4, 1, [torch.Generator().manual_seed(0)]), [torch.Generator().manual_seed(1)]
    shape = (num_steps, 1, num_envs)  # a population of one
    rollout = Rollout(obs=torch.zeros(shape + (4,)), actions=torch.zeros(shape + (1,)), logprobs=torch.zeros(shape),
                      rewards=torch.zeros(shape), dones=torch.zeros(shape), values=torch.zeros(shape))
    next_obs = torch.as_tensor(envs.reset(seed=0)[0], dtype=torch.float32).view(1, num_envs, 4)
    next_done = torch.zeros(1, num_envs)

    prev_done = np.zeros(num_envs, bool)  # recomputed from the raw env's own flags
    episode_return, episode_length = np.zeros(num_envs), np.zeros(num_envs, int)
    fake_steps = 0
    for _ in range(iterations):
        raw.steps.clear()
        envs.steps.clear()
        next_obs, next_done, (logged,) = collect_rollout(envs, agent, rollout, next_obs, next_done, generators)
        advantages, returns = compute_gae(rollout.rewards, rollout.values, rollout.dones, torch.zeros(1, num_envs),
                                          next_done, 0.99, 0.95)
        batch, counts = flatten_transitions(rollout, advantages, returns)
        b_obs, _, _, b_adv, b_ret, b_values = (x[0] for x in batch)

        expected_real, expected_episodes = [], []
        for t, (_, reward, terminated, truncated) in enumerate(raw.steps):
            is_reset_step = prev_done.copy()
            fake_steps += is_reset_step.sum()
            assert (reward[is_reset_step] == 0).all() and not (terminated | truncated)[is_reset_step].any()
            expected_real.append(~is_reset_step)
            for i in np.flatnonzero(~is_reset_step):
                episode_return[i] += reward[i]
                episode_length[i] += 1
            done = terminated | truncated
            for i in np.flatnonzero(done):
                expected_episodes.append((t, episode_return[i], episode_length[i]))
                episode_return[i], episode_length[i] = 0, 0
            prev_done = done
        real = np.array(expected_real)  # [num_steps, num_envs]

        # the batch is exactly the real transitions, in order: observations, advantages, returns and values
        mask = torch.as_tensor(real)
        for got, full in ((b_obs, rollout.obs[:, 0]), (b_adv, advantages[:, 0]), (b_ret, returns[:, 0]),
                          (b_values, rollout.values[:, 0])):
            torch.testing.assert_close(got, full[mask], rtol=0, atol=0)
        assert len(b_obs) == counts[0] == real.sum() < num_steps * num_envs
        # and no real transition's advantage or return depends on a reset step's reward or value
        rewards, values = rollout.rewards.clone(), rollout.values.clone()
        rewards[~mask.view(num_steps, 1, num_envs)], values[~mask.view(num_steps, 1, num_envs)] = 1e6, -1e6
        poisoned_adv, poisoned_ret = compute_gae(rewards, values, rollout.dones, torch.zeros(1, num_envs), next_done,
                                                 0.99, 0.95)
        torch.testing.assert_close(poisoned_adv[:, 0][mask], b_adv, rtol=0, atol=0)
        torch.testing.assert_close(poisoned_ret[:, 0][mask], b_ret, rtol=0, atol=0)
        # ...and what the agent saw before each real transition is what the env returned the step before
        seen = [envs.steps[t - 1][0] if t else None for t in range(num_steps)]
        for t in range(1, num_steps):
            np.testing.assert_array_equal(rollout.obs[t, 0].numpy(), seen[t])
        # each finished episode once, with its true return and length
        assert len(logged) == len(expected_episodes) > 0
        for (step, ret, length), (t, exp_ret, exp_len) in zip(logged, expected_episodes):
            assert step == t and length == exp_len and abs(ret - exp_ret) < 1e-4
    assert fake_steps > 0  # the test saw reset steps, so it proves something
    envs.close()


def test_gae_of_real_transitions_ignores_the_reset_step():
    # one env: steps 0-2 an episode ending at 2, step 3 the reset step (huge reward/value that must not leak),
    # steps 4-5 the next episode, cut by the rollout end
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [2.0], [3.0], [1e6], [4.0], [5.0]])
    values = torch.tensor([[0.5], [0.4], [0.3], [1e6], [0.2], [0.1]])
    dones = torch.tensor([[0.0], [0.0], [0.0], [1.0], [0.0], [0.0]])
    next_value, next_done = torch.tensor([[0.7]]), torch.tensor([0.0])
    advantages, returns = compute_gae(rewards, values, dones, next_value, next_done, gamma, lam)

    def episode_gae(r, v, bootstrap):
        # textbook: A_t = sum_k (gamma lam)^k delta_{t+k}
        v_next = v[1:] + [bootstrap]
        deltas = [r[t] + gamma * v_next[t] - v[t] for t in range(len(r))]
        return [sum((gamma * lam) ** k * deltas[t + k] for k in range(len(r) - t)) for t in range(len(r))]

    first = episode_gae([1.0, 2.0, 3.0], [0.5, 0.4, 0.3], 0.0)
    second = episode_gae([4.0, 5.0], [0.2, 0.1], 0.7)
    real = [0, 1, 2, 4, 5]
    np.testing.assert_allclose(advantages[real, 0].numpy(), first + second, rtol=1e-6)
    np.testing.assert_allclose(returns[real, 0].numpy(), np.array(first + second) + values[real, 0].numpy(), rtol=1e-6)
