"""ner: a BIO/BIOES tag per input character (the architecture's token classification head, ``heads.build_task_model``).

Data, windows, stitching and metrics: :mod:`ernie_style.downstream.ner` (rules in docs/finetune.md, "NER and QA
metrics").  Each sentence's text is tokenized whole, as the exported tokenizer does in a ``token-classification``
pipeline; a token covering several characters predicts them all.  Loss: mean cross-entropy over the labelled
tokens (those that predict characters) of the global batch.  Dev/test metrics on the full split, after stitching
the windows back: entity-level ``f1`` (the main metric), ``precision``, ``recall``, ``per_type`` (conlleval
semantics) and the per-character tag ``accuracy``.  Predictions: per input sentence, the list of its tags, one
per input line.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import paddle

from ernie_style.constants import IGNORE_INDEX
from ernie_style.downstream import ner
from ernie_style.downstream.common import check_malformed
from ernie_style.tasks.base import LossSpec
from ernie_style.tasks.finetuning import FinetuneTask, encoder_inputs, load_encoder
from ernie_style.tasks.heads import build_task_model
from ernie_style.tasks.losses import masked_correct, masked_cross_entropy



def _alignment_report(split: str, c: dict) -> list:
    """Log lines on what tokenizing the sentences' texts does to the items of a split (none when nothing)."""
    out = []
    if c["shared"] or c["no_token"]:
        out.append(f"ner: {split}: {c['shared']} of {c['items']} characters share a token with the one before "
                   f"(digits, Latin letters: one tag for the token, B-/I- spread over its characters), "
                   f"{c['no_token']} have no token (spaces, control characters: predicted O)")
    if c["across"]:
        out.append(f"ner: {split}: {c['across']} tokens cross an entity boundary (one tag for their characters: "
                   f"these characters' gold tags cannot all be predicted)")
    return out


