"""The one name map between our (PaddleNLP-named) RoFormer and Hugging Face ``RoFormerForMaskedLM``.

Both directions are driven by ``NAME_MAP`` (defined with the architecture, in
``ernie_style/arch/roformer/state_dict_adapter.py``); nothing else in the package knows a parameter name.
Paddle ``Linear.weight`` is ``[in, out]``, torch ``nn.Linear.weight`` is ``[out, in]``: every
row marked ``T`` is transposed. Embeddings, LayerNorms and biases are copied as they are.

Where each tensor goes in the Hugging Face directory:
  ``main``  model.safetensors, loaded by RoFormerForMaskedLM;
  ``side``  pretraining_heads.safetensors (pooler + SOP head; RoFormerForMaskedLM has no place
            for them, torch layout and BERT-style names so BertForPreTraining-like code can use them).
Fine-tuned models (issue 12, layout in docs/export.md) carry the encoder, the pooler (``side``:
transformers' RoFormerModel has none) and one task head, whose names are the same in both frameworks
(``TASK_HEADS``): they load into ``RoFormerForSequenceClassification`` (seq_cls, pair_cls),
``RoFormerForTokenClassification`` (ner) or ``RoFormerForQuestionAnswering`` (qa).

Derived tensors, not in our checkpoint:
  ``roformer.encoder.embed_positions.weight`` [max_pos, head_dim], the sinusoidal table
  transformers computes at init (:func:`sinusoidal_table`); written so loading reports nothing
  missing. ``cls.predictions.decoder.{weight,bias}`` are tied in transformers to
  word_embeddings / ``cls.predictions.bias`` and are NOT written (as ``save_pretrained`` does;
  transformers 5.x declares exactly these two as tied targets).
"""
import re

import numpy as np

from ernie_style.arch.roformer.state_dict_adapter import L, NAME_MAP  # the one name map (Paddle-free)
from ernie_style.storage.errors import ModelDirError


def _cls_head(H, C):
    return {"classifier.dense.weight": (H, H), "classifier.dense.bias": (H,),
            "classifier.out_proj.weight": (H, C), "classifier.out_proj.bias": (C,)}


# Fine-tuning task -> (Hugging Face class, head shapes for hidden size H and C labels). seq_cls/pair_cls are
# RoFormerClassificationHead: out_proj(act(dense(h[CLS]))); ner is one Linear per token; qa one Linear to
# (start, end) per token, so its C is always 2.
TASK_HEADS = {
    "seq_cls": ("RoFormerForSequenceClassification", _cls_head),
    "pair_cls": ("RoFormerForSequenceClassification", _cls_head),
    "ner": ("RoFormerForTokenClassification", lambda H, C: {"classifier.weight": (H, C), "classifier.bias": (C,)}),
    "qa": ("RoFormerForQuestionAnswering", lambda H, C: {"qa_outputs.weight": (H, 2), "qa_outputs.bias": (2,)}),
}
POOLER = ("roformer.pooler.dense.weight", "roformer.pooler.dense.bias")

SIDE_FILE = "pretraining_heads.safetensors"
ROTARY_KEY = "roformer.encoder.embed_positions.weight"
# transformers ties these to word_embeddings / cls.predictions.bias (5.x: {target: source}).
HF_TIED = {
    "cls.predictions.decoder.weight": "roformer.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
# PaddleNLP's RoFormerForMaskedLM stores the tied decoder weight under its own name.
PADDLENLP_DECODER_WEIGHT = "cls.predictions.decoder_weight"


def _rule(src_pattern):
    return re.compile("^" + re.escape(src_pattern).replace(re.escape(L), r"(\d+)") + "$")


_OURS_RULES = [(_rule(o), h, t, f) for o, h, t, f in NAME_MAP]
_HF_RULES = [(_rule(h), o, t, f) for o, h, t, f in NAME_MAP]


def _lookup(rules, name):
    for rx, dst, transpose, where in rules:
        m = rx.match(name)
        if m:
            return (dst.replace(L, m.group(1)) if m.groups() else dst), transpose, where
    return None


def expected_ours(config: dict, with_heads=True, task=None, num_labels=None) -> dict:
    """``{our name: shape}`` of every parameter a checkpoint with ``config`` must hold.

    Pretraining checkpoints (``task=None``): encoder + MLM head, and with ``with_heads`` the pooler and SOP head.
    Fine-tuned models (``task`` in TASK_HEADS): encoder + pooler + that task's head for ``num_labels`` labels.
    """
    V, E, H = config["vocab_size"], config["embedding_size"], config["hidden_size"]
    F, T = config["intermediate_size"], config["type_vocab_size"]
    shapes = {
        "roformer.embeddings.word_embeddings.weight": (V, E),
        "roformer.embeddings.token_type_embeddings.weight": (T, E),
        "roformer.embeddings.layer_norm.weight": (E,),
        "roformer.embeddings.layer_norm.bias": (E,),
        "cls.predictions.transform.weight": (H, E),
        "cls.predictions.transform.bias": (E,),
        "cls.predictions.layer_norm.weight": (E,),
        "cls.predictions.layer_norm.bias": (E,),
        "cls.predictions.decoder_bias": (V,),
    }
    if E != H:
        shapes["roformer.embeddings_project.weight"] = (E, H)
        shapes["roformer.embeddings_project.bias"] = (H,)
    for i in range(config["num_hidden_layers"]):
        p = f"roformer.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{proj}.weight"] = (H, H)
            shapes[p + f"self_attn.{proj}.bias"] = (H,)
        shapes[p + "linear1.weight"], shapes[p + "linear1.bias"] = (H, F), (F,)
        shapes[p + "linear2.weight"], shapes[p + "linear2.bias"] = (F, H), (H,)
        for n in ("norm1", "norm2"):
            shapes[p + f"{n}.weight"], shapes[p + f"{n}.bias"] = (H,), (H,)
    if task is not None:
        shapes = {k: v for k, v in shapes.items() if not k.startswith("cls.")}
        shapes[POOLER[0]], shapes[POOLER[1]] = (H, H), (H,)
        shapes.update(TASK_HEADS[task][1](H, num_labels))
    elif with_heads:
        shapes[POOLER[0]], shapes[POOLER[1]] = (H, H), (H,)
        shapes["cls.seq_relationship.weight"], shapes["cls.seq_relationship.bias"] = (H, 2), (2,)
    return shapes


