"""Render the "2 fps" variant of the val split, on which the detector's long run validated.

Until the generator bug fixed in session 6 (``carla_bridge.dataset.generate.validation_scenario``
now pins the default frame rate), a dataset made with ``config/scenarios/det_train.yaml`` (2 fps)
rendered its val split at 2 fps: the same 8 val seeds and 30 frames each, but 15 s per clip
instead of 3 s, so other objects. ``scripts/det_long_run.sh``'s metrics
(``models/checkpoints/det_long_metrics.csv``, iterations 1000-5000) were validated on it, so a
model compared with that curve has to be scored on the same frames. This renders exactly that
split (the standard val split's scenario and seeds with ``fps: 2``) as the ``val`` split of
``--out``::

    python bench/val_2fps.py --out data/val_2fps
    edge-perception det-eval --onnx models/det_small.onnx --data data/val_2fps --split val
    # -> mAP50:95 0.424 / mAP50 0.674, the long run's own row at iteration 5000

The same scenes at another rate: ``--fps 30 --frames 90`` renders the val split's 8 clips over
the same 3 s at 30 Hz (720 frames), the camera rate of the VIS issue's "K = 5 at 30 Hz"
keyframe policy (bench/vis_eval.md)::

    python bench/val_2fps.py --fps 30 --frames 90 --out data/val_30hz
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/val_2fps")
    ap.add_argument("--fps", type=float, default=2.0, help="the training scenario's rate")
    ap.add_argument("--frames", type=int, default=None,
                    help="frames per val clip (default: the standard split's 30)")  # fmt: skip
    args = ap.parse_args(argv)

    from carla_bridge.dataset import generate as gen
    from carla_bridge.scenario import ScenarioConfig

    fixed = gen.validation_scenario

    def at_fps(scenario: ScenarioConfig) -> ScenarioConfig:
        return fixed(scenario).replace(fps=args.fps)

    gen.validation_scenario = at_fps  # the pre-fix behaviour, for this split only
    try:
        manifest = gen.generate_dataset(
            args.out,
            ScenarioConfig(),
            train_sequences=0,
            workers=1,
            progress=False,
            frames_per_sequence=args.frames,
        )
    finally:
        gen.validation_scenario = fixed
    print(f"wrote {args.out}: val split at {args.fps:g} fps, data_version "
          f"{manifest.get('data_version')}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
