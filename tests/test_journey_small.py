"""Issue 10 point 14: the "try it small first" recipe, and warmup_steps/ratio given on the command line."""
import os

import pytest

from ernie_style.config.pretrain import ConfigError, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(REPO, "configs", "roformer_base_wwm_cluecorpussmall.yaml")
SMALL = os.path.join(REPO, "configs", "roformer_small_own_corpus.yaml")


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    p = tmp_path_factory.mktemp("small") / "vocab.txt"
    p.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(0x4E00 + i) for i in range(95)]) + "\n")
    return str(p)


def test_warmup_steps_on_the_command_line_replaces_the_files_ratio(vocab):
    base = load_config(BASE, [f"data.vocab_file={vocab}"])
    assert base.optim.warmup_ratio == 0.01 and base.optim.resolved_warmup_steps() == 12300
    cfg = load_config(BASE, [f"data.vocab_file={vocab}", "optim.warmup_steps=4", "train.max_steps=40"])
    assert (cfg.optim.warmup_steps, cfg.optim.warmup_ratio, cfg.optim.resolved_warmup_steps()) == (4, 0.0, 4)
    # the other way round: a ratio on the command line replaces the file's steps
    cfg = load_config(SMALL, [f"data.vocab_file={vocab}", "optim.warmup_ratio=0.25"])
    assert (cfg.optim.warmup_steps, cfg.optim.resolved_warmup_steps()) == (0, 100)
    # both on the command line: still the user's contradiction, refused with the field named
    with pytest.raises(ConfigError, match="optim.warmup_ratio"):
        load_config(BASE, [f"data.vocab_file={vocab}", "optim.warmup_steps=4", "optim.warmup_ratio=0.1"])


def test_small_recipe_is_small_and_its_schedule_fits_its_steps(vocab):
    from ernie_style.arch.roformer.modeling import RoFormerForPretraining

    cfg = load_config(SMALL, [f"data.vocab_file={vocab}"])
    o, t = cfg.optim, cfg.train
    assert o.decay_steps == t.max_steps and 0 < o.resolved_warmup_steps() <= t.max_steps // 5
    assert t.max_steps % t.eval_steps == 0 and t.max_steps % t.save_steps == 0
    assert cfg.global_batch_size(2) <= 64 and cfg.data.max_seq_len <= 256
    model = RoFormerForPretraining(cfg.model)
    n_params = sum(int(p.size) for p in model.parameters())
    assert n_params < 5_000_000, n_params  # minutes on a CPU, not hours (the base has 100M+)
