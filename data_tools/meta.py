"""``PREFIX.meta.json``: the one reader and writer of a preprocessed dataset's sidecar (no paddle import).

preprocess and merge build a :class:`DatasetMeta` and publish it with the data
(:func:`publish` writes :meth:`DatasetMeta.to_dict`); inspect, merge, the dataset's vocabulary
check, the sample-index cache key (the ``.idx`` sha256) and the trainer's pre-launch check and resume
fingerprint read it through :func:`read_meta` (a missing or unusable file is a :class:`MetaError`, one line)
or :func:`find_meta` (``None`` when there is no usable file: the data is then used without the meta's checks).

On disk (format ``ernie_style.meta/1``; keys in this order, JSON with ``indent=1``, non-ASCII kept)::

    format, created_by ("data_tools.preprocess" | "data_tools.merge"),
    vocab {path, sha256, size}, tokenizer {do_lower_case[, kind]},
    segmenter {name, version, dict_sha256, user_dict, user_dict_sha256},
    settings {...preprocess settings...}, dtype ("uint16" | "int32"), wwm_encoding ("uint8"),
    inputs [{path, bytes}], merged_from [{prefix, counts}] (merge only),
    counts {docs_in, docs_out, sentences, tokens, input_bytes},
    skipped {reason: n}, skipped_first {reason: [location]}, repaired {...}, repaired_first {...},
    files {".bin"|".idx"|".wwm": {path, bytes, sha256}}, unk {...} (see data_tools.unk),
    duplicates {docs, share, dropped, key} (preprocess only; see data_tools.preprocess.dedup), run {...}

``tokenizer`` is a ``data_tools.tokenizers.TokenizerSpec``: its ``kind`` names the tokenizer the ids come from
and is written only when it is not the default ``bert_wordpiece``, so files of today's kind stay
byte-identical and old files read as that kind.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from data_tools import io_utils
from data_tools.io_utils import UserError
from data_tools.tokenizers import DEFAULT_KIND, TokenizerSpec

META_FORMAT = "ernie_style.meta/1"


class MetaError(UserError):
    """A meta.json that is missing, unreadable or not of our format (one line naming the file)."""


def meta_path(prefix: str) -> str:
    return prefix + ".meta.json"


@dataclass(frozen=True)
class VocabInfo:
    path: Optional[str]  # as given to preprocess
    sha256: str
    size: int


@dataclass(frozen=True)
class SegmenterInfo:
    name: str
    version: str
    dict_sha256: Optional[str]
    user_dict: Optional[str] = None
    user_dict_sha256: Optional[str] = None


@dataclass(frozen=True)
class FileInfo:
    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Counts:
    docs_in: int = 0
    docs_out: int = 0
    sentences: int = 0
    tokens: int = 0
    input_bytes: int = 0

    @staticmethod
    def total(counts: List["Counts"]) -> "Counts":
        return Counts(*(sum(getattr(c, f.name) for c in counts) for f in dataclasses.fields(Counts)))


@dataclass(frozen=True)
class DatasetMeta:
    """The typed content of ``PREFIX.meta.json`` (see the module doc for the layout)."""

    created_by: str
    vocab: VocabInfo
    tokenizer: TokenizerSpec
    segmenter: SegmenterInfo
    settings: Dict[str, Any]
    dtype: str
    wwm_encoding: str
    inputs: List[Dict[str, Any]]
    counts: Counts
    skipped: Dict[str, int]
    skipped_first: Dict[str, List[str]]
    repaired: Dict[str, int]
    repaired_first: Dict[str, List[str]]
    files: Dict[str, FileInfo]
    run: Dict[str, Any]
    merged_from: Optional[List[Dict[str, Any]]] = None
    unk: Optional[Dict[str, Any]] = None
    duplicates: Optional[Dict[str, Any]] = None
    format: str = META_FORMAT

    # -- what the readers ask -------------------------------------------------------------------

    def file_sha256(self, ext: str) -> Optional[str]:
        f = self.files.get(ext)
        return f.sha256 if f is not None else None

    def content_digests(self) -> Dict[str, str]:
        """``{ext: sha256}`` of the data files, sorted by extension (the resume fingerprint's content)."""
        return {ext: f.sha256 for ext, f in sorted(self.files.items())}

    # -- on disk --------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The JSON object, keys in the on-disk order (optional parts only when present)."""
        out = {
            "format": self.format,
            "created_by": self.created_by,
            "vocab": dataclasses.asdict(self.vocab),
            "tokenizer": self.tokenizer.to_dict(),
            "segmenter": dataclasses.asdict(self.segmenter),
            "settings": self.settings,
            "dtype": self.dtype,
            "wwm_encoding": self.wwm_encoding,
            "inputs": self.inputs,
        }
        if self.merged_from is not None:
            out["merged_from"] = self.merged_from
        out.update(
            counts=dataclasses.asdict(self.counts),
            skipped=self.skipped,
            skipped_first=self.skipped_first,
            repaired=self.repaired,
            repaired_first=self.repaired_first,
            files={ext: dataclasses.asdict(f) for ext, f in self.files.items()},
        )
        if self.unk is not None:
            out["unk"] = self.unk
        if self.duplicates is not None:
            out["duplicates"] = self.duplicates
        out["run"] = self.run
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = "meta.json") -> "DatasetMeta":
        """Parse a meta.json object; a wrong format or a missing/mistyped key is a MetaError naming ``where``."""
        if not isinstance(d, dict) or d.get("format") != META_FORMAT:
            got = d.get("format") if isinstance(d, dict) else None
            raise MetaError(f"{where}: format {got!r}, expected {META_FORMAT!r}")
        try:
            tok = d["tokenizer"]
            return cls(
                format=d["format"],
                created_by=str(d.get("created_by", "?")),
                vocab=VocabInfo(path=d["vocab"].get("path"), sha256=d["vocab"]["sha256"], size=d["vocab"]["size"]),
                tokenizer=TokenizerSpec(do_lower_case=tok["do_lower_case"], kind=tok.get("kind", DEFAULT_KIND)),
                segmenter=SegmenterInfo(**d["segmenter"]),
                settings=d.get("settings", {}),
                dtype=d["dtype"],
                wwm_encoding=d["wwm_encoding"],
                inputs=d.get("inputs", []),
                merged_from=d.get("merged_from"),
                counts=Counts(**d.get("counts", {})),
                skipped=d.get("skipped", {}),
                skipped_first=d.get("skipped_first", {}),
                repaired=d.get("repaired", {}),
                repaired_first=d.get("repaired_first", {}),
                files={ext: FileInfo(**f) for ext, f in d.get("files", {}).items()},
                unk=d.get("unk"),
                duplicates=d.get("duplicates"),
                run=d.get("run", {}),
            )
        except KeyError as e:
            raise MetaError(f"{where}: key {e.args[0]!r} missing; expected the meta.json data_tools writes") from None
        except (TypeError, AttributeError) as e:
            raise MetaError(f"{where}: unexpected layout ({e}); expected the meta.json data_tools writes") from None


