"""Atomic, verifiable training checkpoints.

Layout (file names in ``ernie_style.constants``)::

    OUTPUT/checkpoints/step_00001000/
        model_state.pdparams      paddle.save(model.state_dict())            (rank 0)
        optimizer.pdopt           paddle.save(optimizer.state_dict())        (rank 0; per rank when sharded:
                                                                              optimizer.rank{R}.pdopt)
        rng_state.rank{R}.json    Python random / NumPy / Paddle generator states of rank R (every rank;
                                  JSON, nothing in it can execute)
        trainer_state.json        step, consumed_samples, LR scheduler and loss-scaler state, world size,
                                  lineage, resolved config                     (rank 0)
        model_config.json  vocab.txt  tokenizer_config.json                  (rank 0)
        checksums.json            sha256 of every other file, written last   (rank 0)
    OUTPUT/checkpoints/latest     symlink to the newest complete step dir of the run (relative; usable as a path)
    OUTPUT/checkpoints/.readers.lock  shared by exports while they read; pruning waits for it (data_tools.locking)

A checkpoint is written to ``step_XXXXXXXX.tmp``, every file is fsynced, the directory is renamed,
then ``latest`` is replaced atomically.  A save that fails (disk full) removes its ``.tmp`` directory on
every rank's knowledge and stops the run with one line; start-up removes ``.tmp`` leftovers of a killed run.
A directory whose checksums do not match (or with a file missing/truncated) is refused by
:func:`verify`; :func:`find_resumable` falls back to the newest good one *older than* ``latest``.

Lineage.  Every checkpoint records ``lineage = {"id", "init"}`` in trainer_state.json: a run that starts
from nothing or from a plain model dir starts a new lineage (``init`` names the model dir and the sha256 of
its weights); resuming from a checkpoint continues its lineage.  Pruning keeps the newest ``keep`` of the
checkpoints *this run may delete*: those it wrote itself, and those of its own lineage at or below the step it
resumed from.  Anything else in the directory (another lineage, or the newer steps of a branch the user
resumed before) is never deleted by pruning; a save of a step that already exists replaces the old directory
only after the new one is complete.

Nothing in a checkpoint executes: ``.pdparams``/``.pdopt`` are read through the restricted unpickler of
``data_tools.safe_pickle`` (numpy arrays and plain containers only) and RNG states are JSON.

``train.resume`` may also name a plain model dir (``model_config.json`` + ``model_state.pdparams``,
e.g. from ``export``'s Hugging Face -> Paddle converter, or a Hugging Face directory itself, converted in memory
by ``ernie_style.arch.hf_dir``): that initialises the weights only, with a fresh optimizer, step 0, and starts a
new lineage (identified by the sha256 of its weights file).  So does a checkpoint or model dir whose vocab the run's
vocab extends (:func:`starts_lineage`; ``ernie_style.training.vocab_extension``).  Its ``checksums.json`` (when
present) is verified like a checkpoint's.  Plain files are trusted only as far as that: a checksum proves the files are the ones
written next to it, not who wrote them.
"""
from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import uuid
from typing import Callable, Dict, List, Optional

import numpy as np

from data_tools import locking, safe_pickle
from data_tools.io_utils import UserError, fsync_file, human_bytes, sha256_file
from data_tools.tokenizers import DEFAULT_KIND, TokenizerSpec
from ernie_style.arch.hf_dir import hf_weights_file
from ernie_style.config.pretrain import ConfigError
from ernie_style.constants import (
    CHECKSUMS, LATEST, MODEL_CONFIG, MODEL_STATE, OPTIMIZER_STATE, READERS_LOCK, TRAINER_STATE, VOCAB,
)
from ernie_style.storage.model_dir import (  # noqa: F401  the layout's owner
    CheckpointError, read_trainer_state, replace_dir, verify, write_checksums, write_json, write_model_files,
)

_STEP_RE = re.compile(r"^step_(\d{8})$")
_REPLACED = ".replaced.tmp"  # an old step dir moved aside while a save of the same step is renamed into place
STRUCTURED_KEY = "StructuredToParameterName@@"  # the name map paddle.save adds to a state dict


