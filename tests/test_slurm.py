"""--launcher slurm: the sbatch command and the array task (its requeue by USR1 and its wait on TERM, with a stand-in
scontrol), and the sweeps run, requeued and resumed on a real single-node SLURM (munged, slurmctld and slurmd on
localhost, in a temp folder, for the session). Where those daemons cannot start, the tests that need them skip and
say why."""
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT, TINY_MINIBATCH, fake_runs, run_sweep, sweep
from ppo_kl.sweeps import bash_quote

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "sinfo", "squeue", "scontrol", "scancel")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path, lines=8):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return "(no log)"


def output(cmd, env, timeout=10):
    """A client's stdout, or "" when it fails to answer in time."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def wait_until(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def slurm_conf(root, slurmd, ctld_port, slurmd_port):
    # the node as slurmd sees it, named localhost, without RealMemory: a smaller host would drain it
    node = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    node = re.sub(r"RealMemory=\d+", "", re.sub(r"^NodeName=\S+", "NodeName=localhost", node))
    return f"""ClusterName=pytest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthInfo=socket={root}/munge/munge.socket.2,cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MailProg=/bin/true
KillWait=5
SchedulerParameters=bf_interval=1,sched_interval=1
{node} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real SLURM on localhost: munged, slurmctld and slurmd from a fresh temp folder, on free ports. Yields the
    environment its clients need; afterwards cancels every job and stops the daemons."""
    # sbin, where Debian puts the daemons, is often not on a user's PATH
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    path = {b: shutil.which(b, path=search if b in DAEMONS else None) for b in DAEMONS + CLIENTS}
    missing = [b for b, found in path.items() if found is None]
    if missing:
        pytest.skip(f"slurm: {', '.join(missing)} not on PATH (Debian: apt-get install slurm-wlm munge)")
    # not under pytest's tmp folder: munged wants its socket folder and the folders above it open to all
    root = tempfile.mkdtemp(prefix="slurm-")
    env = {**os.environ, "SLURM_CONF": os.path.join(root, "slurm.conf")}
    daemons = {}
    try:
        os.chmod(root, 0o755)
        for folder in ("munge", "state", "spool", "log"):
            os.mkdir(os.path.join(root, folder), 0o755)
        key = os.path.join(root, "munge", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        with open(env["SLURM_CONF"], "w") as f:
            f.write(slurm_conf(root, path["slurmd"], *free_ports(2)))

        def start(name, *cmd):
            log = open(os.path.join(root, "log", f"{name}.stderr"), "w")
            daemons[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                             start_new_session=True)
            log.close()

        def give_up(why):
            logs = "\n".join(f"--- {name}:\n{tail(os.path.join(root, 'log', f'{name}.stderr'))}"
                             + (f"\n{tail(os.path.join(root, 'log', f'{name}.log'))}" if name != "munged" else "")
                             for name in daemons)
            pytest.skip(f"slurm: {why}\n{logs}")

        socket_path = os.path.join(root, "munge", "munge.socket.2")
        # -F: in the foreground, so that its pid is the daemon's
        start("munged", path["munged"], "-F", f"--key-file={key}", f"--socket={socket_path}",
              f"--pid-file={root}/munge/munged.pid", f"--seed-file={root}/munge/munged.seed")
        if not wait_until(lambda: os.path.exists(socket_path) or daemons["munged"].poll() is not None, 5):
            give_up("the munge socket did not appear in 5 s")
        if daemons["munged"].poll() is not None:
            give_up(f"munged exited with status {daemons['munged'].returncode}")
        start("slurmctld", path["slurmctld"], "-D", "-f", env["SLURM_CONF"])
        start("slurmd", path["slurmd"], "-D", "-N", "localhost", "-f", env["SLURM_CONF"])

        def node_state():
            return output(["sinfo", "-h", "-o", "%T"], env)
        if not wait_until(lambda: node_state() == "idle" or any(d.poll() is not None for d in daemons.values()), 15):
            give_up(f"the node is '{node_state()}', not idle, after 15 s")
        exited = [f"{name} (status {d.returncode})" for name, d in daemons.items() if d.poll() is not None]
        if exited:
            give_up(f"{', '.join(exited)} exited early")
        yield env
    finally:
        if "slurmctld" in daemons and daemons["slurmctld"].poll() is None:
            # jobs first: stopping slurmd under a running job would leave the job's processes behind
            output(["scancel", "-u", pwd.getpwuid(os.getuid()).pw_name], env, timeout=30)
            wait_until(lambda: output(["squeue", "-h"], env) == "", 20, interval=0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            if name in daemons and daemons[name].poll() is None:
                daemons[name].send_signal(signal.SIGTERM)
                try:
                    daemons[name].wait(timeout=15)
                except subprocess.TimeoutExpired:
                    daemons[name].kill()
                    daemons[name].wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def slurm(slurm_cluster, monkeypatch):
    """The session's SLURM, for the clients this test and its sweeps start."""
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    return slurm_cluster


