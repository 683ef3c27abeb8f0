"""Import a Hugging Face RoFormer checkpoint as one of our checkpoint directories.

    python -m export.from_pytorch HF_DIR OUT_DIR [--verify]

Reads config.json and model.safetensors (or a sharded model.safetensors.index.json, or
pytorch_model.bin via ``torch.load(weights_only=True)``), plus our pretraining_heads.safetensors
side file when present. Writes model_config.json, model_state.pdparams, vocab.txt,
tokenizer_config.json and checksums.json: what ``RoFormerForPretraining.from_pretrained`` loads
and what the trainer initialises from with ``train.resume=PATH`` (optimizer starts fresh).
Weights are stored as float32 (16-bit sources are widened exactly). A pooler or SOP head the
source lacks is initialised (normal(0, initializer_range), zero bias) and reported.
"""
import argparse
import json
import os

import numpy as np

from export.checkpoint_dir import (
    CHECKSUMS_FILE, CONFIG_FIELDS, CONFIG_FILE, STATE_FILE, TOKENIZER_FILE, VOCAB_FILE, atomic_output_dir,
    read_vocab, sha256_file, validate_config, write_json, write_vocab,
)
from export.errors import ExportError, run_cli
from export.pdparams import save_pdparams
from export.safetensors_io import read_safetensors
from export.state_dict_adapter import (
    ROTARY_KEY, SIDE_FILE, check_ours, expected_ours, hf_to_ours, sinusoidal_table,
)

# Defaults of transformers' RoFormerConfig for fields an older config.json may omit.
HF_DEFAULTS = {
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 1536, "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
    "pad_token_id": 0, "rotary_value": False,
}
PADDLE_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "relu": "relu",
                      "tanh": "tanh"}  # transformers name -> ours (same function)
HEADS = ("roformer.pooler.dense.", "cls.seq_relationship.")


