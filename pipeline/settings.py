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
    pseudo_label: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    classifier: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    segmenter: SegmenterTrainConfig = field(default_factory=SegmenterTrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)


def load_settings(uri: str | None, overrides: dict[str, Any] | None = None) -> WebSegConfig:
    """The config from a YAML file (unknown keys rejected) with dotted-key overrides on top."""
    return load_config(WebSegConfig, uri, overrides)


def default_yaml() -> str:
    """Every config key with its default, as YAML (configs/default.yaml is this output)."""
    import dataclasses

    import yaml

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    header = "# WebSeg defaults: `python -m pipeline.settings > configs/default.yaml` regenerates this.\n"
    return header + yaml.safe_dump(plain(dataclasses.asdict(WebSegConfig())), sort_keys=False)


if __name__ == "__main__":
    print(default_yaml(), end="")
