"""The one owner of our model directories: a training checkpoint's model part, a plain model dir, fine-tuning's
``best_model/``, what ``export.from_pytorch`` writes.  They are read, written, verified (``checksums.json``) and
swapped into place here, with numpy + json only (no Paddle).  The file names are in :mod:`ernie_style.constants`.

One rule for a missing ``checksums.json``: a training checkpoint (it holds ``trainer_state.json``) is written
with one, so without it the checkpoint is incomplete and refused; a plain model directory may have none
(an architecture's ``save_pretrained`` writes none) and is verified when it has one.

Layout (trainer checkpoints and an architecture's ``save_pretrained``):
  model_config.json      the architecture's config ``to_dict()`` (+ "arch" when not the default: ernie_style.arch)
  model_state.pdparams   paddle.save of the state dict (see ernie_style/storage/pdparams.py)
  vocab.txt              one token per line
  tokenizer_config.json  {"do_lower_case": true|false}
  checksums.json         {filename: sha256}, trainer checkpoints only; verified when present
  config.json            fine-tuned models only (a fine-tune run's best_model/): {"task": seq_cls|pair_cls|ner|qa,
                         "id2label": {"0": label, ...}, "label2id": {...} (no label maps for qa), "do_lower_case",
                         "max_seq_len", "init"}; the state then holds the encoder, the pooler and that task's head
Output directories are built under a temporary name beside the target and renamed into
place at the end, so a failure never leaves a directory that looks complete.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Dict, Optional, Sequence

from data_tools.io_utils import atomic_write_text, fsync_dir, fsync_file, read_json_dict, sha256_file
from data_tools.tokenizers import TokenizerSpec, kind_stated
from data_tools.vocab import SPECIAL_TOKENS, VocabError, read_vocab as _read_vocab
from ernie_style.constants import (
    CHECKSUMS, MODEL_CONFIG, MODEL_STATE, TASK_CONFIG, TOKENIZER_CONFIG, TRAINER_STATE, VOCAB,
)
from ernie_style.storage.errors import ModelDirError

# The layout's file names (defined once, in ernie_style.constants; the export-side names kept for its callers).
CONFIG_FILE, STATE_FILE, VOCAB_FILE, TOKENIZER_FILE = MODEL_CONFIG, MODEL_STATE, VOCAB, TOKENIZER_CONFIG
CHECKSUMS_FILE, TASK_FILE = CHECKSUMS, TASK_CONFIG

CheckpointError = ModelDirError  # the name the training code raises and catches


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

def read_json(path):
    if not os.path.isfile(path):
        raise ModelDirError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{path}: not valid JSON ({e})") from None


def read_vocab(path) -> list:
    """Tokens of a vocab.txt through the project's one reader (``data_tools.vocab``), errors as ModelDirError."""
    if not os.path.isfile(path):
        raise ModelDirError(f"{path}: file not found")
    try:
        return _read_vocab(path, SPECIAL_TOKENS)
    except VocabError as e:
        raise ModelDirError(str(e)) from None


def _exchange(a, b) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False  # ENOSYS / EINVAL (a filesystem without exchange): the caller falls back


def _fsync_tree(root) -> None:
    for d, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(d)


@contextlib.contextmanager
def atomic_output_dir(out_dir, overwrite=False):
    """Yield a temp dir beside ``out_dir``; on success it becomes ``out_dir``, on failure it is removed.

    With ``overwrite``, an existing ``out_dir`` is swapped with the complete new one in one atomic exchange
    and removed afterwards, so a failure (or kill) at any point leaves either the old or the new export
    complete at ``out_dir``.  The directory gets the usual permissions (0777 minus the umask), not mkdtemp's
    0700, and the parent is fsynced after the rename."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not overwrite:
        if not os.path.isdir(out_dir) or os.listdir(out_dir):
            raise ModelDirError(f"{out_dir}: output exists and is not empty (choose a new directory, or pass "
                            "--overwrite to replace it)")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
        _fsync_tree(tmp)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path, obj):
    """The one JSON writer of model directories (indented, sorted keys, UTF-8), atomic on its own."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def write_vocab(path, vocab):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))


