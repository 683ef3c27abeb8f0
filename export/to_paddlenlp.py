"""Export one of our checkpoints as a directory PaddleNLP 2.8's MLM class of its architecture loads (RoFormer:
RoFormerForMaskedLM; the class is the ArchSpec's ``paddlenlp_pretraining_class``).

    python -m export.to_paddlenlp CKPT_DIR OUT_DIR [--verify]

Writes config.json (PaddleNLP's config of the architecture with architectures [that class]),
model_state.pdparams (our names plus the copies PaddleNLP stores of tied parameters, e.g. RoFormer's
``cls.predictions.decoder_weight`` = the word embeddings; the ArchSpec's ``paddlenlp_tied``), vocab.txt, tokenizer_config.json (BertTokenizer) and
the SOP head in sop_head.pdparams (PaddleNLP's MaskedLM has no place for it). No Paddle needed; ``--verify``
(Paddle + PaddleNLP) compares the MLM logits of PaddleNLP's model on OUT_DIR with ours (export/verify.py).
"""
import argparse
import os

from data_tools.tokenizers import hf_tokenizer_class
from ernie_style.arch.model_reader import config_fields, read_checkpoint
from ernie_style.arch import get_arch
from ernie_style.arch.state_dict_adapter import SOP_PREFIX
from ernie_style.constants import HF_CONFIG, MODEL_STATE, TOKENIZER_CONFIG, VOCAB
from ernie_style.storage.model_dir import atomic_output_dir, write_json, write_vocab
from ernie_style.storage.pdparams import save_pdparams
from export.errors import ExportError, run_cli
from export.verify import verify_paddlenlp_export

SOP_FILE = "sop_head.pdparams"


def paddlenlp_state(state: dict, spec=None) -> tuple:
    """(state for PaddleNLP's MLM class of the architecture ``spec`` (None: the default), SOP head state): the
    copies PaddleNLP stores of tied parameters added (``spec.paddlenlp_tied``)."""
    main = {k: v for k, v in state.items() if not k.startswith(SOP_PREFIX)}
    for alias, source in (spec or get_arch()).paddlenlp_tied.items():
        main[alias] = state[source]
    sop = {k: v for k, v in state.items() if k.startswith(SOP_PREFIX)}
    return main, sop


def export(ckpt_dir, out_dir, overwrite=False, verify=False) -> None:
    ckpt = read_checkpoint(ckpt_dir)
    if ckpt.note:
        print(f"note: {ckpt.note}")
    spec = ckpt.arch
    cls = spec.paddlenlp_pretraining_class
    if ckpt.task is not None:
        raise ExportError(f"{ckpt_dir}: a fine-tuned {ckpt.task} model; to_paddlenlp writes {cls} from "
                          "pretraining checkpoints (export.to_pytorch converts fine-tuned models)")
    cfg = {k: ckpt.config[k] for k in config_fields(spec)}
    cfg.update(architectures=[cls], model_type=spec.hf_model_type, pool_act="tanh")
    if ckpt.source:
        cfg["ernie_style_source"] = ckpt.source  # the checkpoint path, step and sha256 of its weights
    main, sop = paddlenlp_state(ckpt.state, spec)
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_json(os.path.join(tmp, HF_CONFIG), cfg)
        save_pdparams(os.path.join(tmp, MODEL_STATE), main)
        save_pdparams(os.path.join(tmp, SOP_FILE), sop)
        write_vocab(os.path.join(tmp, VOCAB), ckpt.vocab)
        write_json(os.path.join(tmp, TOKENIZER_CONFIG), {
            "tokenizer_class": hf_tokenizer_class(ckpt.tokenizer_kind), "do_lower_case": ckpt.do_lower_case,
            "model_max_length": ckpt.config["max_position_embeddings"],
        })
        if verify:
            verify_paddlenlp_export(ckpt, tmp, name=os.fspath(out_dir))
    print(f"exported {ckpt_dir} -> {out_dir} (PaddleNLP {cls})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.to_paddlenlp", description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt_dir", help="our checkpoint directory")
    ap.add_argument("out_dir", help="new PaddleNLP model directory to create")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    ap.add_argument("--verify", action="store_true", help="compare logits with PaddleNLP's model after export")
    args = ap.parse_args(argv)
    return run_cli(export, args.ckpt_dir, args.out_dir, args.overwrite, args.verify)


if __name__ == "__main__":
    raise SystemExit(main())
