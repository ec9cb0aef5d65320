"""`import pipeline` is light and its public names resolve to the functions the README shows."""

import subprocess
import sys

import pytest

import pipeline


def test_import_pipeline_loads_no_torch_ray_or_mlflow():
    code = "import sys, pipeline; print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_public_names_resolve_lazily():
    from pipeline import build_manifest, evaluate_labels, load_settings, pseudo_label
    from pipeline.evaluate.score import evaluate_labels as evaluate_labels_itself

    assert evaluate_labels is evaluate_labels_itself
    assert pseudo_label.__module__ == "pipeline.api"
    assert callable(build_manifest) and callable(load_settings)
    assert set(pipeline.PUBLIC_API) <= set(dir(pipeline))
    assert pipeline.__version__


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pipeline.nope  # noqa: B018


def test_section_config_accepts_none_a_dict_a_file_and_a_dataclass(tmp_path):
    from pipeline.api import section_config
    from pipeline.settings import WebSegConfig

    path = tmp_path / "c.yaml"
    path.write_text("classifier:\n  epochs: 2\n")
    assert section_config(None, "classifier") == WebSegConfig().classifier
    assert section_config({"epochs": 5}, "classifier").epochs == 5
    assert section_config(str(path), "classifier").epochs == 2
    custom = section_config({"epochs": 7}, "classifier")
    assert section_config(custom, "classifier") is custom
    with pytest.raises(TypeError):
        section_config(3, "classifier")
