"""Pretraining as a task: whole-word-masked LM + sentence-order prediction on the mmap corpus.

Loss = mean MLM cross-entropy over all masked tokens of the global batch + mean SOP cross-entropy over all its
SOP-labelled samples (two :class:`LossSpec` terms, weighted by the trainer).  An MLM-only run (``data.binary_head:
false``) builds no SOP head; its SOP term is a constant 0, so the log line keeps ``sop_loss: 0.000000`` (and
``sop_acc``) for the tools that parse it.  Eval = the same ``iters`` batches
every time: eval batch j = samples ``[j*mb*W, (j+1)*mb*W)``, sliced by rank; losses and accuracies are sums over
batches and ranks divided by the global counts.
"""
from __future__ import annotations

import os
from typing import Dict, Iterator, List, Optional

import paddle

from data_tools.indexed_dataset import wwm_path
from data_tools.meta import data_tokenizer, find_meta, meta_path, vocab_mismatch
from data_tools.tokenizers import KINDS, TokenizerSpec
from data_tools.vocab import pad_id_of
from ernie_style.arch import get_arch
from ernie_style.config.pretrain import ConfigError, PretrainConfig, count_vocab
from ernie_style.constants import IGNORE_INDEX
from ernie_style.data.dataset import build_datasets, Collator, index_cache_dir
from ernie_style.data.masking import needs_word_starts
from ernie_style.data.spec import SampleSpec
from ernie_style.tasks.base import Batch, EvalAccumulator, EvalSplit, LossSpec, Task, TaskData
from ernie_style.tasks.losses import masked_cross_entropy
from ernie_style.training import preflight
from ernie_style.training.distributed import all_reduce_sum
from ernie_style.training.schedule import Schedule


def pretraining_loss(mlm_logits, sop_logits, masked_labels, sop_labels):
    """(loss, lm_loss, sop_loss), each a float32 scalar.

    mlm_logits [K, V] (or [B, L, V]) with masked_labels of the same leading shape; sop_logits [B, 2] with
    sop_labels [B] (0/1, IGNORE_INDEX=-100 for samples without SOP), or None (a model without SOP head: the
    term is 0). Labels equal to -100 are ignored; when nothing is left the term is 0 (never NaN).
    loss = lm_loss + sop_loss.
    """
    lm_loss, _ = masked_cross_entropy(mlm_logits.reshape([-1, mlm_logits.shape[-1]]), masked_labels)
    if sop_logits is None:
        sop_loss = paddle.zeros([], dtype=lm_loss.dtype)
    else:
        sop_loss, _ = masked_cross_entropy(sop_logits, sop_labels)
    return lm_loss + sop_loss, lm_loss, sop_loss


def pretraining_metrics(mlm_logits, sop_logits, masked_labels, sop_labels) -> Dict[str, paddle.Tensor]:
    """Counts for accuracies (int64 scalar tensors, no host sync): mlm_correct, mlm_total, sop_correct,
    sop_total. Labels equal to -100 are not counted."""
    out = {}
    for name, logits, labels in (("mlm", mlm_logits, masked_labels), ("sop", sop_logits, sop_labels)):
        if logits is None:  # no SOP head: nothing predicted, nothing counted
            out[f"{name}_correct"] = out[f"{name}_total"] = paddle.zeros([], dtype="int64")
            continue
        labels = labels.reshape([-1]).astype("int64")
        pred = logits.reshape([-1, logits.shape[-1]]).argmax(axis=-1).astype("int64")
        valid = labels != IGNORE_INDEX
        out[f"{name}_correct"] = ((pred == labels) & valid).astype("int64").sum()
        out[f"{name}_total"] = valid.astype("int64").sum()
    return out


