"""Multi-process runs through the real ``paddle.distributed.launch`` on CPU (gloo).

One launched job per property: 2 ranks == 1 rank (weights), the same through run_pretrain.sh, as a 2-node
job, with sharding stage 1; exact resume after kill -9 of the whole job; a dying rank fails the job promptly.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

import _trainer_util as U
from ernie_style import run_pretrain

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")
SCRIPT = os.path.join(U.REPO, "run_pretrain.sh")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return U.make_data(str(tmp_path_factory.mktemp("launch_data")))


def final_weights(out, step=3):
    return paddle.load(os.path.join(str(out), "checkpoints", f"step_{step:08d}", "model_state.pdparams"))


def assert_close(a, b, tol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=0, atol=tol, err_msg=k)


def _env(**kw):
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    e.update(kw)
    return e


def _details(proc_or_out):
    out = str(proc_or_out)
    logs = []
    for d, _, files in os.walk(out):
        logs += [os.path.join(d, f) for f in files if f.startswith("workerlog")]
    return "\n".join(open(p, errors="replace").read()[-3000:] for p in logs)


@pytest.fixture(scope="module")
def reference_out(data, tmp_path_factory):
    """1 process x micro 8 x accumulation 1, 3 steps, dropout off (in-process)."""
    out = tmp_path_factory.mktemp("ref1")
    assert run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(*data, str(out))]) == 0
    return out


@pytest.fixture(scope="module")
def reference(reference_out):
    return final_weights(reference_out)


def assert_same_grad_norms(out, reference_out):
    """The logged grad_norm (of the averaged gradient, before clipping) is the 1-process one at every step."""
    a, b = U.log_fields(out / "train.log"), U.log_fields(reference_out / "train.log")
    assert sorted(a) == sorted(b) == [1, 2, 3]
    for step in a:
        assert abs(a[step]["grad_norm"] - b[step]["grad_norm"]) <= 1e-5 * (1 + b[step]["grad_norm"]), \
            (step, a[step]["grad_norm"], b[step]["grad_norm"])


def test_two_processes_through_run_pretrain_sh(data, reference, reference_out, tmp_path):
    """2 ranks x micro 2 x accumulation 2 == 1 rank x micro 8, with no_sync on the first micro-step of each step."""
    out = tmp_path / "out"
    over = U.tiny_overrides(*data, str(out), **{"train.micro_batch_size": 2})
    p = subprocess.run(["bash", SCRIPT, CONFIG, *over], cwd=U.REPO, env=_env(NPROC="2"), capture_output=True,
                       text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:] + _details(out)
    assert sorted(f for f in os.listdir(out / "log") if f.startswith("workerlog")) == ["workerlog.0", "workerlog.1"]
    log = open(out / "train.log").read()
    assert "trainer: 2 rank(s) on cpu, micro batch 2, accumulation 2, global batch 8" in log
    # DataParallel's gradient sync was off during the backward of 3 of the 6 micro-steps (1 of 2 per step).
    assert "trainer: 3 of 6 micro-steps ran under no_sync" in log
    assert sorted(U.log_losses(out / "train.log")) == [1, 2, 3]  # rank 0 only logs
    ckpt_files = os.listdir(out / "checkpoints" / "latest")
    assert {"rng_state.rank0.json", "rng_state.rank1.json", "optimizer.pdopt"} <= set(ckpt_files)
    assert_close(final_weights(out), reference)
    assert_same_grad_norms(out, reference_out)


def test_sharding_stage1_matches_and_resumes(data, reference, reference_out, tmp_path):
    out = tmp_path / "out"
    shard = {"train.micro_batch_size": 2, "train.global_batch_size": 8, "dist.sharding_stage": 1,
             "train.resume": "auto"}
    p = U.launch(2, CONFIG, U.tiny_overrides(*data, str(out), **shard), str(tmp_path / "log"))
    assert p.returncode == 0, p.stdout[-2000:] + _details(tmp_path)
    files = set(os.listdir(out / "checkpoints" / "latest"))
    assert {"optimizer.rank0.pdopt", "optimizer.rank1.pdopt"} <= files  # optimizer states are sharded
    assert "optimizer.pdopt" not in files
    assert_close(final_weights(out), reference)
    # Gradients are reduced to their owner inside the step: the logged norm is still the global one.
    assert_same_grad_norms(out, reference_out)
    # resume from the per-rank optimizer shards to step 5 == a straight 1-process run to step 5
    p = U.launch(2, CONFIG, U.tiny_overrides(*data, str(out), **shard, **{"train.max_steps": 5}),
                 str(tmp_path / "log2"))
    assert p.returncode == 0, p.stdout[-2000:] + _details(tmp_path)
    ref5 = tmp_path / "ref5"
    assert run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(*data, str(ref5), **{"train.max_steps": 5})]) == 0
    assert_close(final_weights(out, 5), final_weights(ref5, 5))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_launchers_as_a_two_node_job(data, reference, tmp_path):
    """run_pretrain.sh twice on this machine with NNODES=2 MASTER=127.0.0.1:PORT NPROC=1: one 2-rank job."""
    out = tmp_path / "out"
    over = U.tiny_overrides(*data, str(out), **{"train.micro_batch_size": 4})
    master = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(["bash", SCRIPT, CONFIG, *over], cwd=U.REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=_env(NNODES="2", MASTER=master, NPROC="1", LOG_DIR=str(tmp_path / f"log{node}")))
             for node in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs) + _details(tmp_path)
    assert "2 rank(s)" in open(out / "train.log").read()
    assert_close(final_weights(out), reference)


def test_exact_resume_after_kill_9_of_the_whole_job(data, tmp_path):
    drop = {"model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1, "train.max_steps": 20,
            "train.save_steps": 10, "train.micro_batch_size": 4, "train.resume": "auto"}
    straight = tmp_path / "straight"
    p = U.launch(2, CONFIG, U.tiny_overrides(*data, str(straight), **drop), str(tmp_path / "log_s"))
    assert p.returncode == 0, p.stdout[-2000:] + _details(tmp_path / "log_s")

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
           str(tmp_path / "log_k"), sys.executable, "-m", "tests._faults", "hang", "all", "10",
           "ernie_style.run_pretrain", "--config", CONFIG, *U.tiny_overrides(*data, str(killed), **drop)]
    job = subprocess.Popen(cmd, cwd=U.REPO, env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    latest = killed / "checkpoints" / "latest"
    deadline = time.time() + 180
    while time.time() < deadline and not (os.path.islink(latest) and os.readlink(latest) == "step_00000010"):
        assert job.poll() is None, _details(tmp_path / "log_k")
        time.sleep(0.5)
    assert os.path.islink(latest), _details(tmp_path / "log_k")
    # The launcher puts each rank in its own session: kill every process group of the job at once.
    procs = _descendants(job.pid)
    assert len(procs) >= 2, procs
    for pgid in {os.getpgid(p) for p in procs if _alive(p)} | {job.pid}:
        os.killpg(pgid, signal.SIGKILL)
    job.wait(timeout=30)
    time.sleep(0.5)
    assert not [p for p in procs if _alive(p)]
    assert max(U.log_losses(killed / "train.log")) == 10

    p = U.launch(2, CONFIG, U.tiny_overrides(*data, str(killed), **drop), str(tmp_path / "log_r"))
    assert p.returncode == 0, p.stdout[-2000:] + _details(tmp_path / "log_r")
    a, b = U.log_losses(straight / "train.log"), U.log_losses(killed / "train.log")
    assert "resume: from " in open(killed / "train.log").read()
    for step in range(11, 21):
        assert a[step] == b[step], (step, a[step], b[step])  # "loss: x.xxxxxxxxx", 9 decimals
    assert_close(final_weights(straight, 20), final_weights(killed, 20), tol=0)


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_dying_rank_fails_the_job_promptly(data, tmp_path):
    over = U.tiny_overrides(*data, str(tmp_path / "out"), **{"train.micro_batch_size": 4, "train.max_steps": 10000})
    # "promptly" = the job ends by itself soon after the rank dies, long before its 10000 steps: the launch
    # returns (the timeout only stops a hung test), non-zero, with the log stopping where the rank died.
    p = U.launch(2, CONFIG, over, str(tmp_path / "log"), timeout=180, entry=("tests._faults", "exit", "1", "2",
                                                                            "ernie_style.run_pretrain"))
    assert p.returncode != 0
    assert max(U.log_losses(tmp_path / "out" / "train.log")) < 100


def test_user_errors_stop_before_launch(data, tmp_path):
    two = {"train.micro_batch_size": 4}  # global 8 = 4 x 2 ranks
    over = U.tiny_overrides(*data, str(tmp_path / "out"), **two, **{"data.prefixes": "[/nope/corpus]"})
    p = subprocess.run(["bash", SCRIPT, CONFIG, *over], cwd=U.REPO, env=_env(NPROC="2"), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2
    assert "error: data.prefixes: /nope/corpus.idx not found" in p.stderr and "Traceback" not in p.stderr
    assert not os.path.exists(tmp_path / "out" / "log")  # no launcher was started
    over = U.tiny_overrides(*data, str(tmp_path / "out"), **two, **{"dist.sharding_stage": 2})
    p = subprocess.run(["bash", SCRIPT, CONFIG, *over], cwd=U.REPO, env=_env(NPROC="2"), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "dist.sharding_stage=2" in p.stderr
    # Batch sizes are checked for the ranks the launch will have (12 = 4 x 3 fits 1 rank, not 2).
    over = U.tiny_overrides(*data, str(tmp_path / "out"), **{"train.micro_batch_size": 4,
                                                              "train.global_batch_size": 12})
    p = subprocess.run(["bash", SCRIPT, CONFIG, *over], cwd=U.REPO, env=_env(NPROC="2"), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    errors = [ln for ln in p.stderr.splitlines() if "error" in ln.lower()]
    assert errors == ["error: train.global_batch_size=12: expected a multiple of train.micro_batch_size (4) x "
                      "data-parallel size (2) = 8"] and "Traceback" not in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "out" / "log")  # no launcher was started


def test_a_failing_rank_reads_as_one_line_after_its_last_lines(data, tmp_path):
    """Through run_pretrain.sh: no LAUNCH ERROR block (with the rank's whole command line), one line at the end
    naming the rank that failed first, its exit code and its log -- rank 1 (exit 3), not rank 0, which exits 1 as its
    consequence 0.2 s later, within the second after which the launcher looks and reports the lowest failed rank."""
    over = U.tiny_overrides(*data, str(tmp_path / "out"), **{"train.micro_batch_size": 4, "train.max_steps": 10000})
    p = subprocess.run(["bash", SCRIPT, CONFIG, *over], cwd=U.REPO, capture_output=True, text=True, timeout=180,
                       env=_env(NPROC="2", ERNIE_ENTRY="tests._faults",
                                ERNIE_TEST_FAULT="cascade 1 2 ernie_style.run_pretrain"))
    assert p.returncode != 0
    assert "LAUNCH ERROR" not in p.stderr and "Container rank" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    log = tmp_path / "out" / "log" / "workerlog.1"
    assert last == (f"error: rank 1 failed (exit code 3); the lines above end with the "
                    f"last lines of its log {log}; the launcher stopped the other ranks"), p.stderr
    # ... and they do, whichever rank's log the launcher showed (rank 0's, when it saw both dead at one look: then
    # the script shows rank 1's after it, on stderr)
    lines = set(open(log, encoding="utf-8").read().splitlines())
    shown = p.stderr.strip().splitlines()[-2:-1] + p.stdout.strip().splitlines()[-1:]
    assert any(ln in lines for ln in shown), (p.stdout[-1000:], p.stderr)


def _rank_exit(tmp_path, code: str, rank="1"):
    """Run ``python -c code`` as rank ``rank`` under ernie_style.training.rank_exit; (its result, the record)."""
    from ernie_style.training.rank_exit import read_exits

    out = tmp_path / f"log.{rank}"
    with open(out, "w") as f:
        p = subprocess.run([sys.executable, "-m", "ernie_style.training.rank_exit", str(tmp_path),
                            sys.executable, "-c", code], cwd=U.REPO, stdout=f, timeout=60,
                           env=_env(PADDLE_TRAINER_ID=rank))
    return p, next(e for e in read_exits(str(tmp_path)) if e.rank == int(rank))


def test_rank_exit_records_each_rank_and_ends_as_it_did(tmp_path):
    """The recorder the launcher runs every rank under: the rank's code (or signal) is its own, recorded with the
    time and the rank's log; the first failure is the earliest non-zero exit."""
    from ernie_style.training.rank_exit import RankExit, first_failure

    p, rec = _rank_exit(tmp_path, "import os; os._exit(3)", "1")
    assert p.returncode == 3 and (rec.rank, rec.code, rec.log) == (1, 3, str(tmp_path / "log.1"))
    p, rec = _rank_exit(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "0")
    assert p.returncode == rec.code == -9  # the launcher sees the same signal death as without the recorder
    p, rec = _rank_exit(tmp_path, "print('ok')", "2")
    assert p.returncode == rec.code == 0 and open(rec.log).read() == "ok\n"
    exits = [RankExit(0, 1, 10.5, "a"), RankExit(1, 3, 10.2, "b"), RankExit(2, -15, 11.0, "c"), RankExit(3, 0, 9, "d")]
    assert first_failure(exits) == exits[1] and first_failure([exits[3]]) is None
    assert RankExit.parse(exits[1].line()) == exits[1]