class SaveFailed(CheckpointError):
    """A save that did not complete (disk full, I/O error); every rank raises it, nothing partial is left."""


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def point_latest(ckpt_root: str, name: str) -> None:
    """Atomically make ``ckpt_root/latest`` a symlink to ``name`` (a new link renamed over the old one)."""
    tmp = os.path.join(ckpt_root, LATEST + ".tmp")
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(name, tmp)
    os.replace(tmp, os.path.join(ckpt_root, LATEST))
    fsync_file(ckpt_root)


# ----------------------------------------------------------------------------------------------
# RNG


def rng_state() -> dict:
    """This process's RNG states as JSON-serialisable data (nothing in it can execute when loaded)."""
    import paddle

    # Paddle: this module loads without it (preflight reads checkpoints before launch)
    from ernie_style.training import paddle_internals

    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "state": list(mt), "gauss": gauss},
             "numpy": {"kind": kind, "keys": [int(k) for k in keys], "pos": int(pos), "has_gauss": int(has_gauss),
                       "cached_gaussian": float(cached)},
             "paddle_cpu": [paddle_internals.generator_state_to_json(g) for g in paddle.get_rng_state("cpu")]}
    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        state["paddle_gpu"] = [paddle_internals.generator_state_to_json(g) for g in paddle.get_cuda_rng_state()]
    return state


def set_rng_state(state: dict) -> None:
    import paddle

    # Paddle, as in rng_state
    from ernie_style.training import paddle_internals

    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    paddle.set_rng_state([paddle_internals.generator_state_from_json(g) for g in state["paddle_cpu"]], "cpu")
    if "paddle_gpu" in state and paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        paddle.set_cuda_rng_state([paddle_internals.generator_state_from_json(g) for g in state["paddle_gpu"]])


def rng_file(path: str, rank: int) -> str:
    return os.path.join(path, f"rng_state.rank{rank}.json")


# ----------------------------------------------------------------------------------------------
# Verification and discovery


def verify_model_dir(path: str) -> None:
    """A plain model dir is verified against its checksums.json when it has one (``export.from_pytorch``
    writes it); the weights file must then be listed."""
    verify(path, what="model dir")


def step_of(path: str) -> int:
    m = _STEP_RE.match(os.path.basename(os.path.normpath(path)))
    return int(m.group(1)) if m else -1


def list_checkpoints(ckpt_root: str) -> List[str]:
    """Complete-looking step dirs, newest first."""
    if not os.path.isdir(ckpt_root):
        return []
    names = [n for n in os.listdir(ckpt_root) if _STEP_RE.match(n) and os.path.isdir(os.path.join(ckpt_root, n))]
    return [os.path.join(ckpt_root, n) for n in sorted(names, reverse=True)]


def latest_target(ckpt_root: str) -> Optional[str]:
    """The step dir ``latest`` names (it may not exist), or None without a ``latest`` link."""
    latest = os.path.join(ckpt_root, LATEST)
    if not os.path.islink(latest):
        return None
    return os.path.join(ckpt_root, os.path.basename(os.readlink(latest)))


def find_resumable(ckpt_root: str, log: Callable[[str], None] = print) -> Optional[str]:
    """The newest checkpoint that verifies: ``latest`` first, then older ones. None when there is none.

    Checkpoints newer than the one ``latest`` names belong to a branch the user abandoned (a resume from an
    older step): they are never resumed automatically."""
    candidates = []
    target = latest_target(ckpt_root)
    if target is not None:
        candidates.append(target)
    candidates += [c for c in list_checkpoints(ckpt_root)
                   if c not in candidates and (target is None or step_of(c) < step_of(target))]
    for c in candidates:
        if not os.path.isdir(c):
            log(f"checkpoint: {c} named by {os.path.join(ckpt_root, LATEST)} does not exist, looking for an older one")
            continue
        try:
            verify(c)
            return c
        except CheckpointError as e:
            log(f"checkpoint: refusing {e}; falling back to an older checkpoint")
    return None


def is_plain_model_dir(path: str) -> bool:
    """Weights without training state: our model dir (``model_config.json`` + ``model_state.pdparams``), or a
    Hugging Face directory of a registered architecture (read as ``export.from_pytorch`` would convert it)."""
    ours = (os.path.isfile(os.path.join(path, MODEL_CONFIG)) and os.path.isfile(os.path.join(path, MODEL_STATE))
            and not os.path.isfile(os.path.join(path, TRAINER_STATE)))
    return ours or hf_weights_file(path) is not None


def weights_file(model_dir: str) -> str:
    """The file holding a plain model dir's weights (what identifies the lineage that starts from it)."""
    return hf_weights_file(model_dir) or os.path.join(model_dir, MODEL_STATE)


