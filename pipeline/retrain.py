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
import errno
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pipeline import storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainConfig:
    metric: str = "image_miou"  # key of pipeline.evaluate's result that decides promotion
    min_improvement: float = 0.0  # the candidate must beat the champion by more than this
    lock_ttl_s: float = 6 * 3600.0  # a lease older than this is stale (its run died)
    alias: str = "champion"  # MLflow alias moved on promotion (on segmenter.registered_model_name)


@dataclass(frozen=True)
class Watermark:
    version: int  # 0 = nothing processed yet
    ids: frozenset[str]  # item ids processed by committed runs
    run: str | None = None  # the run that committed this version


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


def lease_is_stale(lease: dict[str, Any], now: float) -> bool:
    return float(lease.get("expires", 0.0)) < now


# ---- state on a local folder or S3 ----------------------------------------------------------


def create_exclusive(uri: str, data: bytes) -> bool:
    """Write uri only if it does not exist; True when this call created it (atomic)."""
    fs, path = storage.filesystem(uri)
    if not storage.is_remote(uri):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)  # like O_EXCL, but readers never see a half-written file
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    try:
        fs.pipe_file(path, data, mode="create")  # PutObject with If-None-Match: *
        return True
    except OSError as error:  # s3fs maps 412 PreconditionFailed / 409 conflicts to OSError
        text = str(error).lower()
        if (
            error.errno == errno.EINVAL
            or "precondition" in text
            or "pre-condition" in text
            or "conflict" in text
        ):
            return False
        raise


def _read_json(uri: str) -> dict[str, Any] | None:
    fs, path = storage.filesystem(uri)
    fs.invalidate_cache(path)
    try:
        return json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        return None


def read_watermark(state_uri: str) -> Watermark:
    folder = storage.join(state_uri, "watermarks")
    fs, path = storage.filesystem(folder)
    fs.invalidate_cache(path)  # s3fs caches listings; another run may have committed since
    names = [n for n in storage.list_files(folder, ".json") if os.path.basename(n)[:6].isdigit()]
    if not names:
        return Watermark(0, frozenset())
    latest = max(names, key=lambda n: int(os.path.basename(n)[:6]))
    data = json.loads(storage.read_bytes(latest))
    return Watermark(int(data["version"]), frozenset(data["ids"]), data.get("run"))


def commit_watermark(state_uri: str, previous: Watermark, added: list[str], run: str) -> bool:
    """Compare-and-set: create version previous+1; False when another run committed it first."""
    version = previous.version + 1
    body = {
        "version": version,
        "run": run,
        "committed": time.time(),
        "added": sorted(added),
        "ids": sorted(previous.ids | set(added)),
    }
    uri = storage.join(state_uri, "watermarks", f"{version:06d}.json")
    return create_exclusive(uri, json.dumps(body, indent=1).encode())


def acquire_lock(state_uri: str, owner: str, ttl_s: float) -> tuple[bool, dict[str, Any] | None]:
    """(acquired?, the lease that holds the lock). A stale lease is taken over by one run only."""
    uri, now = storage.join(state_uri, "lock.json"), time.time()
    lease = {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "acquired": now,
        "expires": now + ttl_s,
    }
    data = json.dumps(lease).encode()
    if create_exclusive(uri, data):
        return True, lease
    held = _read_json(uri)
    if held is None:  # released between our two calls: try once more
        return (True, lease) if create_exclusive(uri, data) else (False, _read_json(uri))
    if not lease_is_stale(held, now):
        return False, held
    # only the run that creates this marker may replace the stale lease
    if not create_exclusive(f"{uri}.takeover-{held.get('owner')}", data):
        return False, held
    log.warning(
        "taking over a stale lock of %s (expired %.0f s ago)",
        held.get("owner"),
        now - float(held.get("expires", 0)),
    )
    storage.write_bytes(uri, data)
    return True, lease


def release_lock(state_uri: str, owner: str) -> None:
    uri = storage.join(state_uri, "lock.json")
    held = _read_json(uri)
    if held and held.get("owner") == owner:
        storage.remove(uri)


def write_decision(state_uri: str, decision: dict[str, Any]) -> str:
    uri = storage.join(state_uri, "decisions", f"{decision['run']}.json")
    storage.write_text(uri, json.dumps(decision, indent=2, default=str))
    return uri


def write_subcollection(collection, ids: list[str], uri: str) -> str:
    """A collection folder at uri listing only the given items (absolute media uris)."""
    wanted = set(ids)
    rows = [
        {"id": it.id, "uri": it.uri, "kind": it.kind, "tags": list(it.tags)}
        for it in collection.items
        if it.id in wanted and it.error is None
    ]
    storage.write_text(
        storage.join(uri, "manifest.jsonl"), "".join(json.dumps(r) + "\n" for r in rows)
    )
    storage.write_text(storage.join(uri, "classes.json"), json.dumps(list(collection.classes)))
    return uri


# ---- the run --------------------------------------------------------------------------------


class Steps(Protocol):
    """What a retrain run does with models; MlflowSteps is the real one, tests pass fakes."""

    def label(self, collection_uri: str, labels_uri: str) -> dict: ...
    def train(self, labels_uri: str, out_uri: str, init_from: str | None) -> dict: ...
    def score(self, model_uri: str, holdout_uri: str, out_uri: str) -> float: ...
    def champion(self) -> dict | None: ...  # {"version", "model_uri", "checkpoint_uri", "score"}
    def promote(self, version: str) -> None: ...
    def record(self, decision: dict) -> None: ...


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
    from pipeline.collection import read_collection

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