class _PretrainAccumulator(EvalAccumulator):
    def __init__(self):
        self.sums = [0.0] * 6  # lm_sum, n_mlm, sop_sum, n_sop, mlm_correct, sop_correct

    def add(self, batch, t, outputs) -> None:
        mlm_logits, sop_logits = outputs
        _, lm_loss, sop_loss = pretraining_loss(mlm_logits, sop_logits, t["masked_labels"], t["sop_labels"])
        m = pretraining_metrics(mlm_logits, sop_logits, t["masked_labels"], t["sop_labels"])
        n_m, n_s = float(m["mlm_total"]), float(m["sop_total"])
        for i, v in enumerate([float(lm_loss) * n_m, n_m, float(sop_loss) * n_s, n_s,
                               float(m["mlm_correct"]), float(m["sop_correct"])]):
            self.sums[i] += v

    def result(self, info) -> Dict[str, float]:
        lm_sum, n_m, sop_sum, n_s, mc, sc = all_reduce_sum(self.sums, info)
        lm = lm_sum / max(n_m, 1.0)
        sop = sop_sum / max(n_s, 1.0)
        return {"loss": lm + sop, "lm_loss": lm, "sop_loss": sop, "mlm_acc": mc / max(n_m, 1.0),
                "sop_acc": sc / max(n_s, 1.0)}


class PretrainEvalSplit(EvalSplit):
    """``iters`` fixed batches of ``micro_batch`` samples per rank."""

    def __init__(self, ds, collator, iters: int, micro_batch: int):
        self.ds, self.collator, self.iters, self.micro_batch = ds, collator, iters, micro_batch

    def batches(self, rank: int, world: int) -> Iterator[Batch]:
        mb = self.micro_batch
        assert self.iters * mb * world <= len(self.ds), (self.iters, mb, world, len(self.ds))
        for j in range(self.iters):
            start = j * mb * world + rank * mb
            yield self.collator([self.ds[i] for i in range(start, start + mb)])

    def accumulator(self) -> EvalAccumulator:
        return _PretrainAccumulator()


class PretrainTask(Task):
    name = "pretrain"
    supports_schedule = True
    tensor_keys = ("input_ids", "token_type_ids", "attention_mask", "masked_positions", "masked_labels", "sop_labels")
    losses = (LossSpec("lm_loss", "mlm_acc", "masked_labels"), LossSpec("sop_loss", "sop_acc", "sop_labels"))

    def __init__(self, cfg: PretrainConfig):
        self.cfg = cfg
        self.valid: Optional[PretrainEvalSplit] = None
        self.test: Optional[PretrainEvalSplit] = None

    @property
    def model_config(self):
        return self.cfg.model

    @property
    def vocab_file(self) -> str:
        return self.cfg.data.vocab_file

    @property
    def do_lower_case(self) -> bool:
        return self.cfg.data.do_lower_case

    @property
    def tokenizer_kind(self) -> str:
        return data_tokenizer(self.cfg.data.blend[0].prefix).kind  # the prefixes agree (check_inputs)

    def build_model(self):
        model_class = get_arch(self.cfg.model_arch).pretraining_model_class()
        if not self.cfg.data.binary_head:  # MLM-only: never an SOP head (its loss and counts stay 0)
            return model_class(self.cfg.model, sop_head=False)
        return model_class(self.cfg.model)

    def forward(self, model, t):
        return model(t["input_ids"], t["token_type_ids"], t["attention_mask"], t["masked_positions"])

    def loss_terms(self, outputs, t) -> List[paddle.Tensor]:
        mlm_logits, sop_logits = outputs
        _, lm_loss, sop_loss = pretraining_loss(mlm_logits, sop_logits, t["masked_labels"], t["sop_labels"])
        return [lm_loss, sop_loss]

    def correct_counts(self, outputs, t) -> List[paddle.Tensor]:
        m = pretraining_metrics(*outputs, t["masked_labels"], t["sop_labels"])
        return [m["mlm_correct"], m["sop_correct"]]

    def build_data(self, world_size: int, global_batch: int, max_steps: int, phase=None,
                   num_samples: Optional[int] = None) -> TaskData:
        """``phase``: the schedule's phase (its sequence length and micro batch; default the config's);
        ``num_samples``: training samples to index (default ``max_steps * global_batch``)."""
        t, d = self.cfg.train, self.cfg.data
        max_seq_len = phase.max_seq_len if phase is not None else d.max_seq_len
        mb = phase.micro_batch_size if phase is not None else t.micro_batch_size
        n_train = num_samples if num_samples is not None else max_steps * global_batch
        split_w = d.splits.weights
        eval_batch = mb * world_size
        n_valid = t.eval_iters * eval_batch if split_w[1] > 0 else 0
        test_iters = t.test_iters or t.eval_iters
        n_test = test_iters * eval_batch if split_w[2] > 0 else 0

        cache_dir, note = index_cache_dir([p for p, _ in d.blend], d.cache_dir, t.output_dir)
        if note and os.environ.get("PADDLE_TRAINER_ID", "0") == "0":
            print(note, flush=True)
        try:
            train_ds, valid_ds, test_ds = build_datasets(
                d.blend, SampleSpec.from_config(self.cfg).replace(max_seq_len=max_seq_len),
                num_samples=(n_train, n_valid, n_test), cache_dir=cache_dir)
        except ValueError as e:  # the dataset's messages name what in the data or its settings cannot work
            raise ConfigError(str(e)) from None
        collator = Collator(pad_id_of(d.vocab_file), pad_to_multiple_of=8, max_seq_len=max_seq_len)
        if valid_ds is not None and t.eval_iters:
            self.valid = PretrainEvalSplit(valid_ds, collator, t.eval_iters, mb)
        if test_ds is not None and test_iters:
            self.test = PretrainEvalSplit(test_ds, collator, test_iters, mb)
        return TaskData(train=train_ds, collator=collator, valid=self.valid, test=self.test)

    def data_fingerprint(self) -> dict:
        return preflight.data_fingerprint(self.cfg)

    def should_evaluate(self, step: int) -> bool:
        return step % self.cfg.train.eval_steps == 0

    def finish(self, trainer) -> None:
        trainer.evaluate(self.test, "test")


