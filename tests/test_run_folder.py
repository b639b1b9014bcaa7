"""Which folder a command's run lives in, and what a folder already there means: run names that stay inside
--runs-dir, runs without --run-name resumed by the command that started them (or --resume alone), starts that
finished no iteration not blocking their name, finished runs given again, one process per run folder, KL files
that follow TensorBoard on a resume, generators of another device, and the TensorBoard layout."""
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import SCALARS, TENSORS, EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from torch.utils.tensorboard import SummaryWriter

from ppo_kl import checkpoints, run_folder
from conftest import SCRIPT, TINY, error_of, load_args, load_kl, run_script
from ppo_continuous_kl import Args


@pytest.fixture(autouse=True)
def release_run_folders():
    """The folders an in-process test took stay locked until this process ends, unless released."""
    yield
    for run_dir in list(getattr(run_folder, "_held", {})):
        run_folder.release_run_folder(run_dir)


def command_args(runs_dir, **flags):
    """The flags of a command as the script has them once checked."""
    return Args(runs_dir=str(runs_dir), **flags)


def fake_run(runs_dir, name, args, iteration=None, finished=False, mtime=None):
    """A run folder as the script leaves it: args.json, a checkpoint after `iteration` (None: none), summary.json."""
    run_dir = os.path.join(runs_dir, name)
    os.makedirs(os.path.join(run_dir, "kl"), exist_ok=True)
    saved = asdict(args) | {"run_name": name, "code_version": run_folder.code_version()}
    with open(os.path.join(run_dir, "args.json"), "w") as f:
        f.write(json.dumps(saved))
    if iteration is not None:
        checkpoint = {key: None for key in checkpoints.CHECKPOINT_KEYS} | dict(args=saved, iteration=iteration)
        torch.save(checkpoint, os.path.join(run_dir, "checkpoint.pt"))
        for i in range(1, iteration + 1):
            np.savez(os.path.join(run_dir, "kl", f"iter_{i:05d}.npz"), iteration=i)
    if finished:
        open(os.path.join(run_dir, "summary.json"), "w").write("{}")
    if mtime is not None:
        for f in os.listdir(run_dir):
            os.utime(os.path.join(run_dir, f), (mtime, mtime))
    return run_dir


# ---- run names and runs folders


@pytest.mark.parametrize("name", ["", ".", "..", "/tmp/elsewhere", "a/b", "a\\b", "~", "~user", "a\x00b", "a\nb",
                                  "x" * 256], ids=repr)
def test_run_name_must_be_one_folder_inside_runs_dir(tmp_path, name):
    runs = tmp_path / "runs"
    message = error_of(lambda: run_folder.resolve_runs(args := command_args(runs, run_name=name), [args]))
    assert message.startswith(f"error: --run-name {name!r} ") and run_folder.NAME_RULE in message
    assert os.listdir(tmp_path) == []


def test_default_name_stays_one_folder_and_exp_name_is_checked(tmp_path, capsys):
    args = command_args(tmp_path / "runs", env_id="dm_control/cheetah-run-v0", exp_name="a/../b")
    names, dirs, checkpoints = run_folder.resolve_runs(args, [args])
    assert os.path.dirname(dirs[0]) == str(tmp_path / "runs") and checkpoints == [None]
    assert names[0].startswith("dm_control-cheetah-run-v0__a-..-b__1__")
    message = error_of(lambda: run_folder.resolve_runs(args := command_args(tmp_path, exp_name="a\nb"), [args]))
    assert message.startswith("error: --exp-name 'a\\nb' makes a default run name that holds a control character")


def test_runs_dir_that_cannot_hold_runs_is_refused(tmp_path, monkeypatch):
    afile = tmp_path / "file"
    afile.write_text("not a folder")
    for runs_dir, start in [("", "error: --runs-dir '': give the path of a folder"),
                            (str(afile), f"error: --runs-dir {afile} is a file, not a folder"),
                            (str(afile / "runs"),
                             f"error: cannot write into --runs-dir {afile / 'runs'} (Not a directory)")]:
        assert error_of(lambda: run_folder.resolve_runs(args := command_args(runs_dir, run_name="r"),
                                                        [args])).startswith(start)
    # '~' as the shell would have expanded it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args = command_args("~/runs", run_name="r")
    _, dirs, _ = run_folder.resolve_runs(args, [args])
    assert dirs == [str(tmp_path / "home" / "runs" / "r")] and os.path.exists(os.path.join(dirs[0], "args.json"))


