"""Our exports load in transformers 4.x and 5.x alike: the same classes, no missing or unexpected keys, the same
tokenizer ids, logits equal to our Paddle model's in float64 (``tests/hf_load.py`` under both interpreters, each
started once for all the exports).

Budget: < 40 s.
"""
import os

import numpy as np
import paddle
import pytest

import _export_util as U
import _hf5_util as H
from export import to_pytorch
from ernie_style.arch import get_arch
from test_export_finetuned import BERT_HF_CLASS, HF_CLASS, paddle_logits, probe, write_finetuned, write_finetuned_bert

TEXTS = ["我是中国人", "The thing 是 PAD 2024年, 天气很好!", "ＡＢＣ 中文 zhōng", "學生们在说话"]
TASKS = ["seq_cls", "ner", "qa"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Exports of a pretraining checkpoint and of one fine-tuned model per head kind, loaded by both versions."""
    from export.verify import paddle_model

    root = tmp_path_factory.mktemp("hf5")
    cfg = U.tiny_config()
    ids, types, mask = probe(cfg)
    batch = {"ids": ids.tolist(), "types": types.tolist(), "mask": mask.tolist()}
    state = U.random_state(cfg, seed=3)
    ckpt = U.write_checkpoint(root / "ckpt", cfg, state)
    assert to_pytorch.main([str(ckpt), str(root / "hf_mlm")]) == 0
    ref = paddle_model(cfg, state)
    ref.to(dtype="float64")
    with paddle.no_grad():
        want = {"mlm": ref(paddle.to_tensor(ids), paddle.to_tensor(types), paddle.to_tensor(mask))[0].numpy()}
    requests = [{"dir": root / "hf_mlm", "texts": TEXTS, "fill": "我是中[MASK]人", **batch}]
    for i, task in enumerate(TASKS):
        src, model = write_finetuned(root / f"best_{task}", task, seed=7 + i)
        assert to_pytorch.main([src, str(root / f"hf_{task}")]) == 0
        want[task] = paddle_logits(model, ids, types, mask)
        requests.append({"dir": root / f"hf_{task}", "texts": TEXTS[:2], **batch})
    # the same for BERT (issue 18 point 7): BertForMaskedLM and BertFor{Sequence,Token}Classification /
    # QuestionAnswering, in the same two interpreter starts
    bcfg = U.tiny_bert_config()
    bstate = U.random_state(bcfg, seed=4)
    bckpt = U.write_checkpoint(root / "bert_ckpt", bcfg, bstate)
    assert to_pytorch.main([str(bckpt), str(root / "bert_hf_mlm"), "--verify"]) == 0
    bref = paddle_model({k: v for k, v in bcfg.items() if k != "arch"}, bstate, get_arch("bert"))
    bref.to(dtype="float64")
    with paddle.no_grad():
        want["bert_mlm"] = bref(paddle.to_tensor(ids), paddle.to_tensor(types), paddle.to_tensor(mask))[0].numpy()
    requests.append({"dir": root / "bert_hf_mlm", "texts": TEXTS, "fill": "我是中[MASK]人", **batch})
    for i, task in enumerate(TASKS):
        src, model = write_finetuned_bert(root / f"bert_best_{task}", task, seed=17 + i)
        assert to_pytorch.main([src, str(root / f"bert_hf_{task}"), "--verify"]) == 0
        want[f"bert_{task}"] = paddle_logits(model, ids, types, mask)
        requests.append({"dir": root / f"bert_hf_{task}", "texts": TEXTS[:2], **batch})
    reports = H.load_everywhere(requests, root)
    names = ["mlm", *TASKS, "bert_mlm", *(f"bert_{t}" for t in TASKS)]
    return {major: dict(zip(names, reps)) for major, reps in reports.items()}, want, mask, ckpt


@pytest.mark.parametrize("major", ["4", "5"])
def test_pretraining_export(loaded, major):
    from data_tools.tokenizer import BertTokenizer

    reports, want, mask, ckpt = loaded
    rep = reports[major]["mlm"]
    H.assert_clean_load(rep)
    assert rep["class"] == "RoFormerForMaskedLM" and rep["tokenizer"].startswith("BertTokenizer"), rep
    ours = BertTokenizer(os.path.join(ckpt, "vocab.txt"), do_lower_case=True)
    assert rep["ids"] == [[ours.cls_id, *ours.encode(t).tolist(), ours.sep_id] for t in TEXTS]
    real = mask.astype(bool)
    assert np.abs(np.asarray(rep["logits"]) - want["mlm"])[real].max() < 1e-9  # float64 on both sides
    assert len(rep["fill"]) == 5 and rep["fill"] == reports["4"]["mlm"]["fill"]


@pytest.mark.parametrize("major", ["4", "5"])
def test_bert_pretraining_export(loaded, major):
    reports, want, mask, _ = loaded
    rep = reports[major]["bert_mlm"]
    H.assert_clean_load(rep)
    assert rep["class"] == "BertForMaskedLM" and rep["tokenizer"].startswith("BertTokenizer"), rep
    assert rep["ids"] == reports[major]["mlm"]["ids"]  # the same vocab and tokenizer settings
    real = mask.astype(bool)
    assert np.abs(np.asarray(rep["logits"]) - want["bert_mlm"])[real].max() < 1e-9
    assert len(rep["fill"]) == 5 and rep["fill"] == reports["4"]["bert_mlm"]["fill"]


@pytest.mark.parametrize("major", ["4", "5"])
@pytest.mark.parametrize("arch", ["roformer", "bert"])
@pytest.mark.parametrize("task", TASKS)
def test_finetuned_export(loaded, major, task, arch):
    reports, want, mask, _ = loaded
    key = task if arch == "roformer" else f"bert_{task}"
    rep = reports[major][key]
    H.assert_clean_load(rep)
    assert rep["class"] == (HF_CLASS if arch == "roformer" else BERT_HF_CLASS)[task], rep["class"]
    rows = np.ones(len(mask), bool) if task == "seq_cls" else mask.astype(bool)
    assert np.abs(np.asarray(rep["logits"]) - want[key])[rows].max() < 1e-9
    assert rep["ids"] == reports["4"]["mlm"]["ids"][:2]