def check_inputs(cfg: PretrainConfig, world_size: int) -> List[str]:
    """Everything a user can get wrong about files and sizes, as one ConfigError, before any training; returns the
    lines to print before launch (e.g. ``vocab extended: ...`` when ``data.vocab_file`` extends the resume source's)."""
    Schedule.from_config(cfg, world_size)  # the batch sizes (of each phase) for this number of ranks
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if cfg.dist.sharding_stage == 2 and (not has_gpu or cfg.train.device == "cpu"):
        raise ConfigError("dist.sharding_stage=2: Paddle's group_sharded_parallel runs only on GPU/XPU "
                          "(expected 0 or 1 on CPU)")
    vocab = cfg.data.vocab_file
    if not vocab or not os.path.isfile(vocab):
        raise ConfigError(f"data.vocab_file={vocab!r}: file not found (expected the vocab.txt used to tokenize the data)")
    n_vocab = count_vocab(vocab)
    if cfg.model.vocab_size < n_vocab:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size}: smaller than the {n_vocab} entries of "
                          f"data.vocab_file={vocab!r} (expected >= {n_vocab}, or leave it out to take it from the file)")
    pairs = cfg.data.blend
    if not pairs:
        raise ConfigError("data.prefixes=[]: expected at least one data prefix (the --output-prefix of "
                          "data_tools.preprocess)")
    for prefix, _ in pairs:
        for path in (prefix + ".idx", prefix + ".bin"):
            if not os.path.isfile(path):
                raise ConfigError(f"data.prefixes: {path} not found (expected the output prefix of "
                                  "data_tools.preprocess, without extension)")
        if needs_word_starts(cfg.data.masking) and not os.path.isfile(wwm_path(prefix)):
            raise ConfigError(f"data.prefixes: {wwm_path(prefix)} not found (the word-start flags "
                              f"data.masking={cfg.data.masking!r} needs; rebuild the prefix with data_tools.preprocess, "
                              "or use data.masking=char)")
        meta = find_meta(prefix)
        why = vocab_mismatch(prefix, vocab)
        if why:
            raise ConfigError(f"data.vocab_file={vocab!r}: {why}")
        kind = (meta.tokenizer if meta is not None else TokenizerSpec()).kind
        if kind not in KINDS or kind != data_tokenizer(pairs[0].prefix).kind:
            raise ConfigError(f"data.prefixes: {prefix} was tokenized by a {kind!r} tokenizer (see "
                              f"{meta_path(prefix)}); expected {data_tokenizer(pairs[0].prefix).kind!r} like "
                              f"{pairs[0].prefix}, one of {', '.join(sorted(KINDS))}")
    r = cfg.train.resume
    if r not in ("auto", "none") and not os.path.isdir(r):
        raise ConfigError(f"train.resume={r!r}: expected auto, none or an existing checkpoint/model directory")
    preflight.check_split(cfg)
    return preflight.check_resume(cfg, world_size)
