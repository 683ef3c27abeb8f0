"""Made tests/golden/legacy_checkpoint/ with the code of main a91a98d (before issue 19), run from a checkout of it:
    cd MAIN_CHECKOUT && PYTHONPATH=$PWD python tests/golden/legacy_checkpoint/generate.py /tmp/phases_legacy
then step_00000002 copied here and the printed losses written to losses.json."""
import os, sys, json
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
import _trainer_util as U
from ernie_style import run_pretrain
root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/phases_legacy"
prefix, vocab = U.make_data(os.path.join(root, "data"))
out = os.path.join(root, "out")
over = U.tiny_overrides(prefix, vocab, out, **{
    "model.hidden_size": 16, "model.num_hidden_layers": 1, "model.num_attention_heads": 2,
    "model.intermediate_size": 32, "model.max_position_embeddings": 64,
    "model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1,
    "train.max_steps": 4, "train.save_steps": 2, "train.keep_checkpoints": 5})
assert run_pretrain.main(["--config", "configs/roformer_tiny_demo.yaml", *over]) == 0
print(json.dumps(U.log_losses(os.path.join(out, "train.log"))))
