"""The masking seam (ernie_style.data.masking) and the sample spec (ernie_style.data.spec).

A toy masker is added the documented way -- one file + one line in ``MASKERS`` -- and a few pretraining steps
run with it.  Budget: ~15 s.
"""
import dataclasses
import json
import os
import pickle

import numpy as np
import pytest

import _trainer_util as U
from ernie_style import run_pretrain
from ernie_style.config.pretrain import load_config
from ernie_style.data import masking
from ernie_style.data.dataset import PretrainingDataset, build_datasets
from ernie_style.data.spec import SampleSpec, Split
from ernie_style.training import preflight

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")
MASK = 4  # [MASK] in U.make_data's vocab

TOY_MASKER = '''
"""A toy masker in one file: every k-th text token (k = data.max_ngrams + 1), always replaced by [MASK]."""
import numpy as np

CALLS = [0]


class EveryKthMasker:
    def __init__(self, spec, vocab):
        self.k = spec.max_ngrams + 1
        self.mask_id = vocab.mask_id

    def __call__(self, layout, rng):
        CALLS[0] += 1
        positions = layout.body_pos[::self.k].astype(np.int64)
        labels = layout.input_ids[positions]
        layout.input_ids[positions] = self.mask_id
        return positions, labels
'''


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return U.make_data(str(tmp_path_factory.mktemp("masking_data")))


def _cfg(data, out, **extra):
    return load_config(CONFIG, U.tiny_overrides(*data, str(out), **extra))


def test_the_config_builds_the_spec_and_the_default_masker(data, tmp_path):
    cfg = _cfg(data, tmp_path, **{"data.max_ngrams": 2, "data.favor_longer_ngram": "true",
                                  "data.max_predictions_per_seq": 7})
    spec = SampleSpec.from_config(cfg)
    assert spec == SampleSpec(data[1], Split.parse("90,5,5"), max_seq_len=64, seed=cfg.train.seed, max_ngrams=2,
                              favor_longer_ngram=True, max_predictions_per_seq=7)
    assert pickle.loads(pickle.dumps(spec)) == spec and hash(spec) == hash(pickle.loads(pickle.dumps(spec)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 1
    train = build_datasets(cfg.data.blend, spec, num_samples=(10, 0, 0))[0]
    assert type(train.masker) is masking.WholeWordNgramMasker
    assert (train.masker.max_ngrams, train.masker.max_predictions) == (2, 7)
    assert all(len(train[i]["masked_positions"]) <= 7 for i in range(10))
    default = SampleSpec.from_config(_cfg(data, tmp_path))
    assert (default.masking, default.max_ngrams, default.favor_longer_ngram, default.max_predictions_per_seq) == \
        ("wwm_ngram", 3, False, None)


def test_the_spec_keys_the_index_cache_by_its_layout_settings_only(data, tmp_path):
    spec = SampleSpec(data[1], Split.parse("1,0,0"), max_seq_len=64)

    def cache_path(s):  # the index file the dataset built or reused
        cache = tmp_path / f"cache_{s.max_seq_len}_{s.short_seq_prob}_{s.seed}_{s.binary_head}"
        PretrainingDataset(data[0], s, num_samples=20, cache_dir=str(cache))
        (npy,) = [n for n in os.listdir(cache) if n.endswith(".npy") and "_samples_" in n]
        return npy

    base = cache_path(spec)
    assert cache_path(spec.replace(max_ngrams=1, masked_lm_prob=0.3, max_predictions_per_seq=3)) == base
    for change in ({"max_seq_len": 32}, {"short_seq_prob": 0.5}, {"seed": 9}, {"binary_head": False}):
        assert cache_path(spec.replace(**change)) != base, change


def test_a_new_masker_is_one_file_and_one_registry_line(data, tmp_path, monkeypatch):
    (tmp_path / "toy_masker.py").write_text(TOY_MASKER, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(masking.MASKERS, "every_kth", "toy_masker:EveryKthMasker")  # the registry line
    import toy_masker

    out = tmp_path / "out"
    over = U.tiny_overrides(*data, str(out), **{"data.masking": "every_kth", "data.max_ngrams": 2,
                                                "train.save_steps": 3})
    assert run_pretrain.main(["--config", CONFIG, *over]) == 0
    assert toy_masker.CALLS[0] >= 3 * 8  # every training sample went through it
    fields = U.log_fields(str(out / "train.log"))
    assert sorted(fields) == [1, 2, 3] and all(np.isfinite(f["lm_loss"]) and f["lm_loss"] > 0 for f in fields.values())
    state = json.load(open(out / "checkpoints" / "latest" / "trainer_state.json"))
    assert state["data_fingerprint"]["data.masking"] == "every_kth"

    spec = SampleSpec.from_config(load_config(CONFIG, over))
    ds = build_datasets(load_config(CONFIG, over).data.blend, spec, num_samples=(5, 0, 0))[0]
    for i in range(5):
        s = ds[i]
        text = np.flatnonzero(s["input_ids"] > MASK)  # neither special nor masked
        body = np.sort(np.concatenate([text, s["masked_positions"]]))
        np.testing.assert_array_equal(s["masked_positions"], body[::3])
        assert (s["input_ids"][s["masked_positions"]] == MASK).all()


def test_a_checkpoint_saved_before_the_masking_keys_counts_as_the_default_masker(data, tmp_path):
    now = preflight.data_fingerprint(_cfg(data, tmp_path))
    old = {k: v for k, v in now.items() if k not in ("data.masking", "data.max_ngrams", "data.favor_longer_ngram",
                                                     "data.max_predictions_per_seq")}
    assert preflight.fingerprint_diff(old, now) == []
    changed = preflight.data_fingerprint(_cfg(data, tmp_path, **{"data.max_ngrams": 2}))
    assert preflight.fingerprint_diff(old, changed) == ["data.max_ngrams: 3 (checkpoint) vs 2 (now)"]
