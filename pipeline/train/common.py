"""What the classifier's and the segmenter's training share: where Ray Train keeps its state
(`state_uri`, `absolute`), the TorchTrainer construction (`make_trainer`, on the driver) and the
all-gather across workers (inside the worker loops).

The gathers run over torch.distributed (any backend) and are the identity when there is no process
group or only one worker, so the loops' pieces also run in plain tests.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch.distributed as dist

from pipeline import storage
from pipeline.cluster.resources import resolve_use_gpu
from pipeline.logs import train_log_level
from pipeline.train.config import ClassifierTrainConfig, SegmenterTrainConfig


def state_uri(out_uri: str) -> str:
    """Where training state lives: OUT/train, or OUT.train when OUT is a .pt/.pth file."""
    if out_uri.rstrip("/").endswith((".pt", ".pth")):
        return out_uri.rstrip("/") + ".train"
    return storage.join(out_uri, "train")


def absolute(uri: str) -> str:
    """A local path made absolute (Ray Train wants one); remote URIs unchanged."""
    return uri if storage.is_remote(uri) else os.path.abspath(uri.removeprefix("file://"))


def make_trainer(
    train_loop: Callable[[dict], None],
    loop_config: dict,
    dataset: ray.data.Dataset,
    cfg: ClassifierTrainConfig | SegmenterTrainConfig,
    *,
    name: str,
    storage_path: str,
    num_to_keep: int,
    extra_datasets: dict[str, ray.data.Dataset] | None = None,
) -> ray.train.torch.TorchTrainer:
    """A TorchTrainer running train_loop(loop_config) on cfg.workers workers of
    cfg.cpus_per_worker CPUs, with GPUs by cfg.use_gpu ('auto': whether the Ray cluster has any);
    `dataset` is the workers' "train" shard (extra_datasets: more shards, by name). Run `name`
    keeps its state and last num_to_keep checkpoints under storage_path (absolute, see
    `absolute`); Ray Train logs at train_log_level."""
    return ray.train.torch.TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers,
            use_gpu=resolve_use_gpu(cfg.use_gpu, ray.cluster_resources()),
            resources_per_worker={"CPU": cfg.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=num_to_keep),
            logging_config=ray.train.LoggingConfig(log_level=train_log_level()),
        ),
        datasets={"train": dataset, **(extra_datasets or {})},
        dataset_config=ray.train.DataConfig(execution_options=ordered_ingest()),
    )


def ordered_ingest():
    """Ray Train's default ingest options with preserve_order: Ray Data otherwise hands blocks on
    as they finish, so two runs of one config (same seed) trained on different orders and gave
    different models."""
    with warnings.catch_warnings():  # Ray's own copy of a deprecated default field
        warnings.filterwarnings("ignore", message=".*exclude_resources.*")
        options = ray.train.DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


def all_gather(array: np.ndarray) -> list[np.ndarray]:
    """Every worker's `array`, in rank order ([array] without a process group or with one worker).
    Every worker must call it (a collective)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [array]
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, array)
    return parts


def concat_across_workers(array: np.ndarray) -> np.ndarray:
    """Rows of every worker's array, concatenated in rank order (the array itself for one)."""
    parts = all_gather(array)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def sum_across_workers(array: np.ndarray) -> np.ndarray:
    """Element-wise sum of every worker's array (same shape on all; the array itself for one)."""
    parts = all_gather(array)
    return parts[0] if len(parts) == 1 else np.sum(parts, axis=0)


def mean_across_workers(value: float, count: int) -> float:
    """The mean of a per-worker mean `value` over `count` samples, weighted by the counts."""
    total, seen = sum_across_workers(np.array([value * count, count], np.float64))
    return float(total / max(seen, 1))
