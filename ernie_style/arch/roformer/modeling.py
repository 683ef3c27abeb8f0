"""RoFormer for WWM-MLM + SOP pretraining, in Paddle. Pure math: no fleet, AMP or recompute code here.

The math is PaddleNLP's RoFormer (= Hugging Face ``RoFormerForMaskedLM``): embeddings = word + token_type ->
LayerNorm -> dropout (no absolute positions); optional ``embeddings_project`` when embedding_size != hidden_size;
post-LN encoder layers whose self-attention rotates q and k (and v when ``rotary_value``) with interleaved rotary
position embeddings; exact (erf) GELU; LayerNorm eps 1e-12; MLM decoder tied to the word embeddings.
Parameter names are PaddleNLP's, so its RoFormer state dicts load directly.

The encoder layers, pooler and heads are the ones BERT uses too (``ernie_style.arch.common.layers``); what is
RoFormer's own is here: the embeddings without positions and the attention's rotary hook.

Outside code relies on:
  - ``model.roformer.encoder.layers`` is a plain ``nn.LayerList``; each layer's ``forward(hidden, attn_bias,
    sin, cos)`` is a pure function of its inputs, so a trainer can wrap it with fleet's ``recompute``;
  - ``RoFormerForPretraining.forward(...) -> (mlm_logits, sop_logits)``.
What is not math lives with the architecture (``ernie_style/arch/roformer/``): the Paddle-free config
(``config.py``), PaddleNLP compatibility and checked loading (``paddlenlp.py``), ``save_pretrained`` /
``from_pretrained`` (``persistence.py``).  The losses belong to the task (``ernie_style/tasks/pretrain.py``).
Kernel selection (plain / sdpa / flash / auto) lives in ``ernie_style.arch.common.kernels``, rotary in
``ernie_style.arch.roformer.ops``.
"""

from __future__ import annotations

import paddle
import paddle.nn as nn

from ernie_style.arch.common.layers import (
    Encoder,
    EncoderModel,
    ForPretraining,
    LMPredictionHead,
    Pooler,
    PretrainingHeads,
    SelfAttention,
    TransformerLayer,
    init_weights,
)
from ernie_style.arch.roformer import ops
from ernie_style.arch.roformer.config import RoFormerConfig  # noqa: F401  (Paddle-free; re-exported: its old home)
from ernie_style.arch.roformer.persistence import from_pretrained, save_pretrained


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


class RoFormerSelfAttention(SelfAttention):
    """The shared self-attention with RoFormer's positions: q and k (and v when ``rotary_value``) rotated."""

    def __init__(self, config: RoFormerConfig):
        super().__init__(config)
        self.rotary_value = config.rotary_value

    def apply_positions(self, q, k, v, fused, sin, cos):
        """q, k, v [B, L, nH, D]; sin/cos [L, D/2]."""
        if fused:
            q, k, v_rot = ops.apply_rotary_fused(q, k, v if self.rotary_value else None, sin, cos)
            if self.rotary_value:
                v = v_rot
        else:
            q = ops.apply_rotary(q, sin, cos)
            k = ops.apply_rotary(k, sin, cos)
            if self.rotary_value:
                v = ops.apply_rotary(v, sin, cos)
        return q, k, v


class RoFormerLayer(TransformerLayer):
    """The shared post-LN layer (``ernie_style.arch.common.layers``) with rotary attention:
    ``forward(hidden [B, L, H], attn_bias [B, 1, 1, L], sin, cos [L, D/2]) -> [B, L, H]``."""

    attention_class = RoFormerSelfAttention


# Shared with BERT; the old names stay importable.
RoFormerPooler = Pooler
RoFormerLMPredictionHead = LMPredictionHead
RoFormerPretrainingHeads = PretrainingHeads
_init_weights = init_weights


class RoFormerModel(EncoderModel):
    """The encoder. ``forward`` returns (sequence_output [B, L, H], pooled_output [B, H])."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.config = config
        self.embeddings = RoFormerEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = Encoder(config, RoFormerLayer)
        self.pooler = Pooler(config)
        sin, cos = ops.rotary_table(config.head_dim, config.max_position_embeddings)
        self.register_buffer("rotary_sin", paddle.to_tensor(sin), persistable=False)
        self.register_buffer("rotary_cos", paddle.to_tensor(cos), persistable=False)
        init_weights(self, config.initializer_range)
        self.set_attention_impl(ops.default_kernel_set())

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        """input_ids [B, L] int64; token_type_ids [B, L] (absent: zeros); attention_mask [B, L] 1/0 (absent:
        built from pad_token_id)."""
        seq_len, token_type_ids = self.checked_inputs(input_ids, token_type_ids)
        x = self.embeddings(input_ids, token_type_ids)  # (B, L, E)
        if self.config.embedding_size != self.config.hidden_size:
            x = self.embeddings_project(x)  # (B, L, H)
        bias = self.attention_bias(input_ids, attention_mask, x.dtype)
        sin, cos = self.rotary_sin[:seq_len], self.rotary_cos[:seq_len]  # (L, D/2)
        sequence_output = self.encoder(x, bias, sin, cos)
        return sequence_output, self.pooler(sequence_output)


class RoFormerForPretraining(ForPretraining):
    """RoFormer + WWM-MLM head + SOP head (``ernie_style.arch.common.layers.ForPretraining``), encoder at
    ``.roformer``."""

    prefix = "roformer"

    def __init__(self, config: RoFormerConfig, sop_head: bool = True):
        super().__init__(config, RoFormerModel(config), sop_head)

    # -- persistence (ernie_style/arch/roformer/persistence.py) ---------------------------------------------------

    def save_pretrained(self, directory: str) -> None:
        """Write ``model_config.json`` and ``model_state.pdparams`` into ``directory`` (each atomically)."""
        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str, allow_missing_heads: bool = False) -> "RoFormerForPretraining":
        """Load a model directory (ours or PaddleNLP's); see ``ernie_style.arch.roformer.persistence``."""
        return from_pretrained(cls, directory, allow_missing_heads)
