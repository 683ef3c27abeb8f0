"""Fine-tuning through real launches: run_finetune.sh with 2 CPU ranks == 1 rank; kill -9 and resume == straight."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

import _finetune_util as F
import _trainer_util as T
from ernie_style import finetune

SEQ = os.path.join(T.REPO, "configs", "finetune", "seq_cls.yaml")
SCRIPT = os.path.join(T.REPO, "run_finetune.sh")


def _env(**kw):
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    e.update(kw)
    return e


def _logs(out):
    found = []
    for d, _, files in os.walk(str(out)):
        found += [os.path.join(d, f) for f in files if f.startswith("workerlog")]
    return "\n".join(open(p, errors="replace").read()[-3000:] for p in found)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ftl"))
    vocab = F.write_vocab(root)
    train = F.write_tsv(os.path.join(root, "train.tsv"), F.seq_examples(160, 0), header=("label", "text_a"))
    dev = F.write_tsv(os.path.join(root, "dev.tsv"), F.seq_examples(40, 1), header=("label", "text_a"))
    small = F.write_tsv(os.path.join(root, "small.tsv"), F.seq_examples(24, 3), header=("label", "text_a"))
    return {"vocab": vocab, "train": train, "dev": dev, "small": small}


def weights(out, step):
    return paddle.load(os.path.join(str(out), "checkpoints", f"step_{step:08d}", "model_state.pdparams"))


def test_two_ranks_through_run_finetune_sh_equal_one_rank(data, tmp_path):
    """24 examples, global batch 8, 1 epoch = 3 steps: 2 ranks x micro 4 vs 1 rank x micro 8 (dropout off)."""
    base = F.tiny_overrides("", data["small"], data["dev"], data["vocab"], **{"train.epochs": 1})
    base = [o for o in base if not o.startswith("train.output_dir=")]
    ref = tmp_path / "one"
    assert finetune.main([SEQ, *base, f"train.output_dir={ref}", "train.micro_batch_size=8"]) == 0
    two = tmp_path / "two"
    p = subprocess.run(["bash", SCRIPT, SEQ, *base, f"train.output_dir={two}", "train.micro_batch_size=4"],
                       cwd=T.REPO, env=_env(NPROC="2"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:] + _logs(two)
    log = open(two / "train.log").read()
    assert "trainer: 2 rank(s) on cpu, micro batch 4, accumulation 1, global batch 8, max_steps 3" in log
    a, b = weights(ref, 3), weights(two, 3)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=0, atol=1e-5, err_msg=k)
    ra, rb = (json.load(open(d / "results.json")) for d in (ref, two))
    assert ra["dev"]["accuracy"] == rb["dev"]["accuracy"] and ra["best_step"] == rb["best_step"]
    # dev predictions gathered from both ranks: every example once, in input order
    pa, pb = ((ref / "predictions_dev.jsonl").read_text(), (two / "predictions_dev.jsonl").read_text())
    assert pa == pb and pb.count("\n") == 40


def test_user_mistakes_stop_run_finetune_sh_before_launch(data, tmp_path):
    base = F.tiny_overrides(str(tmp_path / "out"), "/nope/train.tsv", data["dev"], data["vocab"])
    p = subprocess.run(["bash", SCRIPT, SEQ, *base], cwd=T.REPO, env=_env(NPROC="2"), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and p.stderr.strip() == "error: /nope/train.tsv: file not found", p.stderr
    assert not os.path.exists(tmp_path / "out")
    p = subprocess.run(["bash", SCRIPT], cwd=T.REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "usage: " in p.stderr and "run_finetune.sh [--check-cluster] CONFIG" in p.stderr


def _children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def test_kill_9_mid_fine_tune_then_resume_gives_the_straight_run(data, tmp_path):
    """160 examples, global batch 16, 2 epochs = 20 steps, eval + checkpoint every 5, dropout on."""
    over = F.tiny_overrides("", data["train"], data["dev"], data["vocab"], **{
        "model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1, "train.eval_every": 5,
        "train.resume": "auto"})
    over = [o for o in over if not o.startswith("train.output_dir=")]
    straight = tmp_path / "straight"
    assert finetune.main([SEQ, *over, f"train.output_dir={straight}"]) == 0

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tests._faults", "hang", "all", "10", "ernie_style.finetune", SEQ, *over,
           f"train.output_dir={killed}"]
    job = subprocess.Popen(cmd, cwd=T.REPO, env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    latest = killed / "checkpoints" / "latest"
    deadline = time.time() + 180
    while time.time() < deadline and not (os.path.islink(latest) and os.readlink(latest) == "step_00000010"):
        assert job.poll() is None
        time.sleep(0.3)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    assert not (killed / "results.json").exists()
    assert finetune.main([SEQ, *over, f"train.output_dir={killed}"]) == 0
    assert "resume: from " in open(killed / "train.log").read()
    a, b = (json.load(open(d / "results.json")) for d in (straight, killed))
    assert a["dev"] == b["dev"] and a["best_step"] == b["best_step"]  # every metric, to the last bit
    assert (straight / "predictions_dev.jsonl").read_text() == (killed / "predictions_dev.jsonl").read_text()
    wa, wb = weights(straight, 20), weights(killed, 20)
    assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)
    ba = paddle.load(str(straight / "best_model" / "model_state.pdparams"))
    bb = paddle.load(str(killed / "best_model" / "model_state.pdparams"))
    assert all(np.array_equal(ba[k].numpy(), bb[k].numpy()) for k in ba)
