"""docs/architecture.md against the code: the paths it names exist, the registries it names hold today's entries,
and a toy task and a toy masker are added exactly the way its "to add one" column says (one file, one line in the
registry the page names).  Budget: ~20 s (one short fine-tune)."""
import importlib
import json
import os
import re

import numpy as np
import pytest

import _finetune_util as F
import _trainer_util as T
from ernie_style import finetune

DOC = os.path.join(T.REPO, "docs", "architecture.md")
SEQ = os.path.join(T.REPO, "configs", "finetune", "seq_cls.yaml")
PRETRAIN = os.path.join(T.REPO, "configs", "roformer_tiny_demo.yaml")
TODAY = {"task": {"pretrain", "seq_cls", "pair_cls", "ner", "qa"}, "masker": {"wwm_ngram", "char", "span"},
         "tokenizer": {"bert_wordpiece", "roformer_word"}, "architecture": {"roformer", "bert"}}


def _seams() -> dict:
    """{seam: (registry name, module path)} from the page's seam table ("| seam | ... | `NAME` in `path` |")."""
    out = {}
    for line in open(DOC, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in TODAY:
            m = re.fullmatch(r"`(\w+)` in `([\w/]+\.py)`", cells[4])
            assert m, f"docs/architecture.md: the {cells[0]} row names no registry: {cells[4]!r}"
            out[cells[0]] = (m.group(1), m.group(2))
    return out


def _registry(seam: str) -> dict:
    name, path = _seams()[seam]
    return getattr(importlib.import_module(path[:-3].replace("/", ".").replace(".__init__", "")), name)


def test_every_path_the_page_names_exists():
    text = open(DOC, encoding="utf-8").read()
    named = {p for p in re.findall(r"`((?:data_tools|ernie_style|export|tests)/[\w/.]*)`", text) if "NAME" not in p}
    # the layer table names files relative to its row's directory
    for line in text.splitlines():
        m = re.match(r"\| `(data_tools|ernie_style|export)/`", line)
        if m:
            rest = line.split("|", 2)[2]  # the cells after the directory
            named |= {f"{m.group(1)}/{f}" for f in re.findall(r"`([\w]+(?:\.py|/))`", rest)}
    assert len(named) > 40
    assert [p for p in sorted(named) if not os.path.exists(os.path.join(T.REPO, p))] == []


def test_every_seam_names_its_registry_with_todays_entries():
    seams = _seams()
    assert set(seams) == set(TODAY)
    for seam, names in TODAY.items():
        registry = _registry(seam)
        assert isinstance(registry, dict) and set(registry) == names, (seam, sorted(registry))


TOY_TASK = '''
"""A toy task in one file: is the text longer than 9 characters?  Mean-pooled encoder + a linear layer."""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ernie_style.arch.roformer.modeling import RoFormerModel
from ernie_style.tasks.base import LossSpec
from ernie_style.tasks.classification import SeqClsTask, accuracy_macro_f1
from ernie_style.tasks.finetuning import load_encoder


class MeanPooled(nn.Layer):
    def __init__(self, config):
        super().__init__()
        self.roformer = RoFormerModel(config)
        self.out = nn.Linear(config.hidden_size, 2)
        for p in self.roformer.pooler.parameters():
            p.stop_gradient = True

    def forward(self, input_ids, attention_mask):
        seq, _ = self.roformer(input_ids, None, attention_mask)
        m = attention_mask.astype(seq.dtype).unsqueeze(-1)
        return self.out((seq * m).sum(axis=1) / m.sum(axis=1))


class LongTextTask(SeqClsTask):
    name = "long_text"
    tensor_keys = ("input_ids", "attention_mask", "labels")
    losses = (LossSpec("long_loss", "long_acc", "labels"),)

    def read_data(self):
        super().read_data()  # the seq_cls readers; labels replaced by "long" / "short"
        self.id2label, self.label2id = ["short", "long"], {"short": 0, "long": 1}
        for features in (self.train_features, self.dev_features, self.test_features or []):
            for f in features:
                f["label"] = int(len(f["input_ids"]) - 2 > 9)

    def build_model(self):
        model = MeanPooled(self.model_config)
        self.init_notes = load_encoder(model, self.init)
        return model

    def forward(self, model, t):
        return model(t["input_ids"], t["attention_mask"])

    def split_metrics(self, split, rows):
        features = self.dev_features if split == "dev" else self.test_features
        return accuracy_macro_f1(np.array([f["label"] for f in features]), rows.argmax(axis=1))
'''


@pytest.fixture(scope="module")
def seq_data(tmp_path_factory):
    return F.seq_files(str(tmp_path_factory.mktemp("seq")))


def test_a_new_task_is_one_file_and_one_registry_line(seq_data, tmp_path, monkeypatch):
    (tmp_path / "toy_task.py").write_text(TOY_TASK, encoding="utf-8")  # the one file
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_registry("task"), "long_text", "toy_task:LongTextTask")  # the registry line
    d = seq_data
    out = tmp_path / "out"
    over = F.tiny_overrides(str(out), d["train"], d["dev"], d["vocab"], **{"task.type": "long_text"})
    assert finetune.main([SEQ, *over]) == 0
    res = json.load(open(out / "results.json"))
    long = np.mean([len(t) > 9 for _, t in F.seq_examples(90, 1)])
    assert res["dev"]["accuracy"] >= max(long, 1 - long) + 0.15  # well above the majority class
    assert res["config"]["task"]["type"] == "long_text"
    assert ", long_loss: " in open(out / "train.log").read()
    assert json.load(open(out / "best_model" / "config.json"))["id2label"] == {"0": "short", "1": "long"}


def test_a_new_masker_is_one_file_and_one_registry_line(tmp_path, monkeypatch):
    """The toy masker of test_masking.py (which also trains with it), added through the registry this page names."""
    from test_masking import TOY_MASKER

    from ernie_style.config.pretrain import load_config
    from ernie_style.data.spec import SampleSpec
    from ernie_style.data.dataset import build_datasets

    (tmp_path / "toy_masker.py").write_text(TOY_MASKER, encoding="utf-8")  # the one file
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_registry("masker"), "every_kth", "toy_masker:EveryKthMasker")  # the registry line
    data = T.make_data(str(tmp_path / "data"))
    over = T.tiny_overrides(*data, str(tmp_path / "out"), **{"data.masking": "every_kth", "data.max_ngrams": 2})
    cfg = load_config(PRETRAIN, over)  # selected from the config
    train = build_datasets(cfg.data.blend, SampleSpec.from_config(cfg), num_samples=(6, 0, 0))[0]
    mask_id = 4  # [MASK] in make_data's vocab
    for i in range(6):
        s = train[i]
        text = np.flatnonzero(s["input_ids"] > mask_id)  # neither special nor masked
        body = np.sort(np.concatenate([text, s["masked_positions"]]))
        np.testing.assert_array_equal(s["masked_positions"], body[::3])  # every 3rd text token (max_ngrams + 1)
        assert (s["input_ids"][s["masked_positions"]] == mask_id).all()
