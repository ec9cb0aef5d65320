"""configs/default.yaml's comments come from the dataclass fields' trailing comments."""

import dataclasses
from dataclasses import dataclass, field

import yaml

from pipeline.config_docs import commented_yaml, field_comments
from pipeline.settings import WebSegConfig, default_yaml, effective_yaml


@dataclass(frozen=True)
class _Inner:
    size: int = 3  # pixels per side


@dataclass(frozen=True)
class _Sample:
    """A docstring is not a comment."""

    plain: float = 0.5  # share of pixels kept
    # fmt: off
    wrapped: str = (
        "fail"  # inside the parentheses
    )
    # fmt: on
    long: int = 2  # a comment that goes on
    # under the field it explains
    noted: int = 4  # its own comment

    # a comment above a field without one
    bare: tuple[float, ...] = (1.0, 2.0)
    nothing: bool = True
    inner: _Inner = field(default_factory=_Inner)  # the nested part

    def method(self) -> int:
        plain = 1  # not a field's comment
        return plain


def test_field_comments_reads_trailing_continued_and_above_comments():
    assert field_comments(_Sample) == {
        "plain": "share of pixels kept",
        "wrapped": "inside the parentheses",
        "long": "a comment that goes on under the field it explains",
        "noted": "its own comment",
        "bare": "a comment above a field without one",
        "inner": "the nested part",
    }


def test_commented_yaml_puts_each_comment_on_its_key_and_loads_back():
    text = commented_yaml(_Sample())
    lines = text.splitlines()
    assert "plain: 0.5  # share of pixels kept" in lines
    assert "bare: [1.0, 2.0]  # a comment above a field without one" in lines
    assert "nothing: true" in lines
    assert "inner:  # the nested part" in lines
    assert "  size: 3  # pixels per side" in lines
    assert yaml.safe_load(text) == _as_yaml_data(_Sample())


def test_default_yaml_has_the_defaults_and_a_comment_on_most_keys():
    text = default_yaml()
    assert yaml.safe_load(text) == _as_yaml_data(WebSegConfig())
    keys = [line for line in text.splitlines() if ":" in line and not line.startswith("#")]
    commented = [line for line in keys if "  # " in line]
    assert len(commented) > 0.9 * len(keys)
    assert "    stochastic_passes: 8  # FickleNet-style" in text


def test_effective_yaml_of_one_section_applies_the_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("classifier:\n  epochs: 3\n")
    text = effective_yaml(str(config), "train-classifier")
    assert yaml.safe_load(text)["classifier"]["epochs"] == 3
    assert text.startswith("classifier:")


def _as_yaml_data(config) -> dict:
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))
