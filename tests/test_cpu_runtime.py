"""The CPU process settings (ernie_style.training.cpu_runtime) take effect and change no number the model computes."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import hashlib, json, resource, sys
import numpy as np
from ernie_style.training.cpu_runtime import tune_cpu_process
applied = tune_cpu_process()
import paddle
from ernie_style.arch.roformer.modeling import RoFormerConfig, RoFormerForPretraining

# Page faults of the second of two rounds of allocating and freeing 256 MB of tensors.
faults = []
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        x = paddle.full([16 * 1024 * 1024], 1.0, dtype="float32")
        del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

paddle.seed(3)
cfg = RoFormerConfig(vocab_size=60, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=64, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1)
model = RoFormerForPretraining(cfg)
model.train()
rng = np.random.default_rng(0)
ids = paddle.to_tensor(rng.integers(5, 60, size=(3, 24)).astype("int64"))
types = paddle.to_tensor((np.arange(24) >= 12).astype("int64")[None].repeat(3, 0))
mask = paddle.to_tensor((rng.random((3, 24)) > 0.1).astype("int64"))
mlm, sop = model(ids, types, mask)
(mlm.astype("float32").square().mean() + sop.sum()).backward()
h = hashlib.sha256(mlm.numpy().tobytes() + sop.numpy().tobytes())
for name, p in sorted(model.named_parameters()):
    h.update(name.encode() + p.grad.numpy().tobytes())
print(json.dumps({"applied": applied, "stride": paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"],
                  "faults": faults[1], "sha": h.hexdigest()}))
"""


def _probe(tuned: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": REPO, "ERNIE_STYLE_CPU_RUNTIME": "1" if tuned else "0"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_settings_apply_and_leave_the_math_unchanged():
    tuned, default = _probe(True), _probe(False)
    assert tuned["applied"] == ["malloc keeps freed memory", "contiguous kernels"] and tuned["stride"] is False
    assert default["applied"] == [] and default["stride"] is True
    # 256 MB freed and allocated again: served from the kept heap (no faults) vs mapped afresh (~65k 4 KB pages).
    assert tuned["faults"] < 1000 < 30000 < default["faults"], (tuned["faults"], default["faults"])
    # Forward and backward with dropout, bit for bit the same.
    assert tuned["sha"] == default["sha"]