def starts_lineage(path: str, vocab_file: Optional[str] = None) -> bool:
    """Whether starting from ``path`` loads its weights only (fresh optimizer, step 0, a new lineage): a plain model
    dir, or a checkpoint whose ``vocab.txt`` is not ``vocab_file`` (the run's; preflight has refused any vocab but
    an extension: the new rows have no optimizer state to resume)."""
    if is_plain_model_dir(path):
        return True
    saved = os.path.join(path, VOCAB)
    return (vocab_file is not None and os.path.isfile(saved) and os.path.isfile(vocab_file)
            and sha256_file(saved) != sha256_file(vocab_file))


# ----------------------------------------------------------------------------------------------
# Lineage


def new_lineage(init_dir: Optional[str] = None) -> dict:
    """A fresh lineage; ``init_dir`` is the plain model dir it starts from (identified by its weights' sha256)."""
    init = None
    if init_dir is not None:
        init = {"path": os.path.abspath(init_dir), "sha256": sha256_file(weights_file(init_dir))}
    return {"id": uuid.uuid4().hex, "init": init}


def lineage_of(path: str) -> Optional[dict]:
    """The lineage recorded in a checkpoint's trainer_state.json (None when absent or unreadable)."""
    lineage = (read_trainer_state(path) or {}).get("lineage")
    return lineage if isinstance(lineage, dict) else None


def checkpoints_started_from(ckpt_root: str, model_dir: str) -> List[str]:
    """The checkpoints under ``ckpt_root`` whose lineage began at the plain model dir ``model_dir`` (same
    weights, wherever the dir now lives), newest first."""
    want = sha256_file(weights_file(model_dir))
    out = []
    for c in list_checkpoints(ckpt_root):
        init = (lineage_of(c) or {}).get("init")
        if isinstance(init, dict) and init.get("sha256") == want:
            out.append(c)
    return out


# ----------------------------------------------------------------------------------------------
# Writing


def _nbytes(obj) -> int:
    """Bytes of the arrays/tensors in a nested state (an estimate of what a save writes)."""
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if hasattr(obj, "numel") and hasattr(obj, "element_size"):
        return int(obj.numel()) * int(obj.element_size())
    return 0


def _failure_line(step: int, path: str, e: OSError, need: int) -> str:
    free = shutil.disk_usage(os.path.dirname(path)).free if os.path.isdir(os.path.dirname(path)) else 0
    if e.errno == errno.ENOSPC:
        why = f"no space left on device (needed about {human_bytes(need)}, {human_bytes(free)} free)"
    else:
        why = f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")
    return (f"error: checkpoint save of step {step} to {path} failed: {why}; the partial directory was removed, "
            "the previous checkpoints are intact")


def agree(ok: bool, info) -> bool:
    """Collective: True when every rank's ``ok`` is True (one all-reduce, so also a barrier)."""
    # Paddle, as in rng_state
    from ernie_style.training.distributed import all_reduce_sum

    return all_reduce_sum([0.0 if ok else 1.0], info)[0] == 0.0


