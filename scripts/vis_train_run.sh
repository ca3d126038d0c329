#!/usr/bin/env bash
# The video instance segmentation model's training (issue 14): stages chained, each resumable
# (re-running the script continues the unfinished stage from its last.pt), at a low CPU priority.
#
#   bash scripts/vis_train_run.sh                     # all stages (export: edge-perception vis-export)
#   VIS_STAGES="image" bash scripts/vis_train_run.sh  # only some stages
#
# Data: 2000 clips of 4 frames at 10 Hz (config/scenarios/vis_train.yaml) and, for the 30 Hz
# stages, 1200 clips of 10 frames at 30 Hz (config/scenarios/vis_train30.yaml), regenerated when
# missing (deterministic in their seeds). Warm start: the detector's best checkpoint of the long run
# (out/det_long/best.pt), else the committed resume checkpoint (its EMA weights).
# Stages: image (masks on the detector), flow (flow net + fuse + non-key decoder), video (joint),
# then corrflow: a second flow stage that adds the flow net's local cost volume (radius 3,
# zero-initialised; session 8) to the video stage's model, and corrvideo: the joint stage again;
# then flow30, video30 and video30b (session 9): the flow and joint stages again on the 30 Hz
# clips (gaps of 1-9 frames at 30 Hz = 0.3-3 frames at 10 Hz: the small displacements of a
# 30 Hz camera), the joint one twice; then flow30k5 (session 10): the flow stage once more (the
# non-key modules only: flow net, fuse, propagator; the key path and so image mode unchanged) on
# 5-frame clips of consecutive 30 Hz frames, the K = 5 policy's keyframe + 4 non-keyframes, and
# flow30k5b (session 11): the same stage continued at half the learning rate, another seed.
# Iterations per stage: VIS_IMAGE_ITERS, VIS_FLOW_ITERS, VIS_VIDEO_ITERS, VIS_CORRFLOW_ITERS,
# VIS_CORRVIDEO_ITERS, VIS_FLOW30_ITERS, VIS_VIDEO30_ITERS, VIS_VIDEO30B_ITERS,
# VIS_FLOW30K5_ITERS, VIS_FLOW30K5B_ITERS (defaults: the bundled model's 2000 / 600 / 1200 / 700 /
# 600 / 800 / 600 / 400 / 1400 / 1500; it is the flow30k5b stage's last.pt).
# models/checkpoints/vis_ema.pt holds the bundled model's EMA weights (fp16): the flow30k5b
# stage's; earlier stages are not kept.
source "$(dirname "${BASH_SOURCE[0]}")/train_env.sh"
DATA=${VIS_DATA:-data/vis_train}
OUT=${VIS_OUT:-out/vis}
THREADS=${VIS_THREADS:-2}
STAGES=${VIS_STAGES:-image flow video corrflow corrvideo flow30 video30 video30b flow30k5 flow30k5b}
DATA30=${VIS_DATA30:-data/vis_train30}
DET=${VIS_DET_CHECKPOINT:-out/det_long/best.pt}
[ -f "$DET" ] || DET=models/checkpoints/det_long_last.pt
ensure_data "$DATA" config/scenarios/vis_train.yaml 2000 3
case " $STAGES " in *" flow30 "* | *" video30 "* | *" video30b "* | *" flow30k5 "* | *" flow30k5b "*)
  ensure_data "$DATA30" config/scenarios/vis_train30.yaml 1200 5 ;; esac
