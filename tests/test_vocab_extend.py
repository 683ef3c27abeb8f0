"""build_vocab --extend: every base token keeps its id, [unused] slots first, most frequent missing characters,
the [UNK] share before and after; data_tools.vocab_extend.extension_of is the one definition of "extends".

Budget: ~3 s.
"""

import pytest

from data_tools import build_vocab as bv
from data_tools import vocab_extend as ve
from data_tools.tokenizer import BertTokenizer


def _base(tmp_path, corpus_lines):
    """A base vocab from the first lines of the corpus, with three [unused] slots after [PAD]."""
    part = tmp_path / "part.txt"
    part.write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
    raw = tmp_path / "raw.txt"
    bv.build_vocab([str(part)], str(raw))
    toks = raw.read_text(encoding="utf-8").split("\n")[:-1]
    base = tmp_path / "base.txt"
    base.write_text("\n".join(toks[:1] + ["[unused1]", "[unused2]", "[unused3]"] + toks[1:]) + "\n",
                    encoding="utf-8")
    return str(base)


def test_extend_keeps_ids_fills_unused_then_appends(tmp_path, sample_corpus, capsys):
    lines = open(sample_corpus, encoding="utf-8").read().splitlines()
    base = _base(tmp_path, lines[:60])
    corpus = tmp_path / "domain.txt"
    # domain text: characters the base lacks, at known frequencies (x 9, 7, 5, 3, 1, 1); "É" is known (the base
    # lowercases and strips accents), a Cyrillic letter is not (and gets its ## form: it occurs inside words)
    corpus.write_text("\n".join(lines[:20] + ["鳞" * 9 + "鲈" * 7 + "鳜" * 5 + "鲑" * 3 + "鲟 ж Émile"]) + "\n",
                      encoding="utf-8")
    old = open(base, encoding="utf-8").read().split("\n")[:-1]
    assert not {"鳞", "鲈", "鳜", "鲑", "鲟", "ж"} & set(old)
    out = tmp_path / "vocab.txt"
    assert bv.main(["--extend", base, "--input", str(corpus), "--output", str(out), "--add", "6"]) == 0
    printed = capsys.readouterr().out
    new = out.read_text(encoding="utf-8").split("\n")[:-1]
    # the 3 most frequent fill the [unused] slots in order, the rest is appended (ties by code point); 6 of the 7
    # candidates fit
    assert new[1:4] == ["鳞", "鲈", "鳜"]
    assert new[len(old):] == ["鲑", "ж", "##ж"]
    assert [t for i, t in enumerate(new[:len(old)]) if t != old[i]] == ["鳞", "鲈", "鳜"]
    ext = ve.extension_of(old, new)
    assert ext is not None and ext.refilled == [1, 2, 3] and ext.new_ids == [1, 2, 3] + list(range(len(old), len(new)))
    # the [UNK] share: measured with both tokenizers over the corpus and printed
    docs = corpus.read_text(encoding="utf-8").splitlines()
    unk_old = sum(int((BertTokenizer(base).encode(d) == 1 + 3).sum()) for d in docs)  # [UNK] is id 4 in base
    assert BertTokenizer(base).unk_id == 4 and unk_old >= 26
    assert f"{len(old)} -> {len(new)} tokens, 6 added" in printed
    assert f"({unk_old:,} of" in printed and "[UNK] share of the corpus" in printed
    assert "3 into [unused] slots" in printed and "the 6 most frequent of 7 missing" in printed
    # transformers reads it, the added characters are tokens now
    from transformers import BertTokenizer as HF

    hf = HF(str(out))
    assert hf.convert_tokens_to_ids(hf.tokenize("鳞鲈")) == [1, 2]


def test_extension_of_refuses_a_moved_token():
    old = ["[PAD]", "[unused1]", "[UNK]", "a", "b"]
    assert ve.extension_of(old, old + ["c"]).describe() == "5 -> 6 tokens, 1 new rows"
    assert ve.extension_of(old, ["[PAD]", "x", "[UNK]", "a", "b"]).new_ids == [1]
    assert ve.extension_of(old, old) is None  # nothing new
    assert ve.extension_of(old, ["[PAD]", "[unused1]", "[UNK]", "b", "a", "c"]) is None
    assert "id 3 is 'a'" in ve.first_difference(old, ["[PAD]", "[unused1]", "[UNK]", "b", "a", "c"])
    assert ve.extension_of(old, old[:-1]) is None


@pytest.mark.parametrize("argv, message", [
    (["--add", "5"], "--extend BASE and --add N go together"),
    (["--extend", "{base}", "--add", "0"], "--add 0: expected an integer >= 1"),
    (["--extend", "{tmp}/nope.txt", "--add", "5"], "no such file"),
    (["--extend", "{base}", "--add", "5", "--max-size", "100"], "--max-size: not with --extend"),
    (["--extend", "{base}", "--add", "5", "--input", "{base}"], "nothing to add"),
])
def test_cli_errors(tmp_path, sample_corpus, capsys, argv, message):
    base = _base(tmp_path, open(sample_corpus, encoding="utf-8").read().splitlines()[:5])
    argv = [a.format(base=base, tmp=tmp_path) for a in argv]
    if "--input" not in argv:
        argv += ["--input", sample_corpus]
    assert bv.main(argv + ["--output", str(tmp_path / "out.txt")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists()
