"""Session-wide fixtures shared by the test modules, and the order the suite runs in.

``sample_data`` builds the embedded sample corpus once per test session the way a user
would (vocab builder, then the preprocessor with jieba whole-word boundaries) and hands
out the paths.  Tests that only need a tiny synthetic dataset build their own.

``make test`` runs the suite on 2 processes (pytest-xdist, ``-n 2 --dist loadgroup``): each test goes to
whichever process is free.  The modules of long tests (whole launches) are collected first, so that the two
processes end together instead of one of them starting a 100 s journey when the other has nothing left.
"""
import os
from dataclasses import dataclass

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

TESTS = os.path.dirname(os.path.abspath(__file__))
SAMPLE_CORPUS = os.path.join(os.path.dirname(TESTS), "data_tools", "sample_data", "sample_corpus.txt")


# Modules of long tests, longest first (the sum of their tests' times in a run on 2 processes); every other module
# follows in the usual order.  Only the order depends on this list: a long module missing from it, or a listed one
# that has become fast, costs time at the end of the run, never a test.
LONG_MODULES = (
    "test_journey.py",  # 454 s
    "test_reliability.py",  # 115 s
    "test_journey_interrupt.py",  # 108 s
    "test_launch.py",  # 87 s
    "test_watch.py",  # 83 s
    "test_finetune_tools.py",  # 54 s
    "test_journey_resume.py",
    "test_word_model.py",
    "test_export_transformers5.py",
    "test_multinode.py",
    "test_phases.py",
    "test_preprocess.py",
    "test_modeling.py",
)


def pytest_collection_modifyitems(items):
    """Long modules first (see the module docstring); the items of a module stay together and in their order,
    so that a module-scoped fixture is built once per process."""
    gone = [name for name in LONG_MODULES if not os.path.isfile(os.path.join(TESTS, name))]
    assert not gone, f"tests/conftest.py LONG_MODULES names modules that are not in tests/: {gone}"
    rank = {name: k for k, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the usual order within a rank


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
