"""`webseg predict` on a Ray cluster: items spread over an actor pool, GPU where the cluster has one.

collection items -> PredictStage actors (segmenter built once per actor from weights the driver
put in the object store, so models:/ URIs are resolved once and workers need no MLflow access)
-> masks written by the actors, manifest rows gathered on the driver.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy

from pipeline import schema
from pipeline.cluster.io_stages import item_row
from pipeline.cluster.resources import resolve_predict_resources
from pipeline.cluster.stage_base import Stage
from pipeline.collection import Item
from pipeline.labelset import MANIFEST_SCHEMA
from pipeline.predict import predict_item
from pipeline.progress import progress_bar
from pipeline.rows import loads


def item_from_row(row: dict[str, Any]) -> Item:
    """Inverse of io_stages.item_row: the collection item a dataset row stands for."""
    return Item(
        id=row[schema.ID],
        uri=row[schema.URI],
        kind=row[schema.KIND],
        tags=tuple(loads(row[schema.TAGS])),
        tag_ids=tuple(loads(row[schema.TAG_IDS])),
        source_uri=row[schema.SOURCE_URI],
        source_index=int(row[schema.SOURCE_INDEX]),
        error=row[schema.REASON] or None,
    )


class PredictStage(Stage):
    """Actor: builds the segmenter once on its device; masks of each item row, manifest rows out
    (predict_item turns a failed or unreadable item into its failed row itself; no timing column)."""

    def __init__(
        self, weights: ray.ObjectRef, out_uri: str, long_side: int, cfg: Any, shift: Any = None
    ):
        # deferred: loads torch only where a model is built or run
        import torch

        from pipeline.models.deeplab import DeepLabV3

        model_config, state_dict = ray.get(weights)  # Ray Data passes constructor args unresolved
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = DeepLabV3(model_config)
        self.model.load_state_dict(state_dict)
        self.model.to(device).eval()
        self.out_uri, self.long_side, self.cfg, self.shift = out_uri, long_side, cfg, shift

    def passes(self, row: dict[str, Any]) -> bool:
        return False

    def compute(self, row: dict[str, Any]) -> list[dict]:
        item = item_from_row(row)
        return predict_item(self.model, item, self.out_uri, self.long_side, self.cfg, self.shift)

    def output(self, rows: list[dict]) -> pa.Table:
        return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


def predict_on_ray(
    model, items: tuple[Item, ...], out_uri: str, long_side: int, cfg: Any, shift: Any = None
) -> list[dict]:
    """Manifest rows of every item, segmented by an actor pool (Ray must be initialised).

    model: a DeepLabV3 (its cfg and weights go to the actors); cfg: a PredictConfig; shift: the
    (C,) logit shift of predict.tag_prior_shift or None."""
    res = resolve_predict_resources(cfg.resources, ray.cluster_resources())
    weights = ray.put((model.cfg, {k: v.cpu() for k, v in model.state_dict().items()}))
    dataset = ray.data.from_items([item_row(item) for item in items]).map_batches(
        PredictStage,
        fn_constructor_args=(weights, out_uri, long_side, cfg, shift),
        # elastic: starts with one actor, so a cluster busy with other work still makes progress
        compute=ActorPoolStrategy(min_size=1, max_size=res.actors),
        num_gpus=res.num_gpus,
        num_cpus=res.num_cpus,
        batch_size=res.batch_size,
    )
    rows: list[dict] = []
    with progress_bar("predict", total=len(items), unit="items") as bar:
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            batch_rows = table.to_pylist()  # an item's rows all come from one actor call
            rows += batch_rows
            bar.update(len({r[schema.ID] for r in batch_rows}))
    order = {item.id: i for i, item in enumerate(items)}
    return sorted(rows, key=lambda r: (order[r[schema.ID]], r[schema.FRAME_INDEX] or -1))
