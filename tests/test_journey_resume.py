"""Issue 10, re-runs and resume: what a resume source must share with the config, checked before launch.

Refusals go through ``run_pretrain.sh`` (they must come before any process starts: no ``OUTPUT/log``, one line);
accepted changes run in-process for speed.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

import _trainer_util as U
from ernie_style import run_pretrain

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")
SCRIPT = os.path.join(U.REPO, "run_pretrain.sh")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return U.make_data(str(tmp_path_factory.mktemp("resume_data")))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A finished 2-step run (checkpoint at step 2) and a plain model dir made from it."""
    out = tmp_path_factory.mktemp("trained")
    assert run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(*data, str(out), **{
        "train.max_steps": 2, "train.save_steps": 2})]) == 0
    plain = out / "plain"
    plain.mkdir()
    for name in ("model_state.pdparams", "model_config.json", "vocab.txt"):
        shutil.copy(out / "checkpoints" / "latest" / name, plain / name)
    return out, plain


def script(overrides, out):
    """run_pretrain.sh with 1 CPU rank; (returncode, stdout, stderr); asserts nothing was launched on refusal."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, NPROC="1")
    p = subprocess.run(["bash", SCRIPT, CONFIG, *overrides], cwd=U.REPO, env=env, capture_output=True, text=True,
                       timeout=300)
    return p


def refused(p, out):
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    errors = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), p.stderr
    assert not os.path.exists(os.path.join(str(out), "log")), "refused after launch"
    return errors[0]


def permuted_vocab(src, dst):
    lines = open(src, encoding="utf-8").read().splitlines()
    head, tail = lines[:5], lines[5:]
    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n".join(head + tail[::-1]) + "\n")  # same size, the same specials, other ids for the rest
    return str(dst)


def test_other_vocab_refused_for_checkpoint_and_model_dir(data, trained, tmp_path):
    out, plain = trained
    other = permuted_vocab(data[1], tmp_path / "vocab_reordered.txt")
    p = script(U.tiny_overrides(data[0], other, str(out), **{"train.resume": "auto", "train.max_steps": 4}), out)
    # out/log does not exist: the fixture ran in-process
    line = refused(p, out)
    assert f"data.vocab_file={other!r}" in line and os.path.join(str(out), "checkpoints") in line and "vocab.txt" in line
    new_out = tmp_path / "continued"
    p = script(U.tiny_overrides(data[0], other, str(new_out), **{"train.resume": str(plain)}), new_out)
    line = refused(p, new_out)
    assert "model dir" in line and str(plain) in line


def test_model_dir_of_another_width_one_line_before_launch(data, trained, tmp_path):
    out, plain = trained  # trained with hidden 32, intermediate 64
    new_out = tmp_path / "wide"
    p = script(U.tiny_overrides(*data, str(new_out), **{"train.resume": str(plain), "model.hidden_size": 64,
                                                        "model.intermediate_size": 128}), new_out)
    line = refused(p, new_out)
    assert "model.hidden_size: 64 (config) vs 32 (model dir)" in line
    assert "model.intermediate_size: 128 (config) vs 64 (model dir)" in line
    assert len(line) < 400 and "missing" not in line


@pytest.mark.parametrize("change, key", [({"data.max_seq_len": 32}, "data.max_seq_len: 64 (checkpoint) vs 32 (now)"),
                                         ({"data.split": "80,10,10"}, "data.split"),
                                         ({"data.masked_lm_prob": 0.2}, "data.masked_lm_prob"),
                                         ({"data.max_ngrams": 2}, "data.max_ngrams: 3 (checkpoint) vs 2 (now)"),
                                         ({"train.seed": 7}, "train.seed: 1234 (checkpoint) vs 7 (now)"),
                                         ("other_data", "data.prefixes")])
def test_data_fingerprint_refused(data, trained, tmp_path, change, key):
    out, _ = trained
    prefix = data[0]
    if change == "other_data":  # the same vocab, other documents
        prefix, _ = U.make_data(str(tmp_path / "other"), seed=5)
        shutil.copy(data[1], tmp_path / "other" / "vocab.txt")
        change = {}
    state = json.load(open(out / "checkpoints" / "latest" / "trainer_state.json"))
    assert set(state["data_fingerprint"]) >= {"data.prefixes", "data.split", "data.max_seq_len", "train.seed"}
    p = script(U.tiny_overrides(prefix, data[1], str(out), **{"train.resume": "auto", "train.max_steps": 4},
                                **change), out)
    line = refused(p, out)
    assert key in line, line
    assert line.count(" (checkpoint) vs ") == 1, line  # only the changed key is named


def test_rerun_of_continued_pretraining_checks_the_lineage_checkpoint(data, trained, tmp_path):
    """train.resume=PLAIN_DIR run again resumes the checkpoint of that lineage: its data fingerprint applies."""
    _, plain = trained
    out = tmp_path / "continued"
    assert run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(*data, str(out), **{
        "train.resume": str(plain), "train.max_steps": 2, "train.save_steps": 2})]) == 0
    p = script(U.tiny_overrides(*data, str(out), **{"train.resume": str(plain), "train.max_steps": 3,
                                                    "data.max_seq_len": 32}), out)
    line = refused(p, out)
    assert "data.max_seq_len: 64 (checkpoint) vs 32 (now)" in line and "step_00000002" in line


def test_optimisation_changes_allowed_and_printed(data, trained, tmp_path):
    out, _ = trained
    resumed = tmp_path / "resumed"
    shutil.copytree(out / "checkpoints", resumed / "checkpoints", symlinks=True)
    args = U.tiny_overrides(*data, str(resumed), **{"train.resume": "auto", "train.max_steps": 3,
                                                    "optim.max_lr": 5e-3, "optim.grad_clip": 0.5})
    assert run_pretrain.main(["--config", CONFIG, *args]) == 0
    log = open(resumed / "train.log", encoding="utf-8").read()
    assert "resume: optim.max_lr: 0.001 (checkpoint) -> 0.005 (now)" in log
    assert "resume: optim.grad_clip: 1.0 (checkpoint) -> 0.5 (now)" in log
    assert "optim.min_lr" not in log and "optim.weight_decay" not in log
    # the new peak is used from the first resumed step: step 3 is in the decay after warmup 2 of 100
    lr = U.log_fields(resumed / "train.log")[3]["learning rate"]
    assert abs(lr - (5e-3 - (5e-3 - 1e-4) * (3 - 2) / (100 - 2))) < 1e-8, lr  # min_lr 1e-4 from the YAML


def test_resume_path_layouts_named(data, trained, tmp_path):
    out, _ = trained
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"")
    new_out = tmp_path / "o1"
    line = refused(script(U.tiny_overrides(*data, str(new_out), **{"train.resume": str(hf)}), new_out), new_out)
    assert "Hugging Face model directory" in line and "export.from_pytorch" in line and "checksums" not in line
    line = refused(script(U.tiny_overrides(*data, str(new_out), **{"train.resume": str(out)}), new_out), new_out)
    assert "training output directory" in line and os.path.join(str(out), "checkpoints", "latest") in line
    assert "checksums" not in line


def test_ten_document_corpus_split_advice_works(tmp_path):
    prefix, vocab = U.make_data(str(tmp_path / "d"), n_docs=10)
    out = tmp_path / "out"
    over = U.tiny_overrides(prefix, vocab, str(out), **{"train.max_steps": 2, "train.eval_steps": 1})
    p = script(over + ["data.split=98,2,0"], out)
    line = refused(p, out)
    assert "valid split" in line and "10/0/0 of its 10 documents" in line, line
    advice = line.split("use data.split=")[1].split()[0]
    assert advice == "9,1,0", line
    assert run_pretrain.main(["--config", CONFIG, *over, f"data.split={advice}"]) == 0
    assert "eval at step 1:" in open(out / "train.log", encoding="utf-8").read()
