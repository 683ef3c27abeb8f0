"""BERT (Devlin et al.; PaddleNLP / Hugging Face ``bert``): the parts ``model.arch: bert`` selects.  Also the
architecture of RoBERTa-wwm, MacBERT and UER's RoBERTa checkpoints.

  config.py              ``BertConfig`` (Paddle-free; ``model_config.json``)
  modeling.py            the math: ``BertModel``, ``BertForPretraining`` (re-exported by ``ernie_style.modeling``);
                         its encoder, pooler and heads are ``ernie_style.arch.common.layers``, shared with RoFormer
  state_dict_adapter.py  the name map to Hugging Face ``BertForMaskedLM`` / ``BertForPreTraining`` (Paddle-free)
  paddlenlp.py           PaddleNLP compatibility: its config.json, its state-dict layouts, checked loading
  persistence.py         ``save_pretrained`` / ``from_pretrained`` of a model directory
"""
from ernie_style.arch.spec import ArchSpec, TaskHead

_M = "ernie_style.arch.bert"
ARCH = ArchSpec(
    name="bert",
    prefix="bert",
    hf_model_type="bert",
    hf_pretraining_class="BertForMaskedLM",
    paddlenlp_pretraining_class="BertForMaskedLM",
    # PaddleNLP's BertLMPredictionHead holds its decoder as a TransposedLinear whose weight is the word embeddings
    # and whose bias is decoder_bias: both are saved a second time under these names
    paddlenlp_tied={"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
                    "cls.predictions.decoder.bias": "cls.predictions.decoder_bias"},
    task_heads={
        # transformers' BertForSequenceClassification: dropout + classifier on the pooled output (pooler in its
        # model.safetensors)
        "seq_cls": TaskHead("BertForSequenceClassification", "pooled", pooler_in_hf=True),
        "pair_cls": TaskHead("BertForSequenceClassification", "pooled", pooler_in_hf=True),
        "ner": TaskHead("BertForTokenClassification", "token"),
        "qa": TaskHead("BertForQuestionAnswering", "span"),
    },
    config=f"{_M}.config:BertConfig",
    base_model=f"{_M}.modeling:BertModel",
    pretraining_model=f"{_M}.modeling:BertForPretraining",
    name_map=f"{_M}.state_dict_adapter:NAME_MAP",
    expected_shapes=f"{_M}.state_dict_adapter:expected_shapes",
    hf_config_in=f"{_M}.state_dict_adapter:config_from_hf",
    hf_config_out=f"{_M}.state_dict_adapter:config_to_hf",
    hf_derived=f"{_M}.state_dict_adapter:DERIVED",
    paddlenlp_config=f"{_M}.paddlenlp:config_from_paddlenlp",
    load_state_dict=f"{_M}.paddlenlp:load_state_dict_checked",
    init_weights="ernie_style.arch.common.layers:init_weights",
    activations="ernie_style.arch.common.kernels:ACTIVATIONS",
    public=(f"{_M}.config:BertConfig", f"{_M}.modeling:BertModel", f"{_M}.modeling:BertForPretraining"),
)
