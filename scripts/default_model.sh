#!/usr/bin/env bash
# How the bundled model (checkpoints/default/model.pt) was made, start to finish, and the
# numbers in its model card. Run inside the project's venv from the repository root:
#   scripts/default_model.sh            # ~125 minutes: 120 of training, then export and scoring
# Run it with nothing else on the machine (the config trains with two threads). The plain
# reference LSTM of the model card (alone, two threads; its card figure is from 70 minutes):
#   python benchmarks/train_throughput.py --only-reference --budget-minutes 70 --threads 2
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=data/prepared/pd1998
RUN=${RUN:-runs/default}

[ -f "$DATA/meta.json" ] || textgen prepare --out "$DATA" --no-progress
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
    rm -rf "$RUN"
    textgen train --config checkpoints/default/train.toml --data "$DATA" --out "$RUN" --no-progress
fi
textgen export --checkpoint "$RUN" --out checkpoints/default/model.pt
cp "$RUN/curves.png" docs/figures/default_curves.png
textgen baseline --data "$DATA"
for split in val test; do
    textgen eval --checkpoint "$RUN" --data "$DATA" --split "$split"
    textgen eval --checkpoint checkpoints/default/model.pt --data "$DATA" --split "$split"
done
for prompt in 中国 经济 今天 北京市; do
    for t in 0.5 1.0; do
        echo "== prompt $prompt, temperature $t"
        textgen generate --checkpoint checkpoints/default/model.pt --prompt "$prompt" \
            --max-new-tokens 60 --temperature "$t" --top-k 40 --seed 1
        echo
    done
done
