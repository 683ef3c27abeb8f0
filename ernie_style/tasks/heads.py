"""Fine-tuning models: an architecture's encoder plus a task head, with Hugging Face's parameter names and math.

Architecture-independent: the encoder is the ArchSpec's ``base_model``, held under the spec's ``prefix`` (so
parameter names are ``<prefix>.*`` + the head's, as in transformers' ``<Arch>For*`` classes); the init and the
activations are the architecture's.  Which head a task uses, and the transformers class it exports to, is the
spec's ``task_heads`` (:class:`ernie_style.arch.spec.TaskHead`); :func:`build_task_model` builds it.  The heads:

``cls_mlp`` (:class:`EncoderForSequenceClassification`): x = sequence_output[:, 0] -> dropout ->
``classifier.dense`` (H->H) -> ``config.hidden_act`` -> dropout -> ``classifier.out_proj`` (H->C) (transformers'
RoFormer classification head).  ``pooled`` (:class:`EncoderForPooledClassification`): the encoder's pooled output
-> dropout -> ``classifier`` (H->C) (transformers' BERT classification).  ``token``
(:class:`EncoderForTokenClassification`): ``classifier`` (H->C) on dropout(sequence_output).  ``span``
(:class:`EncoderForQuestionAnswering`): ``qa_outputs`` (H->2) on sequence_output, split into start and end
logits.  The encoder's pooler is always kept (the fine-tuned model directory holds it, as the export expects);
where the head does not use it, its parameters are frozen (a data-parallel reducer would otherwise wait for
gradients that never come).

Pure math, like the architectures' ``modeling.py``; loading and persistence live in ``ernie_style.finetune``.
"""
from __future__ import annotations

import paddle.nn as nn

from ernie_style.arch import arch_of
from ernie_style.arch.spec import resolve


class _EncoderWithHead(nn.Layer):
    """The architecture's encoder, at ``self.<spec.prefix>``; the subclass adds its head (after the encoder, so
    parameters are created and initialised in the same order as the encoder-then-head transformers classes)."""

    uses_pooler = False  # the head reads the encoder's pooled output (else the pooler is frozen)

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.spec = arch_of(config)
        setattr(self, self.spec.prefix, self.spec.base_model_class()(config))
        if not self.uses_pooler:
            for p in self.base.pooler.parameters():
                p.stop_gradient = True

    @property
    def base(self):
        """The encoder (the ArchSpec's base model)."""
        return self.spec.encoder(self)

    def _init_head(self, layer) -> None:
        resolve(self.spec.init_weights)(layer, self.config.initializer_range)

    def set_attention_impl(self, name: str) -> None:
        self.base.set_attention_impl(name)

    def encode(self, input_ids, token_type_ids=None, attention_mask=None):
        return self.base(input_ids, token_type_ids, attention_mask)[0]  # (B, L, H)


class ClassificationMLP(nn.Layer):
    def __init__(self, config, num_labels: int, act):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, num_labels)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.act = act

    def forward(self, sequence_output):
        x = self.dropout(sequence_output[:, 0])  # (B, H): the [CLS] vector
        x = self.dropout(self.act(self.dense(x)))
        return self.out_proj(x)  # (B, C)


class EncoderForSequenceClassification(_EncoderWithHead):
    """``cls_mlp``: ``forward(input_ids, token_type_ids, attention_mask) -> logits [B, num_labels]``."""

    def __init__(self, config, num_labels: int):
        super().__init__(config)
        self.num_labels = num_labels
        self.classifier = ClassificationMLP(config, num_labels, resolve(self.spec.activations)[config.hidden_act])
        self._init_head(self.classifier)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        return self.classifier(self.encode(input_ids, token_type_ids, attention_mask))


class EncoderForPooledClassification(_EncoderWithHead):
    """``pooled``: ``forward(input_ids, token_type_ids, attention_mask) -> logits [B, num_labels]`` from the
    encoder's pooled output through dropout and ``classifier`` (H->C)."""

    uses_pooler = True

    def __init__(self, config, num_labels: int):
        super().__init__(config)
        self.num_labels = num_labels
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self._init_head(self.classifier)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        pooled = self.base(input_ids, token_type_ids, attention_mask)[1]  # (B, H)
        return self.classifier(self.dropout(pooled))  # (B, C)


class EncoderForTokenClassification(_EncoderWithHead):
    """``token``: ``forward(input_ids, token_type_ids, attention_mask) -> logits [B, L, num_labels]`` (ner):
    ``classifier`` (H->C) on dropout(sequence_output)."""

    def __init__(self, config, num_labels: int):
        super().__init__(config)
        self.num_labels = num_labels
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self._init_head(self.classifier)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        sequence_output = self.encode(input_ids, token_type_ids, attention_mask)
        return self.classifier(self.dropout(sequence_output))  # (B, L, C)


class EncoderForQuestionAnswering(_EncoderWithHead):
    """``span``: ``forward(input_ids, token_type_ids, attention_mask) -> (start_logits [B, L], end_logits
    [B, L])`` (qa): ``qa_outputs`` (H->2) on sequence_output, no dropout."""

    def __init__(self, config, num_labels: int = 2):
        super().__init__(config)
        assert num_labels == 2, num_labels  # (start, end)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self._init_head(self.qa_outputs)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        logits = self.qa_outputs(self.encode(input_ids, token_type_ids, attention_mask))  # (B, L, 2)
        return logits[:, :, 0], logits[:, :, 1]


# TaskHead.head -> the model class (parameter shapes: ernie_style.arch.state_dict_adapter.HEAD_SHAPES)
HEADS = {
    "cls_mlp": EncoderForSequenceClassification,
    "pooled": EncoderForPooledClassification,
    "token": EncoderForTokenClassification,
    "span": EncoderForQuestionAnswering,
}


def build_task_model(config, task: str, num_labels: int = 2) -> _EncoderWithHead:
    """The fine-tuning model of ``task`` on ``config``'s architecture (its ArchSpec's ``task_heads``)."""
    return HEADS[arch_of(config).task_heads[task].head](config, num_labels)