def read_meta(prefix: str) -> DatasetMeta:
    """``PREFIX.meta.json``; raises MetaError (a UserError: one line) when missing, unreadable or not ours."""
    path = meta_path(prefix)
    if not os.path.exists(path):
        raise MetaError(f"{path}: no such file (expected the meta.json that data_tools.preprocess writes)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise MetaError(f"{path}: unreadable meta.json ({e})") from None
    return DatasetMeta.from_dict(raw, path)


def find_meta(prefix: str) -> Optional[DatasetMeta]:
    """``PREFIX.meta.json`` when there is a usable one, else ``None`` (data from elsewhere, or a damaged
    sidecar: the caller then works from the data files alone, as it always did)."""
    try:
        return read_meta(prefix)
    except MetaError:
        return None


def idx_checksum(prefix: str) -> Optional[Tuple[str, int]]:
    """``(sha256, bytes)`` of ``PREFIX.idx`` as meta.json records it, if it does."""
    m = find_meta(prefix)
    f = m.files.get(".idx") if m is not None else None
    return (f.sha256, f.bytes) if f is not None else None


def publish(builder, prefix: str, build_meta: Callable[[Dict[str, FileInfo]], DatasetMeta]) -> DatasetMeta:
    """Make a staged dataset (an ``MMapIndexedDatasetBuilder`` after ``stage()``) and its
    ``PREFIX.meta.json`` visible together; returns the meta.

    ``build_meta(files)`` gets the :class:`FileInfo` of each staged file by extension.  The meta
    is written and fsynced under a temporary name first, so a failure up to there (a full disk)
    leaves the previous output untouched.  Only then is the old meta removed, the data renamed
    (``.idx`` last) and the meta renamed last of all: a reader that finds a meta.json finds the data
    it describes.  A failure among the renames removes the data files too, so what is left never
    looks complete (no meta.json)."""
    path = meta_path(prefix)
    meta_tmp = io_utils.tmp_name(path)
    try:
        files = {ext: FileInfo(path=os.path.abspath(prefix + ext), bytes=os.path.getsize(tmp),
                               sha256=io_utils.sha256_file(tmp)) for ext, tmp in sorted(builder.staged.items())}
        meta = build_meta(files)
        io_utils.write_json(meta_tmp, meta.to_dict())
    except BaseException:
        builder.abort()
        io_utils.remove_quietly([meta_tmp])
        raise
    try:
        io_utils.remove_quietly([path])  # never pair new data with the old meta
        builder.publish()
        os.replace(meta_tmp, path)
    except BaseException:
        builder.abort()
        io_utils.remove_quietly([meta_tmp, path] + [prefix + ext for ext in builder.staged])
        raise
    io_utils.fsync_dir(os.path.dirname(os.path.abspath(prefix)))
    return meta


def data_tokenizer(prefix: str) -> TokenizerSpec:
    """The tokenizer a preprocessed prefix was made with (meta.json; without one: today's default)."""
    meta = find_meta(prefix)
    return meta.tokenizer if meta is not None else TokenizerSpec()


def vocab_mismatch(prefix: str, vocab_file: str, vocab_sha256: Optional[str] = None) -> Optional[str]:
    """Why ``vocab_file`` (of sha256 ``vocab_sha256`` when known) is not the vocabulary ``prefix`` was tokenized
    with, or None when it is (or when the prefix has no meta.json to tell): the one check of the launch's
    preflight and the dataset."""
    meta = find_meta(prefix)
    if meta is None:
        return None
    sha = vocab_sha256 or io_utils.sha256_file(vocab_file)
    if meta.vocab.sha256 == sha:
        return None
    return (f"not the vocab {prefix} was tokenized with ({meta_path(prefix)} records sha256 {meta.vocab.sha256[:12]}…, "
            f"{vocab_file} has {sha[:12]}…); token ids would be misread")
