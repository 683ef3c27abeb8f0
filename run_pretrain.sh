#!/usr/bin/env bash
# Launch RoFormer WWM+SOP pretraining.
#
#   ./run_pretrain.sh [--check-cluster] CONFIG [section.key=value ...]
#
# GPUs present (nvidia-smi / paddle sees CUDA devices): one process per GPU in ${GPUS:-0,1,2,3}.
# No GPU: ${NPROC:-2} CPU processes (gloo).
# Several machines: run the same command on every machine with IPS=host1,host2 (this machine's address
# among them), or NNODES=N MASTER=host:port (one launcher per machine, the same MASTER everywhere).  The machines
# join at MASTER first (ernie_style/training/rendezvous.py): a waiting line every 30 s, a stop after
# dist.join_timeout_minutes (JOIN_TIMEOUT_MINUTES=N replaces it), and a stop naming the keys when a machine's
# config, data or vocab differs from machine 0's.
# --check-cluster: the same launch, training nothing: every machine prints a table of the ranks (host, device,
# data and vocab as rank 0's, output dir shared), the all-reduce bandwidth between machines and the NCCL/gloo
# network settings; exit 0 when the real command would start, 1 naming each problem
# (ernie_style/training/cluster_check.py).
# Per-rank logs go to ${LOG_DIR:-OUTPUT/log} (multi-node: OUTPUT/log/HOSTNAME), OUTPUT = train.output_dir
# of the config + overrides.  The output dir must be on a filesystem shared by all machines.
# Stopping: Ctrl-C, SIGTERM or SIGHUP (a closed terminal) -> the ranks finish their step and save a checkpoint
# together; exit 130 / 143 / 129 naming it.  However else this script ends (kill -9 of it or of its process
# group, timeout -s KILL), the launcher, the ranks and their DataLoader workers end with it.
# Example, the reference recipe on 4 GPUs:
#   GPUS=0,1,2,3 ./run_pretrain.sh configs/roformer_base_wwm_cluecorpussmall.yaml \
#       data.prefixes=[/data/clue/clue_corpus] data.vocab_file=/data/clue/vocab.txt
set -euo pipefail

CHECK_CLUSTER=""
if [ "${1:-}" = "--check-cluster" ]; then
    CHECK_CLUSTER=1
    shift
fi
if [ $# -lt 1 ]; then
    echo "usage: ${ERNIE_LAUNCHER:-$0} [--check-cluster] CONFIG [section.key=value ...]" >&2
    exit 2
fi
CONFIG="$1"
shift
PYTHON="${PYTHON:-python}"
# The module each rank runs (run_finetune.sh runs ernie_style.finetune through this same launcher).
ENTRY="${ERNIE_ENTRY:-ernie_style.run_pretrain}"

has_gpu() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && return 0
    "$PYTHON" -c "import paddle,sys; sys.exit(0 if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else 1)" 2>/dev/null
}

