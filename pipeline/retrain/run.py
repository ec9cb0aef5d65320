"""Scheduled retraining: label what is new, train warm from the champion, promote only if better.

    webseg retrain --collection URI --holdout URI --work URI [--tracking-uri URI] [--epochs N]

State lives under WORK/state/ (a local folder or s3:// prefix), beside the run outputs:
  watermarks/NNNNNN.json  ids of processed items; version n+1 is created only if it does not exist
                          yet (compare-and-set: os.link locally, If-None-Match: * on S3)
  lock.json               lease of the run in progress, created the same exclusive way; a lease
                          past its expiry may be taken over by exactly one run
  decisions/RUN.json      what each run decided and why (also tagged on its MLflow run)
A run: lock -> new items = collection - watermark -> pseudo-label them into WORK/labels -> train
(warm start from `champion`) -> score on the held-out collection -> commit watermark v+1 -> register
the candidate -> move `champion` only if it scored better and the commit won. The lock keeps runs
from overlapping; the watermark commit keeps a run whose lease was lost from promoting.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from typing import Any

from pipeline import storage
from pipeline.collection import read_collection, require_manifest
from pipeline.config import from_dict, load_yaml
from pipeline.evaluate.inputs import require_ground_truth
from pipeline.retrain.state import (
    Watermark,
    acquire_lock,
    commit_watermark,
    read_watermark,
    release_lock,
    write_decision,
    write_subcollection,
)
from pipeline.retrain.steps import MlflowSteps, Steps
from pipeline.settings import RetrainConfig

log = logging.getLogger(__name__)


# ---- pure decisions -------------------------------------------------------------------------


def new_items(ids: list[str], watermark: Watermark) -> list[str]:
    """Ids not yet processed, in collection order (duplicates once)."""
    return [i for i in dict.fromkeys(ids) if i not in watermark.ids]


def decide(
    candidate: float | None, champion: float | None, min_improvement: float
) -> tuple[bool, str]:
    """(promote?, why) from held-out scores; None = no score (a missing champion loses)."""
    if candidate is None or candidate != candidate:
        return False, "the candidate has no held-out score"
    if champion is None or champion != champion:
        return True, f"no scored champion yet; candidate scores {candidate:.2f}"
    if candidate > champion + min_improvement:
        return True, f"candidate {candidate:.2f} beats champion {champion:.2f}"
    return (
        False,
        f"candidate {candidate:.2f} does not beat champion {champion:.2f} (+{min_improvement})",
    )


# ---- the run --------------------------------------------------------------------------------


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def run_retrain(
    collection_uri: str,
    holdout_uri: str,
    work_uri: str,
    steps: Steps,
    cfg: RetrainConfig | None = None,
) -> dict[str, Any]:
    """One scheduled run (see the module docstring); returns the decision it recorded."""

    cfg, run = cfg or RetrainConfig(), new_run_id()
    state = storage.join(work_uri, "state")
    base = {"run": run, "collection": collection_uri, "holdout": holdout_uri, "metric": cfg.metric}
    acquired, lease = acquire_lock(state, run, cfg.lock_ttl_s)
    if not acquired:
        decision = {
            **base,
            "action": "locked",
            "promoted": False,
            "reason": f"another run holds the lock: {lease}",
        }
        write_decision(state, decision)
        return decision
    try:
        watermark = read_watermark(state)
        collection = read_collection(collection_uri)
        fresh = new_items([it.id for it in collection.items], watermark)
        if not fresh:
            done = len(watermark.ids)
            reason = f"no new items since watermark v{watermark.version} ({done} processed)"
            return {**base, "action": "nothing", "promoted": False, "reason": reason}
        decision = _train_and_decide(
            collection, fresh, watermark, work_uri, holdout_uri, run, steps, cfg
        )
        decision = {**base, **decision}
        write_decision(state, decision)
        steps.record(decision)
        return decision
    finally:
        release_lock(state, run)


def _train_and_decide(
    collection, fresh, watermark, work_uri, holdout, run, steps: Steps, cfg
) -> dict:
    run_dir, labels = storage.join(work_uri, "runs", run), storage.join(work_uri, "labels")
    started = time.time()
    sub = write_subcollection(collection, fresh, storage.join(run_dir, "new"))
    labelled = steps.label(sub, labels)
    champion = steps.champion()
    warm = champion.get("checkpoint_uri") if champion else None
    candidate = steps.train(labels, storage.join(run_dir, "model"), warm)
    score = steps.score(candidate["model_uri"], holdout, storage.join(run_dir, "holdout"))
    if champion is not None and champion.get("score") is None:  # e.g. promoted by hand
        champion["score"] = steps.score(
            champion["model_uri"], holdout, storage.join(run_dir, "holdout-champion")
        )
    promote, reason = decide(score, champion and champion.get("score"), cfg.min_improvement)
    if not commit_watermark(storage.join(work_uri, "state"), watermark, fresh, run):
        promote, reason = False, "lost the race: another run committed the same watermark version"
    elif promote:
        steps.promote(str(candidate["version"]))
    action = "promoted" if promote else ("lost-race" if reason.startswith("lost") else "rejected")
    return {
        "action": action,
        "promoted": promote,
        "reason": reason,
        "new_items": len(fresh),
        "watermark_version": watermark.version + 1,
        "labelled": labelled.get("counts"),
        "candidate": {**candidate, "score": score},
        "champion_before": champion,
        "seconds": round(time.time() - started, 1),
        "finished": time.time(),
    }


# ---- `webseg retrain` -----------------------------------------------------------------------


def _args_retrain(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--collection", required=True, help="the growing collection (folder or manifest URI)"
    )
    p.add_argument(
        "--holdout", required=True, help="fixed held-out collection with gt/ for scoring"
    )
    p.add_argument(
        "--work", required=True, help="URI for state/, labels/ and runs/ (local or s3://)"
    )
    p.add_argument("--classifier", default="none", help="classifier for pseudo-labels, or 'none'")
    p.add_argument("--epochs", type=int, help="segmenter epochs per run (segmenter.epochs)")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else WORK/mlflow.db)",
    )


def retrain(args: argparse.Namespace) -> dict:
    # deferred: loads Ray only for commands that run on it
    from pipeline.cluster.runtime import init_ray

    sections = dict(load_yaml(args.config))
    segmenter = {
        **(sections.get("segmenter") or {}),
        "epochs": args.epochs,
        "tracking_uri": args.tracking_uri,
    }
    sections["segmenter"] = {k: v for k, v in segmenter.items() if v is not None}
    cfg = from_dict(RetrainConfig, sections.get("retrain"), "retrain.")
    classifier = None if args.classifier.lower() == "none" else args.classifier
    require_manifest(args.collection)
    require_ground_truth(args.holdout)  # now, not after hours of labelling and training
    init_ray(args.ray_address)
    steps = MlflowSteps(args.holdout, classifier, sections, cfg, work_uri=args.work)
    decision = run_retrain(args.collection, args.holdout, args.work, steps, cfg)
    log.info("retrain %s: %s (%s)", decision["run"], decision["action"], decision["reason"])
    return decision


RETRAIN_COMMANDS = {
    "retrain": (
        retrain,
        _args_retrain,
        "scheduled retraining: label new items, train, promote `champion` only if better",
    ),
}
