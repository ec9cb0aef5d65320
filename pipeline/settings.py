"""The whole WebSeg config: one section per command, each a frozen dataclass (YAML: same keys).

Defined here: PredictConfig (webseg predict) and RetrainConfig (webseg retrain); the others come
from pipeline.label_config and pipeline.train.config. No Ray and no MLflow are imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import ConfigError, load_config
from pipeline.config_docs import commented_yaml, commented_yaml_lines
from pipeline.decode import DecodeConfig
from pipeline.label_config import AUTO, PseudoLabelConfig, StageResources
from pipeline.refine.crf import CRFConfig
from pipeline.train.config import ClassifierTrainConfig, SegmenterTrainConfig

PRIOR_SHIFTS = ("presence", "none")
PREDICT_REFINES = ("crf", "none")
# DeepLab's post-processing CRF (colour width 5, weight 4, 10 steps; its 50 px spatial width at
# 500 px is 32 px at crf_side 320). The image route's stronger IRN kernel (colour 13, weight 8)
# eats thin limbs in frames: dev video J 52.8 -> 46.7 (docs/quality.md).
DEEPLAB_CRF = CRFConfig(iterations=10, bilateral_sxy=32.0, bilateral_srgb=5.0, bilateral_compat=4.0)


@dataclass(frozen=True)
class PredictConfig:
    long_side: int = 0  # working resolution (long side, px); 0 = the one the model was trained with
    restrict_to_tags: bool | str = AUTO  # only background and the item's tags may be predicted
    # (tags are the collection's weak labels; empty tags = a negative, all background); auto:
    # when any item of the collection has tags (an untagged collection is predicted unrestricted)
    prior_shift: str = "none"  # none: raw logits (dev, 24-epoch repeat-sampled segmenters: image
    # mIoU 46.0 -> 47.4 and 45.4 -> 47.0 (seeds 0, 1), 44.0 -> 46.1 (320 crops) against presence;
    # docs/quality.md); presence (images with restrict_to_tags): logits + log(all pixels / pixels
    # of the training masks holding the class), the prior of a class known present (the
    # checkpoint's label counts; frames keep raw logits), for segmenters that missed rare classes
    refine: str = "crf"  # crf: the logits through a dense CRF, as DeepLab v1/v2 post-process
    # theirs (dev: image mIoU 34.4 -> 35.5, video J 52.8 -> 53.4; docs/quality.md); none: the
    # plain argmax (the registry's pyfunc model always returns that)
    crf_side: int = 320  # long side (px) the CRF runs at, the size its pixel widths are set for
    crf: CRFConfig = field(default_factory=lambda: DEEPLAB_CRF)  # DeepLab's kernel settings
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # frame sampling and size limits
    resources: StageResources = field(  # actor pool; actors 0 = sequentially on the driver, no Ray
        default_factory=lambda: StageResources(actors=AUTO, num_gpus=AUTO, batch_size=1)
    )
    tracking_uri: str | None = None  # MLflow store of models:/ URIs; None: MLFLOW_TRACKING_URI,
    # else mlflow.db beside the --out label set (pipeline/tracking/runs.py)

    def __post_init__(self) -> None:
        if self.restrict_to_tags != AUTO and not isinstance(self.restrict_to_tags, bool):
            raise ValueError(
                f"predict.restrict_to_tags must be true, false or auto, not {self.restrict_to_tags!r}"
            )
        if self.prior_shift not in PRIOR_SHIFTS:
            raise ValueError(
                f"predict.prior_shift must be one of {PRIOR_SHIFTS}, not {self.prior_shift!r}"
            )
        if self.refine not in PREDICT_REFINES:
            raise ValueError(
                f"predict.refine must be one of {PREDICT_REFINES}, not {self.refine!r}"
            )
        if self.crf_side < 32:
            raise ValueError(f"predict.crf_side must be at least 32 px, not {self.crf_side}")


@dataclass(frozen=True)
class RetrainConfig:
    metric: str = "image_miou"  # key of pipeline.evaluate's result that decides promotion
    min_improvement: float = 0.0  # the candidate must beat the champion by more than this
    lock_ttl_s: float = 6 * 3600.0  # a lease older than this is stale (its run died)
    alias: str = "champion"  # MLflow alias moved on promotion (on segmenter.registered_model_name)


@dataclass(frozen=True)
class WebSegConfig:
    pseudo_label: PseudoLabelConfig = field(
        default_factory=PseudoLabelConfig
    )  # webseg pseudo-label
    classifier: ClassifierTrainConfig = field(
        default_factory=ClassifierTrainConfig
    )  # webseg train-classifier
    segmenter: SegmenterTrainConfig = field(
        default_factory=SegmenterTrainConfig
    )  # webseg train-segmenter (and retrain's training step)
    predict: PredictConfig = field(default_factory=PredictConfig)  # webseg predict
    retrain: RetrainConfig = field(default_factory=RetrainConfig)  # webseg retrain


def load_settings(uri: str | None, overrides: dict[str, Any] | None = None) -> WebSegConfig:
    """The config from a YAML file (unknown keys rejected) with dotted-key overrides on top."""
    return load_config(WebSegConfig, uri, overrides)


HEADER = (
    "# WebSeg defaults: `python -m pipeline.settings > configs/default.yaml` regenerates this.\n"
)

# `webseg config --section` takes a section name or the command that reads it.
COMMAND_SECTIONS = {
    "pseudo-label": "pseudo_label",
    "train-classifier": "classifier",
    "train-segmenter": "segmenter",
    "predict": "predict",
    "retrain": "retrain",
}


def default_yaml() -> str:
    """Every config key with its default and its source comment, as YAML (configs/default.yaml)."""
    return HEADER + commented_yaml(WebSegConfig())


def section_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(WebSegConfig))


def effective_yaml(uri: str | None, section: str | None = None) -> str:
    """The config a command runs with (defaults, then the file `uri`), as commented YAML;
    `section` (a section name such as pseudo_label, or a command such as pseudo-label) keeps one."""
    settings = load_settings(uri)
    names = section_names()
    if section is None:
        return "\n".join(commented_yaml_lines(settings)) + "\n"
    name = COMMAND_SECTIONS.get(section, section.replace("-", "_"))
    if name not in names:
        raise ConfigError(f"unknown config section {section!r}; sections: {', '.join(names)}")
    body = commented_yaml_lines(getattr(settings, name), "  ")
    return "\n".join([f"{name}:", *body]) + "\n"


if __name__ == "__main__":
    print(default_yaml(), end="")
