"""Workdirs as URLs: a local folder or a `gs://` bucket, through one file API.

Every file under a workdir is read and written through `etils.epath`. For a
`gs://` path epath picks TensorFlow's gfile when TensorFlow is installed, and
TensorFlow's GCS client has no endpoint setting (it always talks to Google),
so importing `codemix` makes epath use its fsspec backend (gcsfs) instead,
unless the user set `EPATH_USE_TF` themselves (`configure()` does it too).
Who writes what on `gs://`:

  gcsfs (through epath)   codemix's own files: lineage.json, plan.json, summary.json,
                          metrics.jsonl, run_info.json, run_config.json,
                          operative_config.gin, heldout/, eval outputs, reports and
                          plots, law sidecars; and Orbax's own metadata and
                          directory operations (Orbax uses epath too)
  TensorStore             the checkpoint arrays under params/ and opt_state/ (Orbax)
  TensorFlow, via ram://  the tf.data iterator state and TensorBoard events: TF writes
                          them to its in-memory filesystem and epath copies the
                          bytes (`tf_writable`, `tf_readable`)

GCS objects can't be appended to, so a file that grows (metrics.jsonl, the
events file) is rewritten whole each time it is flushed (`LineLog`).

An emulator is used when `STORAGE_EMULATOR_HOST` is set (gcsfs' own variable):
`configure()`, run by `check()` before a bucket is first used, then points TensorStore at it too and turns off what the
emulator does not serve (gcsfs' gRPC bucket-layout lookup, credentials).

`check(url)` tries a bucket once per process before anything is written and
turns a bucket that doesn't exist, an endpoint that can't be reached or
missing credentials into one StorageError naming the bucket and the fix.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

from codemix.errors import StorageError

GOOGLE_ENDPOINT = "https://storage.googleapis.com"


def configure() -> None:
    """Environment defaults for gs:// (a value the user set is kept)."""
    os.environ.setdefault("EPATH_USE_TF", "false")
    logging.getLogger("fsspec.caching").setLevel(logging.WARNING)  # a line per file read otherwise
    # gcsfs caches folder listings for good, so a file another host wrote (a lineage, a checkpoint)
    # would stay invisible to `exists`; every host asks the bucket instead.
    os.environ.setdefault("FSSPEC_GCS_USE_LISTINGS_CACHE", "false")
    options = {"use_listings_cache": False}
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    defaults = {}
    if emulator:
        url = emulator if "://" in emulator else f"http://{emulator}"
        defaults = {
            # gcsfs asks a gRPC control API for each bucket's layout; an emulator has none (60 s timeouts)
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "TENSORSTORE_GCS_HTTP_URL": url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # TensorStore: no credential lookup
            "FSSPEC_GCS_TOKEN": "anon",  # gcsfs: no credential lookup (read when fsspec is imported)
        }
        options["token"] = os.environ.get("FSSPEC_GCS_TOKEN", "anon")
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
    if "fsspec" in sys.modules:  # imported already: its config no longer reads the environment
        import fsspec.config

        for k, v in options.items():
            fsspec.config.conf.setdefault("gcs", {}).setdefault(k, v)


def is_url(path) -> bool:
    return "://" in os.fspath(path)


def path(p, *parts):
    """`p` (joined with `parts`) as an epath.Path: a local path or a URL."""
    from etils import epath

    if is_url(p):
        configure()

    return epath.Path(p, *parts)


def write_text(file, text: str) -> None:
    """Replace `file`'s content so that a reader sees the old or the new one, never
    a part: locally through a temporary file renamed over it; on GCS an upload is
    atomic by itself."""
    file = path(file)
    if is_url(file):
        file.write_text(text)
        return
    tmp = path(f"{file}.{os.getpid()}.{threading.get_ident()}.tmp")  # two writers never share one
    tmp.write_text(text)
    os.replace(os.fspath(tmp), os.fspath(file))


def bucket_of(url) -> str | None:
    u = urlparse(os.fspath(url))
    return u.netloc if u.scheme == "gs" else None


def endpoint() -> str:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return emulator if "://" in emulator else f"http://{emulator}"
    return GOOGLE_ENDPOINT


def check(url) -> None:
    """StorageError if `url`'s bucket can't be used (once per bucket and process);
    a local path or a scheme other than gs:// passes."""
    bucket = bucket_of(url)
    if bucket:
        _check_bucket(bucket, endpoint())