def read_hf_config(hf_dir) -> dict:
    path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(path):
        raise ExportError(f"{path}: file not found (is {hf_dir} a Hugging Face model directory?)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict) or raw.get("model_type") != "roformer":
        got = raw.get("model_type") if isinstance(raw, dict) else None
        raise ExportError(f"{path}: model_type is {got!r}, expected 'roformer'")
    cfg = {**HF_DEFAULTS, **{k: raw[k] for k in CONFIG_FIELDS if raw.get(k) is not None}}
    cfg.setdefault("embedding_size", raw.get("hidden_size"))
    act = cfg["hidden_act"]
    if act not in PADDLE_ACTIVATIONS:
        raise ExportError(f"{path}: hidden_act {act!r} has no exact Paddle equivalent (supported: {sorted(PADDLE_ACTIVATIONS)})")
    cfg["hidden_act"] = PADDLE_ACTIVATIONS[act]
    if raw.get("tie_word_embeddings") is False:
        raise ExportError(f"{path}: tie_word_embeddings is false; our model ties the MLM decoder to the word embeddings")
    return validate_config(cfg, path)


def _read_bin(path) -> dict:
    try:
        import torch
    except ImportError:
        raise ExportError(f"{path}: reading a pytorch_model.bin needs torch, which is not importable; "
                          "install torch or convert the file to model.safetensors") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad pickles; all mean "cannot use this file"
        raise ExportError(f"{path}: cannot be loaded safely ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(sd, dict):
        raise ExportError(f"{path}: holds a {type(sd).__name__}, expected a state dict")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ExportError(f"{path}: entry {bad[0]!r} is not a tensor")
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy() for k, v in sd.items()}


def read_hf_weights(hf_dir) -> tuple:
    """({name: float32 ndarray}, [files read]) from safetensors (single or sharded) or pytorch_model.bin."""
    single = os.path.join(hf_dir, "model.safetensors")
    index = os.path.join(hf_dir, "model.safetensors.index.json")
    binf = os.path.join(hf_dir, "pytorch_model.bin")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ExportError(f"{index}: not a safetensors index ({e})") from None
        files = [os.path.join(hf_dir, s) for s in shards]
    elif os.path.isfile(binf):
        return _read_bin(binf), [binf]
    else:
        raise ExportError(f"{hf_dir}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
    tensors = {}
    for f in files:
        if not os.path.isfile(f):
            raise ExportError(f"{f}: file not found (named in {index})")
        tensors.update(read_safetensors(f)[0])
    return tensors, files


def _strip_base_prefix(tensors):
    """Checkpoints saved from RoFormerModel lack the ``roformer.`` prefix; add it back."""
    if any(k.startswith("roformer.") for k in tensors):
        return tensors
    base = ("embeddings.", "embeddings_project.", "encoder.", "pooler.")
    return {("roformer." + k if k.startswith(base) else k): v for k, v in tensors.items()}


def hf_state_to_ours(tensors: dict, cfg: dict, where: str) -> tuple:
    """HF tensors -> (our float32 state dict, list of notes for the user)."""
    notes = []
    tensors = _strip_base_prefix(tensors)
    emb = tensors.get("roformer.embeddings.word_embeddings.weight")
    dec = tensors.get("cls.predictions.decoder.weight")
    if dec is not None and emb is not None and (dec.shape != emb.shape or not np.array_equal(dec, emb)):
        raise ExportError(f"{where}: cls.predictions.decoder.weight differs from the word embeddings; "
                          "an untied MLM decoder has no place in our model")
    if "cls.predictions.bias" not in tensors and "cls.predictions.decoder.bias" in tensors:
        tensors = {**tensors, "cls.predictions.bias": tensors["cls.predictions.decoder.bias"]}
    table = tensors.get(ROTARY_KEY)
    if table is not None:
        want = sinusoidal_table(*table.shape)
        if table.shape != want.shape or np.max(np.abs(table - want)) > 1e-2:
            raise ExportError(f"{where}: {ROTARY_KEY} is not the standard sinusoidal table; our model computes it")
    ours, _ = hf_to_ours(tensors, where)
    ours = {k: np.ascontiguousarray(v, dtype=np.float32) if v.dtype != np.float32 else v for k, v in ours.items()}
    # Fresh pooler / SOP head when the source has none (e.g. a RoFormerForMaskedLM export).
    rng = np.random.default_rng(0)
    for name, shape in expected_ours(cfg).items():
        if name not in ours and name.startswith(HEADS):
            ours[name] = (rng.normal(0.0, cfg["initializer_range"], size=shape) if name.endswith("weight")
                          else np.zeros(shape)).astype(np.float32)
            notes.append(f"initialised {name} (not in the source)")
    if not any(k.startswith("cls.predictions.") for k in ours):
        raise ExportError(f"{where}: no MLM head (cls.predictions.*): a bare RoFormerModel checkpoint; "
                          "export the RoFormerForMaskedLM weights instead")
    check_ours(ours, cfg, where)
    return ours, notes


def import_hf(hf_dir, out_dir, overwrite=False, verify=False) -> None:
    hf_dir = os.fspath(hf_dir)
    if not os.path.isdir(hf_dir):
        raise ExportError(f"{hf_dir}: not a directory")
    cfg = read_hf_config(hf_dir)
    tensors, files = read_hf_weights(hf_dir)
    emb = tensors.get("roformer.embeddings.word_embeddings.weight", tensors.get("embeddings.word_embeddings.weight"))
    if emb is not None and emb.shape[0] != cfg["vocab_size"]:
        raise ExportError(f"{', '.join(files)}: word embeddings have {emb.shape[0]} rows, "
                          f"{os.path.join(hf_dir, 'config.json')} says vocab_size {cfg['vocab_size']}")
    side = os.path.join(hf_dir, SIDE_FILE)
    if os.path.isfile(side):
        tensors.update(read_safetensors(side)[0])
        files.append(side)
    where = ", ".join(files)
    state, notes = hf_state_to_ours(tensors, cfg, where)
    vocab_path = os.path.join(hf_dir, VOCAB_FILE)
    vocab = read_vocab(vocab_path)
    if len(vocab) != cfg["vocab_size"]:
        raise ExportError(f"{vocab_path}: {len(vocab)} tokens, {os.path.join(hf_dir, 'config.json')} says vocab_size "
                          f"{cfg['vocab_size']}")
    do_lower_case = True
    tok_path = os.path.join(hf_dir, TOKENIZER_FILE)
    if os.path.isfile(tok_path):
        try:
            with open(tok_path, encoding="utf-8") as f:
                tok = json.load(f)
        except (UnicodeDecodeError, ValueError):
            tok = None
        if not isinstance(tok, dict):
            raise ExportError(f"{tok_path}: not a JSON object")
        do_lower_case = bool(tok.get("do_lower_case", True))
        if tok.get("tokenizer_class") not in (None, "BertTokenizer", "BertTokenizerFast"):
            notes.append(f"{tok_path} names {tok['tokenizer_class']}; our pipeline tokenizes with the character-level "
                         "BertTokenizer over the same vocab.txt (no jieba pre-segmentation)")
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_json(os.path.join(tmp, CONFIG_FILE), cfg)
        save_pdparams(os.path.join(tmp, STATE_FILE), state)
        write_vocab(os.path.join(tmp, VOCAB_FILE), vocab)
        write_json(os.path.join(tmp, TOKENIZER_FILE), {"do_lower_case": do_lower_case})
        names = [CONFIG_FILE, STATE_FILE, VOCAB_FILE, TOKENIZER_FILE]
        write_json(os.path.join(tmp, CHECKSUMS_FILE), {n: sha256_file(os.path.join(tmp, n)) for n in names})
        if verify:
            from export.verify import verify_hf_import

            verify_hf_import(hf_dir, cfg, state)
    for note in notes:
        print(f"note: {note}")
    print(f"imported {hf_dir} -> {out_dir}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.from_pytorch", description=__doc__.split("\n\n")[0])
    ap.add_argument("hf_dir", help="Hugging Face RoFormer directory (config.json + weights + vocab.txt)")
    ap.add_argument("out_dir", help="new checkpoint directory to create")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    ap.add_argument("--verify", action="store_true", help="compare MLM logits of both models after import")
    args = ap.parse_args(argv)
    return run_cli(import_hf, args.hf_dir, args.out_dir, args.overwrite, args.verify)


if __name__ == "__main__":
    raise SystemExit(main())