COMMON=(--threads "$THREADS" --batch-size 8 --save-every-min 10)
AT10=(--data "$DATA" --seed 0)  # the 10 Hz stages (a later --seed wins)
stage() {  # stage (image | flow | video), output folder name, iterations, extra arguments...
  local kind=$1 name=$2 iters=$3
  shift 3
  local out="$OUT/$name"
  local resume=()
  if [ -f "$out/last.pt" ]; then
    local done_it
    done_it=$(python -c "import torch,sys; print(torch.load(sys.argv[1], map_location='cpu', \
weights_only=False)['iteration'])" "$out/last.pt")
    [ "$done_it" -ge "$iters" ] && { echo "[vis] $name: done ($done_it iterations)"; return 0; }
    resume=(--resume)
  fi
  echo "[vis] $name: $iters iterations -> $out"
  nice -n 15 python -m edge_perception.vis.train --stage "$kind" --out "$out" --iters "$iters" \
    "${COMMON[@]}" "$@" "${resume[@]}"
}
for s in $STAGES; do
  case $s in
    image) stage image image "${VIS_IMAGE_ITERS:-2000}" "${AT10[@]}" --det-checkpoint "$DET" --lr 2e-4 \
      --warmup-iters 100 --ema-decay 0.999 --max-val-images 120 --eval-every 500 ;;
    flow) stage flow flow "${VIS_FLOW_ITERS:-600}" "${AT10[@]}" --init "$OUT/image/best.pt" --frames 2 \
      --max-gap 3 --lr 5e-4 --warmup-iters 50 --ema-decay 0.998 --max-val-images 0 ;;
    video) stage video video "${VIS_VIDEO_ITERS:-1200}" "${AT10[@]}" --init "$OUT/flow/last.pt" --frames 3 \
      --max-gap 2 --lr 1e-4 --warmup-iters 50 --ema-decay 0.998 --max-val-images 120 \
      --eval-every 500 ;;
    corrflow) stage flow flow_corr "${VIS_CORRFLOW_ITERS:-700}" "${AT10[@]}" --init "$OUT/video/last.pt" \
      --flow-corr-radius 3 --frames 2 --max-gap 3 --lr 5e-4 --warmup-iters 50 --ema-decay 0.998 \
      --max-val-images 0 --seed 1 ;;
    corrvideo) stage video video_corr "${VIS_CORRVIDEO_ITERS:-600}" "${AT10[@]}" \
      --init "$OUT/flow_corr/last.pt" --frames 3 --max-gap 2 --lr 1e-4 --warmup-iters 50 \
      --ema-decay 0.998 --max-val-images 0 --eval-every 1000 ;;
    flow30) stage flow flow30 "${VIS_FLOW30_ITERS:-800}" --data "$DATA30" \
      --init "$OUT/video_corr/last.pt" --frames 2 --max-gap 9 --lr 5e-4 --warmup-iters 50 \
      --ema-decay 0.998 --max-val-images 0 --seed 2 ;;
    video30) stage video video30 "${VIS_VIDEO30_ITERS:-600}" --data "$DATA30" \
      --init "$OUT/flow30/last.pt" --frames 3 --max-gap 4 --lr 1e-4 --warmup-iters 50 \
      --ema-decay 0.998 --max-val-images 0 --eval-every 1000 --seed 0 ;;
    video30b) stage video video30b "${VIS_VIDEO30B_ITERS:-400}" --data "$DATA30" \
      --init "$OUT/video30/last.pt" --frames 3 --max-gap 4 --lr 1e-4 --warmup-iters 20 \
      --ema-decay 0.998 --max-val-images 0 --eval-every 1000 --seed 3 ;;
    flow30k5) stage flow flow30k5 "${VIS_FLOW30K5_ITERS:-1400}" --data "$DATA30" \
      --init "$OUT/video30b/last.pt" --frames 5 --max-gap 1 --lr 2e-4 --warmup-iters 20 \
      --ema-decay 0.998 --max-val-images 0 --seed 6 --weight-feat 0.5 ;;
    flow30k5b) stage flow flow30k5b "${VIS_FLOW30K5B_ITERS:-1500}" --data "$DATA30" \
      --init "$OUT/flow30k5/last.pt" --frames 5 --max-gap 1 --lr 1e-4 --warmup-iters 20 \
      --ema-decay 0.998 --max-val-images 0 --seed 9 --weight-feat 0.5 ;;
    *) echo "[vis] unknown stage $s (image | flow | video | corrflow | corrvideo | flow30 |" \
      "video30 | video30b | flow30k5 | flow30k5b)" >&2; exit 2 ;;
  esac
done