# The number of ranks the launch will have: processes per machine x machines.
if has_gpu; then
    DEVICES=(--gpus "${GPUS:-0,1,2,3}")
    IFS=, read -ra _gpus <<< "${GPUS:-0,1,2,3}"
    PER_NODE=${#_gpus[@]}
else
    DEVICES=(--nproc_per_node "${NPROC:-2}")
    PER_NODE="${NPROC:-2}"
fi
if [ -n "${IPS:-}" ]; then
    IFS=, read -ra _ips <<< "$IPS"
    N_NODES=${#_ips[@]}
else
    N_NODES="${NNODES:-1}"
    N_NODES="${N_NODES%%:*}"  # elastic "min:max": the smallest job must fit
fi
if ! [[ "$PER_NODE" =~ ^[1-9][0-9]*$ && "$N_NODES" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: NPROC/GPUS/NNODES/IPS give ${PER_NODE} process(es) per machine x ${N_NODES} machine(s) (expected positive integers)" >&2
    exit 2
fi

# What this script starts dies with it, however the script ends (kill -9 of it or of its process group,
# timeout -s KILL, ...): the check and the launcher are exec'ed by ernie_style.training.parent_death, which first asks Linux
# to SIGKILL them when this script is gone; the ranks die with the launcher, their DataLoader workers with them.
PARENT_DEATH=("$PYTHON" -m ernie_style.training.parent_death $$)

# Scratch files of this launch: the machine index from the rendezvous, the cluster check's verdict, the count of
# rank-0 lines passed on.
JOINED=$(mktemp)
RESULT=$(mktemp)
ECHOED=$(mktemp)
FAILED=$(mktemp)
EXITS=$(mktemp -d)  # each rank's exit: code, time, log (ernie_style/training/rank_exit.py)
trap 'rm -f "$JOINED" "$RESULT" "$ECHOED" "$FAILED"; rm -rf "$EXITS"' EXIT

# Several machines (NNODES=N with MASTER, or IPS): after its own check, every machine joins the others at MASTER
# (ernie_style.training.rendezvous): a line every 30 s while machines are missing, one error line after
# dist.join_timeout_minutes (or JOIN_TIMEOUT_MINUTES), and the jobs compared with machine 0's before any process
# starts; the machine's index becomes its --rank for the launcher.
JOIN=()
if [ "$N_NODES" -gt 1 ] && [ -n "${IPS:-}${MASTER:-}" ] && [[ "${NNODES:-}" != *:* ]]; then
    JOIN=(--join --join-result "$JOINED")
fi
MODE=()
if [ -n "$CHECK_CLUSTER" ]; then
    MODE=(--check-cluster)
fi

# Validate config, data and batch sizes once, for the real number of ranks, before any process starts
# (exit 2 with one message).
"${PARENT_DEATH[@]}" "$PYTHON" -m "$ENTRY" --config "$CONFIG" --check --world-size $((PER_NODE * N_NODES)) \
    ${JOIN[@]+"${JOIN[@]}"} ${MODE[@]+"${MODE[@]}"} "$@" || exit $?
OUTPUT="$("$PYTHON" -m "$ENTRY" --config "$CONFIG" --print-output-dir "$@")"
if [ -n "${IPS:-}${NNODES:-}" ]; then
    LOG_DIR="${LOG_DIR:-$OUTPUT/log/$(hostname)}"
else
    LOG_DIR="${LOG_DIR:-$OUTPUT/log}"
fi
mkdir -p "$LOG_DIR"

# Paddle's import-time "No ccache found" warning (the launcher imports paddle before any of our code runs).
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:No ccache found"
LAUNCH=("$PYTHON" -m paddle.distributed.launch --log_dir "$LOG_DIR" "${DEVICES[@]}")
if [ -n "${IPS:-}" ]; then
    LAUNCH+=(--ips "$IPS")
elif [ -n "${NNODES:-}" ]; then
    LAUNCH+=(--nnodes "$NNODES")
    if [ -n "${MASTER:-}" ]; then
        LAUNCH+=(--master "$MASTER")
    fi
    if [ ${#JOIN[@]} -gt 0 ]; then
        LAUNCH+=(--rank "$(cat "$JOINED")")  # the machine's index from the rendezvous: ranks in that order
    fi
fi

# The terminal shows our lines and real errors; the launcher's banner and flag dump, glog INFO lines and the INFO
# lines of Python loggers in Paddle's format (fleet's topology, the sample index being built) are dropped from it
# (VERBOSE=1 shows everything). The per-rank logs in LOG_DIR stay complete.
NOISE='^LAUNCH INFO |^=+ Modified FLAGS detected =+$|^FLAGS\(name=|^=+$'
NOISE+='|^I[0-9]{4} [0-9:.]+ +[0-9]+ [a-z_]+\.(cc|h):[0-9]+\] '
NOISE+='|^\[[0-9-]+ [0-9:,]+\] \[ +INFO\] [A-Za-z_0-9]+\.py:[0-9]+ - '  # every INFO line in Paddle's log format
if [ "${VERBOSE:-0}" = 1 ]; then
    NOISE='^$^'
fi
# The launcher's stdout is rank 0's log (LOG0), passed on line by line while the job runs, and nothing else but
# the command a multi-node master prints for the other machines (LAUNCHER_OWN). When the launcher is told to stop,
# it stops passing lines on: the ranks' last lines (their last step, the checkpoint) are then in LOG0 only, after
# the ones it passed on (counted into ECHOED).
LOG0="$LOG_DIR/workerlog.0"
LOG0_START=$(stat -c %s "$LOG0" 2>/dev/null || echo 0)
LAUNCHER_OWN='^Copy the following command to other nodes to run\.$|^-{80}$| -m paddle\.distributed\.launch --master '
pass_on() {
    local n=0 line
    while IFS= read -r line || [ -n "$line" ]; do
        [[ $line =~ $LAUNCHER_OWN ]] || n=$((n + 1))
        [[ $line =~ $NOISE ]] || printf '%s\n' "$line" || true  # (a closed terminal: keep counting)
    done
    echo "$n" > "$ECHOED"
}
# A rank that fails: the launcher says so in a LAUNCH ERROR block on stderr (with the rank's whole command line),
# then prints the end of the rank's log on stdout and stops the others. The block is left out; one line at the end
# names the rank that failed first, its exit code and its log. The launcher's choice (FAILED) is the first failed
# rank in rank order at its once-a-second look, which may be one whose collective broke because another rank died;
# so every rank runs under ernie_style.training.rank_exit, which records when it ended (EXITS), and the line names
# the earliest failure recorded.
FAILED_RANK='^Container rank ([0-9]+) status failed cmd .* code (-?[0-9]+) log (.*)$'
launcher_errors() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line =~ $FAILED_RANK ]]; then
            printf '%s %s %s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" > "$FAILED"
        elif ! [[ $line =~ ^LAUNCH\ ERROR\ .*Container\ failed || $line =~ $NOISE ]]; then
            printf '%s\n' "$line" >&2 || true
        fi
    done
}
# Filters ignore SIGINT/SIGTERM/SIGHUP: they pass lines on until the launcher's output ends.
exec {OUT}> >(trap '' INT TERM HUP; pass_on)
FILTER_OUT=$!
exec {ERR}> >(trap '' INT TERM HUP; launcher_errors)
FILTER_ERR=$!

# Ctrl-C / SIGTERM / SIGHUP (a closed terminal or ssh session): the launcher runs in its own process group
# (set -m), so a terminal's Ctrl-C reaches this script only, which passes the first signal on (SIGHUP as SIGTERM:
# it would kill the launcher outright). The launcher asks each rank to stop (SIGTERM); the ranks finish the current
# step, save a checkpoint together and exit; this script shows their last lines and exits 130 (SIGINT), 143
# (SIGTERM) or 129 (SIGHUP) with one line naming the checkpoint. Ctrl-\ (SIGQUIT) ends this script at once, and
# with it the job, without a checkpoint.
LOG_START=$(stat -c %s "$OUTPUT/train.log" 2>/dev/null || echo 0)
SIGNAL=""
set -m
# paddle.distributed.launch runs a *.py path with python, anything else as an executable: hand it the
# interpreter and `-m $ENTRY` so the installed package (not a file path) is used.
if [ -n "$CHECK_CLUSTER" ]; then
    MODE+=(--check-cluster-result "$RESULT")
fi
"${PARENT_DEATH[@]}" "${LAUNCH[@]}" "$(command -v "$PYTHON")" -m ernie_style.training.rank_exit "$EXITS" \
    "$(command -v "$PYTHON")" -m "$ENTRY" --config "$CONFIG" ${MODE[@]+"${MODE[@]}"} "$@" >&$OUT 2>&$ERR &
LAUNCHER=$!
set +m
on_signal() {
    if [ -n "$SIGNAL" ]; then
        echo "stopping already: the ranks are saving a checkpoint (Ctrl-\\ abandons it)" >&2
        return 0  # (a bare return would give the status of the interrupted wait, and set -e would exit)
    fi
    SIGNAL=$1
    echo "SIG$1 received: finishing the current step, then saving a checkpoint" >&2
    kill -"${1/HUP/TERM}" "$LAUNCHER" 2>/dev/null || true
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP
while :; do
    rc=0
    wait "$LAUNCHER" 2>/dev/null || rc=$?  # (no job-control "Killed" dump; said in one line below)
    kill -0 "$LAUNCHER" 2>/dev/null || break  # wait returned for a trapped signal: the launcher is still stopping
done
trap - INT TERM HUP
exec {OUT}>&- {ERR}>&-
wait "$FILTER_OUT" "$FILTER_ERR" 2>/dev/null || true
if [ -n "$SIGNAL" ]; then
    # rank 0's lines after those passed on, without the ones said here (in this script's words)
    tail -c +$((LOG0_START + 1)) "$LOG0" 2>/dev/null | tail -n +$(($(cat "$ECHOED" 2>/dev/null || echo 0) + 1)) \
        | grep -v -E "$NOISE|^SIG[A-Z]+ received: |^interrupted \(SIG[A-Z]+\) at step " || true
    line=$(tail -c +$((LOG_START + 1)) "$OUTPUT/train.log" 2>/dev/null | grep '^interrupted (' | tail -n 1 || true)
    if [ -n "$line" ]; then
        echo "$line" | sed -E "s/^interrupted \(SIG[A-Z]+\)/interrupted by SIG$SIGNAL/" >&2
    else
        latest=$(readlink -f "$OUTPUT/checkpoints/latest" 2>/dev/null || true)
        echo "interrupted by SIG$SIGNAL before a checkpoint of this run was saved; newest checkpoint: ${latest:-none}" >&2
    fi
    case "$SIGNAL" in INT) exit 130 ;; HUP) exit 129 ;; *) exit 143 ;; esac
fi
if [ -n "$CHECK_CLUSTER" ] && [ "$rc" = 0 ]; then
    # the ranks exit 0 (a failing rank would bring the launcher's error dump); rank 0 of this machine wrote the
    # verdict of the table it printed
    verdict=$(cat "$RESULT")
    if [ -z "$verdict" ]; then
        echo "error: the cluster check ended without a verdict; see the per-rank logs in $LOG_DIR" >&2
        exit 1
    fi
    exit "$verdict"
fi
if [ "$rc" != 0 ] && [ -s "$FAILED" ]; then
    read -r l_rank f_code f_log < "$FAILED"
    f_rank=$l_rank
    first=$("$PYTHON" -m ernie_style.training.rank_exit --first "$EXITS" 2>/dev/null || true)
    if [ -n "$first" ]; then
        read -r f_rank f_code r_log <<< "$first"
        f_log="${r_log:-$LOG_DIR}"
    fi
    if [ "$f_rank" != "$l_rank" ] && [ -f "$f_log" ]; then
        # the launcher showed the end of the log of a rank that failed after it: show this one's
        echo "rank $l_rank failed after rank $f_rank; the last lines of rank $f_rank's log:" >&2
        tail -n 20 "$f_log" | grep -v -E "$NOISE" >&2 || true
    fi
    echo "error: rank $f_rank failed (exit code $f_code); the lines above end with the last lines of its log" \
         "$f_log; the launcher stopped the other ranks" >&2
fi
if [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then
    latest=$(readlink -f "$OUTPUT/checkpoints/latest" 2>/dev/null || true)
    echo "error: the launcher was killed (signal $((rc - 128))); its ranks and their DataLoader workers end with it;" \
         "newest checkpoint: ${latest:-none}" >&2
fi
exit "$rc"