def check_ours(state: dict, config: dict, where: str, task=None, num_labels=None) -> None:
    """Raise ModelDirError naming ``where`` unless ``state`` holds exactly the expected names and shapes
    (of a pretraining checkpoint, or with ``task`` of a fine-tuned model with ``num_labels`` labels)."""
    expected = expected_ours(config, task=task, num_labels=num_labels)
    if task is None and not any(k.startswith("cls.seq_relationship.") for k in state):
        # an MLM-only run (data.binary_head false) builds no SOP head
        expected = {k: v for k, v in expected.items() if not k.startswith("cls.seq_relationship.")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    what = "this model_config" if task is None else f"task {task!r} with this model_config"
    if missing:
        raise ModelDirError(f"{where}: missing {len(missing)} parameter(s) for {what}, e.g. {missing[:3]}")
    if unexpected:
        raise ModelDirError(f"{where}: {len(unexpected)} unexpected parameter(s) for {what}, e.g. {unexpected[:3]}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            got = list(state[name].shape)
            if task not in (None, "qa") and not name.startswith("roformer."):
                raise ModelDirError(f"{where}: {name} has shape {got}, expected {list(shape)} (hidden_size "
                                  f"{config['hidden_size']}, {num_labels} labels in config.json id2label)")
            raise ModelDirError(f"{where}: {name} has shape {got}, model_config expects {list(shape)}")


def ours_to_hf(state: dict) -> tuple:
    """Our state dict -> (main ``{hf name: array}``, side ``{hf name: array}``), torch layout.

    Transposed weights are views; writers copy them one at a time.
    """
    main, side = {}, {}
    for name, a in state.items():
        hit = _lookup(_OURS_RULES, name)
        assert hit is not None, f"no HF name for {name}"
        dst, transpose, where = hit
        (main if where == "main" else side)[dst] = a.T if transpose else a
    return main, side


def hf_to_ours(tensors: dict, where: str) -> tuple:
    """HF ``{name: array}`` (main and side merged) -> (our state dict, names skipped as derived/tied)."""
    ours, skipped = {}, []
    for name, a in tensors.items():
        if name == ROTARY_KEY or name in HF_TIED:
            skipped.append(name)
            continue
        hit = _lookup(_HF_RULES, name)
        if hit is None:
            raise ModelDirError(f"{where}: tensor {name!r} has no place in our RoFormer models")
        dst, transpose, _ = hit
        ours[dst] = a.T if transpose else a
    return ours, skipped


def sinusoidal_table(n_pos: int, dim: int) -> np.ndarray:
    """The table transformers' RoFormerSinusoidalPositionalEmbedding builds: [n_pos, dim] float32.

    Angles pos / 10000^(2*(j//2)/dim) in float64; sin of the even columns in the first half,
    cos of the odd columns in the second half; then cast to float32.
    """
    pos = np.arange(n_pos, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angle = pos / np.power(10000, 2 * (j // 2) / dim)[None, :]
    half = dim // 2 if dim % 2 == 0 else dim // 2 + 1
    out = np.empty((n_pos, dim), dtype=np.float32)
    out[:, :half] = np.sin(angle[:, 0::2]).astype(np.float32)
    out[:, half:] = np.cos(angle[:, 1::2]).astype(np.float32)
    return out


def split_sinusoidal_table(table: np.ndarray) -> tuple:
    """(sin, cos), each [n_pos, dim / 2], of a table in :func:`sinusoidal_table`'s layout (``dim`` even): the
    form our Paddle model holds (``RoFormerModel.rotary_sin`` / ``rotary_cos``)."""
    assert table.ndim == 2 and table.shape[1] % 2 == 0, table.shape
    half = table.shape[1] // 2
    return table[:, :half], table[:, half:]
