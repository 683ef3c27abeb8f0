"""The GPU path: run when a CUDA build of Paddle sees a GPU, skipped with the reason otherwise.

The GPU code is the CPU code plus what only exists on a GPU: real AMP (fp16 with dynamic loss
scaling, bf16), fused attention kernels, `--gpus` in run_pretrain.sh and NCCL between GPUs. The
kernel-level equality of the fused and plain paths lives in test_modeling.py; these tests run the
trainer and the launcher end to end on GPUs.
"""
import os
import re
import subprocess
import sys

import pytest

paddle = pytest.importorskip("paddle")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _gpu_count() -> int:
    if not paddle.device.is_compiled_with_cuda():
        return 0
    return paddle.device.cuda.device_count()


NGPU = _gpu_count()
needs_gpu = pytest.mark.skipif(
    NGPU == 0, reason="needs a CUDA build of Paddle (paddlepaddle-gpu) and a visible GPU; this is a CPU build/machine"
)
needs_2gpu = pytest.mark.skipif(NGPU < 2, reason=f"needs 2 GPUs for NCCL data parallelism; {NGPU} visible")

TINY = [
    "model.hidden_size=64", "model.num_hidden_layers=2", "model.num_attention_heads=4",
    "model.intermediate_size=128", "data.max_seq_len=128", "data.num_workers=0", "data.split=90,8,2",
    "train.micro_batch_size=8", "train.max_steps=20", "train.logging_steps=5", "train.save_steps=20",
    "train.eval_steps=20", "train.eval_iters=1", "train.resume=none",
]


def _run(cmd, env=None):
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, PYTHON=sys.executable, **(env or {})),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _losses(out):
    return [float(x) for x in re.findall(r"global step \d+, loss: ([0-9.]+)", out)]


@needs_gpu
@pytest.mark.parametrize("dtype,level", [("float16", "O1"), ("float16", "O2"), ("bfloat16", "O1")])
def test_amp_training_on_gpu(sample_data, tmp_path, dtype, level):
    out = _run([sys.executable, "-m", "ernie_style.run_pretrain", "--config", "configs/roformer_tiny_demo.yaml",
                f"data.prefixes=[{sample_data.prefix}]", f"data.vocab_file={sample_data.vocab}",
                f"train.output_dir={tmp_path}", "amp.enable=true", f"amp.dtype={dtype}", f"amp.level={level}",
                *TINY])
    losses = _losses(out)
    assert len(losses) == 4 and all(l == l and l < 20 for l in losses), losses  # finite
    assert losses[-1] < losses[0]
    if dtype == "float16":  # dynamic loss scaling is live: the scale starts at 32768
        assert re.search(r"loss_scaling: (32768\.0|16384\.0|65536\.0)", out)


@needs_gpu
def test_run_pretrain_sh_uses_gpus(sample_data, tmp_path):
    out = _run(["bash", "run_pretrain.sh", "configs/roformer_tiny_demo.yaml",
                f"data.prefixes=[{sample_data.prefix}]", f"data.vocab_file={sample_data.vocab}",
                f"train.output_dir={tmp_path}", "amp.enable=true", *TINY], env={"GPUS": "0"})
    assert "global step 20, loss:" in out
    assert "1 rank(s) on gpu" in out  # the trainer ran on the GPU, not on a CPU fallback
    assert re.search(r"loss_scaling: (32768\.0|16384\.0|65536\.0)", out)  # fp16 loss scaling: live only on a GPU
    assert os.path.isdir(os.path.join(tmp_path, "log"))


@needs_2gpu
def test_two_gpus_nccl_match_one_gpu_with_accumulation(sample_data, tmp_path):
    common = [f"data.prefixes=[{sample_data.prefix}]", f"data.vocab_file={sample_data.vocab}", *TINY,
              "model.hidden_dropout_prob=0", "model.attention_probs_dropout_prob=0", "train.max_steps=5",
              "train.micro_batch_size=4", "train.global_batch_size=8", "amp.enable=false"]
    one = _run([sys.executable, "-m", "ernie_style.run_pretrain", "--config", "configs/roformer_tiny_demo.yaml",
                f"train.output_dir={tmp_path / 'one'}", *common], env={"CUDA_VISIBLE_DEVICES": "0"})
    two = _run(["bash", "run_pretrain.sh", "configs/roformer_tiny_demo.yaml", f"train.output_dir={tmp_path / 'two'}",
                *common], env={"GPUS": "0,1"})
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) and all(abs(x - y) < 1e-4 for x, y in zip(a, b)), (a, b)
