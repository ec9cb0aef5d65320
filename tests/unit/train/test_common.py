"""train.common: state paths, the TorchTrainer construction (built, never fitted: no Ray started)
and the all-gather across workers, over a real two-process gloo group."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline.train import common
from pipeline.train.common import (
    absolute,
    all_gather,
    concat_across_workers,
    make_trainer,
    mean_across_workers,
    state_uri,
    sum_across_workers,
)
from pipeline.train.config import ClassifierTrainConfig, SegmenterTrainConfig


def test_state_lives_beside_the_model_at_an_absolute_path():
    assert state_uri("out/model") == "out/model/train"
    assert state_uri("out/classifier.pth/") == "out/classifier.pth.train"
    assert absolute("out/model") == os.path.join(os.getcwd(), "out/model")
    assert absolute("file:///data/x") == "/data/x"
    assert absolute("s3://bucket/x") == "s3://bucket/x"


def _loop(config: dict) -> None:
    pass


@pytest.mark.parametrize(
    ("cfg", "cluster", "gpu"),
    [
        (ClassifierTrainConfig(workers=3, cpus_per_worker=2, use_gpu="auto"), {"CPU": 8.0}, False),
        (SegmenterTrainConfig(workers=2, use_gpu="auto"), {"CPU": 8.0, "GPU": 2.0}, True),
        (SegmenterTrainConfig(use_gpu=False), {"GPU": 2.0}, False),
    ],
)
def test_make_trainer_wires_workers_gpus_state_and_the_train_shard(monkeypatch, cfg, cluster, gpu):
    monkeypatch.setattr(common.ray, "cluster_resources", lambda: cluster)
    dataset = object()  # any dataset: the trainer is only built
    trainer = make_trainer(
        _loop, {"k": 1}, dataset, cfg, name="run-1", storage_path="/tmp/state", num_to_keep=2
    )
    scaling, run = trainer.scaling_config, trainer.run_config
    assert (scaling.num_workers, scaling.use_gpu) == (cfg.workers, gpu)
    assert scaling.resources_per_worker == {"CPU": cfg.cpus_per_worker}
    assert (run.name, run.storage_path, run.checkpoint_config.num_to_keep) == (
        "run-1",
        "/tmp/state",
        2,
    )
    assert trainer.train_loop_config == {"k": 1} and trainer.datasets == {"train": dataset}


def test_without_a_process_group_every_gather_is_the_identity():
    array = np.arange(6.0).reshape(3, 2)
    assert all_gather(array) == [array]
    assert concat_across_workers(array) is array
    assert sum_across_workers(array) is array
    assert mean_across_workers(0.25, 8) == 0.25
    assert mean_across_workers(0.0, 0) == 0.0


def _worker(rank: int, store: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        rows = np.full((rank + 1, 2), rank, np.int64)  # rank 0: one row of 0s, rank 1: two of 1s
        results.put(
            (
                rank,
                concat_across_workers(rows).tolist(),
                sum_across_workers(np.array([1, rank * 10])).tolist(),
                mean_across_workers([0.5, 2.0][rank], [1, 3][rank]),
            )
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_workers_gather_in_rank_order(tmp_path):
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(r, str(tmp_path / "store"), results)) for r in (0, 1)
    ]
    for proc in procs:
        proc.start()
    got = sorted(results.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    for _rank, rows, summed, mean in got:  # every worker sees the same result
        assert rows == [[0, 0], [1, 1], [1, 1]]
        assert summed == [2, 10]
        assert mean == pytest.approx((0.5 * 1 + 2.0 * 3) / 4)
