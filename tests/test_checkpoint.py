"""Checkpoint files: atomic layout, checksums, damaged-checkpoint fallback, pruning, RNG round trip."""
import json
import os
import random

import numpy as np
import paddle
import pytest

from ernie_style.training import checkpoint as ckpt
from ernie_style.training.distributed import DistInfo

INFO = DistInfo(rank=0, world_size=1, local_rank=0, device="cpu")


def _save(cp, step, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n")
    return cp.save(step, model_state={"w": paddle.full([3], float(step))}, optimizer_state={"m": paddle.ones([2])},
                   trainer_state={"step": step, "consumed_samples": step * 4}, model_config={"vocab_size": 2},
                   vocab_file=str(vocab), do_lower_case=False)


def test_layout_checksums_latest_and_pruning(tmp_path):
    logs = []
    cp = ckpt.Checkpointer(str(tmp_path / "out"), save_steps=2, keep=2, info=INFO, log=logs.append)
    assert cp.should_save(2) and not cp.should_save(3) and cp.should_save(3, force=True)
    for step in (2, 4, 6):
        _save(cp, step, tmp_path)
    root = tmp_path / "out" / "checkpoints"
    visible = sorted(n for n in os.listdir(root) if not n.startswith("."))  # .readers.lock: see test_reliability
    assert visible == ["latest", "step_00000004", "step_00000006"]  # newest 2 kept, no .tmp
    assert os.path.islink(root / "latest") and os.readlink(root / "latest") == "step_00000006"
    d = root / "latest"
    names = set(os.listdir(d))
    assert {"model_state.pdparams", "optimizer.pdopt", "trainer_state.json", "model_config.json", "vocab.txt",
            "tokenizer_config.json", "checksums.json", "rng_state.rank0.json"} <= names
    assert json.loads((d / "tokenizer_config.json").read_text()) == {"do_lower_case": False}
    sums = json.loads((d / "checksums.json").read_text())
    assert set(sums) == names - {"checksums.json"}
    ckpt.verify(str(d))
    assert float(paddle.load(str(d / "model_state.pdparams"))["w"][0]) == 6.0
    assert ckpt.find_resumable(str(root)) == str(root / "step_00000006")


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "no_checksums"])
def test_damaged_checkpoint_is_refused_and_auto_falls_back(tmp_path, damage):
    cp = ckpt.Checkpointer(str(tmp_path / "out"), save_steps=1, keep=5, info=INFO, log=lambda m: None)
    _save(cp, 1, tmp_path)
    newest = _save(cp, 2, tmp_path)
    target = os.path.join(newest, "model_state.pdparams")
    if damage == "flip":
        data = bytearray(open(target, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(target, "wb").write(bytes(data))
    elif damage == "truncate":
        os.truncate(target, os.path.getsize(target) // 2)
    elif damage == "delete":
        os.remove(target)
    else:
        os.remove(os.path.join(newest, "checksums.json"))
    with pytest.raises(ckpt.CheckpointError, match="step_00000002"):
        ckpt.verify(newest)
    logs = []
    found = ckpt.find_resumable(str(tmp_path / "out" / "checkpoints"), log=logs.append)
    assert found.endswith("step_00000001")
    assert any("refusing" in m and "step_00000002" in m for m in logs)


def test_no_checkpoint_means_fresh_start(tmp_path):
    assert ckpt.find_resumable(str(tmp_path / "nothing")) is None


def test_rng_state_round_trip():
    random.seed(1), np.random.seed(1), paddle.seed(1)
    state = ckpt.rng_state()
    a = (random.random(), np.random.rand(), paddle.rand([3]).numpy())
    random.seed(9), np.random.seed(9), paddle.seed(9)
    ckpt.set_rng_state(state)
    b = (random.random(), np.random.rand(), paddle.rand([3]).numpy())
    assert a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2])


def test_plain_model_dir_detection(tmp_path):
    (tmp_path / "model_config.json").write_text("{}")
    (tmp_path / "model_state.pdparams").write_bytes(b"x")
    assert ckpt.is_plain_model_dir(str(tmp_path))
    (tmp_path / "trainer_state.json").write_text("{}")
    assert not ckpt.is_plain_model_dir(str(tmp_path))
