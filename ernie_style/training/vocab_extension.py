"""Continuing a model with an extended vocabulary: its weights with rows for the new tokens.  Paddle-free.

A run whose ``data.vocab_file`` extends the vocab of the model directory or checkpoint it starts from (every old
token at its id, ``[unusedN]`` slots possibly refilled: :func:`data_tools.vocab_extend.extension_of`) is an
*initialisation*: the weights only, a fresh optimizer, step 0 and a new lineage, like a plain model dir (the
optimizer state of the old rows is not carried over: Adam moments of a [V_old, H] table do not fit a [V_new, H]
one, and half-kept moments would give old and new rows different effective learning rates).  Any other change of
vocab is refused before launch, as always.

The new rows (the ids from the old size on, and refilled ``[unused]`` slots): every array of the saved state whose
first dimension is the old vocab size -- the word embeddings ``[V, E]`` and the MLM decoder bias ``[V]``; the
decoder weight is tied to the embeddings, so it follows -- gets, for a new token, the mean of the rows of the pieces
the OLD vocab's tokenizer splits the token's text into (``##`` stripped; ``[UNK]`` pieces left out), or ``[UNK]``'s
row when nothing of it was known.  So a new token starts where the old model "saw" it, the logits of the old ids are
unchanged at step 0 (old rows and every other weight are the saved ones), and the new ids start with the scores of
their pieces.  The arrays are found by shape, not by name: this works for every architecture.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from data_tools import vocab_extend
from data_tools.io_utils import sha256_file
from data_tools.tokenizers import load_tokenizer
from data_tools.vocab import read_vocab
from ernie_style.constants import VOCAB
from ernie_style.storage import model_dir

Extension = vocab_extend.Extension


def extension_of_dir(source: str, vocab_file: str) -> Optional[Extension]:
    """How ``vocab_file`` extends the vocab of the model dir / checkpoint ``source``; None when it does not (the
    same file, or another vocab: the caller refuses that)."""
    old_file = os.path.join(source, VOCAB)
    if not os.path.isfile(old_file) or sha256_file(old_file) == sha256_file(vocab_file):
        return None
    return vocab_extend.extension_of(read_vocab(old_file), read_vocab(vocab_file))


def why_not(source: str, vocab_file: str) -> str:
    """The first token whose id the new vocab changes (for the refusal)."""
    return vocab_extend.first_difference(read_vocab(os.path.join(source, VOCAB)), read_vocab(vocab_file))


def line(ext: Extension, source: str) -> str:
    """The one line a run that starts from an extended vocab prints."""
    return (f"vocab extended: {ext.describe()}; {source} initialises the weights only (new rows: the mean of "
            "their pieces' rows under the old vocab; fresh optimizer, step 0)")


def new_rows(rows: np.ndarray, pieces: Sequence[Sequence[int]], unk_id: int) -> np.ndarray:
    """(N, ...) starting rows of N new tokens from the old table ``rows`` (V_old, ...): the mean of each token's
    piece rows, ``rows[unk_id]`` for a token without pieces (computed in float64)."""
    out = np.empty((len(pieces),) + rows.shape[1:], np.float64)
    for k, ids in enumerate(pieces):
        out[k] = rows[list(ids)].astype(np.float64).mean(axis=0) if ids else rows[unk_id]
    return out.astype(rows.dtype)


def extend_state(state: Mapping[str, np.ndarray], ext: Extension, pieces: Sequence[Sequence[int]], unk_id: int,
                 target_shapes: Mapping[str, Tuple[int, ...]]) -> Tuple[Dict[str, np.ndarray], list]:
    """``state`` with every vocab-indexed array grown from ``ext.old_size`` to ``ext.new_size`` rows (see the module
    doc); returns it and the names of the grown arrays.  ``target_shapes``: the new model's shapes by name (an array
    of the old size whose name the model has with another first dimension is left alone)."""
    assert len(pieces) == len(ext.new_ids)
    out, grown = {}, []
    for name, arr in state.items():
        target = target_shapes.get(name)
        if isinstance(arr, np.ndarray) and arr.ndim in (1, 2) and arr.shape[0] == ext.old_size and \
                (target is None or tuple(target) == (ext.new_size,) + arr.shape[1:]):
            bigger = np.empty((ext.new_size,) + arr.shape[1:], arr.dtype)
            bigger[:ext.old_size] = arr
            bigger[ext.new_ids] = new_rows(arr, pieces, unk_id)  # from the OLD rows (refilled slots too)
            out[name] = bigger
            grown.append(name)
        else:
            out[name] = arr
    return out, grown


def extended_state(source: str, vocab_file: str, state: Mapping[str, np.ndarray],
                   target_shapes: Mapping[str, Tuple[int, ...]]) -> Tuple[Dict[str, np.ndarray], Optional[Extension]]:
    """The saved ``state`` of ``source`` for a model over ``vocab_file``: unchanged when the vocab is the same, grown
    (see :func:`extend_state`) when ``vocab_file`` extends the source's."""
    ext = extension_of_dir(source, vocab_file)
    if ext is None:
        return dict(state), None
    old_tok = load_tokenizer(os.path.join(source, VOCAB), model_dir.read_tokenizer(source))
    new_tokens = read_vocab(vocab_file)
    pieces = vocab_extend.piece_ids(old_tok, [new_tokens[i] for i in ext.new_ids])
    out, grown = extend_state(state, ext, pieces, old_tok.unk_id, target_shapes)
    assert grown, f"no array of {source} has {ext.old_size} rows"
    return out, ext
