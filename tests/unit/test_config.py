from dataclasses import dataclass, field

import pytest

from pipeline.config import ConfigError, flatten, from_dict, load_config


@dataclass(frozen=True)
class Inner:
    size: int = 3
    ratio: float = 0.5
    scales: tuple[float, ...] = (1.0,)
    actors: int | str = "auto"


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def test_nested_values_and_types_are_converted():
    cfg = from_dict(Outer, {"inner": {"size": 5, "ratio": 1, "scales": [0.5, 1.0], "actors": 2}})
    assert cfg.inner == Inner(size=5, ratio=1.0, scales=(0.5, 1.0), actors=2)
    assert isinstance(cfg.inner.ratio, float)


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(ConfigError, match="inner.sise"):
        from_dict(Outer, {"inner": {"sise": 5}})


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="inner.size"):
        from_dict(Outer, {"inner": {"size": "big"}})
    with pytest.raises(ConfigError, match="inner.size"):
        from_dict(Outer, {"inner": {"size": True}})


def test_union_accepts_either_type():
    assert from_dict(Inner, {"actors": "auto"}).actors == "auto"
    assert from_dict(Inner, {"actors": 4}).actors == 4


def test_yaml_file_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ninner:\n  size: 7\n")
    cfg = load_config(Outer, str(path), {"inner.ratio": 0.25, "inner.size": None})
    assert (cfg.name, cfg.inner.size, cfg.inner.ratio) == ("y", 7, 0.25)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Outer, str(path))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, str(tmp_path / "nope.yaml"))


def test_flatten_gives_dotted_keys():
    assert flatten(Outer())["inner.size"] == 3


def test_builtin_prior_options_are_refused_by_the_pipeline_config():
    from pipeline.label_config import PseudoLabelConfig
    from pipeline.refine.image_labeller import CamCRFConfig, ImageLabelConfig
    from pipeline.refine.objectness import ObjectnessConfig

    offline = ImageLabelConfig(cam_crf=CamCRFConfig(background="both"))  # fine for a benchmark
    with pytest.raises(ValueError, match="image.cam_crf.background: the built-in"):
        PseudoLabelConfig(image=offline)
    with pytest.raises(ValueError, match="image.objectness.saliency_source"):
        PseudoLabelConfig(image=ImageLabelConfig(objectness=ObjectnessConfig(saliency_source="builtin")))
    assert PseudoLabelConfig().image.cam_crf.background == "cam"