def submit(*flags):
    """Submits a sweep with --launcher slurm; returns its array job id and output."""
    proc = run_sweep("sweep_minibatch.sh", "--launcher", "slurm", *flags)
    match = re.search(r"^\[sweep\] submitted \d+ run\(s\) as SLURM job array (\d+): ", proc.stdout, re.M)
    assert match, proc.stdout
    assert f"squeue -j {match.group(1)}" in proc.stdout
    return match.group(1), proc.stdout


def scontrol(*args):
    proc = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def queue_empty(job):
    return subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True, timeout=30).stdout.strip() == ""


def wait_for_array(job, timeout):
    assert wait_until(lambda: queue_empty(job), timeout, interval=0.25), \
        f"job array {job} still queued after {timeout} s:\n" + scontrol("show", "job", job)


def commands_listed(dry_run_lines):
    start = next(i for i, line in enumerate(dry_run_lines) if line.startswith("# ") and line.endswith(".commands"))
    return dry_run_lines[start + 1:]


def test_dry_run_prints_the_sbatch_command_and_the_array_script(tmp_path):
    runs = tmp_path / "runs"
    lines = sweep("sweep_minibatch.sh", *TINY_MINIBATCH, "--runs-dir", str(runs), "--launcher", "slurm",
                  "--partition", "gpu", "--time", "2:00:00", "--gpus", "a100:1", "--mem", "4G",
                  "--requeue-before", "600", "--seeds-per-process", "1", "--dry-run").stdout.splitlines()
    sbatch = lines[0].split()
    assert sbatch[0] == "sbatch" and re.fullmatch(rf"{runs}/slurm/sweep_minibatch-[0-9-]+\.sh", sbatch[-1])
    for flag in ("--array=0-3%2", "--requeue", "--open-mode=append", "--signal=B:USR1@600", "--cpus-per-task=1",
                 "--partition=gpu", "--time=2:00:00", "--gpus=a100:1", "--mem=4G", "--job-name=sweep_minibatch"):
        assert flag in sbatch, flag
    # the array script: the sweep's Python, running sweep_launchers.array_task on the command list and the runs
    # folder
    assert lines[1] == f"# {sbatch[-1]}" and lines[2] == f"#!{sys.executable}"
    end = next(i for i, line in enumerate(lines) if line.startswith("# ") and line.endswith(".commands"))
    script = "\n".join(lines[2:end])
    compile(script, "array script", "exec")
    assert lines[end] == f"# {sbatch[-1][:-len('.sh')]}.commands"
    for part in (f"sys.path.insert(0, {ROOT!r})", "from ppo_kl.sweep_launchers import array_task",
                 f"sys.exit(array_task({lines[end][2:]!r}, {str(runs)!r}))"):
        assert part in script, part
    # the command list: the commands of a local sweep, each under its log's name and its runs' (its own), with the
    # runs folder made absolute
    listed = commands_listed(lines)
    local = sweep("sweep_minibatch.sh", *TINY_MINIBATCH, "--runs-dir", str(runs), "--dry-run").stdout.splitlines()
    assert listed == [2 * (re.search(r"--run-name (\S+)", c).group(1) + " ") + c for c in local]
    assert not runs.exists()  # nothing written

    # what the user did not give stays out, but one core per run and no throttle without --jobs
    fake_runs(local[:1], finished=True)
    flags = [f for f in TINY_MINIBATCH if f not in ("--jobs", "2")]
    lines = sweep("sweep_minibatch.sh", *flags, "--runs-dir", str(runs), "--launcher", "slurm",
                  "--dry-run").stdout.splitlines()
    assert lines[0] == "# skipped, completed already with the same flags: InvertedPendulum-v5__4x32__mb32__s1"
    lines = lines[1:]
    sbatch = lines[0].split()
    assert "--array=0-2" in sbatch and "--cpus-per-task=1" in sbatch and "--signal=B:USR1@300" in sbatch
    assert not [f for f in sbatch if f.startswith(("--partition", "--time", "--gpus", "--mem"))]
    assert len(commands_listed(lines)) == 3  # the completed run left out


