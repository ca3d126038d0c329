#!/usr/bin/env bash
# The YOLOX-nano-class baseline on the detector's long-run schedule (issue 11, "side by side"):
# same data (data/det_train27k), batch, planned 30k-iteration flat-cosine schedule, warm-up, EMA,
# mosaic and threads as scripts/det_long_run.sh, validated every 1000 iterations on the standard
# val split, so its metrics.csv compares row by row with out/det_long/metrics.csv at equal
# iterations (and, with the `seconds` column, at equal CPU time). Lowest CPU priority, resumable.
#
#   bash scripts/yolox_long_run.sh                       # start, or resume out/yolox_long/last.pt
#   bash scripts/yolox_long_run.sh --stop-after-iters 1000
source "$(dirname "${BASH_SOURCE[0]}")/train_env.sh"
DATA=${DET_DATA:-data/det_train27k}
OUT=${YOLOX_OUT:-out/yolox_long}
ensure_data "$DATA" config/scenarios/det_train.yaml 9000 2
RESUME=()
[ -f "$OUT/last.pt" ] && RESUME=(--resume)
exec nice -n 19 python -m edge_perception.detection.train --data "$DATA" --out "$OUT" \
  --variant yolox_nano --input-size 288 480 --batch-size 8 --iters 30000 --schedule flatcos \
  --flat-frac 0.5 --warmup-iters 500 --lr 1e-3 --ema-decay 0.9995 \
  --mosaic 0.5 --mosaic-stop 0.8 --max-val-images 240 --eval-every 1000 --eval-every-iters 1000 \
  --save-every-min 10 --threads 2 --seed 0 --no-progress "${RESUME[@]}" "$@"
