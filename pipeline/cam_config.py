"""The CAM stage's config (CamConfig). No torch: pipeline.settings imports this; pipeline.cam
computes the maps."""

from __future__ import annotations

from dataclasses import dataclass


def check_batch_size(value: object) -> None:
    """A batch_size setting is a positive integer or 'auto' (resolved where it is used)."""
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"batch_size must be a positive integer or auto, not {value!r}")


@dataclass(frozen=True)
class CamConfig:
    input_size: int = 320  # short side in pixels the image is resized to at scale 1.0
    scales: tuple[float, ...] = (1.0,)  # multi-scale inference: e.g. (0.5, 1.0, 1.5, 2.0) as in IRN
    flip: bool = True  # also run the horizontally flipped image and average
    batch_size: int | str = "auto"  # images per forward pass; auto: 8 on a GPU, 2 on a CPU
    size_bucket: int = 0  # round sides to multiples of this: mixed sizes share a batch (GPU)
    max_long_side: int = 1280  # cap on the long side at scale 1.0 (very wide panoramas)
    stochastic_passes: int = 8  # FickleNet-style random-dropout passes of the head; 0 = off
    stochastic_dropout: float = 0.7  # share of hidden units each pass drops (docs/quality.md)
    seed: int = 0  # random seed of the stochastic passes (same seed, same maps)
    imagenet_prior: bool = True  # ImageNet head's maps/scores fused in (frozen ImageNet backbones)
    layer_cam: bool = True  # images: stride-16 LayerCAM (Jiang et al. 2021) averaged in; not frames

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        if self.stochastic_passes < 0:
            raise ValueError(f"stochastic_passes must be >= 0, got {self.stochastic_passes}")
        if self.size_bucket < 0:
            raise ValueError(f"size_bucket must be >= 0, got {self.size_bucket}")
        if not 0.0 <= self.stochastic_dropout < 1.0:
            raise ValueError(f"stochastic_dropout must be in [0, 1), got {self.stochastic_dropout}")
