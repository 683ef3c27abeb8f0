"""Session-wide fixtures shared by the test modules.

``sample_data`` builds the embedded sample corpus once per test session the way a user
would (vocab builder, then the preprocessor with jieba whole-word boundaries) and hands
out the paths.  Tests that only need a tiny synthetic dataset build their own.
"""
import os
from dataclasses import dataclass

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

SAMPLE_CORPUS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data_tools", "sample_data", "sample_corpus.txt"
)


@dataclass(frozen=True)
class SampleData:
    corpus: str
    vocab: str
    prefix: str


@pytest.fixture(scope="session")
def sample_corpus() -> str:
    assert os.path.exists(SAMPLE_CORPUS), SAMPLE_CORPUS
    return SAMPLE_CORPUS


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory, sample_corpus) -> SampleData:
    from data_tools import build_vocab, preprocess

    out = tmp_path_factory.mktemp("sample_data")
    vocab = str(out / "vocab.txt")
    prefix = str(out / "sample")
    assert build_vocab.main(["--input", sample_corpus, "--output", vocab]) == 0
    assert preprocess.main(
        ["--input", sample_corpus, "--vocab", vocab, "--output-prefix", prefix, "--segmenter", "jieba", "--quiet"]
    ) == 0
    return SampleData(corpus=sample_corpus, vocab=vocab, prefix=prefix)
