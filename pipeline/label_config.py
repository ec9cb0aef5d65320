"""The pseudo-label command's config: one frozen dataclass per stage, composed."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.cam_config import CamConfig, check_batch_size
from pipeline.collection import CollectionConfig
from pipeline.decode import DecodeConfig
from pipeline.refine.image_labeller import ImageLabelConfig
from pipeline.video.relevance import RelevanceConfig
from pipeline.video.segment import VideoSegConfig
from pipeline.video.shots import ShotConfig

AUTO = "auto"


@dataclass(frozen=True)
class StageResources:
    """Ray resources of one stage; 'auto' is resolved from the cluster's resources."""

    actors: int | str = AUTO  # actor pool size; decode/write: tasks at once (auto: 1 per CAM actor)
    num_gpus: float | str = 0.0  # GPUs per actor; 'auto' = 1 when the cluster has GPUs, else 0
    num_cpus: float = (
        1.0  # logical CPUs per task/actor (fractions keep small nodes from deadlocking)
    )
    batch_size: int | str = 4  # rows per batch (a row is an image or a window of video frames)

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)


def _decode() -> StageResources:
    return StageResources(num_cpus=0.25, batch_size=2)


def _cam() -> StageResources:
    return StageResources(num_gpus=AUTO, num_cpus=1.0, batch_size=AUTO)


def _refine() -> StageResources:
    return StageResources(num_cpus=0.5, batch_size=1)


def _write() -> StageResources:
    return StageResources(num_cpus=0.25, batch_size=8)


@dataclass(frozen=True)
class ResourcesConfig:
    decode: StageResources = field(default_factory=_decode)  # Ray tasks
    cam: StageResources = field(default_factory=_cam)  # actor pool, GPU where the cluster has one
    refine: StageResources = field(default_factory=_refine)  # CPU actor pool (CRF, graph cuts)
    write: StageResources = field(default_factory=_write)  # Ray tasks
    cpu_cam_share: float = 0.75  # no GPU, cam.actors auto: CAM's share of the CPUs; rest: refine
    fuse_cam_refine: bool | str = AUTO  # one actor pool runs decode, CAM, refinement and write
    # (cam's resources; write.batch_size images per call); auto: on a cluster without GPUs (docs/cluster.md)

    def __post_init__(self) -> None:
        if self.fuse_cam_refine != AUTO and not isinstance(self.fuse_cam_refine, bool):
            raise ValueError(
                f"resources.fuse_cam_refine must be true, false or auto, not {self.fuse_cam_refine!r}"
            )
        if not 0.0 < self.cpu_cam_share < 1.0:
            raise ValueError(f"resources.cpu_cam_share must be in (0, 1), not {self.cpu_cam_share}")
        for name in ("decode", "refine", "write"):
            if getattr(self, name).batch_size == AUTO:
                raise ValueError(
                    f"resources.{name}.batch_size: auto is for cam only; give a number"
                )


@dataclass(frozen=True)
class VideoConfig:
    mode: str = "graph"  # "crf": per-frame image labeller; "graph": spatio-temporal min-cut; "both"
    # graph mode: a kept frame whose cut marks less than this share of its pixels as foreground
    # (nothing moved: a parked car) gets the per-frame labeller, not all background; 0 = never
    per_frame_below: float = 0.002
    shots: ShotConfig = field(default_factory=ShotConfig)
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    segment: VideoSegConfig = field(default_factory=VideoSegConfig)

    def __post_init__(self) -> None:
        if self.mode not in ("crf", "graph", "both"):
            raise ValueError(f"video.mode must be crf, graph or both, not {self.mode!r}")
        if not 0.0 <= self.per_frame_below < 1.0:
            raise ValueError(f"video.per_frame_below must be in [0, 1), not {self.per_frame_below}")


@dataclass(frozen=True)
class PixelHeadConfig:
    """The image route's second pass (pipeline.models.pixel_head): a first pass labels a sample of
    the collection's images, a linear pixel classifier is fitted on their cleanly labelled cells,
    and every image is labelled with its maps averaged into the CAMs. Videos are not affected."""

    enabled: bool = True  # off: one pass, CAMs alone (half the image route's cost)
    share: float = 0.5  # the head's share of each tag's map (the rest stays the CAM's)
    sample_images: int = 1000  # first-pass images (evenly spread over the collection's images)
    cells_per_image: int = 512  # at most this many stride-16 cells of each sampled image
    purity: float = 0.75  # a cell is a sample when one label covers this share of its pixels
    min_images: int = 10  # a class's maps are mixed in once its cells come from this many images
    weight_decay: float = 0.01  # L2 on the head's weights
    steps: int = 300  # full-batch Adam steps of the fit

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"pixel_head.share must be in (0, 1], not {self.share}")
        if not 0.5 < self.purity <= 1.0:
            raise ValueError(f"pixel_head.purity must be in (0.5, 1], not {self.purity}")
        for name in ("sample_images", "cells_per_image", "steps", "min_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"pixel_head.{name} must be >= 1, not {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ValueError(f"pixel_head.weight_decay must be >= 0, not {self.weight_decay}")


@dataclass(frozen=True)
class OutputConfig:
    retry_failed: bool = True  # a rerun retries failed items (labelled/filtered ones are skipped)
    save_cams: bool = True  # write cams/<id>.png heatmaps of images for the report


@dataclass(frozen=True)
class PseudoLabelConfig:
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    cam: CamConfig = field(default_factory=CamConfig)
    image: ImageLabelConfig = field(default_factory=ImageLabelConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    pixel_head: PixelHeadConfig = field(default_factory=PixelHeadConfig)  # images: second pass
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        offline = builtin_prior_options(self.image)
        if offline:
            raise ValueError(
                f"{', '.join(offline)}: the built-in foreground prior is measured offline only "
                "(benchmarks/builtin_prior.py; it did not help, docs/quality.md): the pipeline's "
                "CAM stage does not compute it"
            )


def builtin_prior_options(image: ImageLabelConfig) -> list[str]:
    """The image settings that need the built-in foreground prior map, as dotted keys."""
    uses = {
        "image.cam_crf.background": image.cam_crf.background != "cam",
        "image.objectness.saliency_source": image.objectness.saliency_source != "colour",
        "image.dsrg.cues.saliency_source": image.dsrg.cues.saliency_source != "colour",
    }
    return [key for key, used in uses.items() if used]