class Checkpointer:
    """Saves every ``save_steps`` (and when forced at the end); prunes what this run may delete to ``keep``.

    ``lineage``: this run's lineage (see the module doc); ``resume_step``: the step it resumed from (0 when
    it started fresh); checkpoints of lineage ``ancestor_id`` (the resumed checkpoint's) up to that step are
    its ancestors and may be pruned.
    """

    def __init__(self, output_dir: str, save_steps: int, keep: int, info, log: Callable[[str], None] = print,
                 lineage: Optional[dict] = None, resume_step: int = 0, ancestor_id: Optional[str] = None):
        self.root = os.path.join(output_dir, "checkpoints")
        self.save_steps = save_steps
        self.keep = keep
        self.info = info
        self.log = log
        self.lineage = lineage or new_lineage()
        self.resume_step = resume_step
        self.ancestor_id = ancestor_id if resume_step > 0 else self.lineage["id"]
        self.written: set = set()
        self.last_saved_step = -1
        if info.is_main:
            self.clean_stale()

    def clean_stale(self) -> None:
        """Leftovers of a killed run (the caller holds the run lock, so none are in progress): put back a step
        dir that was moved aside for a replacement that never landed, remove ``*.tmp`` directories."""
        if not os.path.isdir(self.root):
            return
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name)
            if name.endswith(_REPLACED):
                final = path[: -len(_REPLACED)]
                if not os.path.exists(final):
                    os.rename(path, final)
                    self.log(f"checkpoint: restored {final} (a replacement of it never completed)")
                    continue
            if name.endswith(".tmp") and os.path.isdir(path) and not os.path.islink(path):  # not latest.tmp
                shutil.rmtree(path, ignore_errors=True)
                self.log(f"checkpoint: removed {path} left by an interrupted save")

    def should_save(self, step: int, force: bool = False) -> bool:
        return step != self.last_saved_step and (force or step % self.save_steps == 0)

    def _agree(self, ok: bool) -> bool:
        return agree(ok, self.info)

    def save(self, step: int, *, model_state: dict, optimizer_state: dict, trainer_state: dict,
             model_config: dict, vocab_file: str, do_lower_case: bool, sharded_optimizer: bool = False,
             tokenizer_kind: str = DEFAULT_KIND) -> str:
        """Collective: every rank must call it.  Returns the final directory; raises SaveFailed on every rank
        when any rank failed to write (after removing the partial directory)."""
        import paddle

        final = os.path.join(self.root, step_dir_name(step))
        tmp = final + ".tmp"
        need = _nbytes(model_state) + _nbytes(optimizer_state) * (self.info.world_size if sharded_optimizer else 1)
        error = None
        if self.info.is_main:
            try:
                os.makedirs(self.root, exist_ok=True)
                if os.path.exists(tmp):
                    shutil.rmtree(tmp)
                os.makedirs(tmp)
            except OSError as e:
                error = e
        if self._agree(error is None):
            try:
                with open(rng_file(tmp, self.info.rank), "w", encoding="utf-8") as f:
                    json.dump(rng_state(), f)
                if sharded_optimizer:
                    paddle.save(optimizer_state, os.path.join(tmp, f"optimizer.rank{self.info.rank}.pdopt"))
            except OSError as e:
                error = e
            if self._agree(error is None) and self.info.is_main:
                try:
                    self._write_main(tmp, model_state, optimizer_state, dict(trainer_state, lineage=self.lineage),
                                     model_config, vocab_file, do_lower_case, sharded_optimizer, tokenizer_kind)
                except OSError as e:
                    error = e
        if not self._agree(error is None):
            if self.info.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise SaveFailed(_failure_line(step, tmp, error, need) if error is not None else
                             f"error: checkpoint save of step {step} failed on another rank (see its log); "
                             f"{tmp} was removed")
        if self.info.is_main:
            self._publish(tmp, final, step)
            self.written.add(final)
            self._prune()
            self.log(f"checkpoint: saved {final}")
        self._agree(True)
        self.last_saved_step = step
        return final

    def _write_main(self, tmp, model_state, optimizer_state, trainer_state, model_config, vocab_file,
                    do_lower_case, sharded_optimizer, tokenizer_kind=DEFAULT_KIND) -> None:
        import paddle

        paddle.save(model_state, os.path.join(tmp, MODEL_STATE))
        if not sharded_optimizer:
            paddle.save(optimizer_state, os.path.join(tmp, OPTIMIZER_STATE))
        write_json(os.path.join(tmp, TRAINER_STATE), trainer_state)
        write_model_files(tmp, model_config, vocab_file, TokenizerSpec(bool(do_lower_case), tokenizer_kind))
        write_checksums(tmp)

    def _publish(self, tmp: str, final: str, step: int) -> None:
        """Rename the complete ``tmp`` into place.  An existing dir of the same step is swapped with it in one
        atomic exchange where the system can, else moved aside first and removed only after the new one is in
        place (start-up puts it back if we die in between); replacing it waits for exports reading checkpoints."""
        if os.path.exists(final):
            fd = locking.try_exclusive(os.path.join(self.root, READERS_LOCK), wait=True)
            try:
                replace_dir(tmp, final, aside=final + _REPLACED)
            finally:
                locking.release(fd)
        else:
            replace_dir(tmp, final)
        point_latest(self.root, step_dir_name(step))

    def prunable(self) -> List[str]:
        """Checkpoints this run may delete, newest first (see the module doc)."""
        out = []
        for c in list_checkpoints(self.root):
            if c in self.written:
                out.append(c)
            elif step_of(c) <= self.resume_step and (lineage_of(c) or {}).get("id") == self.ancestor_id:
                out.append(c)
        return out

    def _prune(self) -> None:
        doomed = self.prunable()[self.keep:]
        if not doomed:
            return
        fd = locking.try_exclusive(os.path.join(self.root, READERS_LOCK))
        if fd is None:  # an export is reading: try again at the next save
            self.log(f"checkpoint: an export is reading {self.root}; pruning of {len(doomed)} old checkpoint(s) "
                     "postponed to the next save")
            return
        try:
            for old in doomed:
                shutil.rmtree(old, ignore_errors=True)
                self.written.discard(old)
        finally:
            locking.release(fd)


