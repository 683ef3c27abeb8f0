"""The training loop of every task (pretraining, fine-tuning): data parallel, accumulation, AMP, exact resume.

What is task-specific (batch schema, model call, loss terms, metrics, data, eval schedule) comes from a
:class:`ernie_style.tasks.base.Task`; pretraining (WWM-MLM + SOP) is :class:`ernie_style.tasks.pretrain.PretrainTask`.

Batching.  What each step needs (sequence length, batch sizes, learning rate) and where its samples start comes
from the schedule (:mod:`ernie_style.training.schedule`, one object saved with every checkpoint).  A global batch
of GB samples starting at sample c of its sample index covers ``[c, c + GB)``; rank r takes the contiguous slice
``[c + r*GB/W, c + (r+1)*GB/W)`` in ``accumulation`` micro-batches.  Samples depend only on (seed, index), so the
data order is independent of the number of ranks for a fixed global batch, and a resume continues exactly from the
consumed samples (without phases or batch changes c = step * GB, as always).

Loss weighting.  The optimised loss of a step is the sum over the task's loss terms of each term's mean over
*all* its items in the global batch (pretraining: the MLM loss over all masked tokens plus the SOP loss over all
SOP-labelled samples).  Micro-batches have different numbers of items, so each micro-batch's mean is weighted by
``items_in_micro / items_in_global_batch`` (counts all-reduced before the forward passes; x W because data
parallel averages gradients over the W ranks).  This makes 1 x 8 x 1, 1 x 2 x 4 and 2 x 4 x 1 (ranks x micro x
accumulation) give the same update.  With equal-sized micro-batches it reduces to the usual ``loss / accumulation``.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import paddle

from ernie_style.arch import arch_of, model_config_dict, named_arch
from ernie_style.arch.hf_dir import hf_weights_file, read_hf_pretraining
from ernie_style.config.pretrain import ConfigError, PretrainConfig
from ernie_style.storage.errors import ModelDirError
from ernie_style.storage.model_dir import read_model_config
from ernie_style.tasks.base import EvalSplit, StepStats, Task, TermStats, count_items
from ernie_style.training import checkpoint as ckpt, cpu_runtime, preflight, run_dir, vocab_extension
from ernie_style.training.amp import Amp
from ernie_style.training.distributed import DistInfo, all_reduce_sum
from ernie_style.training.interrupt import Interrupts
from ernie_style.training.metrics import TextLog, TrainLogger, VisualDL
from ernie_style.training.optim import GradNorm, WarmupLinearDecay, build_optimizer
from ernie_style.training.schedule import Phase, Schedule
from ernie_style.training.paddle_internals import grads_synced
from ernie_style.training.parallelize import apply_recompute, wrap_model


class GlobalBatchSampler:
    """Yields this rank's micro-batches (lists of global sample indices) of global batches ``start_step`` to
    ``max_steps - 1``; global batch ``start_step`` begins at sample ``first_sample`` (default
    ``start_step * global_batch``), each next one ``global_batch`` samples further."""

    def __init__(self, start_step: int, max_steps: int, global_batch: int, micro_batch: int, rank: int, world: int,
                 first_sample: Optional[int] = None):
        assert global_batch % (micro_batch * world) == 0
        self.start_step, self.max_steps = start_step, max_steps
        self.global_batch, self.micro_batch = global_batch, micro_batch
        self.rank, self.world = rank, world
        self.first_sample = start_step * global_batch if first_sample is None else first_sample

    def __iter__(self):
        per_rank = self.global_batch // self.world
        for g in range(self.max_steps - self.start_step):
            base = self.first_sample + g * self.global_batch + self.rank * per_rank
            for k in range(0, per_rank, self.micro_batch):
                yield list(range(base + k, base + k + self.micro_batch))

    def __len__(self) -> int:
        return (self.max_steps - self.start_step) * (self.global_batch // self.world // self.micro_batch)


class TrainStep:
    """One optimizer step over the micro-batches of a global batch (this rank's share); returns global stats.

    ``micro_steps`` / ``unsynced_micro_steps`` count this rank's backward passes, and those that ran with the
    data-parallel gradient all-reduce switched off (``no_sync``: all but the last micro-step of a step).
    """

    def __init__(self, task: Task, model, optimizer, scheduler, amp: Amp, no_sync, grad_norm: GradNorm,
                 info: DistInfo, global_batch: int):
        self.task = task
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.amp, self.no_sync, self.grad_norm, self.info, self.gbs = amp, no_sync, grad_norm, info, global_batch
        self.micro_steps = self.unsynced_micro_steps = 0

    def __call__(self, micro_batches: List[Dict]) -> StepStats:
        w = self.info.world_size
        specs = self.task.losses
        counts = [0.0] * len(specs)
        for mb in micro_batches:
            for i, spec in enumerate(specs):
                counts[i] += count_items(mb, spec.labels)
        totals = all_reduce_sum(counts, self.info)  # items per term in the global batch
        tokens = slots = 0.0
        sums = []  # per micro-batch [term_mean * items for each term, correct for each term] on the device
        for k, mb in enumerate(micro_batches):
            sync_ctx = self.no_sync() if k < len(micro_batches) - 1 else contextlib.nullcontext()
            items = [count_items(mb, spec.labels) for spec in specs]
            t = {key: paddle.to_tensor(mb[key]) for key in self.task.tensor_keys}
            with sync_ctx:
                with self.amp.autocast():
                    outputs = self.task.forward(self.model, t)
                terms = self.task.loss_terms(outputs, t)
                # Weighted so the sum over micro-batches and ranks is the global-batch mean (see module doc).
                weighted = None
                for term, n_k, n in zip(terms, items, totals):
                    if n > 0:
                        part = term * (n_k * w / n)
                        weighted = part if weighted is None else weighted + part
                if weighted is None:  # no items anywhere: a zero loss that still runs backward
                    weighted = terms[0] * 0.0
                self.amp.scale(weighted).backward()
                self.micro_steps += 1
                self.unsynced_micro_steps += not grads_synced(self.model)
            with paddle.no_grad():
                correct = self.task.correct_counts(outputs, t)
                sums.append(paddle.stack([term.detach() * n_k for term, n_k in zip(terms, items)]
                                         + [c.astype("float32") for c in correct]))
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
        *reduced, tokens, slots = all_reduce_sum([*local, tokens, slots], self.info)
        n_terms = len(specs)
        term_sums, correct = reduced[:n_terms], reduced[n_terms:]
        stats = [TermStats(spec, term_sum / n if n > 0 else 0.0, n, c)
                 for spec, term_sum, n, c in zip(specs, term_sums, totals, correct)]
        return StepStats(loss=sum(ts.mean for ts in stats), terms=stats, grad_norm=grad_norm, tokens=tokens,
                         slots=slots, seqs=float(self.gbs))


class Trainer:
    """Runs ``task`` (the entry point builds it: ``PretrainTask(cfg)`` for pretraining).  ``cfg`` supplies the machinery sections ``train``,
    ``optim``, ``amp``, ``dist`` (and ``to_dict``/``to_yaml``, batch-size arithmetic); the task supplies the model
    config, vocab, data, model call, losses and metrics.

    ``step_callbacks``: each is called as ``callback(trainer)`` after every training step, once the step's
    checkpoint (if any) is written and before the interrupt check (tests inject faults through it:
    ``tests/_faults.py``)."""

    def __init__(self, cfg: PretrainConfig, info: DistInfo, task: Task,
                 step_callbacks: Sequence[Callable[["Trainer"], None]] = ()):
        self.cfg, self.info, self.task = cfg, info, task
        self.step_callbacks = list(step_callbacks)
        self._run_lock = run_dir.claim(cfg.train.output_dir, info)  # before anything writes into the directory
        try:
            self._setup(cfg, info, task)
        except BaseException:
            self.release()  # a refused start gives the directory back at once (in-process callers retry)
            raise

    def _setup(self, cfg: PretrainConfig, info: DistInfo, task: Task):
        t = cfg.train
        self.text = TextLog(t.output_dir, info.is_main)
        self.interrupts = Interrupts(info)
        self.schedule = Schedule.from_config(cfg, info.world_size)
        self.phase: Optional[Phase] = None  # the phase the loaders are built for
        first = self.schedule.phases[0]
        self.acc, self.gbs = first.accumulation, first.global_batch_size
        self.text(f"trainer: {info.world_size} rank(s) on {info.device}, micro batch {first.micro_batch_size}, "
                  f"accumulation {self.acc}, global batch {self.gbs}, max_steps {t.max_steps}"
                  + (f", {len(self.schedule.phases)} phases (train.phases)" if self.schedule.explicit else ""))
        if info.runtime:
            self.text.detail(f"trainer: {info.device} process settings: {', '.join(info.runtime)} "
                             f"(ernie_style/training/cpu_runtime.py; {cpu_runtime.ENV_VAR}=0 leaves the defaults)")

        # Same init on every rank (data parallel also broadcasts rank 0's parameters).
        paddle.seed(t.seed)
        self.model = task.build_model()
        self.step = 0
        resume_dir = ckpt.resume_source(cfg.train, info, log=self.text, vocab_file=task.vocab_file)
        self.resumed_from: Optional[str] = None  # the checkpoint this run continues (not a plain model dir)
        self.lineage, self.ancestor_lineage = None, None
        if resume_dir and ckpt.starts_lineage(resume_dir, task.vocab_file):
            extended = self._load_weights(resume_dir)
            self.lineage = ckpt.new_lineage(resume_dir)
            if extended is not None:
                self.text(f"resume: {vocab_extension.line(extended, resume_dir)}")
            self.text(f"resume: initialised weights from model dir {resume_dir} (fresh optimizer, step 0; a new "
                      f"lineage, resumed from {t.output_dir}/checkpoints when this command is run again)")
            resume_dir = None
        elif resume_dir:
            saved = named_arch(read_model_config(resume_dir))
            now = named_arch(model_config_dict(task.model_config))
            diff = preflight.architecture_diff(saved, now)
            if diff:
                raise ConfigError(f"model.{diff[0]}={now[diff[0]]!r}: the checkpoint {resume_dir} "
                                  f"has {saved[diff[0]]!r} (differing model keys: {', '.join(diff)})")
            self._load_weights(resume_dir)
            self.resumed_from = resume_dir
            self.ancestor_lineage = ckpt.lineage_of(resume_dir)
            self.lineage = self.ancestor_lineage
        if t.recompute:
            self.text(f"recompute: {apply_recompute(self.model)} encoder layers")
        self.scheduler = WarmupLinearDecay(cfg.optim, self.schedule)
        optimizer = build_optimizer(self.model, cfg.optim, self.scheduler)
        self.amp = Amp(cfg.amp, info.device, log=self.text)
        self.model, optimizer = self.amp.decorate(self.model, optimizer)
        self.inner = self.model
        self.ddp_model, self.optimizer, no_sync, grad_norm = wrap_model(self.model, optimizer, self.amp, cfg, info)
        self.sharded_optimizer = info.world_size > 1 and cfg.dist.sharding_stage > 0
        self.train_step = TrainStep(task, self.ddp_model, self.optimizer, self.scheduler, self.amp, no_sync,
                                    grad_norm, info, self.gbs)
        if resume_dir:
            self._load_checkpoint(resume_dir)
        # Per-rank dropout streams, set after the shared init (restored states win on resume).
        if not resume_dir:
            random.seed(t.seed + info.rank)
            np.random.seed(t.seed + info.rank)
            paddle.seed(t.seed + 1000 + info.rank)

        self.checkpointer = ckpt.Checkpointer(t.output_dir, t.save_steps, t.keep_checkpoints, info, log=self.text,
                                              lineage=self.lineage, resume_step=self.step,
                                              ancestor_id=(self.ancestor_lineage or {}).get("id"))
        self.vdl = VisualDL(t.output_dir, info.is_main, keep_until=self.step)  # one record file: the whole history
        self.vdl.text("config", "```yaml\n" + cfg.to_yaml() + "```", step=self.step)
        self.logger = TrainLogger(t.logging_steps, self.text, self.vdl, task.losses)
        self._start_phase(self.schedule.phase_at(self.step))

    def _load_weights(self, path: str) -> Optional[vocab_extension.Extension]:
        """Load ``path``'s weights; when the run's vocab extends its vocab, with rows for the new tokens (returned:
        the extension, else None)."""
        load_state_dict_checked = arch_of(self.task.model_config).load_state_dict_fn()
        notes = []
        try:
            if hf_weights_file(path) is not None:  # a Hugging Face directory, converted in memory on every rank
                _, state, notes, _ = read_hf_pretraining(path)
            else:
                state = ckpt.load_state_file(os.path.join(path, ckpt.MODEL_STATE))
            shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
            state, extended = vocab_extension.extended_state(path, self.task.vocab_file, state, shapes)
            report = load_state_dict_checked(self.model, state)
        except (ValueError, ModelDirError) as e:  # names or shapes that do not fit: the user's choice of directory
            raise ConfigError(f"train.resume: {path}: {e}") from None
        report.notes[:0] = notes
        for note in report.notes:  # e.g. an MLM-only run from weights with a binary head: the head is dropped
            self.text(f"resume: {note}")
        return extended

    def release(self) -> None:
        """Give up the output directory (the run lock) and put back the signal handlers (a start refused in
        ``__init__`` leaves no handler, and no fork hook, behind in an in-process caller); the process ending does
        the same."""
        interrupts = getattr(self, "interrupts", None)
        if interrupts is not None:
            interrupts.restore()
        if self._run_lock is not None:
            self._run_lock.release()

    # -- setup ----------------------------------------------------------------------------------------------

    def _load_checkpoint(self, path: str) -> None:
        state = ckpt.load_trainer_state(path)
        preflight.check_same_optimizer(state.get("config"), self.cfg.optim.name, path)  # as before launch
        saved_world = state.get("world_size")
        if os.path.isfile(os.path.join(path, "optimizer.rank0.pdopt")) and \
                (saved_world != self.info.world_size or not self.sharded_optimizer):
            # Sharded over another number of ranks: each optimizer.rank{R}.pdopt holds the states of the parameters
            # rank R owned.  Their union is the whole state; every rank takes what its new share needs from it.
            opt_state = ckpt.merge_sharded_optimizer_states(path, saved_world)
            self.text(f"resume: optimizer states of {saved_world} sharded ranks merged and re-split over "
                      f"{self.info.world_size} rank(s) (dist.sharding_stage={self.cfg.dist.sharding_stage})")
        else:
            opt_state = ckpt.load_state_file(ckpt.optimizer_file(path, self.info.rank))
        self.optimizer.set_state_dict(ckpt.optimizer_state_from_structured(opt_state, self.inner))
        self.scheduler.set_state_dict(state["lr_scheduler"])
        # saved: the learning rate of the next step under the checkpoint's schedule (paddle's LRScheduler state)
        lr_saved = state["lr_scheduler"].get("last_lr")
        self.scheduler.last_lr = self.scheduler.get_lr()  # from the config's schedule (optim.* may have changed)
        self.step = int(state["step"])
        changes = preflight.resume_changes(state.get("config"), self.cfg)
        changed = preflight.schedule_change(state.get("lr_schedule"), self.lr_schedule(), self.step,
                                            lr_saved, self.scheduler.last_lr)
        for line in changes + ([changed] if changed else []):
            self.text(f"resume: {line}")
        self.amp.load_state_dict(state["amp"])
        now_gbs = self.schedule.phase_at(self.step).global_batch_size
        if not self.task.supports_schedule and state.get("global_batch_size") != now_gbs:
            raise ConfigError(f"train.global_batch_size={now_gbs}: the checkpoint {path} was trained with "
                              f"{state.get('global_batch_size')}; the data position would not be exact")
        reset = preflight.data_reset(self.cfg.train.resume_data == "reset", state, self.task.data_fingerprint())
        for line in self.schedule.load_state_dict(state, self.step, reset=reset):
            self.text(f"resume: {line}")
        if state.get("task") is not None:
            self.task.load_state_dict(state["task"])
        rng = ckpt.load_rng_state(path, self.info.rank, log=self.text)
        if rng is None:
            self.text(f"resume: no RNG state for rank {self.info.rank} in {path} (different number of ranks); "
                      "dropout streams restart, resume is not bit-exact")
        else:
            ckpt.set_rng_state(rng)

    def _start_phase(self, phase: Phase) -> None:
        """Loaders for ``phase`` from the current step on: its own sample index (built now, for its sequence length)
        unless the previous phase had the same length (the stream continues)."""
        t, w, sched = self.cfg.train, self.info.world_size, self.schedule
        self.acc, self.gbs = phase.accumulation, phase.global_batch_size
        self.train_step.gbs = self.gbs
        first = sched.first_sample(phase)
        where = f"{phase.name}: " if sched.explicit else ""
        if self.phase is None or self.phase.max_seq_len != phase.max_seq_len:
            t0 = time.perf_counter()
            if self.task.supports_schedule:
                need = max(sched.samples_needed(phase, self.step, t.max_steps), 1)
                data = self.task.build_data(w, self.gbs, t.max_steps, phase=phase, num_samples=need)
            else:
                data = self.task.build_data(w, self.gbs, t.max_steps)
            self.train_ds, self.collator = data.train, data.collator
            self.valid, self.test = data.valid, data.test
            if sched.explicit:
                self.text(f"{where}sample index for max_seq_len {phase.max_seq_len}: {len(self.train_ds)} samples, "
                          f"built in {time.perf_counter() - t0:.2f} s; the data starts at its sample {first}")
        elif sched.explicit:
            self.text(f"{where}continues the max_seq_len {phase.max_seq_len} sample index at its sample {first}")
        if sched.explicit:
            self.text(f"schedule: {sched.describe(phase, w)}")
            self.vdl.text("phase", sched.describe(phase, w), step=self.step)
        self.phase = phase
        end = min(phase.end, t.max_steps)
        sampler = GlobalBatchSampler(self.step, max(end, self.step), self.gbs, phase.micro_batch_size,
                                     self.info.rank, w, first_sample=first)
        workers = self.cfg.data.num_workers
        if workers > 0:
            self.train_loader = paddle.io.DataLoader(
                _MapDataset(self.train_ds), batch_sampler=sampler, collate_fn=self.collator,
                num_workers=workers, return_list=True)
        else:  # the same batches, built in the training process
            self.train_loader = _SyncLoader(self.train_ds, self.collator, sampler)
        self.batches = iter(self.train_loader)

    # -- eval -----------------------------------------------------------------------------------------------

    def evaluate(self, split: Optional[EvalSplit], tag: str, weights: str = "") -> Optional[Dict[str, float]]:
        """Metrics of ``split`` over all its batches on all ranks (a collective: every rank calls it).  The log line
        reads ``{tag} at step N: ...``, or ``{tag} with {weights}: ...`` when the model holds other weights than
        the current step's (fine-tuning tests the best model)."""
        if split is None:
            return None
        self.inner.eval()
        acc = split.accumulator()
        with paddle.no_grad():
            for batch in split.batches(self.info.rank, self.info.world_size):
                t = {key: paddle.to_tensor(batch[key]) for key in self.task.tensor_keys}
                with self.amp.autocast():
                    outputs = self.task.forward(self.inner, t)
                acc.add(batch, t, outputs)
        self.inner.train()
        out = acc.result(self.info)
        scalars = {k: v for k, v in out.items() if isinstance(v, (int, float))}  # not ner's per_type dict
        shown = ", ".join(f"{k}: {v:.6f}" for k, v in scalars.items()) or "no metrics (no labels)"
        self.text(f"{tag} {f'with {weights}' if weights else f'at step {self.step}'}: {shown}")
        self.vdl.scalars(tag, scalars, self.step)
        return out

    # -- checkpoint -----------------------------------------------------------------------------------------

    def model_state(self) -> dict:
        """The model's state dict in float32 (O2 keeps low-precision parameters; fp32 masters live in the
        optimizer)."""
        return {k: (v.astype("float32") if v.dtype in (paddle.float16, paddle.bfloat16) else v)
                for k, v in self.inner.state_dict().items()}

    def lr_schedule(self) -> dict:
        """The schedule this run follows (saved with each checkpoint: a resume says how its own differs)."""
        s = self.scheduler
        out = {"max_steps": self.cfg.train.max_steps, "warmup_steps": s.warmup, "decay_steps": s.decay_steps,
               "max_lr": s.max_lr, "min_lr": s.min_lr}
        if self.schedule.explicit:
            out["segments"] = sorted({tuple(p.lr.__dict__.values()) for p in self.schedule.phases})
        return out

    def save(self) -> None:
        state = {
            "step": self.step,
            "consumed_samples": self.schedule.consumed_samples,
            "global_batch_size": self.gbs,
            "schedule": self.schedule.state_dict(),
            "world_size": self.info.world_size,
            "lr_scheduler": self.scheduler.state_dict(),
            "lr_schedule": self.lr_schedule(),
            "amp": self.amp.state_dict(),
            "config": self.cfg.to_dict(),
            "data_fingerprint": self.task.data_fingerprint(),
        }
        task_state = self.task.state_dict()
        if task_state is not None:
            state["task"] = task_state
        model_state = self.model_state()
        try:
            self.checkpointer.save(
                self.step, model_state=model_state,
                optimizer_state=ckpt.optimizer_state_to_structured(self.optimizer.state_dict(), self.inner),
                trainer_state=state, model_config=model_config_dict(self.task.model_config),
                vocab_file=self.task.vocab_file,
                do_lower_case=self.task.do_lower_case, sharded_optimizer=self.sharded_optimizer,
                tokenizer_kind=self.task.tokenizer_kind)
        except ckpt.SaveFailed as e:  # every rank gets here: nobody is left waiting in a collective
            self.text.error(str(e))
            raise SystemExit(1) from None

    # -- the loop -------------------------------------------------------------------------------------------

    def train(self) -> int:
        """Train to ``train.max_steps`` (or an early stop / interrupt); the signal handlers installed by
        ``__init__`` are put back whatever happens, so in-process callers get their own handlers back."""
        try:
            return self._train()
        finally:
            self.interrupts.restore()

    def _train(self) -> int:
        t = self.cfg.train
        if self.step >= t.max_steps:
            self.text(f"trainer: already at step {self.step} >= train.max_steps={t.max_steps}; nothing to do")
        if self.task.done():
            self.text(f"trainer: the run stopped early at step {self.step}; not training further")
        while self.step < t.max_steps and not self.task.done():
            phase = self.schedule.phase_at(self.step)
            if phase is not self.phase:
                self._start_phase(phase)
            stats = self.train_step([next(self.batches) for _ in range(self.acc)])
            self.schedule.advance(phase)
            self.step += 1
            # With an active fp16 loss scaler a non-finite loss only skips the step (counted); otherwise stop.
            if not math.isfinite(stats.loss) and not self.amp.scaler.is_enable():
                self.text.error(f"error: non-finite loss {stats.loss} at step {self.step} (learning rate "
                                f"{self.scheduler.lr_at(self.step):.5e}); stopping without saving it. "
                                + self._last_checkpoint_note())
                self.release()
                return 1
            self.logger.update(stats)
            self.logger.maybe_log(self.step, self.scheduler.lr_at(self.step), self.amp.stats(),
                                  phase=phase.number if self.schedule.explicit else None)
            stop = False
            if self.task.should_evaluate(self.step):
                stop = self.task.after_evaluate(self, self.step, self.evaluate(self.valid, "eval"))
            if self.checkpointer.should_save(self.step, force=self.step == t.max_steps or stop):
                self.save()
            for callback in self.step_callbacks:
                callback(self)
            signum = self.interrupts.agreed()  # SIGINT/SIGTERM on any rank: all save this step and exit
            if signum:
                return self.interrupts.stop(self, signum)
            if stop:
                self.text(f"trainer: stopped early at step {self.step}")
                break
        self.task.finish(self)
        self.vdl.close()
        self.release()
        ts = self.train_step
        self.text.detail(f"trainer: {ts.unsynced_micro_steps} of {ts.micro_steps} micro-steps ran under "
                         "no_sync (gradient all-reduce skipped until the last micro-step of each step)")
        self.text(f"trainer: done at step {self.step}; checkpoints in {self.checkpointer.root}, "
                  f"VisualDL records in {os.path.join(t.output_dir, 'visualdl')}")
        return 0

    def _last_checkpoint_note(self) -> str:
        """Where a stopped run can be continued from: the newest checkpoint it saved, else the one it resumed, else
        none (said so, with the setting that decides the first save)."""
        saved = self.checkpointer.last_saved_step
        if saved >= 0:
            path = os.path.join(self.checkpointer.root, ckpt.step_dir_name(saved))
            return f"The newest checkpoint of this run: {path}"
        if self.resumed_from:
            return f"No checkpoint was saved since the resume from {self.resumed_from} (the newest of this run)"
        return (f"No checkpoint of this run was saved (the first is due at step {self.cfg.train.save_steps}, "
                "train.save_steps): there is nothing to resume from")


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
