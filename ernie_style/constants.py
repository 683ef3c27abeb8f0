"""Names and numbers shared across the package, each defined once (no paddle import).

- ``IGNORE_INDEX``: a label equal to it is no item of any loss term or metric (masked LM positions that are
  not masked, samples without SOP, NER sub-tokens, unlabelled examples).
- The file names of a checkpoint / model directory (layout in :mod:`ernie_style.training.checkpoint`, read by ``export``).
- The special tokens of a BERT-style vocab are defined by their one reader, :mod:`data_tools.vocab`, and
  re-exported here.
"""
from data_tools.vocab import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, SPECIAL_TOKENS, UNK_TOKEN  # noqa: F401

IGNORE_INDEX = -100

# A checkpoint dir (OUTPUT/checkpoints/step_XXXXXXXX/) and a model dir share these names.
MODEL_CONFIG = "model_config.json"  # the architecture's config dataclass as JSON
MODEL_STATE = "model_state.pdparams"  # paddle.save of the model's state dict
VOCAB = "vocab.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"  # {"do_lower_case": bool}
CHECKSUMS = "checksums.json"  # {file name: sha256} of every other file, written last
TRAINER_STATE = "trainer_state.json"  # checkpoints only
OPTIMIZER_STATE = "optimizer.pdopt"  # checkpoints only; per rank when sharded: optimizer.rank{R}.pdopt
TASK_CONFIG = "config.json"  # fine-tuned model dirs only: task, label maps, ...
HF_CONFIG = "config.json"  # a Hugging Face (or PaddleNLP) model dir's config (the same name, another format)
LATEST = "latest"  # OUTPUT/checkpoints/latest -> the newest complete step dir
READERS_LOCK = ".readers.lock"  # OUTPUT/checkpoints/.readers.lock: held shared by exports while they read
# A fine-tuning run's output dir (ernie_style.tasks.finetuning; export takes BEST_MODEL for the run).
BEST_MODEL = "best_model"  # OUTPUT/best_model: the best-on-dev fine-tuned model dir
FINETUNE_RESULTS = "results.json"  # OUTPUT/results.json: dev/test metrics and best_step, written at the end
