"""Train the DeepLab segmenter on a pseudo-label set with Ray Train (V2), tracked in MLflow.

    webseg train-segmenter --labels LABELS_URI --out MODEL_URI [--val-collection URI] [--epochs N]

Workers stream the label set's `labelled` rows (optionally only those whose `confidence` is at least
`min_confidence`) through Ray Data (`get_dataset_shard("train")`), augment on their device (random
scale 0.5-2 / crop / flip), train with cross-entropy (255 ignored; class-weighted by median frequency
balancing of the training masks, `class_weighting`) under a poly schedule and report a checkpoint
every epoch. Three methods from the literature are config choices, off by default: SEC's
losses (`loss: sec`) and DSRG's seed growing in the loop (`seed_growing: dsrg`), both in
pipeline.train.segmenter_objective, and simple to complex (`curriculum: simple_first`): the first
`simple_epochs` train on the simple sources (pipeline.train.curriculum), a second Ray Train
dataset "simple", picked by the epoch number (so a resumed run continues in the same phase).
The decoded, letterboxed set is materialized in the object store once before training
when it fits a quarter of the cluster's store (`cache_decoded`), else decoded again every epoch.
The backbone starts from ImageNet weights (`pretrained`), a weights file or a classifier checkpoint
(`init_from`), trains at `backbone_lr_mult` of the head's rate and keeps its BatchNorm statistics
fixed (`freeze_bn`); the weights' origin and sha256 go to the checkpoint and MLflow. Training
state lives in OUT/train/ (or OUT.train/ for a .pt file): running again with the same --out resumes
from the last checkpoint and continues the same MLflow run. The final model goes to OUT
(pipeline.checkpoint format) and to the MLflow model registry under `registered_model_name` with alias `candidate`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace

import numpy as np
import ray

from pipeline import schema, storage
from pipeline.evaluate.inputs import read_mask
from pipeline.output import read_table
from pipeline.storage import StorageError
from pipeline.tracking import runs as tracking
from pipeline.tracking.registry import CANDIDATE, get_or_create_run
from pipeline.train.class_balance import repeat_factors, repeated
from pipeline.train.class_weights import (
    class_pixel_counts,
    logit_offset,
    median_frequency_weights,
)
from pipeline.train.common import absolute, make_trainer, state_uri
from pipeline.train.config import SegmenterTrainConfig
from pipeline.train.curriculum import (
    foreground_regions,
    simple_epoch_count,
    simple_masks,
    simple_sources,
)
from pipeline.train.segmenter_data import (
    count_samples,
    decoded_bytes,
    load_source,
    read_label_set,
    read_masks,
    should_cache,
)
from pipeline.train.segmenter_loop import train_loop

log = logging.getLogger(__name__)
COMMAND = "train-segmenter"  # MLflow run names and the webseg.command tag
RUN_RECORD = "mlflow_run.json"
RESULT = "result.json"  # the final summary, written by rank 0
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2 writes it with each checkpoint


def has_checkpoints(state: str, run_name: str) -> bool:
    """Whether Ray Train recorded a checkpoint for this run (its checkpoint manager snapshot)."""
    return storage.exists(storage.join(state, run_name, SNAPSHOT))


def _previews(sources: list[dict], cfg: SegmenterTrainConfig) -> list[dict]:
    images = [s for s in sources if s["kind"] != "video"] or sources
    picked = images[:: max(1, len(images) // max(1, cfg.preview_items))][: cfg.preview_items]
    return [pair for source in picked for pair in load_source(source, cfg.store_size)[:1]]


def training_dataset(sources: list[dict], cfg: SegmenterTrainConfig) -> ray.data.Dataset:
    """Sources in a seeded order -> Ray Data rows {"image", "mask"} (decoded lazily, per epoch)."""
    order = np.random.default_rng(cfg.seed).permutation(len(sources))
    dataset = ray.data.from_items(
        [sources[i] for i in order], override_num_blocks=min(len(sources), 32)
    )
    rows = dataset.flat_map(
        load_source, fn_kwargs={"store_size": cfg.store_size}, num_cpus=cfg.data_cpus
    )
    rows.context.execution_options.preserve_order = True  # the seeded order, also when cached
    return rows


def cached_or_streamed(
    dataset: ray.data.Dataset, cfg: SegmenterTrainConfig, samples: int, alongside: int = 0
):
    """The dataset materialized in the object store (decoded once, reused every epoch) when
    cfg.cache_decoded resolves to caching, else as given (decoded again each epoch); alongside:
    samples of another dataset that shares the store (the curriculum's simple part)."""
    size = decoded_bytes(samples, cfg.store_size)
    resources = ray.cluster_resources()
    if not should_cache(cfg.cache_decoded, samples + alongside, cfg.store_size, resources):
        log.info("segmenter data: streamed, decoded every epoch (%.0f MB decoded, "
                 "cache_decoded %s, object store %.0f MB)", size / 1e6, cfg.cache_decoded,
                 resources.get("object_store_memory", 0) / 1e6)  # fmt: skip
        return dataset
    started = time.time()
    dataset = dataset.materialize()
    log.info("segmenter data: cached, decoded once in %.0f s (%.0f MB, cache_decoded %s, "
             "object store %.0f MB)", time.time() - started, size / 1e6, cfg.cache_decoded,
             resources.get("object_store_memory", 0) / 1e6)  # fmt: skip
    return dataset


def balanced_sources(sources: list[dict], cfg: SegmenterTrainConfig) -> list[dict]:
    """The sources as one epoch lists them: each once, or with class_balance repeat, sources of
    rare tags repeated (repeat-factor sampling; the label pixel counts then see the repeats too)."""
    if cfg.class_balance == "none":
        return sources
    tags = [json.loads(source["tags"]) for source in sources]
    factors = repeat_factors(tags, [len(json.loads(s["frames"])) for s in sources])
    out = repeated(sources, factors)
    log.info("class_balance repeat: %d sources -> %d per epoch (%d -> %d samples; most repeats %d)",
             len(sources), len(out), count_samples(sources), count_samples(out),
             max(factors))  # fmt: skip
    return out


def _mask_regions(labels_uri: str, rows: list[dict]) -> dict[str, int]:
    """curriculum.foreground_regions of each labelled row's mask, by its mask_uri (unreadable
    masks left out: their rows are not simple)."""
    regions = {}
    for row in rows:
        if row.get(schema.STATUS) != schema.LABELLED or not row.get(schema.MASK_URI):
            continue
        try:
            mask = read_mask(storage.resolve(labels_uri, row[schema.MASK_URI]))
        except (FileNotFoundError, StorageError, ValueError) as error:
            log.warning("curriculum skips %s: %s", row[schema.MASK_URI], error)
            continue
        regions[row[schema.MASK_URI]] = foreground_regions(mask)
    return regions


def curriculum_sources(
    labels_uri: str, sources: list[dict], cfg: SegmenterTrainConfig
) -> list[dict]:
    """The simple part of the training sources for curriculum simple_first (STC; see
    pipeline.train.curriculum), [] when the curriculum is off or the part is smaller than one
    global batch (then every epoch trains on all sources, with a warning)."""
    if cfg.curriculum == "none":
        return []
    rows = read_table(storage.join(labels_uri, schema.MANIFEST_NAME)).to_pylist()
    simple_uris = simple_masks(rows, _mask_regions(labels_uri, rows))
    picked = simple_sources(sources, {storage.resolve(labels_uri, m) for m in simple_uris})
    samples = count_samples(picked)
    if samples < cfg.batch_size:
        log.warning("curriculum simple_first: only %d simple samples (a batch is %d); training "
                    "on all rows from the start", samples, cfg.batch_size)  # fmt: skip
        return []
    log.info("curriculum simple_first: %d of %d sources (%d samples) are simple; the first %d "
             "of %d epochs train on them", len(picked), len(sources), samples,
             simple_epoch_count(cfg.simple_epochs, cfg.epochs), cfg.epochs)  # fmt: skip
    return picked


def label_pixel_counts(
    sources: list[dict], num_classes: int, data_cpus: float
) -> tuple[np.ndarray, np.ndarray]:
    """class_pixel_counts over every training mask, read and counted by Ray Data tasks (the
    driver only adds up one (C,) pair per batch, so a web-scale label set is never read by it)."""
    uris = [{"uri": uri} for source in sources for uri in json.loads(source["masks"])]
    pixels, image_pixels = np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    if not uris:
        return pixels, image_pixels
    counted = ray.data.from_items(uris).map_batches(
        _count_masks,
        fn_kwargs={"num_classes": num_classes},
        batch_size=64,
        batch_format="numpy",
        num_cpus=data_cpus,
    )
    for batch in counted.iter_batches(batch_size=None, batch_format="numpy"):
        pixels += batch["pixels"].sum(0)
        image_pixels += batch["image_pixels"].sum(0)
    return pixels, image_pixels


def _count_masks(batch: dict, num_classes: int) -> dict:
    pixels, image_pixels = class_pixel_counts(read_masks(batch["uri"]), num_classes)
    return {"pixels": pixels[None], "image_pixels": image_pixels[None]}


def class_terms(
    sources: list[dict], classes, cfg: SegmenterTrainConfig
) -> tuple[list[float] | None, list[float] | None, dict[str, list[int]]]:
    """(per-class loss weights (cfg.class_weighting), logit offsets (cfg.logit_adjustment), the
    training masks' pixel counts {"pixels", "image_pixels"}) from the masks' pixel counts; the
    first two None when off; logged. The counts go into the checkpoint: predict derives the
    presence prior shift from them (class_weights.presence_shift)."""
    pixels, image_pixels = label_pixel_counts(sources, len(classes), cfg.data_cpus)
    counts = {"pixels": pixels.tolist(), "image_pixels": image_pixels.tolist()}
    weights = offset = None
    if cfg.class_weighting == "median_frequency":
        weights = median_frequency_weights(pixels, image_pixels, cfg.max_class_weight)
        log.info("segmenter class weights (%s): %s", cfg.class_weighting,
                 ", ".join(f"{c} {w:.2f}" for c, w in zip(classes, weights, strict=True)))  # fmt: skip
    offset = logit_offset(pixels, cfg.logit_adjustment)
    if offset is not None:
        log.info("segmenter logit adjustment (tau %g): %s", cfg.logit_adjustment,
                 ", ".join(f"{c} {o:.2f}" for c, o in zip(classes, offset, strict=True)))  # fmt: skip
    return _rounded(weights), _rounded(offset), counts


def _rounded(values) -> list[float] | None:
    return None if values is None else [round(float(v), 4) for v in values]


def build_trainer(labels_uri: str, out_uri: str, cfg: SegmenterTrainConfig, resume: bool = False):
    """(TorchTrainer, loop config) for a label set; resolves classes, GPU and the MLflow run."""
    sources, classes, collection_root = read_label_set(labels_uri, cfg.min_confidence)
    if not sources:
        raise ValueError(
            f"{labels_uri} has no labelled rows to train on"
            + (f" with confidence >= {cfg.min_confidence}" if cfg.min_confidence > 0 else "")
        )
    sources = balanced_sources(sources, cfg)
    cfg = replace(
        cfg,
        model=replace(cfg.model, num_classes=len(classes)),
        tracking_uri=tracking.tracking_uri_for(cfg.tracking_uri, out_uri),
    )
    state = absolute(state_uri(out_uri))
    if resume and not has_checkpoints(state, cfg.run_name):
        log.warning("--resume: no checkpoint under %s, starting from scratch", state)
    tags = tracking.run_tags(COMMAND, collection_root, out_uri, {tracking.TAG_LABELS: labels_uri})
    run_id = get_or_create_run(
        cfg.tracking_uri,
        cfg.experiment,
        storage.join(state, RUN_RECORD),
        tracking.run_name(COMMAND, out_uri),
        tags,
    )
    samples = count_samples(sources)
    simple = curriculum_sources(labels_uri, sources, cfg)
    simple_samples = count_samples(simple)
    dataset = cached_or_streamed(training_dataset(sources, cfg), cfg, samples, simple_samples)
    extra_datasets = {}
    if simple:
        extra_datasets["simple"] = cached_or_streamed(
            training_dataset(simple, cfg), cfg, simple_samples, samples
        )
    weights, offset, label_pixels = class_terms(sources, classes, cfg)
    loop_config = {
        "cfg": cfg,
        "classes": list(classes),
        "class_weights": weights,
        "logit_offset": offset,
        "label_pixels": label_pixels,
        "out_uri": out_uri,
        "run_id": run_id,
        "samples": samples,
        "simple": {
            "epochs": simple_epoch_count(cfg.simple_epochs, cfg.epochs) if simple else 0,
            "samples": simple_samples,
        },
        "labels_uri": labels_uri,
        "previews": _previews(sources, cfg),
        "result_uri": storage.join(state, RESULT),
    }
    trainer = make_trainer(
        train_loop,
        loop_config,
        dataset,
        cfg,
        name=cfg.run_name,
        storage_path=state,
        num_to_keep=2,
        extra_datasets=extra_datasets,
    )
    return trainer, loop_config


def train_segmenter(
    labels_uri: str, out_uri: str, cfg: SegmenterTrainConfig | None = None, resume: bool = False
) -> dict:
    """Train (or resume) a segmenter on a pseudo-label set; write it to out_uri and register it.

    Returns {"model_uri", "registered_model_uri", "version", "mlflow_run_id", "epochs",
    "val_miou", "train_samples", "wall_s"}.
    """
    cfg = cfg or SegmenterTrainConfig()
    start = time.time()
    trainer, loop_config = build_trainer(labels_uri, out_uri, cfg, resume)
    storage.remove(loop_config["result_uri"])
    trainer.fit()
    summary = json.loads(storage.read_text(loop_config["result_uri"]))
    summary.update(
        train_samples=loop_config["samples"], wall_s=round(time.time() - start, 1), alias=CANDIDATE
    )
    return summary
