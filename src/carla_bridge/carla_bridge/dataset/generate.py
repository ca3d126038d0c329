"""``generate_dataset``: render train/val splits with N worker processes, write the manifest."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from typing import Any, Dict, List, Optional

import cv2
import numpy as np
from tqdm import tqdm

from carla_bridge import __version__
from carla_bridge.classes import LANE_CLASSES, LANE_PALETTE, OBJECT_CLASSES
from carla_bridge.dataset.io import atomic_write_json, remove_stale_temp
from carla_bridge.dataset.writer import (
    FORMAT_VERSION,
    SplitSpec,
    _merge_split,
    _part_path,
    _seq_name,
    ignore_thresholds,
    render_sequence,
    train_split,
)
from carla_bridge.scenario import CameraConfig, ScenarioConfig


def validation_scenario(scenario: ScenarioConfig) -> ScenarioConfig:
    """The fixed scenario of the validation split: default traffic, weather, camera and frame
    rate; only the sensor's image size, the backend and the CARLA connection come from
    ``scenario``.

    This keeps the validation data the same whatever training scenario a dataset is made with.
    The frame rate is the default's too: a training scenario that strides time (det_train.yaml,
    2 fps) once made a "standard" val split of 30 frames over 15 s instead of 3 s, with other
    objects (1872 instead of 2449), on which every detector figure differed.
    """
    cam = CameraConfig(width=scenario.camera.width, height=scenario.camera.height)
    return ScenarioConfig(
        backend=scenario.backend,
        town=scenario.town,
        carla=scenario.carla,
        camera=cam,
    )


def plan_splits(
    seed: int,
    train_sequences: int,
    val_sequences: Optional[int],
    frames_per_sequence: Optional[int],
    scenario_frames: int = 30,
) -> List[SplitSpec]:
    """The train split of ``seed`` and the validation split (standard unless overridden).

    Without ``frames_per_sequence`` train sequences have the scenario's ``frames`` and validation
    sequences ``VALIDATION_SPLIT.frames_per_sequence``.
    """
    from carla_bridge.dataset import VALIDATION_SPLIT

    val_n = VALIDATION_SPLIT.sequences if val_sequences is None else val_sequences
    val_f = (
        VALIDATION_SPLIT.frames_per_sequence
        if frames_per_sequence is None
        else frames_per_sequence
    )
    train_f = scenario_frames if frames_per_sequence is None else frames_per_sequence
    if val_n < 0 or train_f < 1:
        raise ValueError("--val-sequences must be >= 0 and --frames-per-seq >= 1")
    return [
        train_split(seed, train_sequences, train_f),
        SplitSpec("val", VALIDATION_SPLIT.base_seed, val_n, val_f),
    ]


def _check_plan(out: str, scenario: ScenarioConfig, splits: List[SplitSpec], opts: dict) -> None:
    """Record what ``out`` is generated with; refuse to resume a run made with other settings."""
    plan = {
        "format_version": FORMAT_VERSION,
        "scenario": scenario.to_dict(),
        "splits": [[sp.name, sp.base_seed, sp.sequences, sp.frames_per_sequence] for sp in splits],
        "backend_options": opts,
    }
    path = os.path.join(out, "plan.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            old = json.load(fh)
        if old != json.loads(json.dumps(plan)):
            diff = sorted(k for k in plan if json.dumps(plan[k]) != json.dumps(old.get(k)))
            raise ValueError(
                f"{out} holds a dataset generated with other settings ({', '.join(diff)} "
                "differ); use another --out directory or delete this one"
            )
    atomic_write_json(path, plan, indent=1)


def generate_dataset(
    out: str,
    scenario: ScenarioConfig,
    train_sequences: int,
    val_sequences: Optional[int] = None,
    frames_per_sequence: Optional[int] = None,
    workers: int = 2,
    seed: int = 0,
    backend_options: Optional[Dict[str, Any]] = None,
    progress: bool = True,
    flow_compression: str = "deflate",
) -> Dict[str, Any]:
    """Render and write a dataset under ``out``; returns the manifest.

    Each sequence is one task (``workers`` processes; ``workers <= 1`` renders in this process).
    Sequence ``i`` of a split uses scenario seed ``split.base_seed + i``; the validation split is
    ``carla_bridge.dataset.VALIDATION_SPLIT`` unless ``val_sequences``/``frames_per_sequence``
    override it (the manifest records ``standard_val``). Existing complete sequences are skipped.
    ``flow_compression`` is ``"deflate"`` (smaller files) or ``"store"`` (faster writing).
    """
    from carla_bridge.dataset import VALIDATION_SPLIT

    if flow_compression not in ("deflate", "store"):
        raise ValueError(f"--flow-compression must be deflate or store, got {flow_compression!r}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    splits = plan_splits(
        seed, train_sequences, val_sequences, frames_per_sequence, scenario.frames
    )
    os.makedirs(out, exist_ok=True)
    manifest_path = os.path.join(out, "manifest.json")
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # rewritten at the end; absent = dataset incomplete
    remove_stale_temp(out)
    opts = dict(backend_options or {})
    _check_plan(out, scenario, splits, dict(opts, flow_compression=flow_compression))
    tasks = []
    for sp in splits:
        for i, s in enumerate(sp.seeds()):
            seq = _seq_name(i)
            base = scenario if sp.name == "train" else validation_scenario(scenario)
            cfg = base.replace(seed=s, frames=sp.frames_per_sequence, sequence=seq)
            tasks.append((out, sp.name, seq, cfg.to_dict(), opts, flow_compression == "deflate"))
    todo = [t for t in tasks if not os.path.exists(_part_path(out, t[1], t[2]))]
    if todo and scenario.backend == "synthetic":
        from carla_bridge.dataset.rle import warm_up as warm_up_rle
        from carla_bridge.synthetic.kernels import warm_up

        warm_up()  # compile / load the kernels once, before the workers fork
        warm_up_rle()
    bar = tqdm(
        total=len(tasks),
        initial=len(tasks) - len(todo),
        desc="sequences",
        unit="seq",
        disable=not progress,
    )
    done: Dict[str, Dict[str, Any]] = {sp.name: {} for sp in splits}  # parts in memory

    def finished(result: tuple) -> None:
        split, seq, part = result
        if part is not None:
            done[split][seq] = part
        bar.update(1)

    if workers <= 1 or len(todo) <= 1:
        for t in todo:
            finished(render_sequence(t))
    else:
        ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
        with ctx.Pool(min(workers, len(todo))) as pool:
            for result in pool.imap_unordered(render_sequence, todo):
                finished(result)
            pool.close()
            pool.join()
    bar.close()
    split_info = {}
    for sp in splits:
        split_info[sp.name] = _merge_split(
            out, sp.name, [_seq_name(i) for i in range(sp.sequences)], done[sp.name]
        )
        split_info[sp.name]["seeds"] = (
            [sp.base_seed, sp.base_seed + sp.sequences - 1] if sp.sequences else []
        )
        split_info[sp.name]["frames_per_sequence"] = sp.frames_per_sequence
    val = splits[1]
    manifest: Dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generator": {
            "backend": scenario.backend,
            "scenario": scenario.to_dict(),
            "val_scenario": validation_scenario(scenario).to_dict(),
            "backend_options": opts,
            "seed": seed,
            "flow_compression": flow_compression,
        },
        # standard = the VALIDATION_SPLIT sequences rendered with the default look (the image
        # size is recorded in val_scenario)
        "standard_val": (val.sequences, val.frames_per_sequence)
        == (VALIDATION_SPLIT.sequences, VALIDATION_SPLIT.frames_per_sequence)
        and not opts,
        "versions": {"carla_bridge": __version__, "numpy": np.__version__, "cv2": cv2.__version__},
        "classes": {
            "objects": list(OBJECT_CLASSES),
            "lane": list(LANE_CLASSES),
            "lane_palette": [list(c) for c in LANE_PALETTE],
        },
        "splits": split_info,
        "label_policy": {
            "ignore": ignore_thresholds(scenario.camera.width, scenario.camera.height),
            "ignore_meaning": "annotations with ignore=true are tiny: treat as crowd regions",
        },
    }
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    manifest["data_version"] = digest[:16]
    atomic_write_json(manifest_path, manifest, indent=1)
    return manifest
