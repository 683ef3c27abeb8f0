"""The training schedule: what each step needs -- its phase, sequence length, batch sizes and learning rate -- and
where the data stands (consumed samples).  One object, saved with every checkpoint (``trainer_state.json`` under
``"schedule"``) and restored on resume; the trainer asks it and knows nothing of phases itself.

Phases (``train.phases``).  Phase k runs the steps ``[until_step of phase k-1, until_step of phase k)`` (the first
from step 0).  A phase sets any of ``data.max_seq_len``, ``train.global_batch_size``, ``train.micro_batch_size``,
``optim.max_lr``, ``optim.min_lr``, ``optim.warmup_steps``; the keys it does not set keep the previous phase's
values (the first phase's: the config's).  No ``train.phases``: one phase, the config's values, for the whole run.

The data position.  Samples come from one sample index per sequence length (its *stream*), built so that its first
n samples do not depend on how many are asked for (``data_tools/csrc/helpers.cpp``: epochs shuffled one by one and
concatenated).  The schedule counts the samples consumed of each stream; global batch g of a phase with sequence
length L and global batch B reads samples ``[c, c + B)`` of the L stream, c = the samples of that stream consumed
before it, and then c grows by B.  So:

- a phase that changes only the batch (or the micro batch) continues the same stream where the previous one stopped;
- a phase with a new sequence length starts that length's stream at 0 (its own index, built when it starts); a later
  phase back at an earlier length continues that length's stream;
- a resume with another ``train.global_batch_size`` continues at the consumed samples too: the batches after it are
  ``[c, c + B_new)``, ``[c + B_new, c + 2 B_new)``, ... of the same stream (exactly the samples a run with that
  batch from the start would read from sample c on);
- a checkpoint written before the schedule existed (no ``"schedule"`` entry) consumed ``step x global batch``
  samples of the stream of its ``data.max_seq_len``, which is what it restores to.

The learning rate.  Warmup (linear from 0 to ``max_lr`` over ``warmup_steps``), then linear decay to ``min_lr``,
reached at ``optim.decay_steps`` and kept after it.  A phase that sets ``optim.max_lr``, ``optim.min_lr`` or
``optim.warmup_steps`` restarts this curve at its first step (a *segment*): warmup over its ``warmup_steps``
(0 unless it sets it), then decay from its ``max_lr`` to its ``min_lr``; the previous segment's decay ends where the
next segment starts (or at ``optim.decay_steps`` if that comes first).  Phases that set none of the three continue
the running curve.  With one segment the learning rate of update n is exactly
``ernie_style.training.optim.WarmupLinearDecay``'s of today.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

from ernie_style.config.pretrain import ConfigError

LR_KEYS = ("optim.max_lr", "optim.min_lr", "optim.warmup_steps")


@dataclass(frozen=True)
class LrSegment:
    """One warmup + linear decay curve: updates ``start+1 ..`` (update n is the n-th optimizer step)."""

    start: int  # steps done before the segment's first update
    warmup: int
    end: int  # the update at which min_lr is reached (kept after it)
    max_lr: float
    min_lr: float

    def lr(self, n: int) -> float:
        """Learning rate of update ``n`` (n > start).  For start 0 the same float operations as before phases."""
        m = n - self.start
        if self.warmup and m <= self.warmup:
            return self.max_lr * m / self.warmup
        if n >= self.end:
            return self.min_lr
        frac = (m - self.warmup) / (self.end - self.start - self.warmup)
        return self.max_lr - (self.max_lr - self.min_lr) * frac


@dataclass(frozen=True)
class Phase:
    number: int  # 1-based
    start: int  # first step (global batch index) of the phase
    end: int  # one past its last step (its until_step)
    max_seq_len: int
    global_batch_size: int
    micro_batch_size: int
    accumulation: int
    lr: LrSegment

    @property
    def name(self) -> str:
        return f"phase {self.number}"

    def to_dict(self) -> dict:
        return asdict(self)


class Schedule:
    """See the module doc.  ``phases`` cover steps ``[0, phases[-1].end)``; ``explicit``: from ``train.phases``
    (False: the one phase of a config without it; the log line then stays as it was)."""

    def __init__(self, phases: Sequence[Phase], explicit: bool):
        assert phases and phases[0].start == 0 and all(a.end == b.start for a, b in zip(phases, phases[1:]))
        self.phases: List[Phase] = list(phases)
        self.explicit = explicit
        self.consumed: Dict[int, int] = {}  # sequence length -> samples consumed of its stream (the data position)
        self.consumed_by_phase: Dict[int, int] = {}  # phase number -> samples its steps consumed (for the record)

    # -- building ---------------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg, world_size: int) -> "Schedule":
        """The schedule of a config (``PretrainConfig``, or fine-tuning's resolved ``TrainerConfig``) for
        ``world_size`` ranks.  The phase list was checked by the config; what needs the number of ranks (a global
        batch that is not a multiple of micro batch x ranks) is a ConfigError naming the phase here."""
        t, o = cfg.train, cfg.optim
        raw = list(getattr(t, "phases", None) or [])
        explicit = bool(raw)
        if not raw:
            raw = [{"until_step": t.max_steps}]
        seq = cfg.data.max_seq_len
        gbs_key, mb = t.global_batch_size, t.micro_batch_size
        seg = dict(max_lr=o.max_lr, min_lr=o.min_lr, warmup=o.resolved_warmup_steps(), start=0)
        starts, phases_raw = [], []
        for k, p in enumerate(raw):
            seq = p.get("data.max_seq_len", seq)
            gbs_key = p.get("train.global_batch_size", gbs_key)
            mb = p.get("train.micro_batch_size", mb)
            start = 0 if k == 0 else int(raw[k - 1]["until_step"])
            if any(key in p for key in LR_KEYS):
                seg = dict(max_lr=p.get("optim.max_lr", seg["max_lr"]), min_lr=p.get("optim.min_lr", seg["min_lr"]),
                           warmup=int(p.get("optim.warmup_steps", seg["warmup"] if k == 0 else 0)), start=start)
                starts.append(start)
            elif k == 0:
                starts.append(0)
            per_step = mb * world_size
            gbs = gbs_key or per_step
            if gbs % per_step:
                where = f"train.phases: phase {k + 1}: " if explicit else ""
                raise ConfigError(f"{where}train.global_batch_size={gbs}: expected a multiple of "
                                  f"train.micro_batch_size ({mb}) x data-parallel size ({world_size}) = {per_step}")
            phases_raw.append((start, int(p["until_step"]), int(seq), gbs, int(mb), gbs // per_step, dict(seg)))
        # each segment's decay ends where the next one starts, or at optim.decay_steps if that comes first
        seg_end = {s: (min(starts[i + 1], o.decay_steps) if i + 1 < len(starts) else o.decay_steps)
                   for i, s in enumerate(starts)}
        phases = []
        for k, (start, until, seq, gbs, mb, acc, sg) in enumerate(phases_raw):
            lr = LrSegment(start=sg["start"], warmup=sg["warmup"], end=seg_end[sg["start"]], max_lr=sg["max_lr"],
                           min_lr=sg["min_lr"])
            phases.append(Phase(k + 1, start, until, seq, gbs, mb, acc, lr))
        return cls(phases, explicit)

    # -- what a step needs ----------------------------------------------------------------------------------------

    def phase_at(self, step: int) -> Phase:
        """The phase that runs global batch ``step`` (0-based: the step after ``step`` steps are done)."""
        for p in self.phases:
            if step < p.end:
                return p
        return self.phases[-1]

    def lr_at(self, n: int) -> float:
        """Learning rate of the n-th optimizer update (n = 1, 2, ...)."""
        return self.phase_at(max(n - 1, 0)).lr.lr(n)

    def first_sample(self, phase: Phase) -> int:
        """Where the next global batch of ``phase`` starts in its stream (samples of it consumed so far)."""
        return self.consumed.get(phase.max_seq_len, 0)

    def advance(self, phase: Phase) -> None:
        """One global batch of ``phase`` consumed."""
        self.consumed[phase.max_seq_len] = self.first_sample(phase) + phase.global_batch_size
        self.consumed_by_phase[phase.number] = self.consumed_by_phase.get(phase.number, 0) + phase.global_batch_size

    def samples_needed(self, phase: Phase, step: int, max_steps: int) -> int:
        """Samples the stream of ``phase`` must hold for the rest of the run from ``step`` (its consumed ones
        included): what its sample index is built for."""
        n = self.first_sample(phase)
        for p in self.phases:
            if p.max_seq_len == phase.max_seq_len:
                n += max(0, min(p.end, max_steps) - max(p.start, step)) * p.global_batch_size
        return n

    @property
    def consumed_samples(self) -> int:
        return sum(self.consumed.values())

    # -- checkpoint -----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"consumed_samples": {str(k): v for k, v in sorted(self.consumed.items())},
                "consumed_by_phase": {str(k): v for k, v in sorted(self.consumed_by_phase.items())},
                "phases": [p.to_dict() for p in self.phases]}

    def load_state_dict(self, trainer_state: dict, step: int, reset: bool = False) -> List[str]:
        """Restore the data position from a checkpoint's ``trainer_state`` (at ``step``); the lines saying what
        changed for the steps ahead.  ``reset``: the data starts over (``train.resume_data=reset``).  A sequence
        length at ``step`` other than the checkpoint's is a ConfigError (it would not continue the data)."""
        saved = trainer_state.get("schedule")
        if saved is not None:
            old_phases = [Phase(**dict(p, lr=LrSegment(**p["lr"]))) for p in saved["phases"]]
            consumed = {int(k): int(v) for k, v in saved["consumed_samples"].items()}
            by_phase = {int(k): int(v) for k, v in saved.get("consumed_by_phase", {}).items()}
        else:  # written before the schedule existed: step x global batch samples of its one stream
            seq = (trainer_state.get("data_fingerprint") or {}).get("data.max_seq_len", self.phase_at(step).max_seq_len)
            gbs = int(trainer_state["global_batch_size"])
            old_phases = [Phase(1, 0, max(step, 1), seq, gbs, 0, 0, self.phases[0].lr)]
            consumed = {seq: int(trainer_state.get("consumed_samples", step * gbs))}
            by_phase = {1: consumed[seq]}
        old = Schedule(old_phases, explicit=saved is not None)
        was, now = old.phase_at(max(step - 1, 0)), self.phase_at(step)
        if reset:
            self.consumed, self.consumed_by_phase = {}, {}
            return [f"train.resume_data=reset: the weights, the optimizer and the step ({step}) are kept; the data "
                    f"starts over at sample 0 of the sequence-length-{now.max_seq_len} sample index (the "
                    f"{sum(consumed.values())} samples the checkpoint had consumed are not counted)"]
        # a phase of this config starting at the resumed step makes its own changes (as it would in a run from the
        # start with this config: a new length's index from its sample 0, the same length's where it stood)
        at_boundary = any(p.start == step for p in self.phases[1:])
        if now.max_seq_len != was.max_seq_len and not at_boundary:
            where = f"train.phases: {now.name}: " if self.explicit else ""
            raise ConfigError(f"{where}data.max_seq_len={now.max_seq_len}: the checkpoint at step {step} was "
                              f"training at {was.max_seq_len}; another sequence length would not continue its "
                              "data (change it at a phase boundary, or train.resume_data=reset for a new data order)")
        self.consumed, self.consumed_by_phase = consumed, by_phase
        lines = []
        if now.global_batch_size != was.global_batch_size and not at_boundary:
            c = self.first_sample(now)
            lines.append(f"train.global_batch_size: {was.global_batch_size} (checkpoint) -> "
                         f"{now.global_batch_size} (now) from step {step + 1}; the data continues at sample {c} of "
                         f"the sequence-length-{now.max_seq_len} sample index (the samples consumed): step "
                         f"{step + 1} reads samples [{c}, {c + now.global_batch_size})")
        return lines

    def describe(self, phase: Phase, world_size: int) -> str:
        """The line a phase start logs."""
        lr = phase.lr
        return (f"{phase.name} of {len(self.phases)}, steps {phase.start + 1}-{phase.end}: max_seq_len "
                f"{phase.max_seq_len}, global batch {phase.global_batch_size} (micro {phase.micro_batch_size} x "
                f"{world_size} rank(s) x accumulation {phase.accumulation}), learning rate "
                f"{self.lr_at(phase.start + 1):.5e} at its first step (segment from step {lr.start + 1}: warmup {lr.warmup}, {lr.max_lr:g} -> "
                f"{lr.min_lr:g} at step {lr.end})")

