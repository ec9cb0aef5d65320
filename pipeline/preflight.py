"""Checks on the driver before Ray starts, each failing with one line that names what to fix.

The S3 endpoint answers, the model loads and fits the collection's label space, the manifest is
readable and has an item that can be processed, --out is (or can become) a folder that no other run
writes and whose label set this run may resume. `pseudo_label()` and `predict()` run them all for
the CLI; run_pseudo_label / run_predict run the same checks again for every other caller.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from pipeline import labelset_guard, schema, storage
from pipeline.collection import Collection, ManifestError, read_collection, require_manifest
from pipeline.output import LabelSetError

log = logging.getLogger(__name__)

ENDPOINT_TIMEOUT_S = 5.0  # an S3 endpoint that does not answer within this is reported as down
# config keys that never change a label: Ray resources, and whether a rerun retries failures
PSEUDO_LABEL_EXCLUDE = ("resources.", "output.retry_failed")
PREDICT_EXCLUDE = ("resources.", "tracking_uri")


class ModelError(ValueError):
    """A --model that does not load, or whose label space does not fit the collection."""


class EndpointError(ConnectionError):
    """The S3 endpoint does not answer."""


def s3_endpoint() -> str:
    """The endpoint s3:// URIs go to (AWS_ENDPOINT_URL, the profile, or AWS's default)."""
    # deferred: botocore comes with the optional S3 extra
    import botocore.session

    return botocore.session.Session().create_client("s3").meta.endpoint_url


