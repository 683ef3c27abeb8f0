"""The worked examples in docs/ are what the code writes (so the docs cannot drift)."""
import os
import re

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _section(path: str, title: str) -> str:
    text = open(os.path.join(REPO, path), encoding="utf-8").read()
    return text.split(title, 1)[1].split("\n## ", 1)[0]


def test_data_format_worked_example(tmp_path, sample_data):
    import jieba

    from data_tools import preprocess

    example = _section("docs/data_format.md", "## Worked example")
    blocks = re.findall(r"```\n(.*?)```", example, flags=re.S)
    docs_block, files_block, idx_block = blocks[:3]

    # the documents and their jieba segmentation as the page shows them
    docs, shown_words = [], []
    for line in docs_block.strip().splitlines():
        text, words = re.match(r"doc \d+: (\S+)\s+jieba: (.*)$", line).groups()
        docs.append(text)
        shown_words.append([w.strip() for w in words.split("|")])
    assert [jieba.lcut(d) for d in docs] == shown_words

    corpus = tmp_path / "two_docs.txt"
    corpus.write_text("".join(d + "\n" for d in docs), encoding="utf-8")
    prefix = str(tmp_path / "example")
    assert preprocess.main(["--input", str(corpus), "--vocab", sample_data.vocab, "--output-prefix", prefix,
                            "--segmenter", "jieba", "--min-doc-chars", "1", "--quiet"]) == 0

    lines = files_block.strip().splitlines()
    shown_ids = [int(t) for t in lines[0].split(")", 1)[1].replace("|", " ").split()]
    shown_flags = [int(t) for t in lines[1].split(")", 1)[1].replace("|", " ").split()]
    assert np.fromfile(prefix + ".bin", dtype=np.uint16).tolist() == shown_ids
    assert np.fromfile(prefix + ".wwm", dtype=np.uint8).tolist() == shown_flags

    shown_idx = bytes(int(b, 16) for line in idx_block.strip().splitlines()
                      for b in re.match(r"((?:[0-9a-f]{2} )+)", line + " ").group(1).split())
    with open(prefix + ".idx", "rb") as f:
        written = f.read()
    assert written == shown_idx
    assert f"`.idx` is {len(written)} bytes" in example


def test_samples_worked_example(sample_data):
    """docs/samples.md's worked example is sample 3 of the demo data's train split, token for token."""
    from data_tools.tokenizer import BertTokenizer
    from ernie_style.data.spec import SampleSpec, Split
    from ernie_style.data.dataset import PretrainingDataset

    example = _section("docs/samples.md", "### Worked example")
    block = re.findall(r"```\n(.*?)```", example, flags=re.S)[0]
    lines = block.splitlines()
    shown_tokens = (lines[0].split(None, 1)[1] + " " + lines[1]).split()
    shown_positions = [int(p) for p in re.search(r"masked_positions \[(.*?)\]", block).group(1).split(",")]
    shown_labels = re.search(r"masked_labels\s+(.*)", block).group(1).split()
    shown_sop = int(re.search(r"sop_label (\d)", block).group(1))

    spec = SampleSpec(sample_data.vocab, Split.parse("949,50,1"), max_seq_len=64, seed=1234)
    ds = PretrainingDataset(sample_data.prefix, spec, split="train", num_samples=100)
    sample = ds[3]
    tok = BertTokenizer(sample_data.vocab)
    tokens = tok.convert_ids_to_tokens(sample["input_ids"].tolist())
    assert tokens == shown_tokens
    assert sample["masked_positions"].tolist() == shown_positions
    assert tok.convert_ids_to_tokens(sample["masked_labels"].tolist()) == shown_labels
    assert int(sample["sop_label"]) == shown_sop
    n_real = sum(1 for t in tokens if t not in ("[CLS]", "[SEP]"))
    assert f"{len(shown_positions)} of {n_real} tokens" in example
