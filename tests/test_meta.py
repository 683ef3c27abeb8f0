"""data_tools.meta: the one reader/writer of ``PREFIX.meta.json``.

The files preprocess and merge write are compared byte for byte (after blanking the temp dir and the run's
timings) with golden copies written by the code before ``meta.py`` existed (tests/golden/meta_sample_*.json;
regenerate only for an intended format change: ``python tests/test_meta.py --write-golden``).
Budget: ~3 s.
"""
import json
import os
import re
import sys

import pytest

import _pipeline_util as U
from data_tools import merge, meta, preprocess
from data_tools.io_utils import UserError
from data_tools.tokenizers import DEFAULT_KIND, TokenizerSpec

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
NAMES = ("a", "b", "ab")


def _normalised(path: str, tmp: str) -> str:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = text.replace(tmp, "{TMP}")
    return re.sub(r'"(elapsed_s|processing_s)": [0-9.e+-]+', r'"\1": 0', text)


def _build(tmp: str) -> dict:
    """Preprocess two halves of the sample corpus and merge them; the normalised meta.json texts."""
    docs = U.sample_docs()
    vocab = U.write_vocab(os.path.join(tmp, "vocab.txt"), docs)
    halves = {"a": docs[: len(docs) // 2], "b": docs[len(docs) // 2:]}
    for name, part in halves.items():
        src = U.write_lines(os.path.join(tmp, name + ".txt"), part)
        assert preprocess.main(["--input", src, "--vocab", vocab, "--output-prefix", os.path.join(tmp, name),
                                "--quiet"]) == 0
    assert merge.main(["--inputs", os.path.join(tmp, "a"), os.path.join(tmp, "b"),
                       "--output-prefix", os.path.join(tmp, "ab"), "--quiet"]) == 0
    return {n: _normalised(os.path.join(tmp, n + ".meta.json"), tmp) for n in NAMES}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("meta"))
    return tmp, _build(tmp)


@pytest.mark.parametrize("name", NAMES)
def test_preprocess_and_merge_write_the_golden_bytes(built, name):
    # meta.json lists the sha256 of .bin/.idx/.wwm, so this also pins the data files' bytes
    with open(os.path.join(GOLDEN, f"meta_sample_{name}.json"), encoding="utf-8") as f:
        assert built[1][name] == f.read()


def test_read_then_write_is_the_same_file(built):
    tmp = built[0]
    for name in NAMES:
        path = os.path.join(tmp, name + ".meta.json")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        m = meta.read_meta(os.path.join(tmp, name))
        assert json.dumps(m.to_dict(), ensure_ascii=False, indent=1) + "\n" == text
    ab = meta.read_meta(os.path.join(tmp, "ab"))
    assert ab.counts == meta.Counts.total([meta.read_meta(os.path.join(tmp, n)).counts for n in "ab"])
    assert [d["prefix"] for d in ab.merged_from] == [os.path.join(tmp, "a"), os.path.join(tmp, "b")]
    assert ab.tokenizer.kind == DEFAULT_KIND  # absent on disk = today's kind


def test_tokenizer_kind_is_written_only_when_not_the_default(built):
    m = meta.read_meta(os.path.join(built[0], "a"))
    assert "kind" not in m.to_dict()["tokenizer"]
    word = m.__class__(**{**m.__dict__, "tokenizer": TokenizerSpec(True, kind="word_level")})
    again = meta.DatasetMeta.from_dict(json.loads(json.dumps(word.to_dict())))
    assert again.tokenizer == TokenizerSpec(True, "word_level") and again == word


def test_unusable_files_are_one_line_errors(tmp_path):
    prefix = str(tmp_path / "p")
    with pytest.raises(UserError, match=r"p\.meta\.json: no such file"):
        meta.read_meta(prefix)
    assert meta.find_meta(prefix) is None and meta.idx_checksum(prefix) is None
    for content, needle in (("{", "unreadable meta.json"),
                            ('{"vocab": {"sha256": "x"}}', "format None, expected 'ernie_style.meta/1'"),
                            ('{"format": "ernie_style.meta/1"}', "key 'tokenizer' missing"),
                            ('{"format": "ernie_style.meta/1", "vocab": [], "tokenizer": {}}', "unexpected layout")):
        with open(prefix + ".meta.json", "w") as f:
            f.write(content)
        with pytest.raises(meta.MetaError, match=re.escape(needle)):
            meta.read_meta(prefix)
        assert meta.find_meta(prefix) is None


if __name__ == "__main__" and sys.argv[1:] == ["--write-golden"]:
    import tempfile

    os.makedirs(GOLDEN, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        for n, text in _build(d).items():
            with open(os.path.join(GOLDEN, f"meta_sample_{n}.json"), "w", encoding="utf-8") as f:
                f.write(text)
