#!/usr/bin/env bash
# Rebuild the shipped reference policy model/reference/pick-place-v3 from scratch (CPU, about 15 min):
# 150 scripted-expert episodes on data seeds 0..149, behaviour cloning of preset "small" (state encoder),
# closed-loop evaluation on 50 unseen random layouts (seeds 10000..10049) with the recurrent step form.
# Usage: scripts/reference.sh [OUT_DIR]   (default: model/reference/pick-place-v3)
set -euo pipefail
cd "$(dirname "$0")/.."
LRAM=${LRAM:-.venv/bin/lram}
OUT=${1:-model/reference/pick-place-v3}
WORK=${WORK:-$(mktemp -d)}
ENV_ID=metaworld:pick-place-v3

"$LRAM" collect --env "$ENV_ID" --episodes 150 --seed0 0 --out "$WORK/data"
# One torch thread: deterministic and much faster than oversubscribed threads on a shared 2-core machine.
"$LRAM" train --data "$WORK/data" --preset small -o "$OUT" --steps 1200 --batch-size 16 --lr 3e-3 --seed 0 --threads 1
"$LRAM" evaluate "$OUT" --episodes 50 --seed0 10000 --out "$WORK/eval.json"
echo "evaluation written to $WORK/eval.json"
