"""The pretraining loop: data-parallel RoFormer WWM-MLM + SOP with accumulation, AMP, exact resume.

Batching.  Global batch g covers the global sample indices ``[g*GB, (g+1)*GB)``; rank r takes the
contiguous slice ``[g*GB + r*GB/W, g*GB + (r+1)*GB/W)`` in ``accumulation`` micro-batches.  Samples depend only
on (seed, index), so the data order is independent of the number of ranks for a fixed global batch,
and resuming from ``consumed_samples = step * GB`` continues exactly.

Loss weighting.  The optimised loss of a step is the mean MLM loss over *all* masked tokens of the global
batch plus the mean SOP loss over all its SOP-labelled samples.  Micro-batches have different numbers of
masked tokens, so each micro-batch's mean is weighted by ``tokens_in_micro / tokens_in_global_batch``
(counts all-reduced before the forward passes; x W because data parallel averages gradients over the W
ranks).  This makes 1 x 8 x 1, 1 x 2 x 4 and 2 x 4 x 1 (ranks x micro x accumulation) give the same update.
With equal-sized micro-batches it reduces to the usual ``loss / accumulation``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from typing import Dict, List, Optional

import numpy as np
import paddle

from ernie_style import checkpoint as ckpt, preflight
from ernie_style.config import ConfigError, PretrainConfig, count_vocab
from ernie_style.metrics import TextLog, TrainLogger, VisualDL
from ernie_style.modeling import RoFormerForPretraining, load_state_dict_checked, pretraining_loss, \
    pretraining_metrics
from data_tools.indexed_dataset import wwm_path
from ernie_style.parallelize import Amp, DistInfo, GradNorm, WarmupLinearDecay, all_reduce_sum, apply_recompute, \
    build_optimizer, grads_synced, wrap_model

IGNORE_INDEX = -100
TENSOR_KEYS = ("input_ids", "token_type_ids", "attention_mask", "masked_positions", "masked_labels", "sop_labels")


class GlobalBatchSampler:
    """Yields this rank's micro-batches (lists of global sample indices) from global batch ``start_step`` on."""

    def __init__(self, start_step: int, max_steps: int, global_batch: int, micro_batch: int, rank: int, world: int):
        assert global_batch % (micro_batch * world) == 0
        self.start_step, self.max_steps = start_step, max_steps
        self.global_batch, self.micro_batch = global_batch, micro_batch
        self.rank, self.world = rank, world

    def __iter__(self):
        per_rank = self.global_batch // self.world
        for g in range(self.start_step, self.max_steps):
            base = g * self.global_batch + self.rank * per_rank
            for k in range(0, per_rank, self.micro_batch):
                yield list(range(base + k, base + k + self.micro_batch))

    def __len__(self) -> int:
        return (self.max_steps - self.start_step) * (self.global_batch // self.world // self.micro_batch)


def pad_id_of(vocab_file: str) -> int:
    with open(vocab_file, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if line.rstrip("\n") == "[PAD]":
                return i
    return 0


def check_inputs(cfg: PretrainConfig, world_size: int) -> None:
    """Everything a user can get wrong about files and sizes, as one ConfigError, before any training."""
    cfg.accumulation_steps(world_size)
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
    pairs = cfg.data.prefixes_and_weights()
    if not pairs:
        raise ConfigError("data.prefixes=[]: expected at least one data prefix (the --output-prefix of "
                          "data_tools.preprocess)")
    for prefix, _ in pairs:
        for path in (prefix + ".idx", prefix + ".bin"):
            if not os.path.isfile(path):
                raise ConfigError(f"data.prefixes: {path} not found (expected the output prefix of "
                                  "data_tools.preprocess, without extension)")
        if not os.path.isfile(wwm_path(prefix)):
            raise ConfigError(f"data.prefixes: {wwm_path(prefix)} not found (the word-start flags whole-word "
                              "masking needs; rebuild the prefix with data_tools.preprocess)")
        meta = prefix + ".meta.json"
        if os.path.isfile(meta):
            try:
                with open(meta, encoding="utf-8") as f:
                    m = json.load(f)
            except ValueError:
                m = {}
            want = (m.get("vocab") or {}).get("sha256") if isinstance(m.get("vocab"), dict) else m.get("vocab_sha256")
            if want and want != ckpt.sha256_file(vocab):
                raise ConfigError(f"data.vocab_file={vocab!r}: not the vocab {prefix} was tokenized with "
                                  f"(sha256 differs from {meta})")
    r = cfg.train.resume
    if r not in ("auto", "none") and not os.path.isdir(r):
        raise ConfigError(f"train.resume={r!r}: expected auto, none or an existing checkpoint/model directory")
    preflight.check_split(cfg)
    preflight.check_resume(cfg)


def _debug_env(name: str) -> Optional[List[int]]:
    """Test hooks: ERNIE_DEBUG_EXIT_AT=rank:step (that rank exits 3), ERNIE_DEBUG_HANG_AFTER=step (sleep)."""
    v = os.environ.get(name)
    return [int(x) for x in v.split(":")] if v else None


class TrainStep:
    """One optimizer step over the micro-batches of a global batch (this rank's share); returns global stats.

    ``micro_steps`` / ``unsynced_micro_steps`` count this rank's backward passes, and those that ran with the
    data-parallel gradient all-reduce switched off (``no_sync``: all but the last micro-step of a step).
    """

    def __init__(self, model, optimizer, scheduler, amp: Amp, no_sync, grad_norm: GradNorm, info: DistInfo,
                 global_batch: int):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.amp, self.no_sync, self.grad_norm, self.info, self.gbs = amp, no_sync, grad_norm, info, global_batch
        self.micro_steps = self.unsynced_micro_steps = 0

    def __call__(self, micro_batches: List[Dict]) -> Dict[str, float]:
        w = self.info.world_size
        counts = [0.0, 0.0]
        for mb in micro_batches:
            counts[0] += float((mb["masked_labels"] != IGNORE_INDEX).sum())
            counts[1] += float((mb["sop_labels"] != IGNORE_INDEX).sum())
        n_mlm, n_sop = all_reduce_sum(counts, self.info)
        tokens = slots = 0.0
        sums = []  # per micro-batch [lm_loss * m_k, sop_loss * s_k, mlm_correct, sop_correct] on the device
        for k, mb in enumerate(micro_batches):
            sync_ctx = self.no_sync() if k < len(micro_batches) - 1 else contextlib.nullcontext()
            m_k = float((mb["masked_labels"] != IGNORE_INDEX).sum())
            s_k = float((mb["sop_labels"] != IGNORE_INDEX).sum())
            t = {key: paddle.to_tensor(mb[key]) for key in TENSOR_KEYS}
            with sync_ctx:
                with self.amp.autocast():
                    mlm_logits, sop_logits = self.model(
                        t["input_ids"], t["token_type_ids"], t["attention_mask"], t["masked_positions"])
                _, lm_loss, sop_loss = pretraining_loss(mlm_logits, sop_logits, t["masked_labels"], t["sop_labels"])
                # Weighted so the sum over micro-batches and ranks is the global-batch mean (see module doc).
                weighted = lm_loss * (m_k * w / max(n_mlm, 1.0))
                if n_sop > 0:
                    weighted = weighted + sop_loss * (s_k * w / n_sop)
                self.amp.scale(weighted).backward()
                self.micro_steps += 1
                self.unsynced_micro_steps += not grads_synced(self.model)
            with paddle.no_grad():
                m = pretraining_metrics(mlm_logits, sop_logits, t["masked_labels"], t["sop_labels"])
                sums.append(paddle.stack([lm_loss.detach() * m_k, sop_loss.detach() * s_k,
                                          m["mlm_correct"].astype("float32"), m["sop_correct"].astype("float32")]))
            tokens += float(mb["num_tokens"])
            slots += float(np.prod(mb["input_ids"].shape))
        self.amp.unscale_(self.optimizer)
        self.grad_norm.before_step()
        self.amp.step(self.optimizer)
        grad_norm = self.grad_norm.value()
        self.scheduler.step()
        self.optimizer.clear_grad()
        # One device->host transfer per step (no sync between micro-batches).
        local = paddle.stack(sums).astype("float64").sum(axis=0).numpy().tolist()
        grad_norm = float(grad_norm)
        lm_sum, sop_sum, mlm_correct, sop_correct, tokens, slots = all_reduce_sum([*local, tokens, slots], self.info)
        lm = lm_sum / max(n_mlm, 1.0)
        sop = sop_sum / n_sop if n_sop > 0 else 0.0
        return {"loss": lm + sop, "lm_loss": lm, "sop_loss": sop, "grad_norm": grad_norm,
                "mlm_correct": mlm_correct, "mlm_total": n_mlm, "sop_correct": sop_correct, "sop_total": n_sop,
                "tokens": tokens, "slots": slots, "seqs": float(self.gbs)}


class Trainer:
    def __init__(self, cfg: PretrainConfig, info: DistInfo):
        self.cfg, self.info = cfg, info
        t = cfg.train
        self.text = TextLog(t.output_dir, info.is_main)
        self.acc = cfg.accumulation_steps(info.world_size)
        self.gbs = cfg.global_batch_size(info.world_size)
        self.text(f"trainer: {info.world_size} rank(s) on {info.device}, micro batch {t.micro_batch_size}, "
                  f"accumulation {self.acc}, global batch {self.gbs}, max_steps {t.max_steps}")

        # Same init on every rank (data parallel also broadcasts rank 0's parameters).
        paddle.seed(t.seed)
        self.model = RoFormerForPretraining(cfg.model)
        self.step = 0
        resume_dir = self._resume_dir()
        if resume_dir and ckpt.is_plain_model_dir(resume_dir):
            state = paddle.load(os.path.join(resume_dir, ckpt.MODEL_STATE))
            load_state_dict_checked(self.model, state)
            self.text(f"resume: initialised weights from model dir {resume_dir} (fresh optimizer, step 0)")
            resume_dir = None
        elif resume_dir:
            with open(os.path.join(resume_dir, ckpt.MODEL_CONFIG), encoding="utf-8") as f:
                saved = json.load(f)
            diff = sorted(k for k, v in cfg.model.to_dict().items()
                          if saved.get(k, v) != v and k not in preflight.MODEL_FREE_KEYS)
            if diff:
                raise ConfigError(f"model.{diff[0]}={getattr(cfg.model, diff[0])!r}: the checkpoint {resume_dir} "
                                  f"has {saved[diff[0]]!r} (differing model keys: {', '.join(diff)})")
            load_state_dict_checked(self.model, paddle.load(os.path.join(resume_dir, ckpt.MODEL_STATE)))
        if t.recompute:
            self.text(f"recompute: {apply_recompute(self.model)} encoder layers")
        self.scheduler = WarmupLinearDecay(cfg.optim)
        optimizer = build_optimizer(self.model, cfg.optim, self.scheduler)
        self.amp = Amp(cfg.amp, info.device, log=self.text)
        self.model, optimizer = self.amp.decorate(self.model, optimizer)
        self.inner = self.model
        self.ddp_model, self.optimizer, no_sync, grad_norm = wrap_model(self.model, optimizer, self.amp, cfg, info)
        self.sharded_optimizer = info.world_size > 1 and cfg.dist.sharding_stage > 0
        self.train_step = TrainStep(self.ddp_model, self.optimizer, self.scheduler, self.amp, no_sync, grad_norm,
                                    info, self.gbs)
        if resume_dir:
            self._load_checkpoint(resume_dir)
        # Per-rank dropout streams, set after the shared init (restored states win on resume).
        if not resume_dir:
            random.seed(t.seed + info.rank)
            np.random.seed(t.seed + info.rank)
            paddle.seed(t.seed + 1000 + info.rank)

        self.checkpointer = ckpt.Checkpointer(t.output_dir, t.save_steps, t.keep_checkpoints, info, log=self.text)
        self.vdl = VisualDL(t.output_dir, info.is_main)
        self.vdl.text("config", "```yaml\n" + cfg.to_yaml() + "```", step=self.step)
        self.logger = TrainLogger(t.logging_steps, self.text, self.vdl)
        self._build_data()

    # -- setup ----------------------------------------------------------------------------------------------

    def _resume_dir(self) -> Optional[str]:
        r = self.cfg.train.resume
        if r == "none":
            return None
        if r == "auto":
            found = ckpt.find_resumable(os.path.join(self.cfg.train.output_dir, "checkpoints"), log=self.text)
            if found:
                self.text(f"resume: from {found}")
            return found
        if ckpt.is_plain_model_dir(r):
            return r
        ckpt.verify(r)  # a named checkpoint must be intact; no silent fallback
        self.text(f"resume: from {r}")
        return r

    def _load_checkpoint(self, path: str) -> None:
        state = ckpt.load_trainer_state(path)
        opt_state = paddle.load(ckpt.optimizer_file(path, self.info.rank))
        self.optimizer.set_state_dict(ckpt.optimizer_state_from_structured(opt_state, self.inner))
        self.scheduler.set_state_dict(state["lr_scheduler"])
        self.scheduler.last_lr = self.scheduler.get_lr()  # from the config's schedule (optim.* may have changed)
        for line in preflight.optim_changes(state.get("config"), self.cfg):
            self.text(f"resume: {line}")
        self.amp.load_state_dict(state["amp"])
        self.step = int(state["step"])
        if state.get("global_batch_size") != self.gbs:
            raise ConfigError(f"train.global_batch_size={self.gbs}: the checkpoint {path} was trained with "
                              f"{state.get('global_batch_size')}; the data position would not be exact")
        rng = ckpt.load_rng_state(path, self.info.rank)
        if rng is None:
            self.text(f"resume: no RNG state for rank {self.info.rank} in {path} (different number of ranks); "
                      "dropout streams restart, resume is not bit-exact")
        else:
            ckpt.set_rng_state(rng)

    def _build_data(self) -> None:
        from ernie_style.dataset import Collator, build_datasets

        cfg, t, d = self.cfg, self.cfg.train, self.cfg.data
        w = self.info.world_size
        split_w = d.split_weights()
        eval_batch = t.micro_batch_size * w
        n_valid = t.eval_iters * eval_batch if split_w[1] > 0 else 0
        n_test = (t.test_iters or t.eval_iters) * eval_batch if split_w[2] > 0 else 0
        self.train_ds, self.valid_ds, self.test_ds = build_datasets(
            d.prefixes_and_weights(), d.vocab_file, splits=d.split,
            num_samples=(t.max_steps * self.gbs, n_valid, n_test),
            max_seq_len=d.max_seq_len, masked_lm_prob=d.masked_lm_prob, short_seq_prob=d.short_seq_prob,
            binary_head=d.binary_head, seed=t.seed)
        self.collator = Collator(pad_id_of(d.vocab_file), pad_to_multiple_of=8, max_seq_len=d.max_seq_len)
        sampler = GlobalBatchSampler(self.step, t.max_steps, self.gbs, t.micro_batch_size, self.info.rank, w)
        if d.num_workers > 0:
            self.train_loader = paddle.io.DataLoader(
                _MapDataset(self.train_ds), batch_sampler=sampler, collate_fn=self.collator,
                num_workers=d.num_workers, return_list=True)
        else:  # the same batches, built in the training process
            self.train_loader = _SyncLoader(self.train_ds, self.collator, sampler)

    # -- eval -----------------------------------------------------------------------------------------------

    def evaluate(self, ds, iters: int, tag: str) -> Optional[Dict[str, float]]:
        """The same ``iters`` batches every time: eval batch j = samples [j*mb*W, (j+1)*mb*W), sliced by rank."""
        if ds is None or iters == 0:
            return None
        mb, w, r = self.cfg.train.micro_batch_size, self.info.world_size, self.info.rank
        assert iters * mb * w <= len(ds), (iters, mb, w, len(ds))
        self.inner.eval()
        sums = [0.0] * 6  # lm_sum, n_mlm, sop_sum, n_sop, mlm_correct, sop_correct
        with paddle.no_grad():
            for j in range(iters):
                start = j * mb * w + r * mb
                batch = self.collator([ds[i] for i in range(start, start + mb)])
                t = {key: paddle.to_tensor(batch[key]) for key in TENSOR_KEYS}
                with self.amp.autocast():
                    mlm_logits, sop_logits = self.inner(
                        t["input_ids"], t["token_type_ids"], t["attention_mask"], t["masked_positions"])
                _, lm_loss, sop_loss = pretraining_loss(mlm_logits, sop_logits, t["masked_labels"], t["sop_labels"])
                m = pretraining_metrics(mlm_logits, sop_logits, t["masked_labels"], t["sop_labels"])
                n_m, n_s = float(m["mlm_total"]), float(m["sop_total"])
                for i, v in enumerate([float(lm_loss) * n_m, n_m, float(sop_loss) * n_s, n_s,
                                       float(m["mlm_correct"]), float(m["sop_correct"])]):
                    sums[i] += v
        self.inner.train()
        lm_sum, n_m, sop_sum, n_s, mc, sc = all_reduce_sum(sums, self.info)
        lm = lm_sum / max(n_m, 1.0)
        sop = sop_sum / max(n_s, 1.0)
        out = {"loss": lm + sop, "lm_loss": lm, "sop_loss": sop, "mlm_acc": mc / max(n_m, 1.0),
               "sop_acc": sc / max(n_s, 1.0)}
        self.text(f"{tag} at step {self.step}: " + ", ".join(f"{k}: {v:.6f}" for k, v in out.items()))
        self.vdl.scalars(tag, out, self.step)
        return out

    # -- checkpoint -----------------------------------------------------------------------------------------

    def save(self) -> None:
        state = {
            "step": self.step,
            "consumed_samples": self.step * self.gbs,
            "global_batch_size": self.gbs,
            "world_size": self.info.world_size,
            "lr_scheduler": self.scheduler.state_dict(),
            "amp": self.amp.state_dict(),
            "config": self.cfg.to_dict(),
            "data_fingerprint": preflight.data_fingerprint(self.cfg),
        }
        # O2 keeps low-precision parameters (fp32 masters live in the optimizer); checkpoints are float32.
        model_state = {k: (v.astype("float32") if v.dtype in (paddle.float16, paddle.bfloat16) else v)
                       for k, v in self.inner.state_dict().items()}
        self.checkpointer.save(
            self.step, model_state=model_state, optimizer_state=ckpt.optimizer_state_to_structured(self.optimizer.state_dict(), self.inner),
            trainer_state=state, model_config=self.cfg.model.to_dict(), vocab_file=self.cfg.data.vocab_file,
            do_lower_case=self.cfg.data.do_lower_case, sharded_optimizer=self.sharded_optimizer)

    # -- the loop -------------------------------------------------------------------------------------------

    def train(self) -> int:
        t = self.cfg.train
        exit_at, hang_after = _debug_env("ERNIE_DEBUG_EXIT_AT"), _debug_env("ERNIE_DEBUG_HANG_AFTER")
        if self.step >= t.max_steps:
            self.text(f"trainer: already at step {self.step} >= train.max_steps={t.max_steps}; nothing to do")
        batches = iter(self.train_loader)
        while self.step < t.max_steps:
            stats = self.train_step([next(batches) for _ in range(self.acc)])
            self.step += 1
            # With an active fp16 loss scaler a non-finite loss only skips the step (counted); otherwise stop.
            if not math.isfinite(stats["loss"]) and not self.amp.scaler.is_enable():
                self.text.error(f"error: non-finite loss {stats['loss']} at step {self.step}; stopping. The last "
                                f"good checkpoint is kept in {self.checkpointer.root}")
                return 1
            self.logger.update(stats)
            self.logger.maybe_log(self.step, self.scheduler.lr_at(self.step), self.amp.stats())
            if self.step % t.eval_steps == 0:
                self.evaluate(self.valid_ds, t.eval_iters, "eval")
            if self.checkpointer.should_save(self.step, force=self.step == t.max_steps):
                self.save()
            if exit_at and exit_at[0] == self.info.rank and exit_at[1] == self.step:
                os._exit(3)
            if hang_after and hang_after[0] == self.step:
                time.sleep(3600)
        self.evaluate(self.test_ds, t.test_iters or t.eval_iters, "test")
        self.vdl.close()
        ts = self.train_step
        self.text(f"trainer: {ts.unsynced_micro_steps} of {ts.micro_steps} micro-steps ran under no_sync "
                  "(gradient all-reduce skipped until the last micro-step of each step)")
        self.text(f"trainer: done at step {self.step}; checkpoints in {self.checkpointer.root}, "
                  f"VisualDL records in {os.path.join(t.output_dir, 'visualdl')}")
        return 0


class _MapDataset(paddle.io.Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __getitem__(self, i):
        return self.ds[i]

    def __len__(self):
        return len(self.ds)


class _SyncLoader:
    def __init__(self, ds, collator, sampler):
        self.ds, self.collator, self.sampler = ds, collator, sampler

    def __iter__(self):
        for indices in self.sampler:
            yield self.collator([self.ds[i] for i in indices])