def endpoint_problem(url: str, timeout_s: float = ENDPOINT_TIMEOUT_S) -> str | None:
    """Why url does not answer HTTP within timeout_s, or None (any HTTP status is an answer)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


def check_s3(*uris: str | None) -> None:
    """EndpointError naming the endpoint when any uri is on S3 and the endpoint is down."""
    if not any(u and u.startswith("s3://") for u in uris):
        return
    url = s3_endpoint()
    problem = endpoint_problem(url)
    if problem:
        raise EndpointError(
            f"S3 endpoint {url} did not answer within {ENDPOINT_TIMEOUT_S:.0f} s ({problem}); "
            "check AWS_ENDPOINT_URL and the network"
        )


def _one_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_classes(model_uri: str, model_classes: tuple[str, ...], classes: tuple[str, ...]) -> None:
    """ModelError when a model's label space differs from the collection's (empty = unknown)."""
    if model_classes and tuple(model_classes) != tuple(classes):
        first = next(
            (i for i, (a, b) in enumerate(zip(model_classes, classes, strict=False)) if a != b),
            min(len(model_classes), len(classes)),
        )
        raise ModelError(
            f"--model {model_uri} was trained on {len(model_classes)} classes, the collection's "
            f"label space has {len(classes)}; they differ at index {first} "
            f"({_at(model_classes, first)} vs {_at(classes, first)}): use the collection's "
            "classes.json when training"
        )


def _at(names: tuple[str, ...], index: int) -> str:
    return repr(names[index]) if index < len(names) else "nothing"


def load_model(uri: str, loader) -> tuple[Any, ...]:
    """loader(uri) with every failure (missing file, junk bytes, wrong layout) as one ModelError."""
    # deferred: loads torch only where a model is built or run
    from pipeline.checkpoint import model_file_uri

    try:
        return loader(uri)
    except FileNotFoundError:
        raise ModelError(f"--model {uri}: {model_file_uri(uri)} not found") from None
    except Exception as error:  # UnpicklingError, KeyError (not our layout), RuntimeError (shapes)
        if not _is_torch_file(uri):  # junk bytes raise anything from UnpicklingError to IndexError
            raise ModelError(f"--model {uri} is not a torch checkpoint file") from error
        raise ModelError(
            f"--model {uri} does not load as a WebSeg checkpoint ({_one_line(error)})"
        ) from error


def _is_torch_file(uri: str) -> bool:
    """A zip archive (torch.save's format) or a legacy pickle (protocol 2+ opcode)."""
    # deferred: loads torch only where a model is built or run
    from pipeline.checkpoint import model_file_uri
    from pipeline.tracking.registry import MLFLOW_SCHEMES

    if uri.startswith(MLFLOW_SCHEMES):
        return True
    head = storage.read_bytes(model_file_uri(uri))[:4]
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def classifier_record(model_uri: str | None, collection: Collection, cfg) -> dict[str, Any]:
    """Load the classifier (ModelError when it does not fit) -> the label set's fingerprint."""
    # deferred: loads torch only where a model is built or run
    from pipeline.checkpoint import load_classifier, model_file_uri

    if model_uri is None:
        return labelset_guard.fingerprint(None, None, cfg, exclude=PSEUDO_LABEL_EXCLUDE)
    _, _, classes = load_model(model_uri, load_classifier)
    check_classes(model_uri, classes, collection.classes)
    sha = labelset_guard.file_sha256(model_file_uri(model_uri))
    return labelset_guard.fingerprint(model_uri, sha, cfg, exclude=PSEUDO_LABEL_EXCLUDE)


def usable_collection(collection_uri: str, cfg=None) -> Collection:
    """The collection, or ManifestError with the reason counts when no item can be processed."""
    require_manifest(collection_uri)
    collection = read_collection(collection_uri, cfg)
    if all(item.error for item in collection.items):
        reasons = Counter(str(item.error).split(":")[0][:80] for item in collection.items)
        raise ManifestError(
            f"none of the {len(collection.items)} items of {collection_uri} can be processed: "
            f"{dict(reasons.most_common(5))}"
        )
    return collection


def check_pseudo_label(
    collection_uri: str, model_uri: str | None, out_uri: str, cfg
) -> tuple[Collection, dict[str, Any]]:
    """(collection, fingerprint) after every check that needs no Ray, except the lock."""
    check_s3(collection_uri, model_uri, out_uri)
    labelset_guard.require_out_folder(out_uri)
    collection = usable_collection(collection_uri, cfg.collection)
    return collection, classifier_record(model_uri, collection, cfg)


def pseudo_label(
    collection_uri: str, model_uri: str | None, out_uri: str, cfg, overwrite: bool = False
) -> None:
    """All of `webseg pseudo-label`'s checks (and --overwrite's removal) before Ray starts."""
    _, record = check_pseudo_label(collection_uri, model_uri, out_uri, cfg)
    with labelset_guard.claim(out_uri, record, overwrite):
        pass


def segmenter_record(model_uri: str, collection: Collection, cfg) -> tuple[Any, dict, dict]:
    """(model, its info, the label set's fingerprint); ModelError when it does not fit."""
    # deferred: loads MLflow only when a run is logged or a model looked up
    from pipeline.tracking.registry import load_segmenter

    model, info = load_model(model_uri, lambda uri: load_segmenter(uri, cfg.tracking_uri))
    check_classes(model_uri, tuple(info["classes"]), collection.classes)
    record = labelset_guard.fingerprint(
        model_uri, info.get("file_sha256"), cfg, exclude=PREDICT_EXCLUDE
    )
    return model, info, record


def check_predict(collection_uri: str, model_uri: str, out_uri: str, cfg):
    """(collection, model, info, fingerprint) after every check that needs no Ray."""
    check_s3(collection_uri, model_uri, out_uri)
    labelset_guard.require_out_folder(out_uri)
    collection = usable_collection(collection_uri)
    return (collection, *segmenter_record(model_uri, collection, cfg))


def predict(
    collection_uri: str, model_uri: str, out_uri: str, cfg, overwrite: bool = False
) -> None:
    """All of `webseg predict`'s checks (and --overwrite's removal) before Ray starts."""
    *_, record = check_predict(collection_uri, model_uri, out_uri, cfg)
    with labelset_guard.claim(out_uri, record, overwrite):
        pass


def check_outcome(out_uri: str, counts: dict[str, Any]) -> None:
    """LabelSetError with the reason counts when a run labelled nothing: every row failed."""
    status = counts.get("status") or {}
    if counts.get("rows", 0) and status.get(schema.FAILED, 0) < counts["rows"]:
        return

    raise LabelSetError(
        f"every one of the {counts.get('rows', 0)} rows failed, nothing was labelled "
        f"(reasons: {counts.get('failed_reasons')}); see {storage.join(out_uri, schema.MANIFEST_NAME)}"
    )