class NerTask(FinetuneTask):
    name = "ner"
    tensor_keys = ("input_ids", "token_type_ids", "attention_mask", "labels")
    losses = (LossSpec("ner_loss", "tag_acc", "labels"),)
    main_metric = "f1"

    # -- data -------------------------------------------------------------------------------------------------

    def read_data(self) -> None:
        d = self.cfg.data
        train = ner.read_conll(d.train_file)
        check_malformed(train.path, train.malformed, scored=False, limit=d.max_bad_lines, n_items=train.n_lines)
        dev = ner.read_conll(d.dev_file)
        test = ner.read_conll(d.test_file, allow_untagged=True) if d.test_file else None
        for f in (dev, test):
            if f is not None:
                check_malformed(f.path, f.malformed, scored=True, limit=0, n_items=f.n_lines)
        scheme = self.cfg.task.tag_scheme
        if scheme == "auto":
            scheme = ner.detect_scheme(t for s in train.sentences for t in s.tags)
        self.scheme = scheme
        self.files = {"train": train, "dev": dev, "test": test}
        # Each sentence's text is tokenized whole, as the exported tokenizer does it in a pipeline (see ner.Aligner).
        aligner = ner.Aligner(self.tokenizer)
        self.alignments = {split: [aligner(s) for s in f.sentences] for split, f in self.files.items() if f}
        train_token_tags = {tag for s, al in zip(train.sentences, self.alignments["train"])
                            for _, tag in ner.token_tags(s, al)}
        self.id2label = ner.label_list(train, scheme, train_token_tags)
        self.label2id = {t: i for i, t in enumerate(self.id2label)}
        for f in (dev, test):
            if f is not None:
                ner.check_tags(f, self.label2id)
        # a training file with lines left out is a warning (the checks above allow none in dev/test files)
        self.reports = [f.report() for f in (train, dev, test) if f is not None and not f.malformed.total]
        self.warnings = [f"{train.report()} (data.max_bad_lines={d.max_bad_lines})"] if train.malformed.total else []
        self.reports.append(f"ner: {scheme.upper()} scheme, {len(self.id2label)} tags: {' '.join(self.id2label)}")
        for split, f in self.files.items():
            if f is not None:
                self.reports.extend(_alignment_report(split, ner.alignment_counts(f.sentences, self.alignments[split])))
        body = d.max_seq_len - 2
        stride = min(d.doc_stride, body)
        self.windows = {}
        for split, f in self.files.items():
            if f is not None:
                # dev/test windows need no labels: their scores come from the stitched per-item tags
                self.windows[split] = ner.encode_sentences(
                    f.sentences, self.alignments[split], self.label2id if split == "train" else None,
                    d.max_seq_len, stride, self.tokenizer.cls_id, self.tokenizer.sep_id)
        self.train_features = [self._feature(w) for w in self.windows["train"]]
        self.dev_features = [self._feature(w) for w in self.windows["dev"]]
        self.test_features = [self._feature(w) for w in self.windows["test"]] if test is not None else None
        for split in ("train", "dev", "test"):
            if self.files[split] is not None:
                n_sent, n_win = len(self.files[split].sentences), len(self.windows[split])
                if n_win > n_sent:
                    self.reports.append(f"ner: {split}: {n_sent} sentences -> {n_win} windows of at most "
                                        f"{d.max_seq_len} tokens (stride {stride})")

    @staticmethod
    def _feature(w: ner.NerFeature) -> dict:
        return {"input_ids": w.input_ids, "labels": w.labels}

    def collate(self, features: List[dict]) -> dict:
        batch = encoder_inputs(features, self.tokenizer.pad_id)  # ner features have no token types: all 0
        labels = np.full(batch["input_ids"].shape, IGNORE_INDEX, np.int64)
        for row, f in enumerate(features):
            labels[row, :len(f["labels"])] = f["labels"]
        return {**batch, "labels": labels}

    def data_fingerprint(self) -> dict:
        # the windowing decides which training features exist: a resume with other settings would not be exact
        d = self.cfg.data
        return {**super().data_fingerprint(), "data.doc_stride": d.doc_stride,
                "task.tag_scheme": self.cfg.task.tag_scheme}

    # -- model --------------------------------------------------------------------------------------------------

    def build_model(self):
        model = build_task_model(self.model_config, self.name, len(self.id2label))
        self.init_notes = load_encoder(model, self.init)
        return model

    def forward(self, model, t):
        return model(t["input_ids"], t["token_type_ids"], t["attention_mask"])  # (B, L, C)

    def loss_terms(self, logits, t) -> List[paddle.Tensor]:
        loss, _ = masked_cross_entropy(logits.reshape([-1, logits.shape[-1]]), t["labels"])
        return [loss]

    def correct_counts(self, logits, t) -> List[paddle.Tensor]:
        return [masked_correct(logits, t["labels"])]

    # -- eval ---------------------------------------------------------------------------------------------------

    @property
    def row_width(self) -> int:
        return self.cfg.data.max_seq_len

    def eval_rows(self, batch, t, logits) -> np.ndarray:
        ids = logits.argmax(axis=-1).numpy().astype(np.float64)  # (B, Lb): predicted tag id per position
        rows = np.full((ids.shape[0], self.row_width), -1.0)
        rows[:, :ids.shape[1]] = ids
        return rows

    def _stitched(self, split: str, rows: np.ndarray) -> list:
        f = self.files[split]
        return ner.stitch(self.windows[split], rows.astype(np.int64), f.sentences, self.alignments[split],
                          self.id2label)

    def split_metrics(self, split: str, rows: np.ndarray) -> Dict[str, float]:
        f = self.files[split]
        if not f.tagged:
            return {}  # an untagged test file: predictions only
        return ner.entity_scores([s.tags for s in f.sentences], self._stitched(split, rows))

    def predictions(self, split: str, rows: np.ndarray) -> List[dict]:
        f = self.files[split]
        return [{"prediction": tags, "line": s.line} for tags, s in zip(self._stitched(split, rows), f.sentences)]