class MlflowSteps:
    """The real steps: pseudo-label, train-segmenter, predict + evaluate, MLflow registry alias."""

    def __init__(
        self,
        holdout_uri: str,
        classifier: str | None,
        sections: dict[str, Any],
        retrain: RetrainConfig,
    ) -> None:
        from pipeline.config import from_dict
        from pipeline.label_config import PseudoLabelConfig
        from pipeline.predict import PredictConfig
        from pipeline.registry import effective_tracking_uri
        from pipeline.train.segmenter import SegmenterTrainConfig

        self.holdout_uri, self.classifier, self.retrain = holdout_uri, classifier, retrain
        self.label_cfg = from_dict(PseudoLabelConfig, sections.get("pseudo_label"), "pseudo_label.")
        self.train_cfg = from_dict(SegmenterTrainConfig, sections.get("segmenter"), "segmenter.")
        self.tracking_uri = effective_tracking_uri(
            (sections.get("segmenter") or {}).get("tracking_uri")
        )
        self.predict_cfg = from_dict(
            PredictConfig,
            {**(sections.get("predict") or {}), "tracking_uri": self.tracking_uri},
            "predict.",
        )
        self.name = self.train_cfg.registered_model_name

    def _client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    def label(self, collection_uri: str, labels_uri: str) -> dict:
        from pipeline.dataflow import run_pseudo_label

        return run_pseudo_label(collection_uri, self.classifier, labels_uri, self.label_cfg)

    def train(self, labels_uri: str, out_uri: str, init_from: str | None) -> dict:
        from pipeline.checkpoint import model_file_uri
        from pipeline.train.segmenter import train_segmenter

        cfg = replace(
            self.train_cfg,
            tracking_uri=self.tracking_uri,
            init_from=init_from or self.train_cfg.init_from,
        )
        result = train_segmenter(labels_uri, out_uri, cfg)
        checkpoint_uri = model_file_uri(result["model_uri"])
        self._client().set_model_version_tag(
            self.name, str(result["version"]), "checkpoint_uri", checkpoint_uri
        )
        return {
            "version": str(result["version"]),
            "model_uri": checkpoint_uri,
            "mlflow_run_id": result.get("mlflow_run_id"),
            "init_from": init_from,
        }

    def score(self, model_uri: str, holdout_uri: str, out_uri: str) -> float:
        from pipeline.evaluate import evaluate_labels
        from pipeline.predict import run_predict

        run_predict(model_uri, holdout_uri, out_uri, self.predict_cfg)
        value = evaluate_labels(out_uri, holdout_uri).get(self.retrain.metric)
        return float("nan") if value is None else float(value)

    def champion(self) -> dict | None:
        from mlflow.exceptions import MlflowException

        try:
            version = self._client().get_model_version_by_alias(self.name, self.retrain.alias)
        except MlflowException:
            return None
        tags = version.tags
        same_holdout = tags.get("holdout_uri") == self.holdout_uri
        score = tags.get(f"holdout.{self.retrain.metric}") if same_holdout else None
        return {
            "version": version.version,
            "model_uri": f"models:/{self.name}/{version.version}",
            "checkpoint_uri": tags.get("checkpoint_uri"),
            "score": float(score) if score not in (None, "") else None,
        }

    def promote(self, version: str) -> None:
        self._client().set_registered_model_alias(self.name, self.retrain.alias, version)

    def record(self, decision: dict) -> None:
        client, candidate = self._client(), decision.get("candidate") or {}
        tags = {
            "retrain.run": decision["run"],
            "retrain.decision": decision["action"],
            "retrain.reason": decision["reason"][:500],
            "holdout_uri": self.holdout_uri,
            f"holdout.{self.retrain.metric}": str(candidate.get("score")),
        }
        for key, value in tags.items():
            client.set_model_version_tag(self.name, candidate["version"], key, value)
            if candidate.get("mlflow_run_id"):
                client.set_tag(candidate["mlflow_run_id"], key, value)
        champion = decision.get("champion_before") or {}
        if champion.get("score") is not None:  # cache the champion's score for later runs
            client.set_model_version_tag(
                self.name, champion["version"], "holdout_uri", self.holdout_uri
            )
            client.set_model_version_tag(
                self.name,
                champion["version"],
                f"holdout.{self.retrain.metric}",
                str(champion["score"]),
            )


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
        "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite)"
    )


def retrain(args: argparse.Namespace) -> dict:
    from pipeline.config import from_dict, load_yaml
    from pipeline.runtime import init_ray

    sections = dict(load_yaml(args.config))
    segmenter = {
        **(sections.get("segmenter") or {}),
        "epochs": args.epochs,
        "tracking_uri": args.tracking_uri,
    }
    sections["segmenter"] = {k: v for k, v in segmenter.items() if v is not None}
    cfg = from_dict(RetrainConfig, sections.get("retrain"), "retrain.")
    classifier = None if args.classifier.lower() == "none" else args.classifier
    init_ray(args.ray_address)
    steps = MlflowSteps(args.holdout, classifier, sections, cfg)
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
