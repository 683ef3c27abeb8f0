"""Atomic, verifiable training checkpoints.

Layout (DESIGN.md)::

    OUTPUT/checkpoints/step_00001000/
        model_state.pdparams      paddle.save(model.state_dict())            (rank 0)
        optimizer.pdopt           paddle.save(optimizer.state_dict())        (rank 0; per rank when sharded:
                                                                              optimizer.rank{R}.pdopt)
        rng_state.rank{R}.pkl     Python random / NumPy / Paddle generator states of rank R (every rank)
        trainer_state.json        step, consumed_samples, LR scheduler and loss-scaler state, world size,
                                  resolved config                              (rank 0)
        model_config.json  vocab.txt  tokenizer_config.json                  (rank 0)
        checksums.json            sha256 of every other file, written last   (rank 0)
    OUTPUT/checkpoints/latest     symlink to the newest complete step dir (relative; usable as a path)

A checkpoint is written to ``step_XXXXXXXX.tmp``, every file is fsynced, the directory is renamed,
then ``latest`` is replaced atomically.  Only the newest ``keep_checkpoints`` survive.
A directory whose checksums do not match (or with a file missing/truncated) is refused by
:func:`verify`; :func:`find_resumable` falls back to the newest good one.

``train.resume`` may also name a plain model dir (``model_config.json`` + ``model_state.pdparams``,
e.g. from ``export``'s Hugging Face -> Paddle converter): that initialises the weights only, with a
fresh optimizer, step 0.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
from typing import Callable, List, Optional

import numpy as np

from data_tools.io_utils import fsync_file, sha256_file

CHECKSUMS = "checksums.json"
TRAINER_STATE = "trainer_state.json"
MODEL_STATE = "model_state.pdparams"
MODEL_CONFIG = "model_config.json"
LATEST = "latest"
_STEP_RE = re.compile(r"^step_(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (damaged, incomplete, incompatible)."""


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def write_atomic_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_file(os.path.dirname(os.path.abspath(path)))


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
    import paddle

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "paddle_cpu": paddle.get_rng_state("cpu")}
    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        state["paddle_gpu"] = paddle.get_cuda_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    import paddle

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    paddle.set_rng_state(state["paddle_cpu"], "cpu")
    if "paddle_gpu" in state and paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        paddle.set_cuda_rng_state(state["paddle_gpu"])


# ----------------------------------------------------------------------------------------------
# Verification and discovery


def verify(path: str) -> None:
    """Raise CheckpointError unless every file listed in checksums.json exists with its sha256."""
    sums_file = os.path.join(path, CHECKSUMS)
    if not os.path.isfile(sums_file):
        raise CheckpointError(f"checkpoint {path}: {CHECKSUMS} missing (incomplete write?)")
    try:
        with open(sums_file, encoding="utf-8") as f:
            sums = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: {CHECKSUMS} unreadable ({e})") from None
    for name, want in sorted(sums.items()):
        fp = os.path.join(path, name)
        if not os.path.isfile(fp):
            raise CheckpointError(f"checkpoint {path}: file {name} missing")
        got = sha256_file(fp)
        if got != want:
            raise CheckpointError(f"checkpoint {path}: file {name} is damaged (sha256 {got[:12]}..., "
                                  f"expected {want[:12]}...)")
    for required in (TRAINER_STATE, MODEL_STATE):
        if required not in sums:
            raise CheckpointError(f"checkpoint {path}: {required} missing from {CHECKSUMS}")


def list_checkpoints(ckpt_root: str) -> List[str]:
    """Complete-looking step dirs, newest first."""
    if not os.path.isdir(ckpt_root):
        return []
    names = [n for n in os.listdir(ckpt_root) if _STEP_RE.match(n) and os.path.isdir(os.path.join(ckpt_root, n))]
    return [os.path.join(ckpt_root, n) for n in sorted(names, reverse=True)]


def find_resumable(ckpt_root: str, log: Callable[[str], None] = print) -> Optional[str]:
    """The newest checkpoint that verifies: ``latest`` first, then older ones. None when there is none."""
    candidates = []
    latest = os.path.join(ckpt_root, LATEST)
    if os.path.islink(latest):
        candidates.append(os.path.join(ckpt_root, os.path.basename(os.readlink(latest))))
    candidates += [c for c in list_checkpoints(ckpt_root) if c not in candidates]
    for c in candidates:
        if not os.path.isdir(c):
            log(f"checkpoint: {c} named by {latest} does not exist, looking for an older one")
            continue
        try:
            verify(c)
            return c
        except CheckpointError as e:
            log(f"checkpoint: refusing {e}; falling back to an older checkpoint")
    return None


