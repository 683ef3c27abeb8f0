"""Import a Hugging Face checkpoint of a registered architecture (config.json's ``model_type``; today RoFormer) as
one of our checkpoint directories, or a fine-tuned one (``<Arch>ForSequenceClassification`` /
...ForTokenClassification / ...ForQuestionAnswering, names from the ArchSpec) as one of our fine-tuned model
directories.

    python -m export.from_pytorch HF_DIR OUT_DIR [--task seq_cls|pair_cls|ner|qa] [--verify]

Reads config.json and model.safetensors (or a sharded model.safetensors.index.json, or
pytorch_model.bin via ``torch.load(weights_only=True)``), plus our pretraining_heads.safetensors
side file when present. Writes model_config.json, model_state.pdparams, vocab.txt,
tokenizer_config.json (lowercasing, and the tokenizer kind whose transformers class the source's
tokenizer_config.json or config.json names) and checksums.json: what ``<Arch>ForPretraining.from_pretrained``
loads and what the trainer initialises from with ``train.resume=PATH`` (optimizer starts fresh).
Weights are stored as float32 (16-bit sources are widened exactly). A pooler or SOP head the
source lacks is initialised (normal(0, initializer_range), zero bias) and reported.

A fine-tuned source gives a fine-tuned model directory (docs/export.md): model_config.json,
model_state.pdparams (encoder, pooler, task head), vocab.txt, tokenizer_config.json (as above: a fine-tuned
model keeps its tokenizer kind), config.json (task, id2label/label2id, do_lower_case, max_seq_len = the
tokenizer's model_max_length capped at max_position_embeddings, init = HF_DIR) and checksums.json. The task is config.json's ``finetuning_task`` when it names one of
ours, else the class's (<Arch>ForSequenceClassification -> seq_cls); ``--task`` overrides.
"""
import argparse
import json
import os

from ernie_style.arch import with_arch
from ernie_style.arch.hf_dir import hf_state_to_ours, nsp_note, read_hf_config_arch, read_hf_task, read_hf_weights  # noqa: F401  (hf_state_to_ours: its old home)
from data_tools.tokenizers import kind_of_hf_class
from ernie_style.storage.model_dir import CHECKSUMS_FILE, CONFIG_FILE, STATE_FILE, TASK_FILE, TOKENIZER_FILE, VOCAB_FILE, atomic_output_dir, read_tokenizer, read_vocab, sha256_file, write_json, write_vocab
from ernie_style.storage.pdparams import save_pdparams
from ernie_style.storage.safetensors_io import read_safetensors
from export.errors import ExportError, run_cli
from ernie_style.arch.state_dict_adapter import SIDE_FILE, SOP_PREFIX, TASKS, add_base_prefix, word_embeddings
from ernie_style.constants import HF_CONFIG
from export.verify import verify_hf_import



