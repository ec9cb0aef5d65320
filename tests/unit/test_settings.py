from pathlib import Path

import pytest

from pipeline.config import ConfigError
from pipeline.settings import WebSegConfig, default_yaml, load_settings

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def test_shipped_default_yaml_is_current_and_loads():
    assert DEFAULT_YAML.read_text() == default_yaml(), "regenerate: python -m pipeline.settings"
    assert load_settings(str(DEFAULT_YAML)) == WebSegConfig()


def test_unknown_section_key_is_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("pseudo_label:\n  video:\n    mode: graph\n    modee: crf\n")
    with pytest.raises(ConfigError, match="pseudo_label.video.modee"):
        load_settings(str(path))


def test_invalid_choice_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("pseudo_label:\n  video:\n    mode: sideways\n")
    with pytest.raises(ConfigError, match="mode"):
        load_settings(str(path))
