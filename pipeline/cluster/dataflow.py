"""The pseudo-label job: its stages wired into a Ray Data graph (predict's: predict_dataflow.py).

items -> decode (tasks) -> CAM (actor pool, GPU where the cluster has one)
      -> refine (CPU actor pool: image labeller / video relevance + graph cut)
      -> write masks + manifest parts (tasks) -> manifest.parquet + run.json (driver)

Without GPUs (resources.fuse_cam_refine) one CPU actor pool runs all four stages on work units
(a video, or a few images): items -> decode, CAM, refine, write (actors) -> the driver.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from typing import Any

import ray
from ray.data import ActorPoolStrategy, TaskPoolStrategy

from pipeline import schema
from pipeline.checkpoint import load_payload
from pipeline.cluster.io_stages import decode_batch, item_row, work_units, write_batch
from pipeline.cluster.pixel_head_pass import load_or_fit_head
from pipeline.cluster.resources import resolve_pseudo_label_resources
from pipeline.cluster.stages import CamStage, LabelItemsStage, RefineStage
from pipeline.collection import Collection
from pipeline.config import flatten
from pipeline.label_config import PseudoLabelConfig, ResourcesConfig, StageResources
from pipeline.labelset import item_manifest_row
from pipeline.labelset_guard import claim, code_version
from pipeline.models.pixel_head import PixelHead
from pipeline.output import (
    completed_groups,
    merge_rows,
    read_previous_rows,
    status_counts,
    write_manifest,
    write_run_json,
)
from pipeline.preflight import check_outcome, check_pseudo_label
from pipeline.progress import progress_bar
from pipeline.rows import dumps
from pipeline.tracking import runs as tracking

log = logging.getLogger(__name__)

# Blocks of the fused input: past it a block holds several units, and one actor takes them all.
MAX_BLOCKS = 10_000


def build_dataset(
    collection: Collection,
    model_uri: str | None,
    out_uri: str,
    cfg: PseudoLabelConfig,
    res: ResourcesConfig,
    skip_groups: frozenset[str],
    head: PixelHead | None = None,
) -> ray.data.Dataset:
    """The job's dataset graph; head: the pixel head the CAM stage mixes into images' CAMs."""
    rows = [item_row(item) for item in collection.items]
    cam_kwargs = {"model_uri": model_uri, "cfg": cfg.cam, **_head_kwargs(head, cfg)}
    if res.fuse_cam_refine:
        return _fused(rows, cam_kwargs, out_uri, cfg, res, skip_groups)
    blocks = max(1, min(len(rows) // max(1, res.decode.batch_size), 1000))
    items = ray.data.from_items(rows, override_num_blocks=blocks)
    decoded = items.map_batches(
        decode_batch,
        fn_kwargs={"cfg": cfg.decode, "skip_groups": skip_groups},
        compute=TaskPoolStrategy(size=int(res.decode.actors)),
        batch_size=res.decode.batch_size,
        num_cpus=res.decode.num_cpus,
        batch_format="numpy",
    )
    with_cams = decoded.map_batches(
        CamStage,
        fn_constructor_kwargs=cam_kwargs,
        compute=_pool(res.cam),
        num_gpus=res.cam.num_gpus,
        num_cpus=res.cam.num_cpus,
        batch_size=res.cam.batch_size,
        batch_format="numpy",
    )
    refined = with_cams.map_batches(
        RefineStage,
        fn_constructor_kwargs={"cfg": cfg},
        compute=_pool(res.refine),
        num_cpus=res.refine.num_cpus,
        batch_size=res.refine.batch_size,
        batch_format="numpy",
    )
    return refined.map_batches(
        write_batch,
        fn_kwargs={"out_uri": out_uri, "save_cams": cfg.output.save_cams},
        compute=TaskPoolStrategy(size=int(res.write.actors)),
        batch_size=res.write.batch_size,
        num_cpus=res.write.num_cpus,
        batch_format="numpy",
    )


def _head_kwargs(head: PixelHead | None, cfg: PseudoLabelConfig) -> dict:
    if head is None:
        return {}
    return {"pixel_head": head.arrays(), "head_share": cfg.pixel_head.share}


def _fused(rows, cam_kwargs, out_uri, cfg: PseudoLabelConfig, res: ResourcesConfig, skip_groups):
    """One actor pool labels work units from decode to write (stages.LabelItemsStage): a unit per
    block and per call, so each free actor takes the next unit, and at most two units wait at an
    actor (a video queued behind another would leave the rest of the pool idle at the end); no
    more actors than units (each loads the model)."""
    units = [{schema.ITEMS: dumps(unit)} for unit in work_units(rows, res.write.batch_size)]
    dataset = ray.data.from_items(units, override_num_blocks=max(1, min(len(units), MAX_BLOCKS)))
    return dataset.map_batches(
        LabelItemsStage,
        fn_constructor_kwargs={
            "cam_kwargs": cam_kwargs,
            "cfg": cfg,
            "out_uri": out_uri,
            "skip_groups": skip_groups,
        },
        compute=ActorPoolStrategy(
            size=max(1, min(int(res.cam.actors), len(units))), max_tasks_in_flight_per_actor=2
        ),
        num_gpus=res.cam.num_gpus,
        num_cpus=res.cam.num_cpus,
        batch_size=1,
        batch_format="numpy",
    )


def _pool(stage: StageResources) -> ActorPoolStrategy:
    return ActorPoolStrategy(size=int(stage.actors))


def run_pseudo_label(
    collection_uri: str,
    model_uri: str | None,
    out_uri: str,
    cfg: PseudoLabelConfig,
    overwrite: bool = False,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Label a collection into out_uri (resuming what an earlier run made the same way, see
    labelset_guard; overwrite starts over); returns run.json. LabelSetError when every row failed."""
    started = time.time()
    collection, record = check_pseudo_label(collection_uri, model_uri, out_uri, cfg)
    with claim(out_uri, record, overwrite):
        info = _label(collection, model_uri, out_uri, cfg, started)
        info["fingerprint"] = record
        write_run_json(out_uri, info)
        tracking.log_pseudo_label(out_uri, info, tracking_uri)  # never raises
    check_outcome(out_uri, info["counts"])
    return info


