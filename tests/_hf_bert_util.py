"""BERT directories in the layouts HFL and UER publish, made by ``transformers`` itself (tiny sizes, real layouts).

What the public directories hold and users bring to ``export.from_pytorch``:
- HFL (chinese-bert-wwm, bert-wwm-ext, roberta-wwm-ext, MacBERT): ``config.json`` with ``model_type: bert`` and
  ``architectures: ["BertForMaskedLM"]`` (RoBERTa-wwm is a BERT), a 21,128-line vocab (``[PAD]``, ``[unused1..99]``,
  ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``, ``<S>``, ``<T>``, then characters and ``##`` pieces), a
  ``pytorch_model.bin`` saved from ``BertForPreTraining`` (NSP head included) whose LayerNorm parameters carry the
  old TensorFlow names ``gamma``/``beta``, and the ``position_ids`` buffer.
- UER (chinese_roberta_L-*_H-*): ``BertForMaskedLM`` keys, 3 token-type rows (``type_vocab_size: 3``).
- newer uploads: ``model.safetensors``, bare ``BertModel`` keys.
"""
import json
import os

import numpy as np

HFL_VOCAB_SIZE = 21128
HFL_SPECIALS = ["[PAD]", *[f"[unused{i}]" for i in range(1, 100)], "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<S>", "<T>"]


def hfl_vocab() -> list:
    """21,128 tokens in HFL's order: specials at HFL's ids, then CJK characters, digits/Latin and ## pieces."""
    tokens = list(HFL_SPECIALS)
    tokens += list("!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~")
    cjk = [chr(c) for c in range(0x4E00, 0x9FA6)]
    tokens += cjk[:13000]
    tokens += ["##" + c for c in cjk[:HFL_VOCAB_SIZE - len(tokens)]]
    assert len(tokens) == HFL_VOCAB_SIZE and len(set(tokens)) == HFL_VOCAB_SIZE
    return tokens


def bert_config(**overrides) -> dict:
    cfg = dict(vocab_size=HFL_VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
               max_position_embeddings=64, type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12,
               pad_token_id=0)
    cfg.update(overrides)
    return cfg


def _randomize(model, seed: int) -> None:
    """O(0.1) values everywhere (LayerNorm weights around 1) so that a misplaced tensor shows in the logits."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + (1.0 if "LayerNorm.weight" in name else 0.0))


def write_hf_bert(path, kind: str = "pretraining", *, safetensors: bool = False, tf_names: bool = False,
                  seed: int = 0, **config_overrides) -> str:
    """A directory as published: ``kind`` = ``pretraining`` (BertForPreTraining: MLM + NSP heads; saved with
    ``architectures: [BertForMaskedLM]`` as HFL's are), ``masked_lm`` (BertForMaskedLM) or ``bare`` (BertModel keys).
    ``tf_names`` renames LayerNorm weight/bias to gamma/beta in the weights file; ``position_ids`` is kept as a
    buffer in the file (HFL's files have it).  Returns the directory."""
    import torch
    import transformers

    cfg = transformers.BertConfig(**bert_config(**config_overrides))
    cls = {"pretraining": transformers.BertForPreTraining, "masked_lm": transformers.BertForMaskedLM,
           "bare": transformers.BertModel}[kind]
    model = cls(cfg)
    _randomize(model, seed)
    model.eval()
    os.makedirs(path, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    prefix = "" if kind == "bare" else "bert."
    state[prefix + "embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings).unsqueeze(0)
    if kind != "bare":
        # tied: stored once as transformers' save_pretrained does (the decoder is the word embeddings)
        state.pop("cls.predictions.decoder.weight", None)
        state.pop("cls.predictions.decoder.bias", None)
    if tf_names:
        state = {(k[:-len(".weight")] + ".gamma" if "LayerNorm" in k and k.endswith(".weight") else
                  k[:-len(".bias")] + ".beta" if "LayerNorm" in k and k.endswith(".bias") else k): v
                 for k, v in state.items()}
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, os.path.join(path, "pytorch_model.bin"))
    conf = cfg.to_dict()
    conf["architectures"] = ["BertModel" if kind == "bare" else "BertForMaskedLM"]
    conf["directionality"] = "bidi"  # HFL's config.json carries these two Google-BERT fields
    conf["pooler_type"] = "first_token_transform"
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
    vocab = hfl_vocab()[:cfg.vocab_size]
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    return str(path)


def hf_mlm_logits(path, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """float64 MLM logits of transformers' BertForMaskedLM loaded from ``path`` (the reference)."""
    import torch
    import transformers

    model = transformers.BertForMaskedLM.from_pretrained(path).double().eval()
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                     attention_mask=torch.from_numpy(mask)).logits.numpy()
