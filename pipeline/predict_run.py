"""`webseg predict`: segment a collection with a trained segmenter into a label set in the
pseudo-label format.

    webseg predict --model models:/webseg-segmenter@candidate --collection URI --out LABELS_URI

Items are spread over a Ray actor pool (GPU where the cluster has one; `predict.resources`, see
cluster/predict_dataflow.py), or run on the driver without Ray with `resources.actors: 0` (small holdouts,
tests). Every image and every sampled video frame gets a mask at source resolution (predict.py),
plus manifest.parquet and run.json, so `webseg evaluate` scores the output like pseudo-labels.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace

from pipeline.config import flatten
from pipeline.label_config import AUTO
from pipeline.labelset_guard import claim, code_version
from pipeline.output import status_counts, write_manifest, write_run_json
from pipeline.predict import predict_item, tag_prior_shift
from pipeline.preflight import check_outcome, check_predict
from pipeline.progress import progress_bar
from pipeline.settings import PredictConfig
from pipeline.tracking.runs import tracking_uri_for
from pipeline.train.config import checkpoint_eval_side

log = logging.getLogger(__name__)


def _predict_rows(
    model, items, out_uri: str, long_side: int, cfg: PredictConfig, shift=None
) -> list[dict]:
    if cfg.resources.actors == 0:
        rows = []
        with progress_bar("predict", total=len(items), unit="items") as bar:
            for item in items:
                rows += predict_item(model, item, out_uri, long_side, cfg, shift)
                bar.update(1)
        return rows
    # deferred: Ray loads only for an actor pool (resources.actors > 0)
    from pipeline.cluster.predict_dataflow import predict_on_ray
    from pipeline.cluster.runtime import init_ray

    init_ray()  # joins RAY_ADDRESS or the Ray the caller started; else a local one
    return predict_on_ray(model, items, out_uri, long_side, cfg, shift)


def with_tracking_uri(cfg: PredictConfig, model_uri: str, out_uri: str) -> PredictConfig:
    """cfg with tracking_uri resolved by pipeline.tracking.runs's rule when model_uri is an MLflow URI
    (models:/, runs:/): the store beside the --out label set unless given or in the environment."""
    # deferred: MLflow loads only when a run predicts from a models:/ or runs:/ URI
    from pipeline.tracking.registry import MLFLOW_SCHEMES

    if not model_uri.startswith(MLFLOW_SCHEMES):
        return cfg
    return replace(cfg, tracking_uri=tracking_uri_for(cfg.tracking_uri, out_uri, artifact=True))


def resolve_restriction(cfg: PredictConfig, items) -> PredictConfig:
    """restrict_to_tags 'auto' resolved: true when any item has tags (a tagged collection's
    tags are its weak labels, an item without them a negative), else false (untagged media)."""
    if cfg.restrict_to_tags != AUTO:
        return cfg
    tagged = any(item.tag_ids for item in items)
    if not tagged:
        log.info("predict: no item has tags, so masks are not restricted to tags")
    return replace(cfg, restrict_to_tags=tagged)


def run_predict(
    model_uri: str,
    collection_uri: str,
    out_uri: str,
    cfg: PredictConfig | None = None,
    overwrite: bool = False,
) -> dict:
    """Segment every item of a collection into out_uri; returns the run.json content.

    out_uri may hold only a label set this model and config made (it is rewritten); overwrite
    removes any other first. LabelSetError when every row failed."""
    cfg = with_tracking_uri(cfg or PredictConfig(), model_uri, out_uri)
    started = time.time()
    collection, model, info, record = check_predict(collection_uri, model_uri, out_uri, cfg)
    cfg = resolve_restriction(cfg, collection.items)
    long_side = cfg.long_side or checkpoint_eval_side(info)
    shift = tag_prior_shift(info, cfg)
    with claim(out_uri, record, overwrite):
        rows = _predict_rows(model, collection.items, out_uri, long_side, cfg, shift)
        write_manifest(out_uri, rows)
        run = {
            "collection": collection.root,
            "model_uri": model_uri,
            "kind": "prediction",
            "code_version": code_version(),
            "config": flatten(cfg),
            "long_side": long_side,
            "prior_shift": None if shift is None else [round(float(v), 4) for v in shift],
            "classes": list(info["classes"]),
            "items": len(collection.items),
            "counts": status_counts(rows),
            "wall_seconds": round(time.time() - started, 2),
            "fingerprint": record,
        }
        write_run_json(out_uri, run)
    log.info("predicted %s", json.dumps(run["counts"]))
    check_outcome(out_uri, run["counts"])
    return run