# ----------------------------------------------------------------------------------------------
# Optimizer state keyed by structured parameter names
#
# Paddle keys optimizer state by the auto-generated ``param.name`` ("linear_3.w_0_moment1_0"), which depends
# on how many layers the process created before.  On disk we key by the structured name
# ("<prefix>.encoder.layers.0.linear1.weight/moment1_0") so a checkpoint loads into any process.


def _rename(state, mapping: dict, sep_in: str, sep_out: str):
    out = {}
    for key, value in state.items():
        if isinstance(value, dict) and key == "master_weights":
            out[key] = {mapping.get(k, k): v for k, v in value.items()}
            continue
        new = key
        for src in sorted((m for m in mapping if key.startswith(m + sep_in)), key=len, reverse=True)[:1]:
            new = mapping[src] + sep_out + key[len(src) + len(sep_in):]
        out[new] = value
    return out


def optimizer_state_to_structured(state: dict, model) -> dict:
    mapping = {p.name: n for n, p in model.named_parameters()}
    return _rename(state, mapping, "_", "/")


def optimizer_state_from_structured(state: dict, model) -> dict:
    mapping = {n: p.name for n, p in model.named_parameters()}
    return _rename(state, mapping, "/", "_")


# ----------------------------------------------------------------------------------------------
# Resume: which checkpoint a run starts from (selection and policy), decided by rank 0 for every rank


def resume_source(train, info, log: Callable[[str], None] = print, vocab_file: Optional[str] = None) -> Optional[str]:
    """The checkpoint or model dir to start from, decided by rank 0 and the same on every rank (None: fresh).

    A plain model dir starts a lineage; when ``OUTPUT/checkpoints`` already holds checkpoints of the lineage
    that started from it (the same command run again), the newest of them is resumed instead.  Starting
    fresh (``none``, or a model dir with no lineage here) into a directory that holds other checkpoints is
    refused unless ``train.overwrite_output=true`` (and even then nothing of them is deleted by pruning).
    ``vocab_file``: the run's vocab (a checkpoint of another vocab starts a lineage too: :func:`starts_lineage`)."""
    root = os.path.join(train.output_dir, "checkpoints")
    chosen, error = None, None
    if info.is_main:
        try:
            chosen = _choose_resume(train, root, log, vocab_file)
        except (ConfigError, CheckpointError) as e:
            error = e
    chosen = _broadcast_choice(train, info, root, chosen, error, vocab_file)
    if chosen is not None and not starts_lineage(chosen, vocab_file):
        log(f"resume: from {chosen}")
    return chosen