@functools.cache
def _check_bucket(bucket: str, where: str) -> None:
    configure()
    host = urlparse(where)
    port = host.port or (443 if host.scheme == "https" else 80)
    try:
        socket.create_connection((host.hostname, port), timeout=10).close()
    except OSError as e:
        emulator = " (STORAGE_EMULATOR_HOST)" if os.environ.get("STORAGE_EMULATOR_HOST") else ""
        raise StorageError(
            f"can't reach the storage endpoint {where}{emulator} for bucket gs://{bucket}: {e}. Check the "
            f"network (or start the emulator, or unset STORAGE_EMULATOR_HOST to use Google Cloud Storage), "
            f"then rerun.") from None
    _check_credentials(bucket)
    import gcsfs

    fs = gcsfs.GCSFileSystem()
    try:
        fs.info(bucket)
    except FileNotFoundError:
        raise StorageError(
            f"bucket gs://{bucket} does not exist (at {where}). Create it (gcloud storage buckets create "
            f"gs://{bucket}) or fix the bucket name in the path, then rerun.") from None
    except OSError as e:  # gcsfs raises 403 Forbidden as OSError
        raise StorageError(_denied(bucket, e)) from None
    except Exception as e:  # noqa: BLE001  gcsfs' HttpError (a plain Exception): 401, 5xx after its retries
        if getattr(e, "code", None) in (401, 403):
            raise StorageError(_denied(bucket, e)) from None
        raise StorageError(f"bucket gs://{bucket} could not be used at {where}: {e}. Check the bucket name and "
                           f"your access to it, then rerun.") from None


def _check_credentials(bucket: str) -> None:
    """Google's default credentials must load, except against an emulator with none configured."""
    token = os.environ.get("FSSPEC_GCS_TOKEN")
    if token == "anon" and not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return
    import google.auth
    import google.auth.exceptions

    try:
        google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
    except google.auth.exceptions.DefaultCredentialsError as e:
        raise StorageError(
            f"no Google Cloud credentials for bucket gs://{bucket}: {e}. Run `gcloud auth "
            f"application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key "
            f"file that exists, then rerun.") from None


def _denied(bucket: str, e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (f"access to bucket gs://{bucket} was refused ({first}): the credentials are missing or lack "
            f"storage permissions on it. Run `gcloud auth application-default login` (or set "
            f"GOOGLE_APPLICATION_CREDENTIALS to a key of an account with Storage Object Admin on the bucket), "
            f"then rerun.")


class LineLog:
    """A text file that grows by lines (metrics.jsonl). Locally it is appended to
    and line-buffered; on a URL, where objects can't be appended to, the whole
    file is rewritten at each `write` (what was there before included)."""

    def __init__(self, file):
        self.path = path(file)
        self._url = is_url(file)
        if self._url:
            self._text = self.path.read_text() if self.path.exists() else ""
            self._f = None
        else:
            self._f = open(os.fspath(self.path), "a", buffering=1)  # noqa: SIM115  (open until close())

    def write(self, text: str) -> None:
        if self._f is not None:
            self._f.write(text)
        else:
            self._text += text
            self.path.write_text(self._text)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _ram_dir() -> str:
    return f"ram://codemix/{uuid.uuid4().hex}"


def copy_tf_files(src: str, dst) -> None:
    """Every file under the TensorFlow path `src` to `dst` (epath), folders kept."""
    import tensorflow as tf

    dst = path(dst)
    for root, _, files in tf.io.gfile.walk(src):
        rel = root[len(src):].lstrip("/")
        for f in files:
            target = dst / rel / f if rel else dst / f
            target.parent.mkdir(parents=True, exist_ok=True)
            with tf.io.gfile.GFile(f"{root}/{f}", "rb") as r:
                target.write_bytes(r.read())


@contextlib.contextmanager
def tf_writable(directory) -> Iterator[str]:
    """A folder TensorFlow can write for `directory`: itself when local; for a URL a
    ram:// folder whose files are copied to `directory` when the block ends."""
    if not is_url(directory):
        yield os.fspath(directory)
        return
    import tensorflow as tf

    ram = _ram_dir()
    tf.io.gfile.makedirs(ram)
    try:
        yield ram
        copy_tf_files(ram, directory)
    finally:
        tf.io.gfile.rmtree(ram)


@contextlib.contextmanager
def tf_readable(directory) -> Iterator[str]:
    """A folder TensorFlow can read for `directory`: itself when local; for a URL a
    ram:// copy of its files (one level deep), removed when the block ends."""
    if not is_url(directory):
        yield os.fspath(directory)
        return
    import tensorflow as tf

    ram = _ram_dir()
    tf.io.gfile.makedirs(ram)
    try:
        src = path(directory)
        for p in src.iterdir() if src.is_dir() else ():
            if not p.is_dir():
                with tf.io.gfile.GFile(f"{ram}/{p.name}", "wb") as w:
                    w.write(p.read_bytes())
        yield ram
    finally:
        tf.io.gfile.rmtree(ram)
