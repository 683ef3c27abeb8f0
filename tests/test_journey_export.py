"""Issue 10 points 8 and 10 for export: messages that point the right way, no dependency noise."""
import os
import subprocess
import sys

import pytest

import _trainer_util as U
from ernie_style import run_pretrain

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("journey_export")
    data = U.make_data(str(root / "data"))
    out = root / "out"
    assert run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(*data, str(out), **{"train.max_steps": 1})]) == 0
    return out


def export(*args, omp="1"):
    env = dict(os.environ, OMP_NUM_THREADS=omp)
    return subprocess.run([sys.executable, "-m", "export.to_pytorch", *map(str, args)], cwd=U.REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def one_error(p):
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


def test_output_dir_instead_of_checkpoint_names_the_checkpoint(output_dir, tmp_path):
    line = one_error(export(output_dir, tmp_path / "hf"))
    assert "training output directory" in line and str(output_dir / "checkpoints" / "latest") in line
    assert "file not found" not in line
    assert not os.path.exists(tmp_path / "hf")


def test_existing_output_mentions_overwrite_and_verify_is_quiet(output_dir, tmp_path):
    hf = tmp_path / "hf"
    # OMP_NUM_THREADS > 1 made Paddle print a data-parallel warning on every export; transformers warned about
    # GenerationMixin three times
    p = export(output_dir / "checkpoints" / "latest", hf, "--verify", omp="2")
    assert p.returncode == 0, p.stderr
    assert "verify: max |logits(paddle) - logits(transformers)|" in p.stdout
    for noise in ("OMP_NUM_THREADS", "GenerationMixin", "generative capabilities", "ccache"):
        assert noise not in p.stdout + p.stderr, (noise, p.stderr)
    line = one_error(export(output_dir / "checkpoints" / "latest", hf))
    assert "exists" in line and "--overwrite" in line
    assert export(output_dir / "checkpoints" / "latest", hf, "--overwrite").returncode == 0
