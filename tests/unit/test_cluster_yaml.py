"""cluster.yaml passes Ray's own cluster-config validation (offline) and fits the pipeline."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
util = pytest.importorskip("ray.autoscaler._private.util")

from pipeline.label_config import ResourcesConfig  # noqa: E402
from pipeline.train.config import ClassifierTrainConfig  # noqa: E402

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


def _load() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _validate(config: dict) -> None:
    util.validate_config(util.prepare_config(copy.deepcopy(config)))


def test_cluster_yaml_passes_ray_schema_validation():
    _validate(_load())


def test_validation_rejects_unknown_keys_and_bad_types():
    """Guards the test itself: the validator must catch the mistakes we rely on it for."""
    config = _load()
    config["available_node_types"]["gpu_worker"]["resourcez"] = {"GPU": 1}
    with pytest.raises(Exception, match="resourcez|Additional properties"):
        _validate(config)
    config = _load()
    config["available_node_types"]["cpu_worker"]["max_workers"] = "many"
    with pytest.raises(Exception, match="many|not of type"):
        _validate(config)


def test_node_types_cover_the_pipeline_resources():
    config = _load()
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = types["gpu_worker"]["resources"]
    cpu = types["cpu_worker"]["resources"]
    res, train = ResourcesConfig(), ClassifierTrainConfig()
    assert gpu.get("GPU", 0) >= 1, "CAM actors and training need a GPU worker type"
    assert gpu["CPU"] >= res.cam.num_cpus + res.decode.num_cpus + res.write.num_cpus
    assert gpu["CPU"] >= train.cpus_per_worker
    assert cpu.get("GPU", 0) == 0 and cpu["CPU"] >= 2 * res.refine.num_cpus
    assert types["gpu_worker"]["min_workers"] >= 1, "'auto' GPU resolution needs a live GPU node"
    for name in ("gpu_worker", "cpu_worker"):
        assert types[name]["min_workers"] <= types[name]["max_workers"]
    assert config["max_workers"] >= sum(
        types[n]["max_workers"] for n in ("gpu_worker", "cpu_worker")
    )


def test_setup_installs_webseg_and_holds_no_credentials():
    config = _load()
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "webseg" in setup
    text = CLUSTER_YAML.read_text()
    for secret in ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", "AKIA"):
        assert secret not in text
