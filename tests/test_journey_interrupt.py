"""Every way a launch can be stopped, through run_pretrain.sh with 2 CPU ranks and DataLoader workers (issue 10
points 8-9, issue 16 point 2).

Orderly: Ctrl-C (SIGINT to the script's process group, as a terminal sends it), SIGTERM and SIGHUP (a closed
terminal) to the script: the step finishes, all ranks save one checkpoint, the terminal shows the ranks' last
lines and the script exits 130 / 143 / 129 with one line naming the checkpoint.  Killed: kill -9 of the script,
of its process group, ``timeout -s KILL``, kill -9 of the launcher or of one rank: the job ends.  Every time, 10 s
later no process of the launch is left (found by an environment variable each one inherits), the output dir's
lock is free and the next launch resumes from the newest checkpoint.  The two chains stop each launch another way:
each re-run checks the stop before it and is the next one's subject.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

import _launch_util as L
import _trainer_util as U
from ernie_style.training import checkpoint as ckpt

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")
SCRIPT = os.path.join(U.REPO, "run_pretrain.sh")
pytestmark = pytest.mark.multiproc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return U.make_data(str(tmp_path_factory.mktemp("interrupt_data")))


@pytest.fixture
def tag(tmp_path):
    """tag(n): the mark of the test's n-th launch; whatever of them is left when the test ends is killed."""
    made = set()

    def mark(n=0) -> str:
        made.add(f"{tmp_path}-{n}")
        return f"{tmp_path}-{n}"

    yield mark
    for t in made:
        L.kill_marked(t)


def overrides(data, out, **extra):
    return U.tiny_overrides(*data, str(out), **{
        "train.max_steps": 100000, "train.save_steps": 2, "data.num_workers": 1, "train.micro_batch_size": 4,
        "train.logging_steps": 1, "train.resume": "auto", **extra})


def new_log(out, start: int) -> str:
    """What this launch wrote to train.log (it appends from ``start``)."""
    path = os.path.join(str(out), "train.log")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        f.seek(start)
        return f.read()


