"""seq_cls and pair_cls: a label per text or text pair from the [CLS] vector (the architecture's sequence
classification head, ``heads.build_task_model``).

Loss: mean cross-entropy over the labelled examples of the global batch.  Dev/test metrics on the full split:
``accuracy`` (the main metric) and ``macro_f1`` = the unweighted mean over the labels occurring in the gold or
predicted labels of per-label F1 = 2TP / (2TP + FP + FN) (``sklearn.metrics.f1_score(average="macro")``), and
``loss`` (mean cross-entropy).  A test file without labels gets predictions only.
``classifier.dense`` starts from the pretrained pooler's dense layer when the init has one.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import paddle

from ernie_style.constants import IGNORE_INDEX
from ernie_style.downstream.cls_data import encode_example, read_cls
from ernie_style.downstream.common import build_label_set, check_labels, check_malformed
from ernie_style.tasks.base import LossSpec
from ernie_style.tasks.finetuning import FinetuneTask, encoder_inputs, labels_to_ids, load_encoder
from ernie_style.arch.state_dict_adapter import pooler_names
from ernie_style.tasks.heads import build_task_model
from ernie_style.tasks.losses import masked_correct, masked_cross_entropy


def accuracy_macro_f1(gold: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
    """accuracy and macro-F1 (over the labels present in ``gold`` or ``pred``) of int label arrays."""
    assert len(gold) == len(pred) and len(gold) > 0
    f1s = []
    for c in np.union1d(gold, pred):
        tp = float(np.sum((pred == c) & (gold == c)))
        fp = float(np.sum((pred == c) & (gold != c)))
        fn = float(np.sum((pred != c) & (gold == c)))
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(gold == pred)), "macro_f1": float(np.mean(f1s))}


class SeqClsTask(FinetuneTask):
    name = "seq_cls"
    pair = False
    tensor_keys = ("input_ids", "token_type_ids", "attention_mask", "labels")
    losses = (LossSpec("cls_loss", "acc", "labels"),)
    main_metric = "accuracy"

    # -- data -------------------------------------------------------------------------------------------------

    def read_data(self) -> None:
        d = self.cfg.data
        kw = dict(pair=self.pair, fmt=d.format, columns=d.columns, text_keys=d.text_keys, label_key=d.label_key)
        train = read_cls(d.train_file, **kw)
        check_malformed(train.path, train.malformed, scored=False, limit=d.max_bad_lines,
                        n_items=len(train.examples) + train.malformed.total)
        dev = read_cls(d.dev_file, **kw)
        test = read_cls(d.test_file, allow_unlabelled=True, **kw) if d.test_file else None
        self.id2label = build_label_set(ex.label for ex in train.examples)
        self.label2id = {lab: i for i, lab in enumerate(self.id2label)}
        for f in (dev, test):
            if f is not None:
                check_malformed(f.path, f.malformed, scored=True, limit=0, n_items=0)
                if f.labelled:
                    check_labels(f.path, [(ex.line, ex.label) for ex in f.examples], self.label2id,
                                 [ex.text_a for ex in f.examples])
        self.files = {"train": train, "dev": dev, "test": test}
        # a training file with lines left out is a warning (the checks above allow none in dev/test files)
        self.reports = [f.report() for f in (train, dev, test) if f is not None and not f.malformed.total]
        self.warnings = [f"{train.report()} (data.max_bad_lines={d.max_bad_lines})"] if train.malformed.total else []
        self.train_features = self._encode("train")
        self.dev_features = self._encode("dev")
        self.test_features = self._encode("test") if test is not None else None

    def _encode(self, split: str) -> List[dict]:
        f = self.files[split]
        labels = labels_to_ids([ex.label for ex in f.examples], self.label2id)
        out, n_cut = [], 0
        for ex, label in zip(f.examples, labels):
            ids, types, cut = encode_example(self.tokenizer, ex, self.cfg.data.max_seq_len)
            n_cut += cut
            out.append({"input_ids": ids, "token_type_ids": types, "label": int(label)})
        if n_cut:
            how = "from the longer text" if self.pair else "at the end"
            self.reports.append(f"{self.name}: {split}: {n_cut} of {len(out)} examples longer than data.max_seq_len="
                                f"{self.cfg.data.max_seq_len} tokens, cut {how}")
        return out

    def collate(self, features: List[dict]) -> dict:
        return {**encoder_inputs(features, self.tokenizer.pad_id),
                "labels": np.array([f["label"] for f in features], np.int64)}

    # -- model --------------------------------------------------------------------------------------------------

    def build_model(self):
        model = build_task_model(self.model_config, self.name, len(self.id2label))
        self.init_notes = load_encoder(model, self.init)
        weight, bias = pooler_names(model.spec)
        if model.spec.task_heads[self.name].head == "cls_mlp" and self.init.state is not None \
                and weight in self.init.state:
            # The [CLS] vector through the pretrained pooler's dense layer (then the task's activation); a
            # ``pooled`` head uses the pooler itself.
            dense = model.classifier.dense
            dense.weight.set_value(paddle.to_tensor(np.asarray(self.init.state[weight], np.float32)))
            dense.bias.set_value(paddle.to_tensor(np.asarray(self.init.state[bias], np.float32)))
            self.init_notes.append(f"classifier.dense initialised from {weight.rsplit('.', 1)[0]}")
        return model

    def forward(self, model, t):
        return model(t["input_ids"], t["token_type_ids"], t["attention_mask"])  # (B, C)

    def loss_terms(self, logits, t) -> List[paddle.Tensor]:
        return [masked_cross_entropy(logits, t["labels"])[0]]

    def correct_counts(self, logits, t) -> List[paddle.Tensor]:
        return [masked_correct(logits, t["labels"])]

    # -- eval ---------------------------------------------------------------------------------------------------

    @property
    def row_width(self) -> int:
        return len(self.id2label)

    def eval_rows(self, batch, t, logits) -> np.ndarray:
        return logits.astype("float32").numpy()  # (B, C)

    def split_metrics(self, split: str, rows: np.ndarray) -> Dict[str, float]:
        features = self.dev_features if split == "dev" else self.test_features
        gold = np.array([f["label"] for f in features], np.int64)
        keep = gold != IGNORE_INDEX
        if not keep.any():
            return {}  # an unlabelled test file: predictions only
        logits = rows[keep]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        out = accuracy_macro_f1(gold[keep], logits.argmax(axis=1))
        out["loss"] = float(-log_probs[np.arange(len(logits)), gold[keep]].mean())
        return out

    def predictions(self, split: str, rows: np.ndarray) -> List[dict]:
        f = self.files[split]
        return [{"prediction": self.id2label[int(k)], "line": ex.line}
                for k, ex in zip(rows.argmax(axis=1), f.examples)]


class PairClsTask(SeqClsTask):
    name = "pair_cls"
    pair = True
