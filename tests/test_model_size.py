"""``model.size``: the keys each preset sets, which word wins, and each preset's parameter count, for every registered
architecture, against a closed form written from the architecture's description."""
import math
import os

import paddle
import pytest
import yaml

from ernie_style.arch import ARCHS, get_arch
from ernie_style.config.pretrain import MODEL_SIZES, ConfigError, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(REPO, "configs", "roformer_base_wwm_cluecorpussmall.yaml")
HFL_VOCAB = 21128  # chinese-bert-wwm / roberta-wwm-ext

# (layers, hidden) of each preset as the issue and the papers give them (Turc et al. 2019; BERT base and large)
EXPECTED = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512), "base": (12, 768),
            "large": (24, 1024)}
# Presets built for real; the larger ones under paddle.LazyGuard (the same layers, parameters not allocated).
BUILT = ("tiny", "mini")

# What sets an architecture's embeddings apart: RoFormer rotates q and k (no position parameters), BERT learns a
# table of max_position_embeddings rows.
LEARNED_POSITIONS = {"roformer": False, "bert": True}


def closed_form_params(c, learned_positions: bool) -> int:
    """Parameters of the pretraining model (encoder + pooler + MLM head with its decoder tied to the word
    embeddings + SOP head) of config ``c``: V vocab, E embedding width, H hidden, L layers, I feed-forward,
    T token types, P positions."""
    V, H, L, I = c.vocab_size, c.hidden_size, c.num_hidden_layers, c.intermediate_size  # noqa: E741
    E = getattr(c, "embedding_size", None) or H
    T, P = c.type_vocab_size, c.max_position_embeddings
    embeddings = V * E + T * E + (P * E if learned_positions else 0) + 2 * E  # tables + LayerNorm
    project = E * H + H if E != H else 0  # factorised embeddings: E -> H
    layer = (4 * (H * H + H)  # q, k, v, out projections
             + 2 * H  # LayerNorm after attention
             + H * I + I + I * H + H  # feed-forward
             + 2 * H)  # LayerNorm after the feed-forward
    pooler = H * H + H
    mlm = H * E + E + 2 * E + V  # transform H -> E, LayerNorm, decoder bias (the decoder weight is tied)
    sop = 2 * H + 2
    return embeddings + project + L * layer + pooler + mlm + sop


def count(model) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("size", list(MODEL_SIZES))
def test_each_preset_has_the_parameters_of_the_closed_form(arch, size):
    assert MODEL_SIZES == EXPECTED
    cfg = load_config(None, [f"model.arch={arch}", f"model.size={size}", f"model.vocab_size={HFL_VOCAB}"])
    c = cfg.model
    layers, hidden = EXPECTED[size]
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == \
        (layers, hidden, hidden // 64, 4 * hidden)
    cls = get_arch(arch).pretraining_model_class()
    if size in BUILT:
        model = cls(c)
    else:
        with paddle.LazyGuard():
            model = cls(c)
    assert count(model) == closed_form_params(c, LEARNED_POSITIONS[arch])


def test_the_closed_form_counts_factorised_embeddings():
    """The closed form on a shape the presets do not reach (embedding_size < hidden_size, 3 token types)."""
    cfg = load_config(None, ["model.vocab_size=50", "model.embedding_size=8", "model.hidden_size=16",
                             "model.num_hidden_layers=3", "model.num_attention_heads=2", "model.intermediate_size=24",
                             "model.type_vocab_size=3"])
    model = get_arch(cfg.model_arch).pretraining_model_class()(cfg.model)
    assert count(model) == closed_form_params(cfg.model, LEARNED_POSITIONS[cfg.model_arch])


def test_explicit_keys_win_and_the_command_line_wins_over_the_file(tmp_path):
    def shape(cfg):
        m = cfg.model
        return m.num_hidden_layers, m.hidden_size, m.num_attention_heads, m.intermediate_size

    v = "model.vocab_size=100"
    # in the file: the size, and one shape key given beside it
    f = tmp_path / "small.yaml"
    f.write_text(yaml.safe_dump({"model": {"size": "small", "num_hidden_layers": 6}}))
    assert shape(load_config(str(f), [v])) == (6, 512, 8, 2048)
    # ... and an override of another shape key
    assert shape(load_config(str(f), [v, "model.intermediate_size=1024"])) == (6, 512, 8, 1024)
    # the base recipe writes its shape out (12/768/12/3072); model.size on the command line replaces it
    assert shape(load_config(BASE, [v])) == (12, 768, 12, 3072)
    assert shape(load_config(BASE, [v, "model.size=tiny"])) == (2, 128, 2, 512)
    assert shape(load_config(BASE, [v, "model.size=mini", "model.num_hidden_layers=3"])) == (3, 256, 4, 1024)
    # what a run saves: the resolved keys, not the preset's name
    saved = load_config(BASE, [v, "model.size=tiny"]).to_dict()["model"]
    assert "size" not in saved and saved["hidden_size"] == 128
    assert shape(load_config(None, [v])) == (12, 768, 12, 3072)  # no size: the model config's defaults


@pytest.mark.parametrize("bad", ["huge", "3", "[base]", "Base"])
def test_an_unknown_size_names_the_choices(bad):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.vocab_size=100", f"model.size={bad}"])
    assert str(e.value).startswith("model.size=") and \
        str(e.value).endswith(": expected one of tiny, mini, small, medium, base, large"), str(e.value)
