#!/usr/bin/env bash
# The detector's long training run (issue 11): one planned schedule over many sessions, resumable
# exactly, at the lowest CPU priority so that other work (and benchmarks, which pause it with
# `kill -STOP` / `kill -CONT`) comes first.
#
#   bash scripts/det_long_run.sh                 # start, or resume from out/det_long/last.pt
#   bash scripts/det_long_run.sh --max-minutes 120
#
# On a new machine with only the repository, the data set is regenerated (deterministic in its
# seed: the same frames) and the run resumes from the compact checkpoint committed under
# models/checkpoints/ (weights and EMA in fp32, Adam moments in bfloat16: the continuation is
# exact up to the moments' rounding). Extra arguments go to det-train.
source "$(dirname "${BASH_SOURCE[0]}")/train_env.sh"
DATA=${DET_DATA:-data/det_train27k}
OUT=${DET_OUT:-out/det_long}
ensure_data "$DATA" config/scenarios/det_train.yaml 9000 2
if [ ! -f "$OUT/last.pt" ] && [ -f models/checkpoints/det_long_last.pt ]; then
  mkdir -p "$OUT"
  python -m edge_perception.detection.checkpoint expand models/checkpoints/det_long_last.pt \
    "$OUT/last.pt"
  cp models/checkpoints/det_long_metrics.csv "$OUT/metrics.csv"
fi
RESUME=()
[ -f "$OUT/last.pt" ] && RESUME=(--resume)
exec nice -n 19 python -m edge_perception.detection.train --data "$DATA" --out "$OUT" \
  --variant small --input-size 288 480 --batch-size 8 --iters 30000 --schedule flatcos \
  --flat-frac 0.5 --warmup-iters 500 --lr 1e-3 --ema-decay 0.9995 --dense-o2m --cls-loss mal \
  --mosaic 0.5 --mosaic-stop 0.8 --max-val-images 240 --eval-every 1000 --eval-every-iters 1000 \
  --save-every-min 10 --threads 2 --seed 0 --no-progress "${RESUME[@]}" "$@"