def is_plain_model_dir(path: str) -> bool:
    return (os.path.isfile(os.path.join(path, MODEL_CONFIG)) and os.path.isfile(os.path.join(path, MODEL_STATE))
            and not os.path.isfile(os.path.join(path, TRAINER_STATE)))


# ----------------------------------------------------------------------------------------------
# Writing


class Checkpointer:
    """Saves every ``save_steps`` (and when forced at the end); keeps the newest ``keep``."""

    def __init__(self, output_dir: str, save_steps: int, keep: int, info, log: Callable[[str], None] = print):
        self.root = os.path.join(output_dir, "checkpoints")
        self.save_steps = save_steps
        self.keep = keep
        self.info = info
        self.log = log
        self.last_saved_step = -1

    def should_save(self, step: int, force: bool = False) -> bool:
        return step != self.last_saved_step and (force or step % self.save_steps == 0)

    def save(self, step: int, *, model_state: dict, optimizer_state: dict, trainer_state: dict,
             model_config: dict, vocab_file: str, do_lower_case: bool, sharded_optimizer: bool = False) -> str:
        """Collective: every rank must call it.  Returns the final directory."""
        import paddle

        from ernie_style.parallelize import barrier

        final = os.path.join(self.root, step_dir_name(step))
        tmp = final + ".tmp"
        if self.info.is_main:
            os.makedirs(self.root, exist_ok=True)
            if os.path.exists(tmp):
                shutil.rmtree(tmp)
            os.makedirs(tmp)
        barrier(self.info)
        rank = self.info.rank
        with open(os.path.join(tmp, f"rng_state.rank{rank}.pkl"), "wb") as f:
            pickle.dump(rng_state(), f)
        if sharded_optimizer:
            paddle.save(optimizer_state, os.path.join(tmp, f"optimizer.rank{rank}.pdopt"))
        barrier(self.info)
        if self.info.is_main:
            paddle.save(model_state, os.path.join(tmp, MODEL_STATE))
            if not sharded_optimizer:
                paddle.save(optimizer_state, os.path.join(tmp, "optimizer.pdopt"))
            with open(os.path.join(tmp, TRAINER_STATE), "w", encoding="utf-8") as f:
                json.dump(trainer_state, f, indent=2, sort_keys=True)
            with open(os.path.join(tmp, MODEL_CONFIG), "w", encoding="utf-8") as f:
                json.dump(model_config, f, indent=2, sort_keys=True)
            with open(os.path.join(tmp, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump({"do_lower_case": bool(do_lower_case)}, f)
            shutil.copyfile(vocab_file, os.path.join(tmp, "vocab.txt"))
            sums = {}
            for name in sorted(os.listdir(tmp)):
                fp = os.path.join(tmp, name)
                fsync_file(fp)
                sums[name] = sha256_file(fp)
            with open(os.path.join(tmp, CHECKSUMS), "w", encoding="utf-8") as f:
                json.dump(sums, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            fsync_file(tmp)
            if os.path.exists(final):  # a previous run's checkpoint of the same step
                shutil.rmtree(final)
            os.rename(tmp, final)
            fsync_file(self.root)
            point_latest(self.root, step_dir_name(step))
            self._prune()
            self.log(f"checkpoint: saved {final}")
        barrier(self.info)
        self.last_saved_step = step
        return final

    def _prune(self) -> None:
        for old in list_checkpoints(self.root)[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Optimizer state keyed by structured parameter names
#
# Paddle keys optimizer state by the auto-generated ``param.name`` ("linear_3.w_0_moment1_0"), which depends
# on how many layers the process created before.  On disk we key by the structured name
# ("roformer.encoder.layers.0.linear1.weight/moment1_0") so a checkpoint loads into any process.


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
# Reading


def load_trainer_state(path: str) -> dict:
    with open(os.path.join(path, TRAINER_STATE), encoding="utf-8") as f:
        return json.load(f)


def load_rng_state(path: str, rank: int) -> Optional[dict]:
    fp = os.path.join(path, f"rng_state.rank{rank}.pkl")
    if not os.path.isfile(fp):
        return None
    with open(fp, "rb") as f:
        return pickle.load(f)


def optimizer_file(path: str, rank: int) -> str:
    per_rank = os.path.join(path, f"optimizer.rank{rank}.pdopt")
    return per_rank if os.path.isfile(per_rank) else os.path.join(path, "optimizer.pdopt")
