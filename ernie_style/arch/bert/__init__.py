"""BERT (Devlin et al.; PaddleNLP / Hugging Face ``bert``): the parts ``model.arch: bert`` selects.  Also the
architecture of RoBERTa-wwm, MacBERT and UER's RoBERTa checkpoints.

  config.py              ``BertConfig`` (Paddle-free; ``model_config.json``)
  modeling.py            the math: ``BertModel``, ``BertForPretraining`` (re-exported by ``ernie_style.modeling``);
                         its encoder, pooler and heads are ``ernie_style.arch.common.layers``, shared with RoFormer
  state_dict_adapter.py  the name map to Hugging Face ``BertForMaskedLM`` / ``BertForPreTraining`` (Paddle-free)
  paddlenlp.py           PaddleNLP compatibility: its config.json, its state-dict layouts, checked loading
  persistence.py         ``save_pretrained`` / ``from_pretrained`` of a model directory
"""
from ernie_style.arch.spec import ArchSpec

ARCH = ArchSpec(
    name="bert",
    config="ernie_style.arch.bert.config:BertConfig",
    base_model="ernie_style.arch.bert.modeling:BertModel",
    pretraining_model="ernie_style.arch.bert.modeling:BertForPretraining",
    name_map="ernie_style.arch.bert.state_dict_adapter:NAME_MAP",
    paddlenlp_config="ernie_style.arch.bert.paddlenlp:config_from_paddlenlp",
    load_state_dict="ernie_style.arch.bert.paddlenlp:load_state_dict_checked",
)
