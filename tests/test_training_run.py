"""Tiny real runs of the training script: the KL files, the TensorBoard contract, determinism."""
import json
import os

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.distributions import Independent, Normal, kl_divergence

from conftest import TINY, load_args, load_kl, run_script
from ppo_continuous_kl import Agent


def test_kl_files_hold_one_profile_per_iteration(tiny_run):
    files = load_kl(tiny_run)
    assert [int(f["iteration"]) for f in files] == [1, 2]
    assert sorted(os.listdir(os.path.join(tiny_run, "kl"))) == ["iter_00001.npz", "iter_00002.npz"]
    for f in files:
        num_updates = 10 * 4  # update_epochs x num_minibatches
        assert int(f["num_updates"]) == num_updates
        assert len(f["seq_kl"]) == num_updates and len(f["ref_kl"]) == num_updates + 1
        assert f["ref_kl"][-1] == 0.0
        assert np.isfinite(f["seq_kl"]).all() and np.isfinite(f["ref_kl"]).all()
        assert (f["seq_kl"] >= 0).all() and (f["ref_kl"] >= 0).all()
        assert f["seq_kl"].max() > 0 and f["ref_kl"][0] > 0  # the policy did move
        np.testing.assert_array_equal(f["update"], np.arange(num_updates + 1))
        np.testing.assert_array_equal(f["epoch"], np.repeat(np.arange(10), 4))
        np.testing.assert_array_equal(f["minibatch"], np.tile(np.arange(4), 10))
        assert (int(f["num_envs"]), int(f["num_steps"]), int(f["minibatch_size"])) == (4, 32, 32)
        assert int(f["global_step"]) == 128 * int(f["iteration"])
        assert str(f["env_id"]) == "HalfCheetah-v5"


def test_snapshots_recompute_the_logged_kl(tiny_run):
    for f in load_kl(tiny_run):
        states, means, logstds = f["states"], torch.as_tensor(f["means"]).double(), torch.as_tensor(f["logstds"]).double()
        assert states.shape == (128, 17) and means.shape == (41, 128, 6) and logstds.shape == (41, 6)
        policies = [Independent(Normal(means[i], logstds[i].exp().expand_as(means[i])), 1) for i in range(len(means))]
        seq = [kl_divergence(policies[i + 1], policies[i]).mean().item() for i in range(len(means) - 1)]
        ref = [kl_divergence(policies[-1], p).mean().item() for p in policies]
        np.testing.assert_allclose(f["seq_kl"], seq, rtol=1e-7, atol=1e-14)
        np.testing.assert_allclose(f["ref_kl"], ref, rtol=1e-7, atol=1e-14)


def test_last_snapshot_is_the_trained_policy(tiny_run):
    saved = torch.load(os.path.join(tiny_run, "ppo_continuous_kl.pt"), weights_only=False)
    agent = Agent(17, 6)
    agent.load_state_dict(saved["agent"])
    last = load_kl(tiny_run)[-1]
    with torch.no_grad():
        means = agent.actor_mean(torch.as_tensor(last["states"])[None])[0]
    np.testing.assert_array_equal(last["means"][-1], means.numpy())
    np.testing.assert_array_equal(last["logstds"][-1], agent.layer("actor_logstd", agent.params)[0].detach().numpy())
    # and the first snapshot of iteration 2 is the last of iteration 1 (the behaviour policy)
    first = load_kl(tiny_run)[0]
    assert not np.array_equal(first["means"][-1], last["means"][0])  # different state samples...
    assert np.array_equal(first["logstds"][-1], last["logstds"][0])  # ...same policy


def test_tensorboard_tags_args_and_summary(tiny_run):
    events = EventAccumulator(tiny_run)
    events.Reload()
    tags = set(events.Tags()["scalars"])
    cleanrl_tags = {"charts/episodic_return", "charts/episodic_length", "charts/learning_rate", "charts/SPS",
                    "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/old_approx_kl",
                    "losses/approx_kl", "losses/clipfrac", "losses/explained_variance"}
    kl_tags = {"kl/seq_kl_mean", "kl/ref_kl_start", "kl/ref_kl_decrease_frac", "kl/gamma_D", "kl/num_updates"}
    # a 4 x 32 run finishes no 1000-step HalfCheetah episode, so no episodic tags are expected here
    assert (cleanrl_tags - {"charts/episodic_return", "charts/episodic_length"}) | kl_tags <= tags
    kl_files = load_kl(tiny_run)
    logged = [e.value for e in events.Scalars("kl/ref_kl_start")]
    np.testing.assert_allclose(logged, [f["ref_kl"][0] for f in kl_files], rtol=1e-6)
    assert [e.step for e in events.Scalars("kl/gamma_D")] == [128, 256]
    args = load_args(tiny_run)
    assert args["env_id"] == "HalfCheetah-v5" and args["minibatch_size"] == 32 and args["num_minibatches"] == 4
    with open(os.path.join(tiny_run, "summary.json")) as f:
        summary = json.load(f)
    assert summary["global_step"] == 256 and len(summary["eval_returns"]) == 1


