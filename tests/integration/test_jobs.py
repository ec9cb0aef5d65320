"""Jobs on a real Ray head: `ray start --head` on 127.0.0.1 (free ports, own temp dir), then
`ray job submit ... -- python -m jobs.pseudo_label`, locally and over S3 (SeaweedFS)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from services import find_binary, start_ray_head, start_seaweedfs

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def head():
    started = start_ray_head(num_cpus=4)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    from pipeline import sample_data

    return Path(sample_data.generate(str(tmp_path_factory.mktemp("sample")), images=6, videos=1))


def _submit(head, entrypoint: list[str], env_vars: dict[str, str]) -> subprocess.CompletedProcess:
    """`ray job submit` (blocks until the job ends; non-zero exit when it failed)."""
    command = [
        find_binary("ray"),
        "job",
        "submit",
        "--address",
        head.dashboard_url,
        "--working-dir",
        str(REPO),
        "--runtime-env-json",
        json.dumps({"env_vars": env_vars}),
        "--",
        *entrypoint,
    ]
    return subprocess.run(
        command, env=head.env, cwd=REPO, capture_output=True, text=True, timeout=600
    )


def _job_status(head, output: str) -> str:
    from ray.job_submission import JobSubmissionClient

    job_id = next(w.strip("'") for w in output.split() if w.strip("'").startswith("raysubmit_"))
    os.environ.update({k: v for k, v in head.env.items() if k.startswith("RAY_")})
    return str(JobSubmissionClient(head.dashboard_url).get_job_status(job_id))


def _pseudo_label_job(collection: str, out: str) -> list[str]:
    """The job entrypoint's command line, labelling without a classifier."""
    return [
        "python",
        "-m",
        "jobs.pseudo_label",
        "--collection",
        collection,
        "--model",
        "none",
        "--out",
        out,
    ]


def test_pseudo_label_job_on_a_real_head(head, sample, tmp_path):
    out = tmp_path / "labels"
    result = _submit(
        head,
        _pseudo_label_job(str(sample), str(out)),
        {},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "SUCCEEDED" in _job_status(head, result.stdout + result.stderr)
    run = json.loads((out / "run.json").read_text())
    assert run["items"] == 7 and run["counts"]["status"].get("labelled", 0) > 0
    assert (out / "manifest.parquet").exists() and list((out / "masks").glob("*.png"))


def test_pseudo_label_job_over_s3_keeps_credentials_out_of_logs(head, sample, tmp_path):
    import s3fs

    server = start_seaweedfs(str(tmp_path / "seaweed"))
    try:
        fs = s3fs.S3FileSystem(
            key=server.access_key,
            secret=server.secret_key,
            client_kwargs={"endpoint_url": server.endpoint},
            skip_instance_cache=True,
        )
        fs.put(str(sample), f"{server.bucket}/collection", recursive=True)
        labels = f"s3://{server.bucket}/labels"
        result = _submit(
            head,
            _pseudo_label_job(f"s3://{server.bucket}/collection", labels),
            server.env(),
        )
        logs = result.stdout + result.stderr
        assert result.returncode == 0, logs[-4000:]
        run = json.loads(fs.cat_file(f"{server.bucket}/labels/run.json"))
        assert run["counts"]["status"].get("labelled", 0) > 0 and fs.exists(
            f"{server.bucket}/labels/manifest.parquet"
        )
        assert server.secret_key not in logs and server.secret_key not in json.dumps(run)
    finally:
        server.stop()
