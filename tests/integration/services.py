"""Real services for integration tests: a SeaweedFS S3 server and a Ray head, both on loopback.

Each helper picks free ports, keeps its state in its own temporary folder, and stops only the
processes it started (never `ray stop`, which would stop every Ray on the machine). Missing
binaries skip the calling test with a reason instead of failing it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# Variables every `ray` command and ray.init against a loopback head needs (environment.md).
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def find_binary(name: str) -> str:
    """Path of an executable from the venv or PATH; skips the test when there is none."""
    candidate = BIN / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"`{name}` not found in {BIN} or on PATH (pip install the dev extras)")
    return found


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago (held open together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait(check, what: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.3)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # slow under load, not down
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def stop_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process group a helper started (start_new_session=True), then SIGKILL it."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    folder: str
    log_path: str

    def env(self) -> dict[str, str]:
        """The standard AWS variables a client (and a Ray job) needs for this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self) -> None:
        stop_group(self.process)


def start_seaweedfs(folder: str, bucket: str = "webseg", timeout: float = 180) -> S3Server:
    """`weed mini` bound to 127.0.0.1 on free ports, keys enforced, data under folder."""
    weed = find_binary("weed")
    names = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    ]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    access, secret = "webseg-test-" + os.urandom(4).hex(), "s3cr3t-" + os.urandom(12).hex()
    data = os.path.join(folder, "data")
    os.makedirs(data, exist_ok=True)
    command = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-bucket={bucket}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-metricsPort=0",
        *(f"-{k}={v}" for k, v in ports.items()),
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
    log_path = os.path.join(folder, "weed.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            start_new_session=True,
        )
    server = S3Server(
        f"http://127.0.0.1:{ports['s3.port']}", bucket, access, secret, process, folder, log_path
    )
    try:  # anonymous requests get 403 once keys are enforced; the bucket exists once it answers
        _wait(
            lambda: _http_status(f"{server.endpoint}/{bucket}/") == 403,
            "SeaweedFS S3",
            timeout,
            process,
        )
        _wait(lambda: _bucket_ready(server), "SeaweedFS bucket", timeout, process)
    except BaseException:
        server.stop()
        raise
    return server


def _bucket_ready(server: S3Server) -> bool:
    import s3fs

    fs = s3fs.S3FileSystem(
        key=server.access_key,
        secret=server.secret_key,
        skip_instance_cache=True,
        client_kwargs={"endpoint_url": server.endpoint},
    )
    fs.pipe_file(f"{server.bucket}/.ready", b"ok")
    return fs.cat_file(f"{server.bucket}/.ready") == b"ok"


@dataclass
class RayHead:
    gcs_address: str  # for ray.init / RAY_ADDRESS
    dashboard_url: str  # for `ray job submit --address`
    temp_dir: str
    process: subprocess.Popen
    env: dict[str, str] = field(default_factory=dict)  # environment for `ray` commands against it

    def stop(self) -> None:
        stop_group(self.process, timeout=30)
        _kill_leftovers(self.temp_dir)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_ray_head(num_cpus: int = 4, timeout: float = 300) -> RayHead:
    """`ray start --head --block` on 127.0.0.1 with free ports and its own --temp-dir.

    --block keeps the starting process alive as the parent of the head's processes, so stopping
    its process group stops this head only. The temp dir is short (unix socket path limits).
    """
    ray = find_binary("ray")
    temp_dir = tempfile.mkdtemp(prefix="rayh", dir="/tmp")
    gcs, dashboard, client, node, objects, agent, agent_grpc, metrics, runtime_env = free_ports(9)
    command = [
        ray,
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        f"--num-cpus={num_cpus}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}",
        f"--node-manager-port={node}",
        f"--object-manager-port={objects}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    # job entrypoints run `python` from PATH: put this venv first so they get its packages
    env = {**os.environ, **RAY_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    with open(os.path.join(temp_dir, "start.log"), "wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    head = RayHead(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", temp_dir, process, env)
    try:
        _wait(
            lambda: _http_status(f"{head.dashboard_url}/api/version") == 200,
            "Ray dashboard",
            timeout,
            process,
        )
    except BaseException:
        head.stop()
        raise
    return head


def _kill_leftovers(temp_dir: str) -> None:
    """SIGKILL processes that name this head's temp dir on their command line (ours only)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if temp_dir.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
