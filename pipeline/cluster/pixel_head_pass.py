"""The image route's first pass (docs/quality.md, "Pixel head"): a sample of the collection's
images labelled as the one-pass route labels them, their cleanly labelled stride-16 cells
gathered, and the pixel head (pipeline.models.pixel_head) fitted on them on the driver. The head
is saved in the label set (schema.PIXEL_HEAD_NAME), so that a resumed run labels the rest of the
collection with the same head; the second pass is the ordinary job with the head in its CAM stage.

items (sample) -> decode, CAM (+ pixel features), refine, cells (one actor pool) -> fit (driver)
"""

from __future__ import annotations

import io
import logging
from collections import Counter

import numpy as np
import ray
from ray.data import ActorPoolStrategy

from pipeline import schema, storage
from pipeline.cluster.io_stages import DecodeStage, item_row
from pipeline.cluster.stages import CamStage, RefineStage
from pipeline.collection import Item
from pipeline.label_config import PixelHeadConfig, PseudoLabelConfig, StageResources
from pipeline.models.pixel_head import CellSamples, PixelHead, cell_samples, fit_pixel_head
from pipeline.progress import progress_bar
from pipeline.rows import iter_rows, loads, to_batch

log = logging.getLogger(__name__)

CELL_COLUMNS = ("cell_features", "cell_labels", "cell_allowed")


def head_sample(items: tuple[Item, ...], count: int) -> list[Item]:
    """Up to count of the collection's tagged, readable images, evenly spread over its order."""
    images = [it for it in items if it.kind == schema.KIND_IMAGE and it.tag_ids and not it.error]
    if len(images) <= count:
        return images
    picks = np.linspace(0, len(images) - 1, count).round().astype(int)
    return [images[i] for i in np.unique(picks)]


def enough_images(sample: list[Item], min_images: int) -> bool:
    """Whether some tag is on min_images of the sample (else no class's maps could be mixed in)."""
    counts = Counter(tag for item in sample for tag in set(item.tag_ids))
    return bool(counts) and max(counts.values()) >= min_images


class PixelSampleStage:
    """Actor: decode, CAM, refine and cell sampling of a few images in one process; emits one row
    per image with its training cells (CELL_COLUMNS, ragged; none for an image that failed)."""

    def __init__(self, model_uri: str, cfg: PseudoLabelConfig):
        self.decode = DecodeStage(cfg.decode, frozenset())
        self.cam = CamStage(model_uri, cfg.cam, keep_pixel_features=True)
        self.refine, self.head_cfg = RefineStage(cfg), cfg.pixel_head
        self.num_labels = self.cam.model.cfg.num_classes + 1

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self.decode.prepare(row) for row in iter_rows(batch)]
        refined = self.refine.process(self.cam.process(self.decode.process(rows)))
        out = []
        for row in refined:
            labelled = loads(row[schema.FRAME_STATUS])[0] == schema.LABELLED
            if labelled and row[schema.PIXEL_FEATURES].shape[1]:
                cells = _cells(row, self.num_labels, self.head_cfg)
                values = (cells.features, cells.labels, cells.allowed)
            else:
                values = (
                    np.zeros((0, 0), np.float16),
                    np.zeros(0, np.int64),
                    np.zeros((0, 0), bool),
                )
            out.append(dict(zip(CELL_COLUMNS, values, strict=True)))
        return to_batch(out, CELL_COLUMNS)


def _cells(row: dict, num_labels: int, cfg: PixelHeadConfig) -> CellSamples:
    seed = int(row[schema.SOURCE_INDEX])  # the same cells whichever actor labels the image
    return cell_samples(
        row[schema.PIXEL_FEATURES][0],
        row[schema.MASKS][0],
        loads(row[schema.TAG_IDS]),
        num_labels,
        cfg.purity,
        cfg.cells_per_image,
        seed,
    )


def load_or_fit_head(
    items: tuple[Item, ...],
    model_uri: str,
    out_uri: str,
    cfg: PseudoLabelConfig,
    cam_resources: StageResources,
) -> PixelHead | None:
    """The label set's saved head, or a new one fitted on a first pass over head_sample (saved
    before the second pass starts); None when the sample gives nothing to fit."""
    path = storage.join(out_uri, schema.PIXEL_HEAD_NAME)
    if storage.exists(path):
        log.info("pixel head: reusing %s", path)
        with np.load(io.BytesIO(storage.read_bytes(path))) as arrays:
            return PixelHead.from_arrays(arrays)
    sample = head_sample(items, cfg.pixel_head.sample_images)
    if not enough_images(sample, cfg.pixel_head.min_images):
        log.info(
            "pixel head: no tag is on %d of the sampled images; one pass only",
            cfg.pixel_head.min_images,
        )
        return None
    cells = _first_pass(sample, model_uri, cfg, cam_resources)
    if cells is None or len(np.unique(cells.labels)) < 2:
        log.warning("pixel head: the first pass labelled no usable cells; one pass only")
        return None
    log.info("pixel head: fitting on %d cells of %d images", len(cells.labels), len(sample))
    settings = cfg.pixel_head
    head = fit_pixel_head(cells, settings.weight_decay, settings.steps, settings.min_images)
    log.info("pixel head: the maps of %d classes are mixed in", int(head.seen[1:].sum()))
    buffer = io.BytesIO()
    np.savez(buffer, **head.arrays())
    storage.write_bytes(path, buffer.getvalue())
    return head


def _first_pass(
    sample: list[Item], model_uri: str, cfg: PseudoLabelConfig, res: StageResources
) -> CellSamples | None:
    if not sample:
        return None
    rows = [item_row(item) for item in sample]
    per_call = 4
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // per_call))
    cells = dataset.map_batches(
        PixelSampleStage,
        fn_constructor_kwargs={"model_uri": model_uri, "cfg": cfg},
        compute=ActorPoolStrategy(size=max(1, min(int(res.actors), len(rows) // per_call or 1))),
        num_gpus=res.num_gpus,
        num_cpus=res.num_cpus,
        batch_size=per_call,
        batch_format="numpy",
    )
    parts: list[CellSamples] = []
    with progress_bar("pixel head, first pass", total=len(rows), unit="images") as bar:
        for batch in cells.iter_batches(batch_size=None, batch_format="numpy"):
            for row in iter_rows(batch):
                labels = row[CELL_COLUMNS[1]]
                image = np.zeros(len(labels), np.int64)  # numbered by concat
                if len(labels):
                    parts.append(
                        CellSamples(row[CELL_COLUMNS[0]], labels, row[CELL_COLUMNS[2]], image)
                    )
            bar.update(len(batch[CELL_COLUMNS[0]]))  # every image, failed ones too
    return CellSamples.concat(parts) if parts else None
