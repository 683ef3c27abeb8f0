"""Export one of our checkpoints to a Hugging Face directory of its architecture's MLM class (RoFormer:
``RoFormerForMaskedLM``), or a fine-tuned model directory to the task's class (``<Arch>ForSequenceClassification``
/ ``...ForTokenClassification`` / ``...ForQuestionAnswering``); the class names come from the ArchSpec.

    python -m export.to_pytorch CKPT_OR_MODEL_DIR OUT_DIR [--dtype float32|float16|bfloat16] [--verify]

A fine-tuning run's output directory stands for its best_model/ (the note printed says so).

Writes config.json, model.safetensors, pretraining_heads.safetensors (pooler + SOP head; only the
pooler for a fine-tuned model), vocab.txt, tokenizer_config.json (the tokenizer kind's class:
BertTokenizer for character-level models, RoFormerTokenizer for word-level ones, which also get a README.md
model card saying what loading them needs) and special_tokens_map.json. A fine-tuned model's config.json also carries
id2label/label2id and ``finetuning_task``. Needs numpy only; ``--verify`` also needs torch +
transformers and Paddle, and compares the logits of both models (MLM logits, or the task's logits;
see export/verify.py). See docs/export.md.
"""
import argparse
import os

from data_tools.tokenizers import DEFAULT_KIND, hf_model_card, hf_tokenizer_class, hf_tokenizer_config
from data_tools.vocab import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, UNK_TOKEN
from ernie_style.arch import get_arch
from ernie_style.arch.model_reader import Checkpoint, config_fields, read_checkpoint
from ernie_style.arch.spec import resolve
from ernie_style.arch.state_dict_adapter import SIDE_FILE, ours_to_hf
from ernie_style.constants import HF_CONFIG, MODEL_CONFIG, TOKENIZER_CONFIG, VOCAB
from ernie_style.storage.model_dir import atomic_output_dir, write_json, write_vocab
from ernie_style.storage.safetensors_io import DTYPES, write_safetensors
from export.errors import ExportError, run_cli
from export.verify import verify_hf_export

SPECIAL_TOKENS_MAP = {
    "unk_token": UNK_TOKEN, "sep_token": SEP_TOKEN, "pad_token": PAD_TOKEN, "cls_token": CLS_TOKEN, "mask_token": MASK_TOKEN,
}


def hf_config(config: dict, dtype: str, where: str = MODEL_CONFIG, task=None, labels=None,
              tokenizer_kind: str = DEFAULT_KIND, spec=None) -> dict:
    """transformers' config.json for our ``config`` (of the architecture ``spec``, None = the default); with
    ``task`` (and ``labels``, id order) the task model's."""
    spec = spec or get_arch()
    out = resolve(spec.hf_config_out)({k: config[k] for k in config_fields(spec)}, where)
    out.update(
        architectures=[spec.hf_class()],
        model_type=spec.hf_model_type,
        tokenizer_class=hf_tokenizer_class(tokenizer_kind),
        dtype=dtype,  # transformers >= 4.56 and 5.x read `dtype` (older: `torch_dtype`, now deprecated)
    )
    if task is not None:
        out.update(architectures=[spec.hf_class(task)], finetuning_task=task)
        if labels is not None:  # qa: the class fixes num_labels = 2 (start, end) itself
            out.update(id2label={str(i): label for i, label in enumerate(labels)},
                       label2id={label: i for i, label in enumerate(labels)})
        if task in ("seq_cls", "pair_cls"):
            out["problem_type"] = "single_label_classification"  # cross-entropy in the HF class, as in ours
    return out


def tokenizer_config(ckpt: Checkpoint) -> dict:
    return {
        # the kind's class and options (data_tools.tokenizers): BertTokenizer for character-level models, which
        # AutoTokenizer would otherwise build as RoFormerTokenizer (jieba words)
        **hf_tokenizer_config(ckpt.tokenizer_kind, ckpt.do_lower_case),
        # A fine-tuned model truncates where it was trained to.
        "model_max_length": ckpt.max_seq_len or ckpt.config["max_position_embeddings"],
        **SPECIAL_TOKENS_MAP,
    }


def write_hf_dir(ckpt: Checkpoint, out: str, dtype: str = "float32") -> None:
    """Write the Hugging Face files for ``ckpt`` into the (existing, empty) directory ``out``."""
    cfg, spec = ckpt.config, ckpt.arch
    main, side = ours_to_hf(ckpt.state, spec, ckpt.task)
    main.update(resolve(spec.hf_derived).hf_tensors(cfg))  # computed by the architecture, loaded by transformers
    config = hf_config(cfg, dtype, os.path.join(ckpt.path, MODEL_CONFIG), ckpt.task, ckpt.labels,
                       ckpt.tokenizer_kind, spec)
    if ckpt.source:  # which checkpoint this is (transformers keeps unknown config keys as attributes)
        config["ernie_style_source"] = ckpt.source
    write_json(os.path.join(out, HF_CONFIG), config)
    write_safetensors(os.path.join(out, "model.safetensors"), main, dtype, metadata={"format": "pt"})
    contents = "pooler" if ckpt.task else "pooler and sentence-order-prediction head"
    write_safetensors(os.path.join(out, SIDE_FILE), side, dtype, metadata={
        "format": "pt", "contents": f"{contents}, not part of {config['architectures'][0]}; see docs/export.md",
    })
    write_vocab(os.path.join(out, VOCAB), ckpt.vocab)
    write_json(os.path.join(out, TOKENIZER_CONFIG), tokenizer_config(ckpt))
    write_json(os.path.join(out, "special_tokens_map.json"), SPECIAL_TOKENS_MAP)
    card = hf_model_card(ckpt.tokenizer_kind)
    if card:  # what a user must know to load this kind's tokenizer (e.g. a package transformers needs)
        with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
            f.write(card)


def export(ckpt_dir, out_dir, dtype="float32", verify=False, overwrite=False) -> None:
    """Convert ``ckpt_dir`` to a Hugging Face dir at ``out_dir`` (created atomically)."""
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    ckpt = read_checkpoint(ckpt_dir)
    if ckpt.note:
        print(f"note: {ckpt.note}")
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_hf_dir(ckpt, tmp, dtype)
        if verify:
            verify_hf_export(ckpt, tmp, dtype, name=os.fspath(out_dir))
    what = f", {ckpt.arch.hf_class(ckpt.task)} for {ckpt.task}" if ckpt.task else ""
    print(f"exported {ckpt_dir} -> {out_dir} ({dtype}{what})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.to_pytorch", description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt_dir", help="our checkpoint directory (model_config.json, model_state.pdparams, vocab.txt), "
                                     "or a fine-tuned model directory (those + config.json with the task), or a "
                                     "fine-tuning run's output directory (its best_model/ is exported)")
    ap.add_argument("out_dir", help="new Hugging Face directory to create")
    ap.add_argument("--dtype", default="float32", choices=DTYPES, help="dtype of the written weights")
    ap.add_argument("--verify", action="store_true", help="compare logits with the Paddle model after export")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    args = ap.parse_args(argv)
    return run_cli(export, args.ckpt_dir, args.out_dir, args.dtype, args.verify, args.overwrite)


if __name__ == "__main__":
    raise SystemExit(main())
