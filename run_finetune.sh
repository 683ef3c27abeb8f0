#!/usr/bin/env bash
# Launch fine-tuning (python -m ernie_style.finetune) with the launcher rules of run_pretrain.sh.
#
#   ./run_finetune.sh [--check-cluster] CONFIG [section.key=value ...]
#
# GPUs present: one process per GPU in ${GPUS:-0,1,2,3}; no GPU: ${NPROC:-2} CPU processes (gloo); several
# machines: IPS=... or NNODES=N MASTER=host:port (joining at MASTER, --check-cluster: see run_pretrain.sh; the
# data files and the init are compared by content).  Config, init directory and data files are checked once for
# the real number of ranks before any process starts (one error line, exit 2).  Per-rank logs go to OUTPUT/log.
# Stopping as with run_pretrain.sh: Ctrl-C/SIGTERM/SIGHUP save a checkpoint (the same command resumes); however
# else this script ends, every process it started ends with it.
# Example, a CLUE JSONL task on 2 GPUs from our pretraining run:
#   GPUS=0,1 ./run_finetune.sh configs/finetune/seq_cls.yaml model.init=output/roformer_base/checkpoints/latest \
#       data.train_file=tnews/train.json data.dev_file=tnews/dev.json train.output_dir=output/ft_tnews
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ERNIE_ENTRY=ernie_style.finetune ERNIE_LAUNCHER="$0" exec bash "$HERE/run_pretrain.sh" "$@"