def test_unwritable_runs_dir_is_refused(tmp_path):
    """A read-only file system (permission bits do not stop root): neither a new run nor a stopped one goes on."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        fake_run(disk, "stopped", command_args(disk, run_name="stopped"), iteration=1)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for name in ("new", "stopped"):
            message = error_of(lambda: run_folder.resolve_runs(args := command_args(disk, run_name=name), [args]))
            assert message.startswith(f"error: cannot write into --runs-dir {disk} (") and message.endswith(
                "; give a folder this user can write"), message
        assert sorted(os.listdir(disk)) == ["stopped"]
    finally:
        subprocess.run(["umount", "--lazy", str(disk)])  # lazy: the folder this process holds keeps it busy


def test_run_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "r").write_text("a file")
    message = error_of(lambda: run_folder.resolve_runs(args := command_args(tmp_path, run_name="r"), [args]))
    assert message == f"error: --run-name r: {tmp_path / 'r'} is a file, not a run folder; pick another --run-name"


# ---- one process per run folder


def test_run_going_on_in_another_process_is_neither_joined_nor_continued(tmp_path, capsys):
    args = command_args(tmp_path)
    older = fake_run(tmp_path, run_folder.default_run_name(args, 100), args, iteration=2, mtime=1000)
    newer = fake_run(tmp_path, run_folder.default_run_name(args, 200), args, iteration=1, mtime=2000)
    fd = os.open(newer, os.O_RDONLY)  # the lock a running process holds
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        named = replace(args, run_name=os.path.basename(newer))
        message = error_of(lambda: run_folder.resolve_runs(named, [named]))
        assert message.startswith(f"error: run folder {newer} is in use: its run is going on in another process")
        names, dirs, checkpoints = run_folder.resolve_runs(args, [args])
        assert dirs == [older] and checkpoints[0]["iteration"] == 2
    finally:
        os.close(fd)


# ---- runs without --run-name


def test_command_without_run_name_continues_the_latest_unfinished_run_of_its_flags(tmp_path, capsys):
    args = command_args(tmp_path)
    latest = fake_run(tmp_path, run_folder.default_run_name(args, 100), args, iteration=3, mtime=3000)
    fake_run(tmp_path, run_folder.default_run_name(args, 200), args, iteration=5, mtime=2000)
    # not candidates: newer, but finished, of other flags, named by hand, or of another seed
    fake_run(tmp_path, run_folder.default_run_name(args, 300), args, iteration=9, finished=True, mtime=4000)
    fake_run(tmp_path, run_folder.default_run_name(args, 400), replace(args, learning_rate=1e-3), iteration=1,
             mtime=4000)
    fake_run(tmp_path, "mine", args, iteration=1, mtime=4000)
    fake_run(tmp_path, run_folder.default_run_name(args, 500, seed=2), replace(args, seed=2), iteration=1, mtime=4000)
    for resume in (False, True):
        command = replace(args, resume=resume, num_threads=2)  # flags a resume may change do not matter
        names, dirs, checkpoints = run_folder.resolve_runs(command, [command])
        assert dirs == [latest] and checkpoints[0]["iteration"] == 3
        out = capsys.readouterr().out.strip()
        assert out == (f"no --run-name: continuing {latest}, the latest unfinished run of these flags in {tmp_path} "
                       "(1 more; --run-name picks one)")
        run_folder.release_run_folder(latest)


def test_without_an_unfinished_run_resume_fails_and_a_new_run_starts(tmp_path, capsys):
    args = command_args(tmp_path / "runs")
    message = error_of(lambda: run_folder.resolve_runs(command := replace(args, resume=True), [command]))
    assert message == (f"error: --resume: {tmp_path / 'runs'} holds no unfinished run of these flags to resume; runs "
                       "started without --run-name are named HalfCheetah-v5__ppo_continuous_kl__1__<unix time>, give "
                       "--run-name to resume another")
    assert not os.path.exists(tmp_path / "runs")
    # a start that finished no iteration is no run to resume, but the same command starts over in its folder
    failed = fake_run(tmp_path / "runs", run_folder.default_run_name(args, 100), args)
    error_of(lambda: run_folder.resolve_runs(command := replace(args, resume=True), [command]))
    _, dirs, checkpoints = run_folder.resolve_runs(args, [args])
    assert dirs == [failed] and checkpoints == [None] and "starting " + failed + " over" in capsys.readouterr().out
    # a new name: the time, made unique
    run_folder.release_run_folder(failed)
    open(os.path.join(failed, "summary.json"), "w").write("{}")
    before = int(time.time())
    names, dirs, checkpoints = run_folder.resolve_runs(args, [args])
    assert checkpoints == [None] and int(names[0].rsplit("__", 1)[1]) >= before
    assert names[0] == run_folder.default_run_name(args, names[0].rsplit("__", 1)[1])


def test_seeds_in_lockstep_continue_together(tmp_path, capsys):
    args = command_args(tmp_path, num_seeds=2)
    members = [replace(args, seed=s) for s in (1, 2)]
    both = [fake_run(tmp_path, run_folder.default_run_name(m, 100), m, iteration=2) for m in members]
    fake_run(tmp_path, run_folder.default_run_name(members[0], 200), members[0], iteration=2, mtime=time.time() + 10)
    names, dirs, checkpoints = run_folder.resolve_runs(args, members)  # stamp 200 lacks seed 2's folder
    assert dirs == both and [c["iteration"] for c in checkpoints] == [2, 2]
    hint = shlex.split(run_folder.resume_hint(args, names).split("or this one: ", 1)[1])
    assert hint[-2:] == ["--run-name", "HalfCheetah-v5__ppo_continuous_kl__{seed}__100"]


# ---- finished runs, failed starts


def test_finished_run_given_again(tmp_path, capsys):
    args = command_args(tmp_path, run_name="done")
    run_dir = fake_run(tmp_path, "done", args, iteration=2, finished=True)
    for command in (args, replace(args, num_threads=4, resume=True)):
        with pytest.raises(SystemExit) as exit_info:
            run_folder.resolve_runs(command, [command])
        assert exit_info.value.code in (0, None)
        assert capsys.readouterr().out == f"{run_dir} holds this run, finished already (summary.json): nothing to do\n"
        run_folder.release_run_folder(run_dir)
    other = replace(args, learning_rate=1e-3, num_envs=8)
    assert error_of(lambda: run_folder.resolve_runs(other, [other])) == (
        f"error: run folder {run_dir} holds a finished run (summary.json) of other flags: --learning-rate 0.001 "
        "(finished run: 0.0003), --num-envs 8 (finished run: 1); pick another --run-name or --runs-dir")


def test_start_that_finished_no_iteration_does_not_block_its_name(tmp_path, capsys):
    args = command_args(tmp_path, run_name="r")
    run_dir = fake_run(tmp_path, "r", replace(args, env_id="Hopper-v5"), iteration=0)
    open(os.path.join(run_dir, "notes.txt"), "w").write("mine")
    with SummaryWriter(run_dir) as writer:  # the events a start leaves: its hyperparameters, no scalar
        writer.add_text("hyperparameters", "x")
    _, _, checkpoints = run_folder.resolve_runs(args, [args])
    assert checkpoints == [None] and load_args(run_dir)["env_id"] == "HalfCheetah-v5"
    assert (sorted(os.listdir(run_dir)) == ["args.json", "kl", "notes.txt"]
            and os.listdir(os.path.join(run_dir, "kl")) == [])
    assert ("over: its earlier start finished no iteration (removed: args.json, checkpoint.pt, events.out"
            in capsys.readouterr().out)
    run_folder.release_run_folder(run_dir)
    # an iteration logged (here only in TensorBoard, as with --no-kl between checkpoints) is a run to keep
    fake_run(tmp_path, "r", replace(args, env_id="Hopper-v5"), iteration=0)
    with SummaryWriter(run_dir) as writer:
        writer.add_scalar("charts/SPS", 1.0, 128)
    assert error_of(lambda: run_folder.resolve_runs(args, [args])).startswith(
        f"error: cannot resume {run_dir} with other flags than its checkpoint's: "
        "--env-id HalfCheetah-v5 (checkpoint: Hopper-v5)")


# ---- KL files, generators of another device, TensorBoard layout


def test_discard_kl_after_keeps_the_checkpoints_iterations(tmp_path, capsys):
    kl = tmp_path / "kl"
    kl.mkdir()
    for name in ("iter_00001.npz", "iter_00002.npz", "iter_00003.npz", "iter_00010.npz", "iter_00002.npz.tmp", "other"):
        (kl / name).write_text("x")
    assert run_folder.discard_kl_after(str(tmp_path), 2) == ["iter_00002.npz.tmp", "iter_00003.npz", "iter_00010.npz"]
    assert sorted(os.listdir(kl)) == ["iter_00001.npz", "iter_00002.npz", "other"]
    assert "removed 3 file(s) of iterations after the checkpoint's" in capsys.readouterr().out


def cuda_like_state(seed, offset):
    """What a CUDA generator's get_state() holds (Philox: seed and offset), for a machine without a GPU."""
    return torch.tensor([seed, offset], dtype=torch.int64).view(torch.uint8)


