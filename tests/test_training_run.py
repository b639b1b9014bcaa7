"""Tiny real runs of the training script: the KL files, the TensorBoard contract, determinism."""
import json
import os

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.distributions import Independent, Normal, kl_divergence

from conftest import TINY, load_args, load_kl, run_script
from ppo_continuous_kl import Agent
from test_resume import scalars


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
        states = f["states"]
        means, logstds = torch.as_tensor(f["means"]).double(), torch.as_tensor(f["logstds"]).double()
        assert states.shape == (128, 17) and means.shape == (41, 128, 6) and logstds.shape == (41, 6)
        policies = [Independent(Normal(means[i], logstds[i].exp().expand_as(means[i])), 1) for i in range(len(means))]
        seq = [kl_divergence(policies[i + 1], policies[i]).mean().item() for i in range(len(means) - 1)]
        ref = [kl_divergence(policies[-1], p).mean().item() for p in policies]
        np.testing.assert_allclose(f["seq_kl"], seq, rtol=1e-7, atol=1e-14)
        np.testing.assert_allclose(f["ref_kl"], ref, rtol=1e-7, atol=1e-14)


def test_snapshots_are_the_policy_after_each_update(hopper_run, hopper_replay):
    """Snapshot k of an iteration is the policy right after its k-th minibatch update (0: before the first),
    as a replay of the run's updates one by one finds it."""
    files = load_kl(hopper_run)
    assert len(files) == len(hopper_replay) == 2
    for f, replayed in zip(files, hopper_replay, strict=True):
        it = replayed.iteration
        # the replay is this run: the same rollout (fewer transitions than steps: reset steps left out) and states
        np.testing.assert_array_equal(f["states"], replayed.states)
        assert int(f["num_transitions"]) == len(f["states"]) < 128
        assert len(f["means"]) == len(f["logstds"]) == replayed.num_updates + 1 == 41
        # every update moves the policy, so a snapshot taken one update early or late cannot pass
        for k in range(replayed.num_updates):
            assert not np.array_equal(replayed.means[k], replayed.means[k + 1]), (it, k)
            assert not np.array_equal(replayed.logstds[k], replayed.logstds[k + 1]), (it, k)
        # the log-stds are the weights themselves, bit for bit; the means are the replay's to float32 rounding (the
        # store takes the first layer of many snapshots as one matmul, the replay one snapshot at a time), a
        # thousandth of the least any update moves them
        np.testing.assert_array_equal(f["logstds"], replayed.logstds, err_msg=f"iteration {it}")
        moved = min(np.abs(replayed.means[k + 1] - replayed.means[k]).max() for k in range(replayed.num_updates))
        drift = np.abs(f["means"] - replayed.means).max()
        assert drift <= 1e-3 * moved, (it, drift, moved)


def test_update_anatomy_matches_a_replay_of_the_updates(hopper_run, hopper_replay):
    """Each update's anatomy in the KL files against the replay's own computation of it, in float64 from the
    named layers (not the flat parameter's slices): the gradient's global and actor norms before clipping, the
    clipping factor, the L2 norm of the actor's change; its approximate KL and clip fraction are the loss's of
    that very minibatch, bit for bit. Float tolerance: 1e-5 relative (float32 norms of ~5,000 numbers)."""
    files = load_kl(hopper_run)
    for f, replayed in zip(files, hopper_replay, strict=True):
        assert int(f["num_updates"]) == replayed.num_updates
        for name in ("grad_norm", "actor_grad_norm", "clip_scale", "actor_step"):
            assert f[name].shape == (replayed.num_updates,) and f[name].dtype == np.float32, name
            np.testing.assert_allclose(f[name], replayed.anatomy[name], rtol=1e-5, atol=0, err_msg=name)
        np.testing.assert_array_equal(f["approx_kl"], np.float32(replayed.approx_kl))
        np.testing.assert_array_equal(f["clipfrac"], np.float32(replayed.anatomy["clipfrac"]))
        # the tiny runs' gradients exceed 0.5, so clipping acts: the factor is no constant 1
        assert (f["clip_scale"] < 1).any() and np.all(f["clip_scale"] <= 1)
        assert np.all(f["actor_grad_norm"] <= f["grad_norm"] * (1 + 1e-6))
        # and each update's actor step is the gap between consecutive snapshots' weights, not a neighbour's
        assert len(set(np.round(f["actor_step"], 7))) > 1


