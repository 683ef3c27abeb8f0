"""The files of a checkpoint or model directory: ``checksums.json`` written and verified, in one place.

Paddle-free: the trainer (``ernie_style.checkpoint``), fine-tuning's ``best_model`` and ``export`` all write and
check directories through these two functions.  The file names are in :mod:`ernie_style.constants`.

One rule for a missing ``checksums.json``: a training checkpoint (it holds ``trainer_state.json``) is written
with one, so without it the checkpoint is incomplete and refused; a plain model directory may have none
(``RoFormerForPretraining.save_pretrained`` writes none) and is verified when it has one.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional, Sequence

from data_tools.io_utils import UserError, fsync_file, sha256_file
from ernie_style.constants import CHECKSUMS, MODEL_CONFIG, MODEL_STATE, TRAINER_STATE


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used (damaged, incomplete, incompatible)."""


def kind_of(path: str) -> str:
    """"checkpoint" for a training checkpoint (it holds ``trainer_state.json``), else "model dir"."""
    return "checkpoint" if os.path.isfile(os.path.join(path, TRAINER_STATE)) else "model dir"


def write_checksums(directory: str) -> Dict[str, str]:
    """fsync every file of ``directory``, then write ``checksums.json`` = {file name: sha256} (fsynced) and
    fsync the directory; returns the sums."""
    sums = {}
    for name in sorted(os.listdir(directory)):
        fp = os.path.join(directory, name)
        fsync_file(fp)
        sums[name] = sha256_file(fp)
    with open(os.path.join(directory, CHECKSUMS), "w", encoding="utf-8") as f:
        json.dump(sums, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    fsync_file(directory)
    return sums


def verify(path: str, what: str = "checkpoint", required: Optional[Sequence[str]] = None) -> None:
    """Raise CheckpointError unless every file listed in ``checksums.json`` exists with its sha256 and the
    ``required`` files are listed.  ``what="checkpoint"``: ``checksums.json`` must exist and list
    ``trainer_state.json`` and the weights; ``what="model dir"``: checked when present, listing
    ``model_config.json`` and the weights (see the module doc)."""
    assert what in ("checkpoint", "model dir"), what
    checkpoint = what == "checkpoint"
    if required is None:
        required = (TRAINER_STATE, MODEL_STATE) if checkpoint else (MODEL_STATE, MODEL_CONFIG)
    sums_file = os.path.join(path, CHECKSUMS)
    if not os.path.isfile(sums_file):
        if checkpoint:
            raise CheckpointError(f"{what} {path}: {CHECKSUMS} missing (incomplete write?)")
        return
    try:
        with open(sums_file, encoding="utf-8") as f:
            sums = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{what} {path}: {CHECKSUMS} unreadable ({e})") from None
    if not isinstance(sums, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sums.items()):
        raise CheckpointError(f"{what} {path}: {CHECKSUMS} is damaged (expected a JSON object "
                              f"{{file name: sha256}}, got {type(sums).__name__})")
    for name, want in sorted(sums.items()):
        fp = os.path.join(path, name)
        if os.path.basename(name) != name or not os.path.isfile(fp):
            raise CheckpointError(f"{what} {path}: file {name} listed in {CHECKSUMS} is missing")
        got = sha256_file(fp)
        if got != want:
            raise CheckpointError(f"{what} {path}: file {name} is damaged (checksum mismatch: sha256 {got[:12]}..., "
                                  f"{CHECKSUMS} says {want[:12]}...; truncated or modified)")
    for name in required:
        if name not in sums:
            raise CheckpointError(f"{what} {path}: {name} missing from {CHECKSUMS}")