def import_hf(hf_dir, out_dir, overwrite=False, verify=False, task=None) -> None:
    hf_dir = os.fspath(hf_dir)
    if not os.path.isdir(hf_dir):
        raise ExportError(f"{hf_dir}: not a directory")
    cfg, spec = read_hf_config_arch(hf_dir)
    task, labels = read_hf_task(hf_dir, task)
    num_labels = None if task is None else (2 if task == "qa" else len(labels))
    tensors, files = read_hf_weights(hf_dir)
    emb = add_base_prefix(tensors, spec).get(word_embeddings(spec))
    if emb is not None and emb.shape[0] != cfg["vocab_size"]:
        raise ExportError(f"{', '.join(files)}: word embeddings have {emb.shape[0]} rows, "
                          f"{os.path.join(hf_dir, HF_CONFIG)} says vocab_size {cfg['vocab_size']}")
    # a next-sentence head in the weights themselves (a <Arch>ForPreTraining file, e.g. HFL's), not our side file
    nsp = task is None and (SOP_PREFIX + "weight") in tensors
    side = os.path.join(hf_dir, SIDE_FILE)
    if os.path.isfile(side):
        tensors.update(read_safetensors(side)[0])
        files.append(side)
    where = ", ".join(files)
    state, notes = hf_state_to_ours(tensors, cfg, where, task, num_labels, spec)
    if nsp:
        notes.append(nsp_note())
    vocab_path = os.path.join(hf_dir, VOCAB_FILE)
    vocab = read_vocab(vocab_path)
    if len(vocab) > cfg["vocab_size"]:  # fewer: padding rows (kept, as our export writes them)
        raise ExportError(f"{vocab_path}: {len(vocab)} tokens, {os.path.join(hf_dir, HF_CONFIG)} says vocab_size "
                          f"{cfg['vocab_size']}")
    max_seq_len = cfg["max_position_embeddings"]
    tok_path = os.path.join(hf_dir, TOKENIZER_FILE)
    if os.path.isfile(tok_path):
        try:
            with open(tok_path, encoding="utf-8") as f:
                tok = json.load(f)
        except (UnicodeDecodeError, ValueError):
            tok = None
        if not isinstance(tok, dict):
            raise ExportError(f"{tok_path}: not a JSON object")
        limit = tok.get("model_max_length")
        if isinstance(limit, int) and 0 < limit < max_seq_len:  # transformers writes ~1e30 for "no limit"
            max_seq_len = limit
        if tok.get("tokenizer_class") is not None and kind_of_hf_class(tok["tokenizer_class"]) is None:
            notes.append(f"{tok_path} names {tok['tokenizer_class']}; our pipeline tokenizes with the character-level "
                         "BertTokenizer over the same vocab.txt (no jieba pre-segmentation)")
    # lowercasing, and the kind whose transformers class the directory names (tokenizer_config.json, else
    # config.json): the same reader fine-tuning's model.init and pretraining's train.resume use on HF_DIR
    tokenizer = read_tokenizer(hf_dir)
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_json(os.path.join(tmp, CONFIG_FILE), with_arch(spec, cfg))
        save_pdparams(os.path.join(tmp, STATE_FILE), state)
        write_vocab(os.path.join(tmp, VOCAB_FILE), vocab)
        # every import records the tokenizer (its kind too): a fine-tuned model keeps it as a pretrained one does
        write_json(os.path.join(tmp, TOKENIZER_FILE), tokenizer.to_dict())
        if task is not None:
            task_cfg = {"task": task, "do_lower_case": tokenizer.do_lower_case, "max_seq_len": max_seq_len,
                        "init": hf_dir}
            if labels is not None:
                task_cfg.update(id2label={str(i): lab for i, lab in enumerate(labels)},
                                label2id={lab: i for i, lab in enumerate(labels)})
            write_json(os.path.join(tmp, TASK_FILE), task_cfg)
        names = [CONFIG_FILE, STATE_FILE, VOCAB_FILE, TOKENIZER_FILE] + ([] if task is None else [TASK_FILE])
        write_json(os.path.join(tmp, CHECKSUMS_FILE), {n: sha256_file(os.path.join(tmp, n)) for n in names})
        if verify:
            verify_hf_import(hf_dir, cfg, state, task, num_labels, add_base_prefix(tensors, spec), spec)
    for note in notes:
        print(f"note: {note}")
    print(f"imported {hf_dir} -> {out_dir}" + (f" (fine-tuned, task {task})" if task else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.from_pytorch", description=__doc__.split("\n\n")[0])
    ap.add_argument("hf_dir", help="Hugging Face directory (config.json + weights + vocab.txt) of a registered "
                                   "architecture")
    ap.add_argument("out_dir", help="new checkpoint directory to create")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    ap.add_argument("--verify", action="store_true", help="compare logits of both models after import")
    ap.add_argument("--task", choices=list(TASKS), default=None,
                    help="task of a fine-tuned source (default: its finetuning_task, else from its class)")
    args = ap.parse_args(argv)
    return run_cli(import_hf, args.hf_dir, args.out_dir, args.overwrite, args.verify, args.task)


if __name__ == "__main__":
    raise SystemExit(main())