def test_last_snapshot_is_the_trained_policy(hopper_run, hopper_replay):
    saved = torch.load(os.path.join(hopper_run, "ppo_continuous_kl.pt"), weights_only=False)
    agent = Agent(saved["obs_dim"], saved["act_dim"])
    agent.load_state_dict(saved["agent"])
    first, last = load_kl(hopper_run)
    # the last snapshot is the saved policy: its means on the iteration's states and its log-stds
    with torch.no_grad():
        means = agent.actor_mean(torch.as_tensor(last["states"])[None])[0]
    np.testing.assert_array_equal(last["means"][-1], means.numpy())
    np.testing.assert_array_equal(last["logstds"][-1], agent.layer("actor_logstd", agent.params)[0].detach().numpy())
    assert torch.equal(agent.params, hopper_replay[-1].params)  # which is what the replayed run ends with
    # The first snapshot of iteration 2 is the policy iteration 1 ended with (the one that collected iteration 2's
    # rollout), on iteration 2's own states: iteration 1's final weights, which recompute iteration 1's last snapshot.
    behaviour = hopper_replay[0].params
    with torch.no_grad():
        on_first = agent.actor_mean(torch.as_tensor(first["states"])[None], behaviour)[0].numpy()
        on_last = agent.actor_mean(torch.as_tensor(last["states"])[None], behaviour)[0].numpy()
    np.testing.assert_array_equal(first["means"][-1], on_first)
    np.testing.assert_array_equal(last["means"][0], on_last)
    np.testing.assert_array_equal(first["logstds"][-1], agent.layer("actor_logstd", behaviour)[0].numpy())
    np.testing.assert_array_equal(last["logstds"][0], first["logstds"][-1])


def test_tensorboard_tags_args_and_summary(hopper_run):
    logged = scalars(hopper_run)
    cleanrl_tags = {"charts/episodic_return", "charts/episodic_length", "charts/learning_rate", "charts/SPS",
                    "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/old_approx_kl",
                    "losses/approx_kl", "losses/clipfrac", "losses/explained_variance"}
    kl_tags = {"kl/seq_kl_mean", "kl/ref_kl_start", "kl/ref_kl_decrease_frac", "kl/gamma_D", "kl/gamma_D_per_pct",
               "kl/num_updates"}
    eval_tags = {"eval/episodic_return", "eval/episodic_length", "eval/episodic_returns"}
    anatomy = ("grad_norm", "actor_grad_norm", "clip_scale", "actor_step", "approx_kl", "clipfrac")
    update_tags = {f"update/{name}_{stat}" for name in anatomy for stat in ("mean", "max")}
    assert cleanrl_tags | kl_tags | eval_tags | update_tags | {"eval/saved_model_episodic_return"} <= set(logged)
    # once per iteration, at its global_step (the episodes: test_episode_tags_sit_at_the_env_steps_where_they_ended)
    for tag in (cleanrl_tags - {"charts/episodic_return", "charts/episodic_length"}) | kl_tags | update_tags:
        assert [step for step, _ in logged[tag]] == [128, 256], tag
    # --eval-every 1 --eval-episodes 2: a mean at each iteration's end, and each of its 2 episodes
    for tag in ("eval/episodic_return", "eval/episodic_length"):
        assert [step for step, _ in logged[tag]] == [128, 256], tag
    assert [step for step, _ in logged["eval/episodic_returns"]] == [128, 128, 256, 256]
    assert [step for step, _ in logged["eval/saved_model_episodic_return"]] == [0, 1]  # --save-model: per episode
    kl_files = load_kl(hopper_run)
    np.testing.assert_allclose([v for _, v in logged["kl/ref_kl_start"]], [f["ref_kl"][0] for f in kl_files], rtol=1e-6)
    for name in anatomy:  # the iteration's mean and max over its updates, as the KL files hold them
        for stat in ("mean", "max"):
            np.testing.assert_allclose([v for _, v in logged[f"update/{name}_{stat}"]],
                                       [getattr(np, stat)(f[name]) for f in kl_files], rtol=1e-6, err_msg=name)
    args = load_args(hopper_run)
    assert args["env_id"] == "Hopper-v5" and args["minibatch_size"] == 32 and args["num_minibatches"] == 4
    # the flags on the HParams tab too, as the plugin reads them back
    from tensorboard.plugins.hparams import plugin_data_pb2
    events = EventAccumulator(hopper_run)
    events.Reload()
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.hparams["env_id"].string_value == "Hopper-v5" and start.hparams["minibatch_size"].number_value == 32
    assert start.hparams["target_kl"].string_value == "None" and start.hparams["learning_rate"].number_value == 3e-4
    with open(os.path.join(hopper_run, "summary.json")) as f:
        summary = json.load(f)
    assert summary["global_step"] == 256 and len(summary["eval_returns"]) == 2
    np.testing.assert_allclose(summary["eval_returns"], [v for _, v in logged["eval/saved_model_episodic_return"]],
                               rtol=1e-6)


