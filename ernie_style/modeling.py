"""RoFormer for WWM-MLM + SOP pretraining, in Paddle. Pure math: no fleet, AMP or recompute code here.

The math is PaddleNLP's RoFormer (= Hugging Face ``RoFormerForMaskedLM``): embeddings = word + token_type ->
LayerNorm -> dropout (no absolute positions); optional ``embeddings_project`` when embedding_size != hidden_size;
post-LN encoder layers whose self-attention rotates q and k (and v when ``rotary_value``) with interleaved rotary
position embeddings; exact (erf) GELU; LayerNorm eps 1e-12; MLM decoder tied to the word embeddings.
Parameter names are PaddleNLP's, so its RoFormer state dicts load directly (see ``load_state_dict_checked``).

Outside code relies on:
  - ``model.roformer.encoder.layers`` is a plain ``nn.LayerList``; each layer's ``forward(hidden, attn_bias,
    sin, cos)`` is a pure function of its inputs, so a trainer can wrap it with fleet's ``recompute``;
  - ``RoFormerForPretraining.forward(...) -> (mlm_logits, sop_logits)``, ``pretraining_loss``,
    ``pretraining_metrics``; ``from_pretrained`` / ``save_pretrained``.
Kernel selection (plain / sdpa / flash / auto) lives in ``ernie_style.ops``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ernie_style import ops

CONFIG_NAME = "model_config.json"
WEIGHTS_NAME = "model_state.pdparams"
IGNORE_INDEX = -100

# Keys of a PaddleNLP RoFormerConfig that carry no model math (bookkeeping of its PretrainedConfig).
_PADDLENLP_BOOKKEEPING = {
    "architectures", "model_type", "eos_token_id", "bos_token_id", "use_cache", "paddlenlp_version",
    "dtype", "init_class", "return_dict", "output_hidden_states", "output_attentions", "use_return_dict",
    "classifier_dropout", "num_labels", "num_choices", "id2label", "label2id", "tensor_parallel_degree",
    "tensor_parallel_rank", "tensor_parallel_output", "fuse_attention_qkv", "fuse_attention_ffn",
    "quantization_config", "transformers_version", "torch_dtype", "tokenizer_class", "chunk_size_feed_forward",
    "_name_or_path", "problem_type",
}  # fmt: skip


@dataclass
class RoFormerConfig:
    """Architecture of a RoFormer. ``embedding_size=None`` means ``hidden_size``."""

    vocab_size: int
    embedding_size: Optional[int] = None
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 1536
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    rotary_value: bool = False

    def __post_init__(self):
        if self.embedding_size is None:
            self.embedding_size = self.hidden_size

        def bad(name, expected):
            raise ValueError(f"RoFormerConfig.{name}={getattr(self, name)!r}: expected {expected}")

        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                bad(name, "a positive integer")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                bad(name, "a probability in [0, 1)")
        for name in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                bad(name, "a positive number")
        if self.hidden_act not in ops.ACTIVATIONS:
            bad("hidden_act", f"one of {', '.join(sorted(ops.ACTIVATIONS))}")
        if not isinstance(self.rotary_value, bool):
            bad("rotary_value", "true or false")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            bad("pad_token_id", f"an integer in [0, vocab_size={self.vocab_size})")
        if self.hidden_size % self.num_attention_heads:
            bad("hidden_size", f"a multiple of num_attention_heads={self.num_attention_heads}")
        if self.head_dim % 2:
            raise ValueError(
                f"RoFormerConfig: head size hidden_size/num_attention_heads = {self.hidden_size}/"
                f"{self.num_attention_heads} = {self.head_dim} is odd; expected an even head size "
                "(rotary embeddings rotate pairs of features)"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RoFormerConfig":
        """Build from a dict; an unknown key is a ValueError that suggests the closest valid name."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
                raise ValueError(f"RoFormerConfig: unknown key {key!r}{hint}")
        if "vocab_size" not in d:
            raise ValueError("RoFormerConfig: missing required key 'vocab_size'")
        return cls(**d)

    @classmethod
    def from_paddlenlp_dict(cls, d: dict[str, Any]) -> "RoFormerConfig":
        """Build from a PaddleNLP ``RoFormerConfig`` dict (its ``config.json``), dropping its bookkeeping keys."""
        d = dict(d)
        pool_act = d.pop("pool_act", "tanh")
        if pool_act != "tanh":
            raise ValueError(f"PaddleNLP config: pool_act={pool_act!r}; only 'tanh' is supported")
        return cls.from_dict({k: v for k, v in d.items() if k not in _PADDLENLP_BOOKKEEPING})


