"""Every test process sees 8 CPU devices, so sharded code runs for real;
single-device tests use make_mesh.num_devices = 1."""
import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# JAX's compilation cache goes to a per-machine temp dir, never into the real ~/.cache.
os.environ.setdefault("CODEMIX_COMPILATION_CACHE", os.path.join(
    tempfile.gettempdir(), "codemix-test-jax-cache"))

import gin  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _clear_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture
def gcs(tmp_path_factory, monkeypatch):
    """A real GCS server (fake-gcs-server) with one bucket, "bucket", and this process's
    environment pointed at it (tests/gcs_server.py); stopped after the test."""
    import fsspec.config

    from codemix import storage
    from tests.gcs_server import GCSServer, forget_gcs_clients

    with GCSServer(tmp_path_factory.mktemp("gcs") / "root", buckets=("bucket",)) as server:
        for k, v in server.env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setitem(fsspec.config.conf, "gcs", {"token": "anon"})
        storage.configure()
        forget_gcs_clients()
        try:
            yield server
        finally:
            forget_gcs_clients()
