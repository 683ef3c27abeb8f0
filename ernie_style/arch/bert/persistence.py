"""A model directory: ``model_config.json`` + ``model_state.pdparams`` (or PaddleNLP's ``config.json`` +
``model_state.pdparams``), written and read for the BERT models of ``ernie_style.arch.bert.modeling``
(through :mod:`ernie_style.arch.common.persistence`)."""
from __future__ import annotations

from ernie_style.arch.bert.config import BertConfig
from ernie_style.arch.bert.paddlenlp import config_from_paddlenlp, load_state_dict_checked
from ernie_style.arch.common import persistence
from ernie_style.arch.common.persistence import save_pretrained  # noqa: F401  (the same for every architecture)


def from_pretrained(cls, directory: str, allow_missing_heads: bool = False):
    """Load a directory written by :func:`save_pretrained` (or a PaddleNLP BERT dir: ``config.json`` +
    ``model_state.pdparams`` of ``BertForPretraining``, ``BertForMaskedLM`` or ``BertModel``) into a new
    ``cls(config)``.  With ``allow_missing_heads`` a state dict without the pretraining heads loads and those heads
    keep their fresh init; the report is at ``model.load_report``."""
    return persistence.from_pretrained(cls, directory, allow_missing_heads, config_class=BertConfig,
                                       config_from_paddlenlp=config_from_paddlenlp,
                                       load_state_dict_checked=load_state_dict_checked)