def test_console_and_working_directory_stay_clean(tiny_run):
    scratch = os.path.dirname(os.path.dirname(tiny_run))
    assert sorted(os.listdir(scratch)) == ["console.txt", "runs"]  # no MUJOCO_LOG.TXT beside the runs
    with open(os.path.join(scratch, "console.txt")) as f:
        console = f.read()
    assert "settotalmass" not in console and "Warning" not in console
    assert "iter 2/2 step 256" in console and "evaluation over 1 episodes" in console


def test_saved_model_carries_frozen_normalisation(tiny_run):
    saved = torch.load(os.path.join(tiny_run, "ppo_continuous_kl.pt"), weights_only=False)
    stats = saved["norm_stats"]
    assert stats["obs_mean"].shape == (4, 17)  # per-env, CleanRL's default: one row per env
    assert (stats["obs_count"] > 256 / 4).all()  # each env's obs of the 2 x 32 steps, plus its reset
    # the saved weights are the trained ones, as the last checkpoint holds them (that the evaluation keeps the
    # statistics frozen is tests/test_evaluation.py's)
    checkpoint = torch.load(os.path.join(tiny_run, "checkpoint.pt"), weights_only=False)
    assert checkpoint["iteration"] == 2
    agent = Agent(17, 6)
    agent.load_state_dict(saved["agent"])
    assert torch.equal(agent.params, checkpoint["agent"]["params"])


def test_kl_every_keeps_every_kth_and_the_last(tmp_path):
    _, run_dir = run_script(tmp_path, "every", *TINY[:-1], "128", "--kl-every", "3", "--kl-save-snapshots")
    (f,) = load_kl(run_dir)
    np.testing.assert_array_equal(f["update"], [*range(0, 40, 3), 40])
    assert len(f["seq_kl"]) == len(f["update"]) - 1 == len(f["epoch"])
    assert f["means"].shape[0] == len(f["update"]) and f["ref_kl"][-1] == 0


def test_same_seed_same_kl_files_and_kl_off_trains_identically(tmp_path):
    flags = (*TINY, "--norm-stats", "per-env", "--save-model", "--eval-episodes", "1")
    _, a = run_script(tmp_path, "a", *flags)
    _, b = run_script(tmp_path, "b", *flags)
    _, c = run_script(tmp_path, "c", *flags, "--no-kl")
    for fa, fb in zip(load_kl(a), load_kl(b), strict=True):
        assert fa.keys() == fb.keys()
        for key in fa:
            np.testing.assert_array_equal(fa[key], fb[key], err_msg=key)
    assert not os.path.exists(os.path.join(c, "kl"))
    models = [torch.load(os.path.join(d, "ppo_continuous_kl.pt"), weights_only=False) for d in (a, c)]
    for key, value in models[0]["agent"].items():
        assert torch.equal(value, models[1]["agent"][key]), key
    assert models[0]["norm_stats"]["obs_mean"].shape == (4, 17)  # per-env: one row per env


def test_non_finite_loss_stops_with_the_iteration_and_keeps_the_logs(tmp_path):
    proc, run_dir = run_script(tmp_path, "nan", "--env-id", "tests.fault_envs:NaNReward-v0", *TINY[:-1], "1024",
                               check=False)
    assert proc.returncode != 0
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: non-finite loss at iteration 7"), proc.stderr
    assert [int(f["iteration"]) for f in load_kl(run_dir)] == [1, 2, 3, 4, 5, 6]
    events = EventAccumulator(run_dir)
    events.Reload()
    assert [e.step for e in events.Scalars("losses/value_loss")] == [128 * i for i in range(1, 7)]
    assert not [f for f in os.listdir(os.path.join(run_dir, "kl")) if "tmp" in f]


def test_compiled_loss_trains_like_eager(tiny_run, tmp_path):
    _, compiled = run_script(tmp_path, "compiled", *TINY, "--kl-save-snapshots", "--compile", "on")
    eager, compiled = load_kl(tiny_run), load_kl(compiled)
    # iteration 1 starts from the same rollout: same algorithm, differently fused float32 arithmetic
    np.testing.assert_array_equal(compiled[0]["states"], eager[0]["states"])
    np.testing.assert_allclose(compiled[0]["means"], eager[0]["means"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(compiled[0]["ref_kl"], eager[0]["ref_kl"], rtol=1e-4, atol=1e-12)
    # from iteration 2 on the rollouts differ by those roundings, and the envs amplify them
    np.testing.assert_allclose(compiled[1]["ref_kl"][0], eager[1]["ref_kl"][0], rtol=0.05)
