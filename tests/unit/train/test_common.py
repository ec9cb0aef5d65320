"""train.common: the all-gather across workers, over a real two-process gloo group (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline.train.common import (
    all_gather,
    concat_across_workers,
    mean_across_workers,
    sum_across_workers,
)


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