# ------------------------------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------------------------------


class RoFormerEmbeddings(nn.Layer):
    """word + token_type embeddings -> LayerNorm -> dropout. Positions come from rotary, not from here."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.layer_norm = nn.LayerNorm(config.embedding_size, epsilon=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, L, E)
        return self.dropout(self.layer_norm(x))


class RoFormerSelfAttention(nn.Layer):
    def __init__(self, config: RoFormerConfig):
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.rotary_value = config.rotary_value
        self.dropout_p = config.attention_probs_dropout_prob
        self.q_proj = nn.Linear(h, h)
        self.k_proj = nn.Linear(h, h)
        self.v_proj = nn.Linear(h, h)
        self.out_proj = nn.Linear(h, h)
        self.kernel_set = "auto"

    def forward(self, x, attn_bias, sin, cos):
        b, l, h = x.shape
        shape = [b, l, self.num_heads, self.head_dim]
        q = self.q_proj(x).reshape(shape)  # (B, L, nH, D)
        k = self.k_proj(x).reshape(shape)
        v = self.v_proj(x).reshape(shape)
        attn_impl, fused_rotary, _ = ops.resolve(self.kernel_set, q)
        if fused_rotary:
            q, k, v_rot = ops.apply_rotary_fused(q, k, v if self.rotary_value else None, sin, cos)
            if self.rotary_value:
                v = v_rot
        else:
            q = ops.apply_rotary(q, sin, cos)
            k = ops.apply_rotary(k, sin, cos)
            if self.rotary_value:
                v = ops.apply_rotary(v, sin, cos)
        out = ops.attention(q, k, v, attn_bias.astype(q.dtype), self.dropout_p, self.training, attn_impl)
        return self.out_proj(out.reshape([b, l, h]))


class RoFormerLayer(nn.Layer):
    """Post-LN transformer layer: x = norm1(x + drop(attn(x))); x = norm2(x + drop(ffn(x)))."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        h = config.hidden_size
        self.self_attn = RoFormerSelfAttention(config)
        self.linear1 = nn.Linear(h, config.intermediate_size)
        self.linear2 = nn.Linear(config.intermediate_size, h)
        self.norm1 = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.norm2 = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.dropout1 = nn.Dropout(config.hidden_dropout_prob)
        self.dropout2 = nn.Dropout(config.hidden_dropout_prob)
        self.act = config.hidden_act

    def forward(self, x, attn_bias, sin, cos):
        """x [B, L, H], attn_bias [B, 1, 1, L] additive, sin/cos [L, D/2] -> [B, L, H]."""
        x = self.norm1(x + self.dropout1(self.self_attn(x, attn_bias, sin, cos)))
        _, _, fused_gelu = ops.resolve(self.self_attn.kernel_set, x)
        ffn = self.linear2(ops.linear_act(x, self.linear1, self.act, fused_gelu))
        return self.norm2(x + self.dropout2(ffn))