def test_generator_state_of_another_device_seeds_the_generator(capsys):
    saved = dict(python=__import__("random").getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                 kl=cuda_like_state(7, 64), member=cuda_like_state(8, 64))
    draws = []
    for recorded in ({"device": "cuda"}, {}):  # recorded, or recognised by its size (older checkpoints)
        kl, member = torch.Generator(), torch.Generator()
        checkpoints.set_rng_states(saved | recorded, kl, member)
        draws.append((torch.randperm(100, generator=kl), torch.randperm(100, generator=member)))
        assert "the checkpoint's generators ran on cuda, this run's on cpu" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(*draws)) and not torch.equal(*draws[0])
    # on its own device, a state is restored exactly, quietly
    kl = torch.Generator().manual_seed(3)
    states = checkpoints.rng_states(kl, torch.Generator().manual_seed(4))
    expected = torch.randperm(100, generator=kl)
    again, member = torch.Generator(), torch.Generator()
    checkpoints.set_rng_states(states, again, member)
    assert torch.equal(torch.randperm(100, generator=again), expected) and capsys.readouterr().out == ""
    assert states["device"] == "cpu"


def test_tensorboard_layout_reads_back(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        run_folder.write_tensorboard_layout(writer)
    layout = read_layout(str(tmp_path))
    assert [c.title for c in layout.category] == ["returns", "KL", "contraction", "update", "losses"]
    tags = {c.title: [t for chart in c.chart for t in chart.multiline.tag] for c in layout.category}
    assert tags["returns"][:2] == ["^charts/episodic_return$", "^eval/episodic_return$"]
    assert tags["KL"] == ["^kl/seq_kl_mean$", "^kl/ref_kl_start$"]
    assert tags["contraction"] == ["^kl/gamma_D$", "^kl/gamma_D_per_pct$", "^kl/ref_kl_decrease_frac$"]
    from ppo_kl.run_record import ANATOMY  # each anatomy quantity's mean and max, the tags the script logs
    assert sorted(tags["update"]) == sorted(f"^update/{name}_{stat}$" for name in ANATOMY for stat in ("mean", "max"))


def read_layout(run_dir):
    events = EventAccumulator(run_dir, size_guidance={TENSORS: 0})
    events.Reload()
    assert "custom_scalars__config__" in events.Tags()["tensors"]
    layout = layout_pb2.Layout()
    layout.ParseFromString(events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    return layout


# ---- end to end: the training script with these rules

FAST = ["--env-id", "InvertedPendulum-v5", "--num-envs", "4", "--num-steps", "32", "--minibatch-size", "32"]


def train(cwd, *flags):
    return subprocess.run([sys.executable, SCRIPT, *flags], cwd=cwd, capture_output=True, text=True, timeout=600)


def start_and_stop(cwd, runs_dir, flags, kl_files):
    """Starts the script, sends SIGTERM once some run folder in runs_dir holds `kl_files` KL files."""
    proc = subprocess.Popen([sys.executable, SCRIPT, *flags], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while not any(len(os.listdir(d / "kl")) >= kl_files for d in runs_dir.glob("*") if (d / "kl").is_dir()):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    return out, err


def test_run_without_a_name_resumes_with_the_command_that_started_it(tmp_path):
    runs = tmp_path / "runs"
    flags = [*FAST, "--total-timesteps", str(8 * 128), "--runs-dir", str(runs)]
    _, err = start_and_stop(tmp_path, runs, flags, 1)
    [run_dir] = runs.iterdir()
    # the stop names the command that resumes this very run
    hint = err.strip().splitlines()[-1].split("or this one: ", 1)[1]
    assert shlex.split(hint)[1:] == [SCRIPT, *flags, "--run-name", run_dir.name]
    assert shlex.split(hint)[0] in (sys.executable, os.path.basename(sys.executable))

    # --resume alone: the latest unfinished run of the same flags, and it says which
    stopped_at = torch.load(run_dir / "checkpoint.pt", weights_only=False)["iteration"]
    out, _ = start_and_stop(tmp_path, runs, [*flags, "--resume"], stopped_at + 2)
    assert out.startswith(f"no --run-name: continuing {run_dir}, the latest unfinished run of these flags in {runs}\n")
    assert f"resuming {run_dir} after iteration {stopped_at} " in out

    # the command the run was started with, again: it resumes and finishes the run, in its folder
    proc = train(tmp_path, *flags)
    assert proc.returncode == 0, proc.stderr
    assert (f"no --run-name: continuing {run_dir}" in proc.stdout
            and f"resuming {run_dir} after iteration" in proc.stdout)
    assert list(runs.iterdir()) == [run_dir] and (run_dir / "summary.json").exists()
    assert [int(f["iteration"]) for f in load_kl(str(run_dir))] == list(range(1, 9))


@pytest.fixture(scope="module")
def restarted_run(tmp_path_factory):
    """A run name whose first start crashed while the envs started, whose second start hit a non-finite loss at
    iteration 1, and whose third start, the corrected command, finished. Returns the three processes and the folder."""
    runs = tmp_path_factory.mktemp("restarted") / "runs"
    procs = [run_script(runs, "r", *FAST, "--total-timesteps", "256", *flags, check=False)[0]
             for flags in (["--env-id", "tests.failed_start_envs:CrashOnReset-v0"],
                           ["--env-id", "tests.failed_start_envs:NaNFromStart-v0"], [])]
    return procs, runs / "r"


def test_failed_starts_do_not_block_the_corrected_command(restarted_run):
    (crash, nan, corrected), run_dir = restarted_run
    assert crash.returncode != 0 and "this env fails on reset, on purpose" in crash.stderr
    assert nan.returncode == 1 and nan.stderr.strip().splitlines()[-1].startswith(
        "error: non-finite loss at iteration 1"), nan.stderr
    assert f"starting {run_dir} over: its earlier start finished no iteration (removed: args.json, kl)" in nan.stdout
    assert corrected.returncode == 0, corrected.stderr
    assert (f"starting {run_dir} over: its earlier start finished no iteration "
            "(removed: args.json, checkpoint.pt, events" in corrected.stdout)
    assert load_args(str(run_dir))["env_id"] == "InvertedPendulum-v5"
    assert [int(f["iteration"]) for f in load_kl(str(run_dir))] == [1, 2]
    assert len([f for f in os.listdir(run_dir) if f.startswith("events.out")]) == 1


def test_finished_run_given_again_end_to_end(restarted_run):
    _, run_dir = restarted_run
    runs = os.path.dirname(run_dir)
    proc, _ = run_script(runs, "r", *FAST, "--total-timesteps", "256")
    assert proc.stdout.splitlines() == [f"{run_dir} holds this run, finished already (summary.json): nothing to do"]
    proc, _ = run_script(runs, "r", *FAST, "--total-timesteps", "384", check=False)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"error: run folder {run_dir} holds a finished run (summary.json) of other flags: --total-timesteps 384 "
        "(finished run: 256); pick another --run-name or --runs-dir"]


def test_new_run_has_the_tensorboard_layout(restarted_run):
    _, run_dir = restarted_run
    layout = read_layout(str(run_dir))
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    logged = events.Tags()["scalars"]
    for category in layout.category:
        if category.title != "returns":  # evaluation returns need --eval-every or --save-model
            for chart in category.chart:
                for tag in chart.multiline.tag:
                    assert any(__import__("re").match(tag, t) for t in logged), (chart.title, tag)


@pytest.fixture(scope="module")
def crashed_between_checkpoints(tmp_path_factory):
    """A run checkpointed every 4 iterations whose rewards turn NaN at iteration 7: its checkpoint holds iteration
    4, its kl/ iterations 1 to 6."""
    runs = tmp_path_factory.mktemp("crashed") / "runs"
    flags = ["--env-id", "tests.fault_envs:NaNReward-v0", *TINY[:-1], "1024", "--checkpoint-every", "4"]
    proc, run_dir = run_script(runs, "r", *flags, check=False)
    assert proc.stderr.strip().splitlines()[-1].startswith("error: non-finite loss at iteration 7"), proc.stderr
    assert torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=False)["iteration"] == 4
    assert [int(f["iteration"]) for f in load_kl(run_dir)] == [1, 2, 3, 4, 5, 6]
    return run_dir, flags


def copy_run(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "runs" / "r")
    return tmp_path / "runs", tmp_path / "runs" / "r"


def test_resume_rewrites_the_kl_files_of_the_iterations_it_redoes(crashed_between_checkpoints, tmp_path):
    run_dir, flags = crashed_between_checkpoints
    runs, copy = copy_run(run_dir, tmp_path)
    # what the first session wrote after its checkpoint goes, whether or not the resumed session would redo it the same
    (copy / "kl" / "iter_00005.npz").write_bytes(b"a trajectory the resumed run does not follow")
    (copy / "kl" / "iter_00006.npz.tmp").write_bytes(b"half written")
    proc, _ = run_script(runs, "r", *flags, check=False)
    assert proc.stderr.strip().splitlines()[-1].startswith("error: non-finite loss at iteration 7"), proc.stderr
    assert ("removed 3 file(s) of iterations after the checkpoint's (iter_00005.npz, iter_00006.npz, "
            "iter_00006.npz.tmp)" in proc.stdout)
    assert sorted(os.listdir(copy / "kl")) == [f"iter_{i:05d}.npz" for i in range(1, 7)]
    # redone on the same CPU: the same profiles, written anew, and TensorBoard holds each iteration once
    for first, redone in zip(load_kl(run_dir), load_kl(str(copy)), strict=True):
        assert all(np.array_equal(first[k], redone[k]) for k in first)
    events = EventAccumulator(str(copy), size_guidance={SCALARS: 0})
    events.Reload()
    assert [e.step for e in events.Scalars("kl/seq_kl_mean")] == [128 * i for i in range(1, 7)]


def test_checkpoint_of_a_gpu_run_resumes_on_the_cpu(crashed_between_checkpoints, tmp_path):
    run_dir, flags = crashed_between_checkpoints
    runs, copy = copy_run(run_dir, tmp_path)
    checkpoint = torch.load(copy / "checkpoint.pt", weights_only=False)
    rngs = checkpoint["rngs"]
    rngs.update(device="cuda", kl=cuda_like_state(1, 0),
                **({"member": cuda_like_state(1, 0)} if "member" in rngs else {}))
    torch.save(checkpoint, copy / "checkpoint.pt")
    proc, _ = run_script(runs, "r", *flags, "--no-cuda", check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "note: the checkpoint's generators ran on cuda, this run's on cpu" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("error: non-finite loss at iteration 7"), proc.stderr
    assert [int(f["iteration"]) for f in load_kl(str(copy))] == [1, 2, 3, 4, 5, 6]


def test_a_run_records_its_code_version_and_a_resume_under_other_code_says_so(tmp_path):
    """args.json, the checkpoint and summary.json name the code (the checkout's commit, -dirty when edited); a run
    resumed under other code says so in one line and summary.json keeps both."""
    flags = [*FAST, "--total-timesteps", "256", "--runs-dir", str(tmp_path), "--run-name", "r"]
    assert train(tmp_path, *flags).returncode == 0
    run_dir = tmp_path / "r"
    this = run_folder.code_version()
    assert load_args(run_dir)["code_version"] == this
    assert json.loads((run_dir / "summary.json").read_text())["code_versions"] == [this]
    # the same run, as if started under other code and cut short before its summary
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    checkpoint["args"]["code_version"] = "0123abc-other"
    torch.save(checkpoint, run_dir / "checkpoint.pt")
    (run_dir / "summary.json").unlink()
    proc = train(tmp_path, *flags)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stdout.splitlines() if "0123abc-other" in line]
    assert notes == [f"note: {run_dir} was started under code 0123abc-other and resumes under {this}; "
                     "summary.json records both"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["code_versions"] == ["0123abc-other", this] and summary["code_version"] == this


def test_code_version_outside_git_is_a_hash_of_the_code(tmp_path, monkeypatch):
    (tmp_path / "ppo_kl").mkdir()
    for name in ("a.py", "ppo_kl/b.py"):
        (tmp_path / name).write_text(f"# {name}\n")
    monkeypatch.setattr(run_folder, "CODE_ROOT", str(tmp_path))
    first = run_folder.code_version()
    assert first.startswith("sha256:") and run_folder.code_version() == first
    for name in ("a.py", "ppo_kl/b.py"):  # the script's files and the package's
        (tmp_path / name).write_text("# edited\n")
        assert run_folder.code_version() != first
        first = run_folder.code_version()
    # inside a git checkout: the commit, and -dirty once a tracked file is edited
    monkeypatch.setattr(run_folder, "CODE_ROOT", os.path.dirname(SCRIPT))
    head = subprocess.run(["git", "-C", os.path.dirname(SCRIPT), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    if head:
        assert run_folder.code_version().split("-")[0] == head
