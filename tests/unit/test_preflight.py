"""Driver checks before Ray starts (no Ray): the model loads and fits the label space, the S3
endpoint answers, some item can be processed; predict on the driver obeys the fingerprint rule."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import time

import pytest

from pipeline import checkpoint, schema
from pipeline.collection import ManifestError
from pipeline.label_config import PseudoLabelConfig, StageResources
from pipeline.models.classifier import CamClassifier
from pipeline.models.config import DeepLabConfig, ModelConfig
from pipeline.models.deeplab import DeepLabV3
from pipeline.output import LabelSetError
from pipeline.predict_run import run_predict
from pipeline.preflight import (
    EndpointError,
    ModelError,
    check_outcome,
    check_pseudo_label,
    check_s3,
    endpoint_problem,
)
from pipeline.sample_data import CLASSES, generate
from pipeline.settings import PredictConfig

TINY_SEG = DeepLabConfig(backbone="resnet", width=8, aspp_channels=8, num_classes=3)
ON_DRIVER = PredictConfig(long_side=32, resources=StageResources(actors=0))


def _tiny_classifier_cfg(classes: int) -> ModelConfig:
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    wanted = {"backbone": "resnet", "depth": 18, "width": 8, "num_classes": classes}
    return ModelConfig(**{k: v for k, v in wanted.items() if k in names})


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return generate(str(tmp_path_factory.mktemp("coll")), images=2, videos=0)


def test_a_junk_model_file_is_one_model_error(collection, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a torch file\n" * 10)
    with pytest.raises(ModelError) as error:
        check_pseudo_label(collection, str(junk), str(tmp_path / "out"), PseudoLabelConfig())
    message = str(error.value)
    assert message == f"--model {junk} is not a torch checkpoint file"
    assert not (tmp_path / "out").exists()


def test_a_torch_file_of_another_layout_is_one_model_error(collection, tmp_path):
    import torch

    other = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ModelError) as error:
        check_pseudo_label(collection, str(other), str(tmp_path / "out"), PseudoLabelConfig())
    assert str(error.value).startswith(f"--model {other} does not load as a WebSeg checkpoint (")
    assert "\n" not in str(error.value)


def test_a_missing_model_file_names_the_file(collection, tmp_path):
    with pytest.raises(ModelError, match=r"--model .*nothing: .*nothing/model.pt not found"):
        check_pseudo_label(
            collection, str(tmp_path / "nothing"), str(tmp_path / "o"), PseudoLabelConfig()
        )


def test_a_model_of_another_label_space_is_refused(collection, tmp_path):
    cfg = _tiny_classifier_cfg(4)
    four = ["background", "ball", "box", "cone"]
    model = checkpoint.save_model(CamClassifier(cfg), cfg, str(tmp_path / "c.pt"), four)
    with pytest.raises(
        ModelError, match=r"trained on 4 classes, the collection's label space has 3"
    ):
        check_pseudo_label(collection, model, str(tmp_path / "out"), PseudoLabelConfig())
    cfg = _tiny_classifier_cfg(3)
    model = checkpoint.save_model(CamClassifier(cfg), cfg, str(tmp_path / "ok.pt"), CLASSES)
    _, record = check_pseudo_label(collection, model, str(tmp_path / "out"), PseudoLabelConfig())
    assert record["model_uri"] == model and len(record["model_sha256"]) == 64


def test_a_collection_where_no_item_can_be_processed_fails_with_the_reasons(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"uri": "a.txt"}\n{"uri": "b.txt"}\n')
    with pytest.raises(ManifestError, match=r"none of the 2 items .*cannot infer kind.*: 2"):
        check_pseudo_label(str(tmp_path), None, str(tmp_path / "out"), PseudoLabelConfig())


def test_a_run_where_every_row_failed_is_an_error_with_the_reasons():
    counts = {"rows": 3, "status": {schema.FAILED: 3}, "failed_reasons": {"file not found": 3}}
    with pytest.raises(LabelSetError, match=r"every one of the 3 rows failed.*file not found"):
        check_outcome("out", counts)
    check_outcome("out", {**counts, "status": {schema.FAILED: 2, schema.LABELLED: 1}})


def test_a_closed_s3_endpoint_is_named(monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    started = time.time()
    with pytest.raises(EndpointError, match=rf"S3 endpoint http://127.0.0.1:{port} did not answer"):
        check_s3("s3://bucket/collection", "local/out")
    assert time.time() - started < 5
    check_s3("local/collection", None)  # no s3:// URI: no check


def test_an_endpoint_that_accepts_but_never_answers_times_out():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # the kernel accepts the connection; nobody ever replies
        started = time.time()
        problem = endpoint_problem(f"http://127.0.0.1:{server.getsockname()[1]}", timeout_s=1.0)
        assert problem and "timed out" in problem and 0.9 < time.time() - started < 4


def test_an_endpoint_answering_any_http_status_is_up():
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:  # BaseHTTPRequestHandler answers HEAD with 501: an answer all the same
        assert endpoint_problem(f"http://127.0.0.1:{server.server_port}", timeout_s=5) is None
    finally:
        server.server_close()


def test_predict_resumes_only_its_own_label_set_and_overwrite_starts_over(collection, tmp_path):
    model = checkpoint.save_model(DeepLabV3(TINY_SEG), TINY_SEG, str(tmp_path / "s.pt"), CLASSES)
    out = tmp_path / "pred"
    run_predict(model, collection, str(out), ON_DRIVER)
    run_predict(model, collection, str(out), ON_DRIVER)  # the same model and config: fine
    (out / schema.MASKS_DIR / "stale.png").write_bytes(b"left by the first run")
    other = dataclasses.replace(ON_DRIVER, long_side=48)
    with pytest.raises(
        LabelSetError, match=r"was made with long_side=32, this run has long_side=48"
    ):
        run_predict(model, collection, str(out), other)
    run = run_predict(model, collection, str(out), other, overwrite=True)
    assert run["fingerprint"]["config"]["long_side"] == 48
    assert not (out / schema.MASKS_DIR / "stale.png").exists()


def test_predict_where_every_item_fails_is_an_error(collection, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(collection, broken)
    for image in (broken / "media").iterdir():
        image.write_bytes(b"not an image")
    model = checkpoint.save_model(DeepLabV3(TINY_SEG), TINY_SEG, str(tmp_path / "s.pt"), CLASSES)
    with pytest.raises(LabelSetError, match="every one of the 2 rows failed"):
        run_predict(model, str(broken), str(tmp_path / "pred"), ON_DRIVER)
    assert (tmp_path / "pred" / schema.MANIFEST_NAME).exists()  # the failed rows are recorded