class RoFormerEncoder(nn.Layer):
    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.layers = nn.LayerList([RoFormerLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x, attn_bias, sin, cos):
        for layer in self.layers:
            x = layer(x, attn_bias, sin, cos)
        return x


class RoFormerPooler(nn.Layer):
    """tanh(dense(h[CLS]))."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence_output):
        return paddle.tanh(self.dense(sequence_output[:, 0]))  # (B, H)


def _init_weights(root: nn.Layer, std: float) -> None:
    """normal(0, std) for Linear/Embedding weights, zero biases, LayerNorm ones/zeros (PaddleNLP's init;
    the pad row of the word embeddings is not zeroed, as in PaddleNLP)."""
    normal = nn.initializer.Normal(mean=0.0, std=std)
    zeros = nn.initializer.Constant(0.0)
    ones = nn.initializer.Constant(1.0)
    for layer in root.sublayers(include_self=True):
        if isinstance(layer, (nn.Linear, nn.Embedding)):
            normal(layer.weight)
            if getattr(layer, "bias", None) is not None:
                zeros(layer.bias)
        elif isinstance(layer, nn.LayerNorm):
            ones(layer.weight)
            zeros(layer.bias)


class RoFormerModel(nn.Layer):
    """The encoder. ``forward`` returns (sequence_output [B, L, H], pooled_output [B, H])."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.config = config
        self.embeddings = RoFormerEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = RoFormerEncoder(config)
        self.pooler = RoFormerPooler(config)
        sin, cos = ops.rotary_table(config.head_dim, config.max_position_embeddings)
        self.register_buffer("rotary_sin", paddle.to_tensor(sin), persistable=False)
        self.register_buffer("rotary_cos", paddle.to_tensor(cos), persistable=False)
        _init_weights(self, config.initializer_range)
        self.set_attention_impl(ops.default_kernel_set())

    def set_attention_impl(self, name: str) -> None:
        """Choose the kernel set: "auto" | "plain" | "sdpa" | "flash" (see ``ernie_style.ops``)."""
        ops.check_kernel_set(name)
        for layer in self.encoder.layers:
            layer.self_attn.kernel_set = name

    def attention_bias(self, input_ids, attention_mask, dtype):
        """Additive bias [B, 1, 1, L]: 0 where attention_mask is 1 (absent: token != pad), MASK_VALUE where 0."""
        keep = (input_ids != self.config.pad_token_id) if attention_mask is None else (attention_mask != 0)
        return ((1.0 - keep.astype(dtype)) * ops.MASK_VALUE).unsqueeze([1, 2])

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        """input_ids [B, L] int64; token_type_ids [B, L] (absent: zeros); attention_mask [B, L] 1/0 (absent:
        built from pad_token_id)."""
        seq_len = input_ids.shape[1]
        if seq_len > self.config.max_position_embeddings:
            raise ValueError(
                f"input length {seq_len} exceeds max_position_embeddings={self.config.max_position_embeddings}"
            )
        if token_type_ids is None:
            token_type_ids = paddle.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)  # (B, L, E)
        if self.config.embedding_size != self.config.hidden_size:
            x = self.embeddings_project(x)  # (B, L, H)
        bias = self.attention_bias(input_ids, attention_mask, x.dtype)
        sin, cos = self.rotary_sin[:seq_len], self.rotary_cos[:seq_len]  # (L, D/2)
        sequence_output = self.encoder(x, bias, sin, cos)
        return sequence_output, self.pooler(sequence_output)


class RoFormerLMPredictionHead(nn.Layer):
    """dense(H->E) -> act -> LayerNorm -> x @ word_embeddings^T + decoder_bias."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.transform = nn.Linear(config.hidden_size, config.embedding_size)
        self.layer_norm = nn.LayerNorm(config.embedding_size, epsilon=config.layer_norm_eps)
        self.decoder_bias = self.create_parameter(
            [config.vocab_size], is_bias=True, default_initializer=nn.initializer.Constant(0.0)
        )
        self.act = config.hidden_act

    def forward(self, hidden, decoder_weight):
        """hidden [..., H], decoder_weight [V, E] (the tied word embeddings) -> logits [..., V]."""
        x = self.layer_norm(ops.ACTIVATIONS[self.act](self.transform(hidden)))
        return paddle.matmul(x, decoder_weight.astype(x.dtype), transpose_y=True) + self.decoder_bias.astype(x.dtype)


class RoFormerPretrainingHeads(nn.Layer):
    """MLM head (``predictions``) and SOP classifier (``seq_relationship``) on the pooled [CLS]."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.predictions = RoFormerLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, sequence_output, pooled_output, decoder_weight, masked_positions=None):
        """sequence_output [B, L, H], pooled_output [B, H], masked_positions flat int64 [K] of row * L + pos.

        Returns mlm_logits ([K, V] with masked_positions, else [B, L, V]) and sop_logits [B, 2].
        """
        if masked_positions is not None:
            hidden = sequence_output.reshape([-1, sequence_output.shape[-1]])  # (B*L, H)
            # Gather first: the vocab projection then runs on K rows instead of B*L (~15%).
            sequence_output = paddle.gather(hidden, masked_positions.astype("int64"), axis=0)  # (K, H)
        return self.predictions(sequence_output, decoder_weight), self.seq_relationship(pooled_output)