def start(data, out, tag, prefix=()):
    """A launch (after ``prefix``, e.g. a timeout command) started as from a terminal, once it has trained three
    steps and so saved a checkpoint (every 2 steps): (process, train.log offset where its lines begin)."""
    log = os.path.join(str(out), "train.log")
    offset = os.path.getsize(log) if os.path.exists(log) else 0
    p = subprocess.Popen([*prefix, "bash", SCRIPT, CONFIG, *overrides(data, out)], cwd=U.REPO,
                         env=L.env_of(tag, PYTHON=sys.executable, NPROC="2"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=L.as_a_terminal_starts_it)
    deadline = time.time() + 180
    while new_log(out, offset).count("global step ") < 3:
        assert p.poll() is None, p.communicate()
        assert time.time() < deadline, "no third step within 180 s"
        time.sleep(0.2)
    return p, offset


def newest(out) -> str:
    return os.path.realpath(os.path.join(str(out), "checkpoints", "latest"))


def assert_resumed_from(out, offset, path):
    assert f"resume: from {path}\n" in new_log(out, offset), (path, new_log(out, offset)[:2000])


def stopped(p, tag, out, way):
    """(stdout, stderr) of the launch ``p``, once every process of it has ended (within 10 s: the script too), and
    its output dir's lock is free."""
    left = L.left_after(tag, 10.0)
    assert not left, (way, left)  # was: the launcher and every rank, training on
    assert L.lock_is_free(out), way  # was: a re-run refused as "in use"
    return p.communicate(timeout=10)


def finish_one_step_after(data, out, path, tag):
    """The launch after the last stop: resumes from ``path`` and ends one step later."""
    step = int(os.path.basename(path).split("_")[1])
    log = os.path.join(str(out), "train.log")
    offset = os.path.getsize(log)
    p = subprocess.run(["bash", SCRIPT, CONFIG, *overrides(data, out, **{"train.max_steps": step + 1})], cwd=U.REPO,
                       env=L.env_of(tag, PYTHON=sys.executable, NPROC="2"), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert_resumed_from(out, offset, path)
    assert f"global step {step + 1}," in new_log(out, offset)


KILLS = {  # each kills at once: no checkpoint, no line
    "kill -9 of the script": lambda p: os.kill(p.pid, signal.SIGKILL),
    "kill -9 of its process group": lambda p: os.killpg(p.pid, signal.SIGKILL),
    "timeout -s KILL": lambda p: os.kill(p.pid, signal.SIGALRM),  # p is timeout: its own alarm, early
}


def test_killed_however_the_launch_dies_with_the_script(data, tmp_path, tag):
    out = tmp_path / "out"
    before = None
    for n, (way, kill) in enumerate(KILLS.items()):
        p, offset = start(data, out, tag(n), ("timeout", "-s", "KILL", "1000") if way.startswith("timeout") else ())
        if before:
            assert_resumed_from(out, offset, before)
        kill(p)
        stopped(p, tag(n), out, way)
        assert p.returncode in (-9, 137), (way, p.returncode)
        before = newest(out)
    finish_one_step_after(data, out, before, tag("last"))


def ctrl_c_twice(p) -> str:
    """Ctrl-C (SIGINT to the terminal's whole foreground group), and once the script has said it got it, Ctrl-C
    again, as an impatient user does; returns what the script wrote to stderr meanwhile."""
    os.killpg(p.pid, signal.SIGINT)
    said = b""
    while b"SIGINT received" not in said:
        chunk = os.read(p.stderr.fileno(), 4096)  # (the raw pipe: communicate() reads on from there)
        assert chunk, said
        said += chunk
    os.killpg(p.pid, signal.SIGINT)
    return said.decode()


ORDERLY = {  # (how, returning what it read of the script's stderr; exit code)
    "SIGHUP": (lambda p: os.kill(p.pid, signal.SIGHUP) or "", 129),  # a closed terminal or ssh session
    "SIGTERM": (lambda p: os.kill(p.pid, signal.SIGTERM) or "", 143),
    "SIGINT": (ctrl_c_twice, 130),
}


def test_orderly_stops_save_on_all_ranks_and_show_the_ranks_last_lines(data, tmp_path, tag):
    out = tmp_path / "out"
    before = None
    for n, (name, (stop, code)) in enumerate(ORDERLY.items()):
        p, offset = start(data, out, tag(n))
        if before:
            assert_resumed_from(out, offset, before)
        said = stop(p)
        stdout, stderr = stopped(p, tag(n), out, name)
        stderr = said + stderr
        assert p.returncode == code, (name, stderr[-3000:])
        lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
        assert len(lines) == 1 and lines[0].startswith(f"interrupted by {name} at step "), stderr[-3000:]
        step = int(lines[0].split(" at step ")[1].split(":")[0])
        path = os.path.join(str(out), "checkpoints", ckpt.step_dir_name(step))
        assert f"checkpoint saved in {path}" in lines[0]
        assert f"{name} received: finishing the current step, then saving a checkpoint" in stderr
        if name == "SIGINT":  # the second Ctrl-C is not passed on (the launcher would give up the save)
            assert "stopping already: the ranks are saving a checkpoint" in stderr, stderr[-3000:]
        # the ranks' last lines reach the terminal, once (they used to reach train.log only)
        assert stdout.count(f"\nglobal step {step},") == 1 and stdout.count(f"checkpoint: saved {path}\n") == 1, \
            stdout[-3000:]
        ckpt.verify(path)  # complete, checksums match
        assert {"rng_state.rank0.json", "rng_state.rank1.json"} <= set(os.listdir(path))  # both ranks took part
        assert newest(out) == path
        assert "FatalError" not in stdout + stderr and "Traceback" not in stdout + stderr
        for log in os.listdir(out / "log"):
            text = open(out / "log" / log, errors="replace").read()
            assert "FatalError" not in text and "Traceback" not in text, (log, text[-2000:])
        before = path
    finish_one_step_after(data, out, before, tag("last"))


def classify(procs: dict):
    """(launcher pid, rank pids) among the processes of a launch."""
    launcher = [pid for pid, cmd in procs.items() if " -m paddle.distributed.launch " in cmd]
    assert len(launcher) == 1, procs
    ranks = [pid for pid in procs if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1] == str(launcher[0])]
    assert len(ranks) == 2, procs
    return launcher[0], ranks


def rank_pid(ranks, rank: int) -> int:
    for pid in ranks:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        if env.get(b"PADDLE_TRAINER_ID") == str(rank).encode():
            return pid
    raise AssertionError("rank not found")


def test_kill_9_of_the_launcher_leaves_no_process(data, tmp_path, tag):
    out = tmp_path / "out"
    p, _ = start(data, out, tag())
    launcher, _ = classify(L.marked(tag()))
    os.kill(launcher, signal.SIGKILL)
    _, stderr = stopped(p, tag(), out, "kill -9 of the launcher")
    assert p.returncode == 137
    assert stderr.strip().splitlines()[-1].startswith("error: the launcher was killed (signal 9)"), stderr[-2000:]


def test_kill_9_of_one_rank_leaves_no_process(data, tmp_path, tag):
    out = tmp_path / "out"
    p, _ = start(data, out, tag())
    _, ranks = classify(L.marked(tag()))
    os.kill(rank_pid(ranks, 1), signal.SIGKILL)
    p.wait(timeout=120)  # the launcher notices within seconds; then its 3 s grace for the others
    assert p.returncode != 0
    stopped(p, tag(), out, "kill -9 of a rank")


def test_terminal_shows_our_lines_and_the_rank_logs_stay_complete(data, tmp_path):
    out = tmp_path / "out"
    over = U.tiny_overrides(*data, str(out), **{"train.max_steps": 3, "data.num_workers": 1, "train.micro_batch_size": 4})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, NPROC="2")
    p = subprocess.run(["bash", SCRIPT, CONFIG, *over], cwd=U.REPO, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    terminal = [line for line in (p.stdout + p.stderr).splitlines() if line.strip()]
    for noise in ("LAUNCH INFO", "Modified FLAGS", "FLAGS(name=", "tcp_store", "topology.py", "ccache",
                  "is not in group", "distributed_strategy"):
        assert not any(noise in line for line in terminal), (noise, terminal)
    ours = [line for line in terminal if line.startswith(("global step ", "trainer: ", "checkpoint: ", "test at ",
                                                                "warning: ")) or "building sample index" in line]
    assert [line for line in ours if line.startswith("global step ")][-1].startswith("global step 3,")
    assert len(ours) == len(terminal), [line for line in terminal if line not in ours]  # was ~16 of 80
    # the per-rank log keeps what the terminal leaves out
    rank0 = open(out / "log" / "workerlog.0", errors="replace").read()
    assert "topology.py" in rank0 and "global step 3," in rank0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_single_process_without_launcher_saves_and_exits_128_plus_signal(data, tmp_path, tag, sig):
    out, tag = tmp_path / "out", tag()
    over = U.tiny_overrides(*data, str(out), **{"train.max_steps": 100000, "train.save_steps": 100000,
                                                "data.num_workers": 1, "train.logging_steps": 1})
    p = subprocess.Popen([sys.executable, "-m", "ernie_style.run_pretrain", "--config", CONFIG, *over], cwd=U.REPO,
                         env=L.env_of(tag), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=L.as_a_terminal_starts_it)
    log = out / "train.log"
    deadline = time.time() + 120
    while not (log.exists() and "global step 3," in log.read_text()) and time.time() < deadline:
        assert p.poll() is None, p.communicate()
        time.sleep(0.2)
    assert len(L.marked(tag)) == 2  # the process and its DataLoader worker
    # the whole group, as a batch system's scancel/kill would, or a terminal's hang-up
    os.killpg(p.pid, sig)
    stdout, stderr = stopped(p, tag, out, sig.name)
    assert p.returncode == 128 + sig, stderr[-3000:]
    line = [x for x in stdout.splitlines() if x.startswith(f"interrupted ({sig.name}) at step ")]
    assert len(line) == 1, stdout[-2000:]
    ckpt.verify(line[0].split("checkpoint saved in ")[1].split(";")[0])
    assert "Traceback" not in stderr and "FatalError" not in stderr, stderr[-3000:]


def test_sighup_ignored_from_the_start_stays_ignored():
    """Under nohup a hang-up is to be ignored: training does not take SIGHUP over then."""
    from ernie_style.training.distributed import DistInfo
    from ernie_style.training.interrupt import Interrupts

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        interrupts = Interrupts(DistInfo(rank=0, world_size=1, local_rank=0, device="cpu"))
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == interrupts._handler
        interrupts.restore()
    finally:
        signal.signal(signal.SIGHUP, old)


def test_parent_death_runs_nothing_for_a_parent_that_is_gone():
    def run(parent):
        return subprocess.run([sys.executable, "-m", "ernie_style.training.parent_death", str(parent), "sh", "-c", "exit 7"],
                              capture_output=True, text=True)

    # its parent is this process: the command is exec'ed (its exit code); a pid that is not its parent stands
    # for a parent that died before the request took effect: nothing runs
    assert run(os.getpid()).returncode == 7
    assert run(1).returncode == 1