def _label(collection, model_uri, out_uri, cfg: PseudoLabelConfig, started: float) -> dict:
    previous = read_previous_rows(out_uri)
    skip = completed_groups(previous, cfg.output.retry_failed)
    todo = [item for item in collection.items if not _all_done(item, skip)]
    log.info(
        "%d items, %d already done, %d to label",
        len(collection.items),
        len(collection.items) - len(todo),
        len(todo),
    )
    res = resolve_pseudo_label_resources(cfg.resources, ray.cluster_resources())
    seconds, new_rows = Counter(), 0
    if todo:
        head = _pixel_head(collection, todo, model_uri, out_uri, cfg, res, seconds)
        todo_collection = dataclasses.replace(collection, items=tuple(todo))
        dataset = build_dataset(todo_collection, model_uri, out_uri, cfg, res, skip, head)
        items_seen: set[str] = set()  # bounded by the items, like the rows themselves
        with progress_bar("pseudo-label", total=len(todo), unit="items") as bar:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                new_rows += len(batch[schema.ID])
                fresh = {str(g).split("#", 1)[0] for g in batch[schema.GROUP]} - items_seen
                items_seen |= fresh
                bar.update(len(fresh))
                for name, column in batch.items():
                    if name.startswith(schema.TIMING_PREFIX):
                        seconds[name.removeprefix(schema.TIMING_PREFIX)] += float(column.sum())
    rows = merge_rows(read_previous_rows(out_uri))
    rows = rows + _lost_rows(collection, rows)
    write_manifest(out_uri, rows)
    return _run_info(collection, model_uri, cfg, res, rows, seconds, started, new_rows)


def _pixel_head(collection, todo, model_uri, out_uri, cfg, res, seconds) -> PixelHead | None:
    """The image route's pixel head (pixel_head_pass) when it is on and images are left to label."""
    images_left = any(item.kind == schema.KIND_IMAGE for item in todo)
    if not (cfg.pixel_head.enabled and model_uri and images_left):
        return None
    started = time.perf_counter()
    head = load_or_fit_head(collection.items, model_uri, out_uri, cfg, res.cam)
    seconds["pixel_head"] += time.perf_counter() - started
    return head


def _all_done(item, skip: frozenset[str]) -> bool:
    """Images are skipped whole; videos are decoded again and skip their finished windows."""
    return item.kind != schema.KIND_VIDEO and f"{item.source_index}/{item.id}" in skip


def _lost_rows(collection: Collection, rows: list[dict]) -> list[dict]:
    """Safety net: an input item with no output row at all gets a failed row (nothing silently lost)."""
    seen = {(r[schema.SOURCE_INDEX], r[schema.ID]) for r in rows}
    return [
        item_manifest_row(
            it,
            schema.FAILED,
            "no output was produced for this item (lost during processing)",
            group=f"{it.source_index}/{it.id}",
        )
        for it in collection.items
        if (it.source_index, it.id) not in seen
    ]


def _backbone_weights(model_uri: str | None) -> dict | None:
    """The classifier backbone's initial weights (origin, sha256) as its checkpoint records them."""
    if not model_uri:
        return None
    return load_payload(model_uri).get("backbone_weights")


def _run_info(collection, model_uri, cfg, res, rows, seconds, started, new_rows) -> dict[str, Any]:
    return {
        "collection": collection.root,
        "model_uri": model_uri,
        "model_weights": _backbone_weights(model_uri),
        "code_version": code_version(),
        "config": flatten(cfg),
        "resources": dataclasses.asdict(res),
        "items": len(collection.items),
        "unknown_tags": collection.unknown_tags,
        "counts": status_counts(rows),
        "rows_this_run": new_rows,
        "stage_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "wall_seconds": round(time.time() - started, 2),
    }
