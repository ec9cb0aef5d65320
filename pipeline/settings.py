"""The whole WebSeg config: one section per command, each a frozen dataclass (YAML: same keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.config import load_config
from pipeline.label_config import PseudoLabelConfig
from pipeline.predict import PredictConfig
from pipeline.retrain import RetrainConfig
from pipeline.train.classifier import ClassifierTrainConfig
from pipeline.train.segmenter import SegmenterTrainConfig


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
    from pipeline.config_docs import commented_yaml

    return HEADER + commented_yaml(WebSegConfig())


def section_names() -> tuple[str, ...]:
    import dataclasses

    return tuple(f.name for f in dataclasses.fields(WebSegConfig))


def effective_yaml(uri: str | None, section: str | None = None) -> str:
    """The config a command runs with (defaults, then the file `uri`), as commented YAML;
    `section` (a section name such as pseudo_label, or a command such as pseudo-label) keeps one."""
    from pipeline.config import ConfigError
    from pipeline.config_docs import commented_yaml_lines

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
