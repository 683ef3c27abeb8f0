"""BERT for WWM-MLM + SOP (or NSP) pretraining, in Paddle. Pure math: no fleet, AMP or recompute code here.

The math is PaddleNLP's ``BertModel`` (= Hugging Face ``BertModel``): embeddings = word + learned absolute position
(``max_position_embeddings``) + token type -> LayerNorm (``layer_norm_eps`` as configured) -> dropout; then the
post-LN encoder, the tanh pooler, the MLM head with its decoder tied to the word embeddings, and the binary
sentence head (SOP for us, NSP in Google's and HFL's checkpoints: the same ``seq_relationship`` Linear).  Everything
after the embeddings is shared with RoFormer (``ernie_style.arch.common.layers``): the two differ only in where
positions enter (here at the embeddings; RoFormer rotates q and k inside attention).  Parameter names are
PaddleNLP's ``BertForPretraining`` ones, so its state dicts load directly.

Outside code relies on:
  - ``model.bert.encoder.layers`` is a plain ``nn.LayerList``; each layer's ``forward(hidden, attn_bias)`` is a pure
    function of its inputs, so a trainer can wrap it with fleet's ``recompute``;
  - ``BertForPretraining.forward(...) -> (mlm_logits, sop_logits)``, as ``RoFormerForPretraining``.
Kernel selection (plain / sdpa / flash / auto) is ``ernie_style.arch.common.kernels``'s.
"""

from __future__ import annotations

import paddle.nn as nn

from ernie_style.arch.bert.config import BertConfig
from ernie_style.arch.bert.persistence import from_pretrained, save_pretrained
from ernie_style.arch.common import kernels
from ernie_style.arch.common.layers import Encoder, EncoderModel, ForPretraining, Pooler, init_weights


class BertEmbeddings(nn.Layer):
    """word + absolute position + token_type embeddings -> LayerNorm -> dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        seq_len = input_ids.shape[1]
        positions = self.position_embeddings.weight[:seq_len]  # (L, H): positions 0..L-1, broadcast over the batch
        x = self.word_embeddings(input_ids) + positions + self.token_type_embeddings(token_type_ids)  # (B, L, H)
        return self.dropout(self.layer_norm(x))


class BertModel(EncoderModel):
    """The encoder. ``forward`` returns (sequence_output [B, L, H], pooled_output [B, H])."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)
        init_weights(self, config.initializer_range)
        self.set_attention_impl(kernels.default_kernel_set())

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        """input_ids [B, L] int64; token_type_ids [B, L] (absent: zeros); attention_mask [B, L] 1/0 (absent:
        built from pad_token_id)."""
        _, token_type_ids = self.checked_inputs(input_ids, token_type_ids)
        x = self.embeddings(input_ids, token_type_ids)  # (B, L, H)
        sequence_output = self.encoder(x, self.attention_bias(input_ids, attention_mask, x.dtype))
        return sequence_output, self.pooler(sequence_output)


class BertForPretraining(ForPretraining):
    """BERT + WWM-MLM head + SOP/NSP head (``ernie_style.arch.common.layers.ForPretraining``), encoder at ``.bert``."""

    prefix = "bert"

    def __init__(self, config: BertConfig, sop_head: bool = True):
        super().__init__(config, BertModel(config), sop_head)

    # -- persistence (ernie_style/arch/bert/persistence.py) --------------------------------------------------------

    def save_pretrained(self, directory: str) -> None:
        """Write ``model_config.json`` and ``model_state.pdparams`` into ``directory`` (each atomically)."""
        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str, allow_missing_heads: bool = False) -> "BertForPretraining":
        """Load a model directory (ours or PaddleNLP's); see ``ernie_style.arch.bert.persistence``."""
        return from_pretrained(cls, directory, allow_missing_heads)