def test_the_array_task_waits_on_sigterm_and_requeues_itself_on_usr1(tmp_path):
    """The array task without SLURM, a stand-in scontrol recording what it is asked: TERM (preemption, requeue,
    scancel) leaves the run to write its checkpoint; USR1 (the time limit near) stops the run and requeues the task
    by its own id, not the array's."""
    runs, bin_dir = tmp_path / "runs", tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/scontrol.txt\n")
    (bin_dir / "scontrol").chmod(0o755)
    # a run that notes the TERM it gets, and exits on it as the training script does after its checkpoint
    run = (f"import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: open({str(tmp_path / 'term')!r}, 'w') "
           "and sys.exit(143)); print('run started', flush=True); time.sleep(60)")
    listing = tmp_path / "list.commands"
    listing.write_text(f"proc run1,run2 {bash_quote(sys.executable)} -c {bash_quote(run)}\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "0",
           "SLURM_ARRAY_JOB_ID": "7", "SLURM_JOB_ID": "9", "SLURM_RESTART_COUNT": "2"}
    task = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {ROOT!r}); "
                             "from ppo_kl.sweep_launchers import array_task; "
                             f"sys.exit(array_task({str(listing)!r}, {str(runs)!r}))"], env=env)
    log = runs / "logs" / "proc.log"

    def logged(text):
        return wait_until(lambda: log.exists() and text in log.read_text(), 30)
    assert logged("run started"), log.read_text() if log.exists() else "no log"
    assert re.search(r"^\[slurm\] \S+ \S+ job 7_0 \(id 9, restart 2\) on \S+: proc$", log.read_text(), re.M)
    task.send_signal(signal.SIGTERM)
    assert logged("got SIGTERM: waiting for the run to write its checkpoint and exit")
    time.sleep(0.5)
    assert task.poll() is None and not (tmp_path / "term").exists()  # the task does not pass TERM on, and waits
    task.send_signal(signal.SIGUSR1)
    assert task.wait(timeout=30) == 0, log.read_text()
    text = log.read_text()
    assert "time limit near: stopping the run, to requeue it" in text and "run exited with status 143" in text
    assert (tmp_path / "term").exists()
    assert re.search(r"^\[slurm\] \S+ \S+ requeued$", text, re.M), text
    assert (tmp_path / "scontrol.txt").read_text() == "requeue 7_0\n"


def test_without_sbatch_on_path_the_sweep_says_so(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("dirname"), bin_dir / "dirname")
    proc = subprocess.run(["/bin/bash", os.path.join(ROOT, "sweep_minibatch.sh"), "--launcher", "slurm"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": str(bin_dir), "PYTHON": sys.executable})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == ("error: --launcher slurm needs sbatch, which is not on PATH (run on a SLURM login "
                                   "node, or use --launcher local)")


def test_a_sweep_runs_to_the_end_as_a_job_array(slurm, tmp_path):
    runs = tmp_path / "runs"
    job, _ = submit(*TINY_MINIBATCH, "--runs-dir", str(runs))
    wait_for_array(job, 90)
    names = [f"InvertedPendulum-v5__4x32__mb{s}__s{seed}" for s in (32, 64) for seed in (1, 2)]
    for task, name in enumerate(names):
        assert (runs / name / "summary.json").exists(), (runs / "logs" / f"{name}.log").read_text()
        assert len(os.listdir(runs / name / "kl")) == 3
        log = (runs / "logs" / f"{name}.log").read_text()
        assert "[slurm] " in log and f" job {job}_{task} (id " in log and "run exited with status 0" in log
    states = re.findall(r"JobState=(\S+)", scontrol("show", "job", job))
    assert states == ["COMPLETED"] * 4

    proc = run_sweep("sweep_minibatch.sh", *TINY_MINIBATCH, "--runs-dir", str(runs), "--launcher", "slurm")
    assert proc.stdout.strip() == f"[sweep] all 4 run(s) completed already in {runs}: nothing to submit"


def test_requeued_runs_resume_from_their_checkpoint(slurm, tmp_path):
    """Task 0 is requeued as on preemption (scontrol requeue: TERM to every process of the job); task 1 gets
    what --signal=B:USR1@... sends near the time limit (USR1 to the batch shell alone), so it stops its run and
    requeues itself. Both run again, resume from their checkpoint and finish."""
    runs = tmp_path / "runs"
    flags = ["--envs", "InvertedPendulum-v5", "--sizes", "32", "--seeds", "1 2", "--num-envs", "4", "--num-steps", "32",
             "--total-timesteps", str(30 * 128), "--runs-dir", str(runs)]
    job, _ = submit(*flags)
    names = [f"InvertedPendulum-v5__4x32__mb32__s{seed}" for seed in (1, 2)]

    def kl_files(name):
        return len(os.listdir(runs / name / "kl")) if (runs / name / "kl").is_dir() else 0
    assert wait_until(lambda: all(kl_files(n) >= 2 for n in names), 60), scontrol("show", "job", job)
    scontrol("requeue", f"{job}_0")
    proc = subprocess.run(["scancel", "--batch", "--signal=USR1", f"{job}_1"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    wait_for_array(job, 90)

    for task, name in enumerate(names):
        log = (runs / "logs" / f"{name}.log").read_text()
        assert (runs / name / "summary.json").exists(), log
        assert f"job {job}_{task} (id " in log and ", restart 1) on " in log, log
        assert "resuming from its checkpoint" in log and re.search(rf"^resuming \S*{name} after iteration", log, re.M)
        assert kl_files(name) == 30
    assert "got SIGTERM: waiting for the run to write its checkpoint" in (runs / "logs" / f"{names[0]}.log").read_text()
    log = (runs / "logs" / f"{names[1]}.log").read_text()
    assert "time limit near: stopping the run, to requeue it" in log
    assert re.search(r"^\[slurm\] \S+ \S+ requeued$", log, re.M), log
    assert re.findall(r"Restarts=(\d+)", scontrol("show", "job", job)) == ["1", "1"]
