"""Issue 20 point 7: continuing pretraining from a model whose vocab the new one extends.

The new rows start from the mean of their pieces' rows under the old vocab (``[UNK]``'s row without pieces), and the
logits of the old ids are unchanged at step 0 (the trainer's own function, on real input); a vocab that moves an old
token stays refused before launch.  The README's commands (tests/test_journey.py::test_readme_extend_vocab_journey)
extend a model by 500 tokens, continue it on 2 processes through run_pretrain.sh (the ``vocab extended`` line before
launch) and export it.

Budget: ~10 s (one in-process 2-step base run).
"""
import os
import numpy as np
import paddle
import pytest

import _trainer_util as U
from ernie_style import run_pretrain
from ernie_style.arch import get_arch
from ernie_style.storage import model_dir
from ernie_style.training import checkpoint as ckpt
from ernie_style.training import vocab_extension

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")
N_NEW_CHARS, WORDS = 480, [chr(0x4E00 + k) + chr(0x4E00 + k + 1) for k in range(20)]  # 20 words of two old chars


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 2-step base run (its checkpoint), and an extended vocab: 480 unknown characters and 20 words, +500."""
    root = tmp_path_factory.mktemp("vocab_ext")
    data = U.make_data(str(root / "data"))
    out = root / "base"
    assert run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(*data, str(out), **{
        "train.max_steps": 2, "train.save_steps": 2})]) == 0
    old = open(data[1], encoding="utf-8").read().splitlines()
    new = old + [chr(0x4E00 + U.N_PLAIN + k) for k in range(N_NEW_CHARS)] + WORDS
    vocab = root / "vocab_ext.txt"
    vocab.write_text("\n".join(new) + "\n", encoding="utf-8")
    # data tokenized with the extended vocab: ids over all 625 tokens
    rng = np.random.default_rng(1)
    prefix = U.write_corpus(str(root / "ext"), rng, 120, lambda d: int(rng.integers(2, 7)),
                            lambda n: (int(rng.integers(0, len(new) - 5)) + np.arange(n)) % (len(new) - 5) + 5,
                            words=(4, 12), word_len=(1, 4))
    return {"data": data, "checkpoint": os.path.realpath(out / "checkpoints" / "latest"), "vocab": str(vocab),
            "prefix": prefix, "old": old, "new": new, "root": root}


def _model(config: dict, state: dict):
    arch = get_arch()
    model = arch.pretraining_model_class()(arch.config_class().from_dict(config))
    arch.load_state_dict_fn()(model, state)
    model.eval()
    return model


def test_new_rows_and_old_logits_unchanged_at_step_0(base):
    src = base["checkpoint"]
    config = model_dir.read_model_config(src)
    state = ckpt.load_state_file(os.path.join(src, ckpt.MODEL_STATE))
    old_model = _model(config, state)
    new_config = dict(config, vocab_size=len(base["new"]))
    arch = get_arch()
    fresh = arch.pretraining_model_class()(arch.config_class().from_dict(new_config))
    shapes = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    grown, ext = vocab_extension.extended_state(src, base["vocab"], state, shapes)  # what the trainer loads
    assert ext.describe() == "125 -> 625 tokens, 500 new rows"
    words = [k for k, v in grown.items() if v.shape[0] == 625]
    assert len(words) == 2  # the word embeddings [V, E] and the decoder bias [V]; nothing else has V rows
    emb = next(grown[k] for k in words if grown[k].ndim == 2)
    old_emb = next(state[k] for k in words if state[k].ndim == 2)
    np.testing.assert_array_equal(emb[:125], old_emb)
    np.testing.assert_array_equal(emb[125:125 + N_NEW_CHARS], np.broadcast_to(old_emb[1], (N_NEW_CHARS,) + old_emb.shape[1:]))
    first_word = base["new"].index(WORDS[0])  # "一丁": ids 5 and 6 under the old vocab
    np.testing.assert_allclose(emb[first_word], (old_emb[5].astype(np.float64) + old_emb[6]) / 2, rtol=1e-6)
    new_model = _model(new_config, grown)
    # real input: the first documents of the data the base model was trained on, 15% of the tokens masked
    ds_ids = np.fromfile(base["data"][0] + ".bin", dtype=np.uint16)[:4 * 48].astype(np.int64).reshape(4, 48)
    ids = np.concatenate([np.full((4, 1), 2), ds_ids, np.full((4, 1), 3)], axis=1)
    ids[:, 3::7] = 4  # [MASK]
    with paddle.no_grad():
        before = old_model(paddle.to_tensor(ids))[0].numpy().astype(np.float64)
        after = new_model(paddle.to_tensor(ids))[0].numpy().astype(np.float64)
    assert before.shape[-1] == 125 and after.shape[-1] == 625
    scale = np.abs(before).max()
    assert np.abs(after[..., :125] - before).max() <= 1e-5 * scale  # float noise only
    assert (after[..., :125].argmax(-1) == before.argmax(-1)).all()
    # the logit is linear in the row and the bias: a new word starts with the mean score of its pieces
    np.testing.assert_allclose(after[..., first_word], (after[..., 5] + after[..., 6]) / 2, atol=1e-5 * scale)


def test_vocab_moving_an_old_token_refused_before_launch(base, tmp_path, capsys):
    moved = base["new"][:5] + base["new"][6:7] + base["new"][5:6] + base["new"][7:]  # ids 5 and 6 swapped
    vocab = tmp_path / "moved.txt"
    vocab.write_text("\n".join(moved) + "\n", encoding="utf-8")
    out = tmp_path / "refused"
    # run_pretrain.sh's check before launch, in-process
    assert run_pretrain.main(["--config", CONFIG, "--check", *U.tiny_overrides(
        base["prefix"], str(vocab), str(out), **{"train.resume": base["checkpoint"]})]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and "nor an extension of it (id 5 is" in errors[0], errors


def test_model_with_padded_rows_refused_before_launch(base, tmp_path, capsys):
    """A model with more rows than its vocab.txt has tokens (vocab_size padded) cannot be extended by id."""
    import json
    import shutil

    plain = tmp_path / "padded"
    plain.mkdir()
    for name in ("model_state.pdparams", "vocab.txt"):
        shutil.copy(os.path.join(base["checkpoint"], name), plain / name)
    config = dict(model_dir.read_model_config(base["checkpoint"]), vocab_size=128)
    (plain / "model_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert run_pretrain.main(["--config", CONFIG, "--check", *U.tiny_overrides(
        base["prefix"], base["vocab"], str(tmp_path / "out"), **{"train.resume": str(plain)})]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and "has 128 rows for the 125 tokens" in errors[0], errors