def test_episode_tags_sit_at_the_env_steps_where_they_ended(hopper_run, hopper_replay):
    """Each finished episode logged once, at the env step of its end, global_step - batch_size + (step + 1) x
    num_envs for rollout step `step` (the figures plot returns against these steps), with its length. The ends and
    lengths come from the replayed rollouts' done flags, not from the script's episode bookkeeping."""
    num_envs, num_steps = 4, 32
    expected, length = [], np.zeros(num_envs, dtype=int)
    for replayed in hopper_replay:
        real = replayed.dones == 0  # a reset step (dones[t] = 1) is no step of any episode
        ended = np.concatenate([replayed.dones[1:], replayed.next_done[None]]) == 1  # ended[t]: step t ended one
        for t in range(num_steps):
            length += real[t]
            for env in np.flatnonzero(ended[t]):
                expected.append((128 * (replayed.iteration - 1) + (t + 1) * num_envs, float(length[env])))
                length[env] = 0
    assert len(expected) >= 5 and {step > 128 for step, _ in expected} == {False, True}  # ends in both iterations
    logged = scalars(hopper_run)
    assert sorted(logged["charts/episodic_length"]) == sorted(expected)
    # the returns at the same steps, one per episode
    assert sorted(step for step, _ in logged["charts/episodic_return"]) == sorted(step for step, _ in expected)


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


def test_compiled_update_trains_like_eager(tiny_run, tmp_path):
    """The compiled update (loss, torch.func.grad, clipping and torch's functional Adam in one graph) is the eager
    update: from iteration 1's rollout on, each snapshot differs from eager's by float32 rounding, a small fraction
    of what one update moves the policy (a wrong step size, bias correction or clipping would move it by as much).
    Its compile is cached in the user's cache folder, which the first line names."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"} | {"XDG_CACHE_HOME": str(tmp_path)}
    proc, compiled = run_script(tmp_path / "runs", "compiled", *TINY, "--kl-save-snapshots", "--compile", "on",
                                env=env)
    cache = tmp_path / "ppo_kl" / "torchinductor"
    assert f"compiled update (cache {cache})" in proc.stdout.splitlines()[0] and any(cache.rglob("*.py")), proc.stdout
    # the first iteration holds the compile: no time left is extrapolated from it
    iters = [line for line in proc.stdout.splitlines() if line.startswith("iter ")]
    assert " left estimating" in iters[0] and " left 0:00:00" in iters[1], iters
    eager, compiled = load_kl(tiny_run), load_kl(compiled)
    np.testing.assert_array_equal(compiled[0]["states"], eager[0]["states"])
    for key in ("means", "logstds"):
        drift = np.abs(compiled[0][key] - eager[0][key]).reshape(len(eager[0][key]), -1).max(axis=1)
        moved = np.abs(np.diff(eager[0][key], axis=0)).reshape(len(eager[0][key]) - 1, -1).max(axis=1)
        assert drift[0] == 0 and drift[1] < 1e-4 * moved[0], (key, drift[:2], moved[0])
        assert drift.max() < 1e-2 * moved.min(), (key, drift.max(), moved.min())
    np.testing.assert_allclose(compiled[0]["ref_kl"], eager[0]["ref_kl"], rtol=1e-3, atol=1e-12)
    # the anatomy computed inside the graph is eager's, to the same roundings
    for name in ("grad_norm", "actor_grad_norm", "clip_scale", "actor_step", "approx_kl", "clipfrac"):
        np.testing.assert_allclose(compiled[0][name], eager[0][name], rtol=1e-3, atol=1e-7, err_msg=name)
    # from iteration 2 on the rollouts differ by those roundings, and the envs amplify them
    np.testing.assert_allclose(compiled[1]["ref_kl"][0], eager[1]["ref_kl"][0], rtol=0.05)
