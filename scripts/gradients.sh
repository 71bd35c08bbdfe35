#!/usr/bin/env bash
# The runs and figures behind docs/gradients.md: vanishing and exploding gradients in a plain
# RNN, LSTMs with forget-gate bias 0 and 1, and a GRU, and what clipping does.
#
# usage (inside the project's venv, from anywhere):
#   scripts/gradients.sh                            # ~25 minutes of CPU: 7 runs of MINUTES each
#   MINUTES=0.2 OUT=/tmp/gradtest scripts/gradients.sh   # a quick end-to-end check
#
# settings (environment variables):
#   MINUTES  training budget of every run, in minutes (default 3)
#   OUT      root for runs/gradients/ and docs/figures/gradients/ (default: the repository)
#   DATA     prepared corpus (default data/prepared/pd1998; prepared first if missing)
#   HOT_LR   the deliberately unstable plain-SGD learning rate of the plain RNN (default 5)
#   THREADS  torch CPU threads for training and diagnosis (default 0: torch's default)
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${MINUTES:-3}
OUT=${OUT:-.}
DATA=${DATA:-data/prepared/pd1998}
HOT_LR=${HOT_LR:-5}
THREADS=${THREADS:-0}
RUNS=$OUT/runs/gradients
FIGS=$OUT/docs/figures/gradients

# Same sizes and the same time budget for every run; --max-steps is out of reach on purpose,
# so the clock ends each run (and the cosine schedule decays over the minutes).
SIZES=(--embed-dim 128 --hidden-size 256 --layers 2 --softmax adaptive)
COMMON=("${SIZES[@]}" --batch-size 32 --seq-len 128 --max-minutes "$MINUTES"
        --max-steps 1000000 --seed 1234 --threads "$THREADS" --no-progress)

train() {  # train NAME FLAGS...: a fresh run folder (metrics.jsonl is appended to otherwise)
    local name=$1
    shift
    rm -rf "${RUNS:?}/$name"
    echo "== $name: textgen train --data $DATA --out $RUNS/$name ${COMMON[*]} $*"
    textgen train --data "$DATA" --out "$RUNS/$name" "${COMMON[@]}" "$@"
}

train_may_blow_up() {  # the same, but a run stopped by non-finite steps (exit 1) is a result
    local code=0
    train "$@" || code=$?
    if [ "$code" -eq 1 ]; then
        echo "== $1 stopped on non-finite loss or gradients (exit 1): kept for the plots"
    elif [ "$code" -ne 0 ]; then
        exit "$code"
    fi
}

if [ ! -f "$DATA/meta.json" ]; then
    textgen prepare --out "$DATA" --no-progress
fi
mkdir -p "$RUNS" "$FIGS/fresh" "$FIGS/trained" "$FIGS/clipping"

# 1. The four cells, trained the same way (clipping at 1.0, the default learning rate).
train rnn --cell rnn --clip 1.0
train lstm_fb0 --cell lstm --forget-bias 0 --clip 1.0
train lstm_fb1 --cell lstm --forget-bias 1 --clip 1.0
train gru --cell gru --clip 1.0

# 2. Clipping: a plain RNN trained with plain SGD at a learning rate that is too high, with
#    and without clipping (AdamW normalises step sizes, which hides explosions: plain SGD
#    steps in proportion to the gradient), and the LSTM without clipping at the normal
#    learning rate (lstm_fb1 is the clipped one).
HOT=(--cell rnn --optimizer sgd --warmup-steps 20 --lr "$HOT_LR")
train_may_blow_up rnn_hot_clip "${HOT[@]}" --clip 1.0
train_may_blow_up rnn_hot_noclip "${HOT[@]}" --clip 0
train_may_blow_up lstm_noclip --cell lstm --forget-bias 1 --clip 0

# 3. Gradient norms through time on the validation text, and the training logs' health.
textgen diagnose --fresh rnn,lstm,gru --forget-bias 0,1 "${SIZES[@]}" --data "$DATA" \
    --threads "$THREADS" --out "$FIGS/fresh" | tee "$FIGS/fresh/summary.txt"
textgen diagnose --checkpoint "$RUNS/rnn" "$RUNS/lstm_fb0" "$RUNS/lstm_fb1" "$RUNS/gru" \
    --runs "$RUNS/rnn" "$RUNS/lstm_fb0" "$RUNS/lstm_fb1" "$RUNS/gru" --data "$DATA" \
    --threads "$THREADS" --out "$FIGS/trained" | tee "$FIGS/trained/summary.txt"
textgen diagnose --runs "$RUNS/rnn_hot_clip" "$RUNS/rnn_hot_noclip" "$RUNS/lstm_fb1" \
    "$RUNS/lstm_noclip" --threads "$THREADS" --out "$FIGS/clipping" |
    tee "$FIGS/clipping/summary.txt"

{
    echo "made by: MINUTES=$MINUTES HOT_LR=$HOT_LR DATA=$DATA scripts/gradients.sh"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
} > "$FIGS/provenance.txt"
echo "figures in $FIGS: fresh/, trained/, clipping/ (gradients.png, training_health.png)"
