"""Load an exported directory the way a transformers user does and print what they would see, as JSON.

    PYTHON tests/hf_load.py REQUESTS_JSON

Run by the tests under two interpreters: the project's (transformers 4.x) and ``.venv-hf5`` (transformers 5.x),
so that nothing Paddle or ernie_style is imported here.  REQUESTS_JSON: a list of ``{"dir": HF_DIR, "texts": [...],
"ids": [[...]], "types": [[...]], "mask": [[...]], "fill": "text with [MASK]"}`` (all but ``dir`` optional); one
interpreter start serves them all.  Prints a JSON list with, per request, one object:
the transformers version, the class ``config.json``'s ``architectures`` names, the loading report, the tokenizer's
class and ids for ``texts``, the float64 logits for the batch (``start``/``end`` stacked for QA) and the fill-mask
pipeline's top tokens.
"""
import json
import sys

import numpy as np
import torch
import transformers


def main(hf_dir: str, request: dict) -> dict:
    with open(f"{hf_dir}/config.json") as f:
        arch = json.load(f)["architectures"][0]
    model, info = getattr(transformers, arch).from_pretrained(hf_dir, output_loading_info=True)
    out = {"transformers": transformers.__version__, "class": type(model).__name__,
           "loading": {k: sorted(map(str, v)) for k, v in info.items()}}
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    out["tokenizer"] = type(tok).__name__
    out["ids"] = [tok(t)["input_ids"] for t in request.get("texts", [])]
    if "ids" in request:
        model = model.double().eval()
        with torch.no_grad():
            res = model(input_ids=torch.tensor(request["ids"]), token_type_ids=torch.tensor(request["types"]),
                        attention_mask=torch.tensor(request["mask"], dtype=torch.float64))
        logits = (torch.stack([res.start_logits, res.end_logits], -1) if hasattr(res, "start_logits")
                  else res.logits)
        out["logits"] = logits.numpy().astype(np.float64).tolist()
    if "fill" in request:
        fill = transformers.pipeline("fill-mask", model=hf_dir, tokenizer=hf_dir)
        out["fill"] = [r["token_str"] for r in fill(request["fill"])]
    return out


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        requests = json.load(f)
    print(json.dumps([main(r["dir"], r) for r in requests]))