class RoFormerForPretraining(nn.Layer):
    """RoFormer + WWM-MLM head + SOP head. ``forward`` -> (mlm_logits, sop_logits)."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.config = config
        self.roformer = RoFormerModel(config)
        self.cls = RoFormerPretrainingHeads(config)
        _init_weights(self.cls, config.initializer_range)

    def set_attention_impl(self, name: str) -> None:
        """Choose the kernel set: "auto" | "plain" | "sdpa" | "flash" (see ``ernie_style.ops``)."""
        self.roformer.set_attention_impl(name)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, masked_positions=None):
        sequence_output, pooled_output = self.roformer(input_ids, token_type_ids, attention_mask)
        return self.cls(
            sequence_output, pooled_output, self.roformer.embeddings.word_embeddings.weight, masked_positions
        )

    # -- persistence ---------------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str) -> None:
        """Write ``model_config.json`` and ``model_state.pdparams`` into ``directory`` (each atomically)."""
        os.makedirs(directory, exist_ok=True)
        _atomic_write(
            os.path.join(directory, CONFIG_NAME),
            lambda path: _write_text(path, json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n"),
        )
        _atomic_write(os.path.join(directory, WEIGHTS_NAME), lambda path: paddle.save(self.state_dict(), path))

    @classmethod
    def from_pretrained(cls, directory: str, allow_missing_heads: bool = False) -> "RoFormerForPretraining":
        """Load a directory written by ``save_pretrained`` (or a PaddleNLP RoFormer dir: ``config.json`` +
        ``model_state.pdparams``). With ``allow_missing_heads`` a state dict without the pretraining heads (e.g.
        PaddleNLP RoFormerModel/RoFormerForMaskedLM) loads and those heads keep their fresh init; the report is
        at ``model.load_report``."""
        cfg_path = os.path.join(directory, CONFIG_NAME)
        pnlp_path = os.path.join(directory, "config.json")
        if os.path.isfile(cfg_path):
            config = RoFormerConfig.from_dict(_read_json(cfg_path))
        elif os.path.isfile(pnlp_path):
            config = RoFormerConfig.from_paddlenlp_dict(_read_json(pnlp_path))
        else:
            raise FileNotFoundError(f"{directory}: no {CONFIG_NAME} (or PaddleNLP config.json) found")
        weights = os.path.join(directory, WEIGHTS_NAME)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"{directory}: no {WEIGHTS_NAME} found")
        from data_tools import safe_pickle

        model = cls(config)
        # The restricted unpickler (numpy arrays and plain containers only): a downloaded file cannot run code.
        state = safe_pickle.load(weights)
        state.pop("StructuredToParameterName@@", None)
        model.load_report = load_state_dict_checked(model, state, allow_missing_heads)
        return model


# ------------------------------------------------------------------------------------------------------------------
# Loading with a report
# ------------------------------------------------------------------------------------------------------------------

# Prefixes that only the pretraining heads own; a state dict may lack them (PaddleNLP RoFormerModel has no `cls.`,
# RoFormerForMaskedLM has no SOP classifier).
HEAD_PREFIXES = ("cls.",)
# PaddleNLP's RoFormerForMaskedLM registers the tied decoder weight a second time under this name.
TIED_ALIAS = "cls.predictions.decoder_weight"
WORD_EMBEDDINGS = "roformer.embeddings.word_embeddings.weight"


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)  # in the model, not in the state dict (kept fresh)
    notes: list[str] = field(default_factory=list)


def load_state_dict_checked(model: nn.Layer, state: dict, allow_missing_heads: bool = False) -> LoadReport:
    """Load ``state`` into ``model`` after checking names and shapes; raises ValueError listing every missing,
    unexpected and mismatched key. Accepts PaddleNLP layouts: base-model keys without the ``roformer.`` prefix,
    and the duplicated tied decoder weight ``cls.predictions.decoder_weight`` (must equal the word embeddings)."""
    state = dict(state)
    report = LoadReport()
    expected = model.state_dict()
    if not any(k.startswith("roformer.") for k in state) and any(k.startswith("embeddings.") for k in state):
        state = {"roformer." + k: v for k, v in state.items()}
        report.notes.append("base-model state dict: prefixed keys with 'roformer.'")
    if TIED_ALIAS in state:
        alias = state.pop(TIED_ALIAS)
        words = state.get(WORD_EMBEDDINGS)
        if words is None or tuple(alias.shape) != tuple(words.shape) or not bool((_t(alias) == _t(words)).all()):
            raise ValueError(f"state dict: {TIED_ALIAS} differs from {WORD_EMBEDDINGS}; the decoder must be tied")
        report.notes.append(f"dropped {TIED_ALIAS} (tied to {WORD_EMBEDDINGS})")
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in state and list(state[k].shape) != list(expected[k].shape)
    )
    allowed_missing = [k for k in missing if allow_missing_heads and k.startswith(HEAD_PREFIXES)]
    hard_missing = [k for k in missing if k not in allowed_missing]
    if hard_missing or unexpected or mismatched:
        parts = []
        if hard_missing:
            parts.append(f"missing {hard_missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        if mismatched:
            parts.append(f"shape mismatch {mismatched}")
        raise ValueError("state dict does not match RoFormerForPretraining: " + "; ".join(parts))
    with warnings.catch_warnings():  # Paddle warns per absent key; they are reported below instead
        warnings.filterwarnings("ignore", message="Skip loading for")
        model.set_state_dict(state)
    report.missing = allowed_missing
    if allowed_missing:
        report.notes.append(f"freshly initialised (absent from the state dict): {allowed_missing}")
    return report


def _t(x):
    return x if isinstance(x, paddle.Tensor) else paddle.to_tensor(x)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _atomic_write(final_path, write):
    directory = os.path.dirname(os.path.abspath(final_path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, final_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# ------------------------------------------------------------------------------------------------------------------
# Losses and metrics
# ------------------------------------------------------------------------------------------------------------------


def _masked_ce(logits, labels):
    """Mean cross-entropy over labels != IGNORE_INDEX (0 when there are none), in float32; and the valid mask."""
    labels = labels.reshape([-1]).astype("int64")
    valid = labels != IGNORE_INDEX
    safe = paddle.where(valid, labels, paddle.zeros_like(labels))
    per_token = F.cross_entropy(logits.astype("float32"), safe.unsqueeze(-1), reduction="none").reshape([-1])
    validf = valid.astype("float32")
    return (per_token * validf).sum() / paddle.clip(validf.sum(), min=1.0), valid


def pretraining_loss(mlm_logits, sop_logits, masked_labels, sop_labels):
    """(loss, lm_loss, sop_loss), each a float32 scalar.

    mlm_logits [K, V] (or [B, L, V]) with masked_labels of the same leading shape; sop_logits [B, 2] with
    sop_labels [B] (0/1, IGNORE_INDEX=-100 for samples without SOP). Labels equal to -100 are ignored; when
    nothing is left the term is 0 (never NaN). loss = lm_loss + sop_loss.
    """
    lm_loss, _ = _masked_ce(mlm_logits.reshape([-1, mlm_logits.shape[-1]]), masked_labels)
    sop_loss, _ = _masked_ce(sop_logits, sop_labels)
    return lm_loss + sop_loss, lm_loss, sop_loss


def pretraining_metrics(mlm_logits, sop_logits, masked_labels, sop_labels) -> dict[str, paddle.Tensor]:
    """Counts for accuracies (int64 scalar tensors, no host sync): mlm_correct, mlm_total, sop_correct,
    sop_total. Labels equal to -100 are not counted."""
    out = {}
    for name, logits, labels in (("mlm", mlm_logits, masked_labels), ("sop", sop_logits, sop_labels)):
        labels = labels.reshape([-1]).astype("int64")
        pred = logits.reshape([-1, logits.shape[-1]]).argmax(axis=-1).astype("int64")
        valid = labels != IGNORE_INDEX
        out[f"{name}_correct"] = ((pred == labels) & valid).astype("int64").sum()
        out[f"{name}_total"] = valid.astype("int64").sum()
    return out
