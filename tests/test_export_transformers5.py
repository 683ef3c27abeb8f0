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
from test_export_finetuned import HF_CLASS, paddle_logits, probe, write_finetuned

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
    reports = H.load_everywhere(requests, root)
    names = ["mlm", *TASKS]
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
@pytest.mark.parametrize("task", TASKS)
def test_finetuned_export(loaded, major, task):
    reports, want, mask, _ = loaded
    rep = reports[major][task]
    H.assert_clean_load(rep)
    assert rep["class"] == HF_CLASS[task], rep["class"]
    rows = np.ones(len(mask), bool) if task == "seq_cls" else mask.astype(bool)
    assert np.abs(np.asarray(rep["logits"]) - want[task])[rows].max() < 1e-9
    assert rep["ids"] == reports["4"]["mlm"]["ids"][:2]
