"""qa: extractive reading comprehension, a start and an end position per question
(the architecture's question answering head, ``heads.build_task_model``).

Data, windows, offsets, n-best decoding and the CMRC2018 EM/F1: :mod:`ernie_style.downstream.qa` (rules in
docs/finetune.md, "NER and QA metrics").  Loss: per window (CE(start) + CE(end)) / 2, averaged over the windows
of the global batch (windows without the answer point at ``[CLS]``).  Dev/test metrics on the full split:
``f1`` (the main metric) and ``em``, as fractions.  Predictions: per question, the answer text cut out of the
original context.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List

import numpy as np
import paddle
import paddle.nn.functional as F

from ernie_style.config.pretrain import ConfigError
from ernie_style.constants import IGNORE_INDEX
from ernie_style.downstream import qa
from ernie_style.downstream.common import check_malformed, DataError, Malformed
from ernie_style.tasks.base import LossSpec
from ernie_style.tasks.finetuning import FinetuneTask, encoder_inputs, load_encoder
from ernie_style.tasks.heads import build_task_model


class QaTask(FinetuneTask):
    name = "qa"
    tensor_keys = ("input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions")
    losses = (LossSpec("qa_loss", "span_acc", "start_positions"),)
    main_metric = "f1"

    # -- data -------------------------------------------------------------------------------------------------

    def read_data(self) -> None:
        d = self.cfg.data
        if d.max_query_len > d.max_seq_len - 4:
            raise ConfigError(f"data.max_query_len={d.max_query_len}: expected at most data.max_seq_len - 4 = "
                              f"{d.max_seq_len - 4} ([CLS] question [SEP] context [SEP] needs room for the context)")
        train = qa.read_squad(d.train_file, train=True)
        n_train = len(train.examples) + train.malformed.total
        check_malformed(train.path, train.malformed, scored=False, limit=d.max_bad_lines, n_items=n_train)
        dev = qa.read_squad(d.dev_file)
        test = qa.read_squad(d.test_file, allow_unanswered=True) if d.test_file else None
        for f in (dev, test):
            if f is not None:
                check_malformed(f.path, f.malformed, scored=True, limit=0, n_items=0)
        self.id2label = None
        self.files = {"train": train, "dev": dev, "test": test}
        # a training file with questions left out is a warning (the checks above allow none in dev/test files)
        self.reports = [f.report() for f in (train, dev, test) if f is not None and not f.malformed.total]
        self.warnings = [f"{train.report()} (data.max_bad_lines={d.max_bad_lines})"] if train.malformed.total else []
        self.windows = {}
        for split, f in self.files.items():
            if f is None:
                continue
            windows, bad, n_cut = qa.encode_examples(f.examples, self.tokenizer, d.max_seq_len, d.max_query_len,
                                                     d.doc_stride, with_labels=split == "train")
            assert split == "train" or not bad.total  # (only training questions need an answer token)
            if bad.total:
                # left out while encoding: counted with the reader's malformed questions against the limit
                self.warnings.append(f"qa: {split}: left out {bad.summary()} (data.max_bad_lines={d.max_bad_lines})")
                both = Malformed(unit="question")
                both.merge(f.malformed)
                both.merge(bad)
                check_malformed(f.path, both, scored=False, limit=d.max_bad_lines, n_items=n_train)
            if not windows:
                raise DataError(f"{f.path}: no question left to train on ({bad.summary()})")
            self.windows[split] = windows
            self.reports.append(f"qa: {split}: {len(f.examples) - bad.total} questions -> {len(windows)} windows "
                                f"(max_seq_len {d.max_seq_len}, doc_stride {d.doc_stride})")
            if n_cut:
                self.reports.append(f"qa: {split}: {n_cut} of {len(f.examples)} questions longer than "
                                    f"data.max_query_len={d.max_query_len} tokens, cut at the end")
        self.train_features = [self._feature(w, True) for w in self.windows["train"]]
        self.dev_features = [self._feature(w, False) for w in self.windows["dev"]]
        self.test_features = [self._feature(w, False) for w in self.windows["test"]] if test is not None else None
        self._answers = {}

    @staticmethod
    def _feature(w: qa.QaFeature, labelled: bool) -> dict:
        return {"input_ids": w.input_ids, "token_type_ids": w.token_type_ids,
                "start": w.start_position if labelled else IGNORE_INDEX,
                "end": w.end_position if labelled else IGNORE_INDEX}

    def collate(self, features: List[dict]) -> dict:
        return {**encoder_inputs(features, self.tokenizer.pad_id),
                "start_positions": np.array([f["start"] for f in features], np.int64),
                "end_positions": np.array([f["end"] for f in features], np.int64)}

    def data_fingerprint(self) -> dict:
        # the windowing decides which training features exist: a resume with other settings would not be exact
        d = self.cfg.data
        return {**super().data_fingerprint(), "data.doc_stride": d.doc_stride, "data.max_query_len": d.max_query_len}

    # -- model --------------------------------------------------------------------------------------------------

    def build_model(self):
        model = build_task_model(self.model_config, self.name)
        self.init_notes = load_encoder(model, self.init)
        return model

    def forward(self, model, t):
        return model(t["input_ids"], t["token_type_ids"], t["attention_mask"])  # ((B, L), (B, L))

    def loss_terms(self, outputs, t) -> List[paddle.Tensor]:
        start_logits, end_logits = outputs
        starts, ends = t["start_positions"], t["end_positions"]
        valid = (starts != IGNORE_INDEX).astype("float32")
        per_window = 0.0
        for logits, pos in ((start_logits, starts), (end_logits, ends)):
            safe = paddle.where(pos != IGNORE_INDEX, pos, paddle.zeros_like(pos))
            per_window = per_window + F.cross_entropy(logits.astype("float32"), safe.unsqueeze(-1),
                                                      reduction="none").reshape([-1])
        return [(per_window * 0.5 * valid).sum() / paddle.clip(valid.sum(), min=1.0)]

    def correct_counts(self, outputs, t) -> List[paddle.Tensor]:
        start_logits, end_logits = outputs
        starts, ends = t["start_positions"], t["end_positions"]
        hit = ((start_logits.argmax(axis=-1).astype("int64") == starts)
               & (end_logits.argmax(axis=-1).astype("int64") == ends) & (starts != IGNORE_INDEX))
        return [hit.astype("int64").sum()]

    # -- eval ---------------------------------------------------------------------------------------------------

    @property
    def row_width(self) -> int:
        return 2 * self.cfg.data.max_seq_len

    def eval_rows(self, batch, t, outputs) -> np.ndarray:
        start_logits, end_logits = (x.astype("float32").numpy() for x in outputs)  # (B, Lb) each
        b, lb = start_logits.shape
        rows = np.zeros((b, self.row_width))
        L = self.cfg.data.max_seq_len
        rows[:, :lb] = start_logits
        rows[:, L:L + lb] = end_logits
        return rows

    def answers(self, split: str, rows: np.ndarray) -> List[str]:
        """The predicted answer of every question of ``split`` (cached per evaluation)."""
        key = (split, hashlib.sha1(np.ascontiguousarray(rows).tobytes()).hexdigest())
        if key not in self._answers:
            L = self.cfg.data.max_seq_len
            t = self.cfg.task
            self._answers = {key: qa.best_answers(self.windows[split], rows[:, :L], rows[:, L:],
                                                  self.files[split].examples, t.n_best, t.max_answer_length)}
        return self._answers[key]

    def split_metrics(self, split: str, rows: np.ndarray) -> Dict[str, float]:
        f = self.files[split]
        if not f.has_answers:
            return {}  # an unanswered test file: predictions only
        return qa.qa_scores([ex.answers for ex in f.examples], self.answers(split, rows))

    def predictions(self, split: str, rows: np.ndarray) -> List[dict]:
        f = self.files[split]
        return [{"prediction": a, "id": ex.qid} for a, ex in zip(self.answers(split, rows), f.examples)]