def _choose_resume(t, root: str, log, vocab_file: Optional[str] = None) -> Optional[str]:
    r = t.resume
    if r == "auto":
        return find_resumable(root, log=log)
    if r != "none" and starts_lineage(r, vocab_file):
        if is_plain_model_dir(r):
            verify_model_dir(r)
        else:
            verify(r)  # a checkpoint of the vocab this run extends: its weights must be intact as well
        if checkpoints_started_from(root, r):
            found = find_resumable(root, log=log)
            if found and ((lineage_of(found) or {}).get("init") or {}).get("sha256") == \
                    sha256_file(weights_file(r)):
                log(f"resume: {root} holds {os.path.basename(found)} of the run that started from model "
                          f"dir {r}; continuing it (the model dir only starts a new lineage; to start over, "
                          "use another train.output_dir)")
                return found
    elif r != "none":
        verify(r)  # a named checkpoint must be intact; no silent fallback
        return r
    existing = list_checkpoints(root)
    if existing and not t.overwrite_output:
        names = ", ".join(os.path.basename(c) for c in existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise ConfigError(f"train.resume={r!r}: {root} already holds checkpoints of another run ({names}); "
                          "expected train.resume=auto to continue them, another train.output_dir, or "
                          "train.overwrite_output=true to start a new run beside them (they are kept)")
    if existing:
        log(f"resume: starting a new run beside the {len(existing)} checkpoint(s) in {root} "
                  "(train.overwrite_output=true; they are not pruned)")
    return None if r == "none" else r

def _broadcast_choice(train, info, root: str, chosen: Optional[str], error,
                      vocab_file: Optional[str] = None) -> Optional[str]:
    """Rank 0's decision to every rank: -2 = error, -1 = fresh, N = step N under ``root``, -3 = the path
    given as train.resume.  Each rank then checks it sees the files it will read."""
    from ernie_style.training.distributed import all_reduce_sum  # Paddle, as in rng_state

    code = 0.0
    if info.is_main:
        if error is not None:
            code = -2.0
        elif chosen is None:
            code = -1.0
        elif os.path.abspath(chosen) == os.path.abspath(train.resume):
            code = -3.0
        else:
            code = float(step_of(chosen))
    code = int(all_reduce_sum([code], info)[0])
    if code == -2:
        raise error if error is not None else ConfigError("train.resume: rank 0 refused it (see its message)")
    if code == -1:
        return None
    path = train.resume if code == -3 else os.path.join(root, step_dir_name(code))
    need = [weights_file(path) if is_plain_model_dir(path) else os.path.join(path, MODEL_STATE)]
    if not starts_lineage(path, vocab_file):
        own, first = (os.path.join(path, f"optimizer.rank{r}.pdopt") for r in (info.rank, 0))
        # sharded: this rank's file, or (another world size) the files it merges; else optimizer.pdopt
        need.append(own if os.path.isfile(own) else first if os.path.isfile(first) else
                    os.path.join(path, OPTIMIZER_STATE))
    missing = [p for p in need if not os.path.isfile(p)]
    if not agree(not missing, info):
        raise ConfigError(f"train.resume: rank {info.rank} cannot read {missing[0]}" if missing else
                          f"train.resume: another rank cannot read {path} that rank 0 resumes from (is the "
                          "directory shared by every node?)")
    return path


# ----------------------------------------------------------------------------------------------
# Reading (nothing here unpickles anything but arrays and plain containers)


def load_trainer_state(path: str) -> dict:
    with open(os.path.join(path, TRAINER_STATE), encoding="utf-8") as f:
        return json.load(f)


def load_state_file(path: str) -> dict:
    """A ``.pdparams``/``.pdopt`` file as a dict of numpy arrays / plain values, through the restricted
    unpickler: a file that would run code (or is not a state dict) is a CheckpointError naming it."""
    try:
        obj = safe_pickle.load(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (safe_pickle.UnsafePickle, safe_pickle.CorruptPickle) as e:
        raise CheckpointError(f"{e} -- refusing to load it") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a state dict")
    obj.pop(STRUCTURED_KEY, None)
    return obj


def load_rng_state(path: str, rank: int, log: Callable[[str], None] = print) -> Optional[dict]:
    fp = rng_file(path, rank)
    if not os.path.isfile(fp):
        if os.path.isfile(os.path.join(path, f"rng_state.rank{rank}.pkl")):
            log(f"resume: {path} holds its RNG state as a pickle (older format), which is not loaded "
                "(it could run code)")
        return None
    try:
        with open(fp, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:
        raise CheckpointError(f"{fp}: not valid JSON ({e})") from None


def merge_sharded_optimizer_states(path: str, world: int) -> dict:
    """The whole optimizer state of a checkpoint saved with sharding over ``world`` ranks: the union of its
    ``optimizer.rank{R}.pdopt`` files (disjoint parameter states; the LR scheduler entry is the same in each)."""
    merged: Dict[str, object] = {}
    for r in range(int(world)):
        fp = os.path.join(path, f"optimizer.rank{r}.pdopt")
        if not os.path.isfile(fp):
            raise CheckpointError(f"checkpoint {path}: {os.path.basename(fp)} missing (saved by {world} ranks)")
        for key, value in load_state_file(fp).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}  # master_weights: one part per rank
            else:
                merged.setdefault(key, value)
    return merged


def optimizer_file(path: str, rank: int) -> str:
    per_rank = os.path.join(path, f"optimizer.rank{rank}.pdopt")
    return per_rank if os.path.isfile(per_rank) else os.path.join(path, OPTIMIZER_STATE)