# ---------------------------------------------------------------------------------------------------------------
# The JSON parts of a model directory, read and written in one place


def write_model_files(directory: str, model_config: dict, vocab_file: Optional[str] = None,
                      tokenizer: Optional[TokenizerSpec] = None, task_config: Optional[dict] = None,
                      vocab: Optional[Sequence[str]] = None) -> None:
    """Write ``model_config.json``, the vocab (a copy of ``vocab_file``, or the tokens ``vocab``), the
    tokenizer (``tokenizer_config.json``: lowercasing, and the kind when it is not the default) and, for a
    fine-tuned model, its task file, into ``directory`` (a temp dir the caller then swaps into place).  The
    weights are the caller's: they are Paddle's or numpy's to write."""
    write_json(os.path.join(directory, MODEL_CONFIG), model_config)
    if vocab_file is not None:
        shutil.copyfile(vocab_file, os.path.join(directory, VOCAB))
    elif vocab is not None:
        write_vocab(os.path.join(directory, VOCAB), vocab)
    if tokenizer is not None:  # compact, as checkpoints have always had it (byte-identical for today's kind)
        atomic_write_text(os.path.join(directory, TOKENIZER_CONFIG), json.dumps(tokenizer.to_dict()))
    if task_config is not None:
        write_json(os.path.join(directory, TASK_CONFIG), task_config)


def read_model_config(directory: str) -> dict:
    """``model_config.json`` of ``directory`` as a dict (ModelDirError naming the file otherwise); its fields are
    the architecture's to check."""
    path = os.path.join(directory, MODEL_CONFIG)
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ModelDirError(f"{path}: expected a JSON object")
    return raw


def read_tokenizer(directory: str) -> TokenizerSpec:
    """The tokenizer a model directory was trained with: lowercasing and kind from its ``tokenizer_config.json``,
    else from its ``config.json`` (a fine-tuned model's task file carries the lowercasing; a Hugging Face
    directory's names its ``tokenizer_class``, from which the registry derives the kind); absent: lowercasing and
    today's kind."""
    lower, kind = None, None
    for name in (TOKENIZER_CONFIG, TASK_CONFIG):
        raw = read_json_dict(os.path.join(directory, name))
        if raw is None:
            continue
        if lower is None and isinstance(raw.get("do_lower_case"), bool):
            lower = raw["do_lower_case"]
        kind = kind or kind_stated(raw)
    default = TokenizerSpec()
    return TokenizerSpec(default.do_lower_case if lower is None else lower, kind or default.kind)


def read_trainer_state(directory: str) -> Optional[dict]:
    """A checkpoint's ``trainer_state.json`` (None when absent or unreadable: the directory is no checkpoint, or
    a damaged one the checksums report)."""
    return read_json_dict(os.path.join(directory, TRAINER_STATE))


def replace_dir(tmp: str, final: str, aside: Optional[str] = None) -> None:
    """Make the complete directory ``tmp`` be ``final``: renamed into place, or swapped with an existing
    ``final`` in one atomic exchange where the system can (else moved ``aside`` first, and back on failure),
    the old one removed afterwards; the parent is fsynced."""
    parent = os.path.dirname(os.path.abspath(final))
    if os.path.isdir(final) and os.listdir(final):
        if _exchange(tmp, final):  # tmp now holds the old directory
            fsync_dir(parent)
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = aside or tmp + ".old"
        if os.path.exists(old):
            shutil.rmtree(old)
        os.rename(final, old)  # only a kill between these two renames leaves final missing (aside holds it)
        try:
            os.rename(tmp, final)
        except BaseException:
            os.rename(old, final)
            raise
        fsync_dir(parent)
        shutil.rmtree(old, ignore_errors=True)
        return
    if os.path.isdir(final):
        os.rmdir(final)
    os.rename(tmp, final)
    fsync_dir(parent)
