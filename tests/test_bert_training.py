"""Issue 18 point 5: what works for RoFormer works for BERT (``model.arch=bert``), one tiny run per feature.

The trainer, the tasks, fleet wrapping, AMP, recompute and checkpoints are architecture-independent; these runs
show they reach BERT through the ArchSpec (the RoFormer versions of the same properties are the tests in
test_trainer.py, test_launch.py, test_finetune*.py; the multi-process run here covers fleet data parallel and
sharding stage 1 together).  Reference: a 1-process, 3-step run with dropout off.
"""
import json
import os

import paddle
import pytest

import _finetune_util as F
import _trainer_util as U
from ernie_style import finetune, finetune_grid, run_pretrain
from test_launch import _details, assert_close, assert_same_grad_norms, final_weights

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")  # its model keys are BERT's too
SEQ = os.path.join(U.REPO, "configs", "finetune", "seq_cls.yaml")
BERT = {"model.arch": "bert"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return U.make_data(str(tmp_path_factory.mktemp("bert_data")))


def run(data, out, **extra):
    return run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(*data, str(out), **BERT, **extra)])


@pytest.fixture(scope="module")
def ref(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bert_ref")
    assert run(data, out, **{"train.save_steps": 3}) == 0
    return out


def test_wwm_sop_pretraining_builds_bert_and_recompute_gives_the_same_weights(data, ref, tmp_path):
    cfg = json.load(open(os.path.join(ref, "checkpoints", "latest", "model_config.json")))
    assert cfg["arch"] == "bert" and "rotary_value" not in cfg
    state = final_weights(ref)
    assert "bert.embeddings.position_embeddings.weight" in state and "cls.seq_relationship.weight" in state
    losses = U.log_fields(os.path.join(ref, "train.log"))
    assert all(v["sop_loss"] > 0 for v in losses.values())  # WWM + SOP
    assert run(data, tmp_path, **{"train.recompute": True, "train.save_steps": 3}) == 0
    assert "recompute: 2 encoder layers" in open(os.path.join(tmp_path, "train.log")).read()
    assert_close(final_weights(tmp_path), state, tol=1e-6)


def test_mlm_only_builds_no_binary_head(data, tmp_path):
    """(AMP: test_trainer.py's test_amp_is_wired_through_paddle runs for both architectures.)"""
    over = {"data.binary_head": False, "train.save_steps": 3}
    assert run(data, tmp_path, **over) == 0
    state = final_weights(tmp_path)
    assert not [k for k in state if k.startswith("cls.seq_relationship")]
    lines = [ln for ln in open(os.path.join(tmp_path, "train.log")) if ln.startswith("global step")]
    assert len(lines) == 3 and all(", sop_loss: 0.000000," in ln for ln in lines)


def test_exact_resume_with_dropout(data, tmp_path):
    drop = {"model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1, "train.save_steps": 2}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run(data, straight, **drop, **{"train.max_steps": 4}) == 0
    assert run(data, resumed, **drop, **{"train.max_steps": 2}) == 0
    assert run(data, resumed, **drop, **{"train.max_steps": 4, "train.resume": "auto"}) == 0
    a, b = U.log_losses(os.path.join(straight, "train.log")), U.log_losses(os.path.join(resumed, "train.log"))
    assert [a[s] for s in (3, 4)] == [b[s] for s in (3, 4)]
    assert_close(final_weights(straight, 4), final_weights(resumed, 4), tol=0)


@pytest.mark.multiproc
def test_two_ranks_with_sharding_stage1_equal_one_rank(data, ref, tmp_path):
    out = tmp_path / "out"
    over = {**BERT, "train.micro_batch_size": 2, "train.global_batch_size": 8, "dist.sharding_stage": 1,
            "train.save_steps": 3}
    p = U.launch(2, CONFIG, U.tiny_overrides(*data, str(out), **over), str(tmp_path / "log"))
    assert p.returncode == 0, p.stdout[-2000:] + _details(tmp_path)
    assert {"optimizer.rank0.pdopt", "optimizer.rank1.pdopt"} <= set(os.listdir(out / "checkpoints" / "latest"))
    assert_close(final_weights(out), final_weights(ref))
    assert_same_grad_norms(out, ref)


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    return F.seq_files(str(tmp_path_factory.mktemp("bert_seq")), n_train=96, n_dev=30)


def test_seq_cls_from_a_bert_checkpoint_uses_the_pooled_head(ref, task_data, tmp_path):
    d = task_data
    over = F.tiny_overrides(str(tmp_path), d["train"], d["dev"], d["vocab"], **{"train.epochs": 1})
    over = [o for o in over if not o.startswith(("model.hidden_size", "model.num_", "model.intermediate",
                                                 "model.max_position", "model.init", "data.vocab_file"))]
    assert finetune.main([SEQ, *over, f"model.init={ref}"]) == 0
    best = os.path.join(tmp_path, "best_model")
    state = paddle.load(os.path.join(best, "model_state.pdparams"))
    assert "classifier.weight" in state and "bert.pooler.dense.weight" in state  # BertForSequenceClassification's
    assert json.load(open(os.path.join(best, "model_config.json")))["arch"] == "bert"
    assert json.load(open(os.path.join(tmp_path, "results.json")))["dev"]


@pytest.mark.parametrize("task", ["ner", "qa"])
def test_ner_and_qa_random_init_bert(task, tmp_path):
    import random

    cfg = os.path.join(U.REPO, "configs", "finetune", f"{task}.yaml")
    rng = random.Random(0)
    if task == "ner":
        from test_finetune_ner import _synthetic_sentences, _write_conll

        train, dev = (_write_conll(tmp_path / f"{n}.txt", _synthetic_sentences(rng, k, "bio")) for n, k in
                      (("train", 48), ("dev", 16)))
        extra = {"data.max_seq_len": 24, "data.doc_stride": 10}
    else:
        from test_finetune_qa import _synthetic_questions

        train, dev = (tmp_path / f"{n}.json" for n in ("train", "dev"))
        train.write_text(json.dumps(_synthetic_questions(rng, 24, "tr")[0], ensure_ascii=False), encoding="utf-8")
        dev.write_text(json.dumps(_synthetic_questions(rng, 8, "dv")[0], ensure_ascii=False), encoding="utf-8")
        extra = {"data.max_seq_len": 32, "data.max_query_len": 4, "data.doc_stride": 10}
    rc, out = F.tiny_finetune(tmp_path, cfg, str(train), str(dev), "", **BERT, **extra,
                              **{"train.epochs": 1, "train.micro_batch_size": 16})
    assert rc == 0
    state = paddle.load(os.path.join(out, "best_model", "model_state.pdparams"))
    assert ("qa_outputs.weight" if task == "qa" else "classifier.weight") in state
    assert any(k.startswith("bert.encoder.") for k in state)


def test_finetune_grid_on_bert(task_data, tmp_path):
    d = task_data
    over = F.tiny_overrides(str(tmp_path / "grid"), d["train"], d["dev"], d["vocab"], **{"train.epochs": 1, **BERT})
    over = [o for o in over if not o.startswith("optim.max_lr=")]  # the grid's axis
    assert finetune_grid.main([SEQ, "--grid", "optim.max_lr=3e-3,1e-3", *over]) == 0
    runs = sorted((tmp_path / "grid" / "runs").iterdir())
    assert [r.name for r in runs] == ["max_lr=1e-3", "max_lr=3e-3"], runs
    for r in runs:
        assert json.load(open(r / "seed_42" / "best_model" / "model_config.json"))["arch"] == "bert"
    assert "Best combination: `optim.max_lr=" in open(tmp_path / "grid" / "grid.md", encoding="utf-8").read()


def test_train_resume_takes_a_hugging_face_bert_dir_directly(data, tmp_path):
    """Issue 18 point 7: train.resume=HF_DIR initialises the weights as export.from_pytorch converts them (every
    rank reads the directory itself); the same command run again continues the run's own checkpoints."""
    import shutil

    import _hf_bert_util as B
    from export import from_pytorch

    prefix, vocab = data
    n_vocab = sum(1 for _ in open(vocab, encoding="utf-8"))
    hf = B.write_hf_bert(tmp_path / "hfl", "pretraining", tf_names=True, vocab_size=n_vocab, hidden_size=32,
                         num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=512)
    shutil.copy(vocab, os.path.join(hf, "vocab.txt"))  # the vocab the data was tokenized with
    assert from_pytorch.main([hf, str(tmp_path / "converted")]) == 0
    from ernie_style.config.pretrain import load_config
    from ernie_style.tasks.pretrain import PretrainTask
    from ernie_style.training.distributed import DistInfo
    from ernie_style.training.trainer import Trainer

    out = tmp_path / "out"
    cfg = load_config(CONFIG, U.tiny_overrides(prefix, vocab, str(out), **BERT, **{"train.resume": hf}))
    trainer = Trainer(cfg, DistInfo(0, 1, 0, "cpu"), PretrainTask(cfg))
    assert trainer.step == 0
    assert_close(trainer.inner.state_dict(), paddle.load(str(tmp_path / "converted" / "model_state.pdparams")), tol=0)
    trainer.release()
    log = open(out / "train.log").read()
    assert f"resume: initialised weights from model dir {hf}" in log and "becomes our binary head" in log, log
    over = {"train.resume": hf, "train.max_steps": 2, "train.save_steps": 2}
    assert run(data, out, **over, **{"train.overwrite_output": True}) == 0
    assert run(data, out, **{**over, "train.max_steps": 3}) == 0
    assert "continuing it" in open(out / "train.log").read()
    assert os.path.isdir(out / "checkpoints" / "step_00000003")
