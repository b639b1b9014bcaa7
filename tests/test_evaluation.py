"""--eval-every: the current policy evaluated on envs of its own with the training statistics frozen, at equal env
steps, without touching the training run."""
import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from conftest import TINY, load_kl, run_script
from ppo_kl.evaluation import eval_norm_stats, evaluate
from ppo_continuous_kl import Agent
from ppo_kl.vector_envs import get_norm_stats, make_envs, set_norm_stats


def stepped_envs(backend, num_members=1):
    envs = make_envs("Hopper-v5", 3, 0.99, "per-env", backend=backend, num_members=num_members)
    envs.reset(seed=list(range(3 * num_members)))
    rng = np.random.default_rng(0)
    for _ in range(40):
        envs.step(rng.uniform(-1, 1, (3 * num_members, 3)))
    return envs


def test_evaluation_freezes_the_statistics_and_leaves_training_alone():
    for backend in ("gymnasium", "mujoco-batch"):
        envs = stepped_envs(backend, num_members=2)
        train_stats = get_norm_stats(envs)
        eval_envs = make_envs("Hopper-v5", 4, 0.99, "per-env", backend=backend, num_members=2)
        set_norm_stats(eval_envs, eval_norm_stats(train_stats, "per-env", 2, 3, 4), frozen=True)
        frozen = get_norm_stats(eval_envs)
        # eval env j of member m normalises with training env m x 3 + j mod 3's statistics
        np.testing.assert_array_equal(frozen["obs_mean"][5], train_stats["obs_mean"][3 + 1])
        agent = Agent(11, 3, [torch.Generator().manual_seed(s) for s in (1, 2)])
        returns, lengths = evaluate(agent, eval_envs, 2, [1, 2], deterministic=False)
        assert returns.shape == lengths.shape == (2, 4) and np.isfinite(returns).all() and (lengths > 0).all()
        for key, value in get_norm_stats(eval_envs).items():  # evaluation never updates them...
            np.testing.assert_array_equal(value, frozen[key], err_msg=f"{backend} {key}")
        for key, value in get_norm_stats(envs).items():  # ...nor the training envs'
            np.testing.assert_array_equal(value, train_stats[key], err_msg=f"{backend} {key}")
        # each evaluation starts from the same states and noise: two calls agree, and the mean action differs
        again, _ = evaluate(agent, eval_envs, 2, [1, 2], deterministic=False)
        np.testing.assert_array_equal(returns, again)
        deterministic, _ = evaluate(agent, eval_envs, 2, [1, 2], deterministic=True)
        assert not np.array_equal(deterministic, returns)
        envs.close()
        eval_envs.close()


def test_eval_every_logs_at_equal_steps_and_does_not_change_training(tmp_path):
    flags = [*TINY[:-1], str(5 * 128), "--env-id", "Hopper-v5"]
    _, plain = run_script(tmp_path, "plain", *flags)
    _, evaluated = run_script(tmp_path, "evaluated", *flags, "--eval-every", "2", "--eval-episodes", "3")
    events = EventAccumulator(evaluated, size_guidance={SCALARS: 0})
    events.Reload()
    # every 2nd iteration and the last one, at the env step of that iteration's end
    assert [e.step for e in events.Scalars("eval/episodic_return")] == [256, 512, 640]
    per_episode = events.Scalars("eval/episodic_returns")
    assert [e.step for e in per_episode] == [256] * 3 + [512] * 3 + [640] * 3
    means = [e.value for e in events.Scalars("eval/episodic_return")]
    np.testing.assert_allclose(means, [np.mean([e.value for e in per_episode[3 * i:3 * i + 3]]) for i in range(3)],
                               rtol=1e-5)
    for a, b in zip(load_kl(plain), load_kl(evaluated), strict=True):  # the training run is bit for bit the same
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_per_env_statistics_of_one_env_runs_reach_each_members_eval_envs():
    """With one training env per member, per-env statistics have as many rows as members, like shared ones: the
    eval envs of member m must still take member m's row, not row i of the population."""
    stats = {"obs_mean": np.arange(3.0)[:, None]}  # members 0, 1, 2, one env each
    laid_out = eval_norm_stats(stats, "per-env", 3, 1, 2)
    np.testing.assert_array_equal(laid_out["obs_mean"][:, 0], [0, 0, 1, 1, 2, 2])
    assert eval_norm_stats(stats, "shared", 3, 1, 2) is stats  # one group per member: the eval envs' layout too
