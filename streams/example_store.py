"""Where hard examples' JPEGs and predictions go: a local folder (``file://``) or S3-compatible storage.

Usage:
    store = open_store("s3://labelling/hard-examples", data_dir, retry=STORE_RETRY, stop=threading.Event())
    uri = store.put("cam-1/cam-1_000000000042.jpg", jpeg, "image/jpeg")   # -> "s3://labelling/hard-examples/cam-1/..."
    store.get(uri) == jpeg

An empty URL means ``file://<data_dir>/hard-examples``. Writes are idempotent (same key, same
bytes), so a replayed frame overwrites its own files. The calls block: the stage runs them on an
executor thread. Transient S3 faults (connection refused or cut, timeouts, 5xx, throttling) are
retried with the given policy until they succeed or ``stop`` is set (``streams/retry.py``); botocore's
own retries are turned off so that there is one retry loop. Anything else (no such bucket, access
denied) raises at once. S3 credentials come from boto3's usual chain (``AWS_*`` variables, profile).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from streams.retry import RetryPolicy, retry_sync

log = logging.getLogger(__name__)
DEFAULT_FOLDER = "hard-examples"
# S3 error codes a retry can outlive (the service is busy or restarting).
TRANSIENT_S3_CODES = frozenset(
    {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling"}
)


class StoreError(RuntimeError):
    """A permanent storage failure (bad URL, no such bucket, access denied)."""


class ExampleStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> str: ...
    def get(self, uri: str) -> bytes: ...
    def close(self) -> None: ...


@dataclass
class FileStore:
    root: Path

    def put(self, key: str, data: bytes, content_type: str) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        partial.replace(path)  # a reader never sees half a file
        return path.resolve().as_uri()

    def get(self, uri: str) -> bytes:
        return file_path(uri).read_bytes()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StoreError(f"key {key!r} leaves the store folder {self.root}")
        return path

    def close(self) -> None:
        pass


class S3Store:
    """``s3://bucket/prefix`` through boto3; ``client`` is a boto3 S3 client (endpoint, credentials)."""

    def __init__(self, bucket: str, prefix: str, client: object, *, retry: RetryPolicy, stop: threading.Event) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.retry = retry
        self.stop = stop

    def put(self, key: str, data: bytes, content_type: str) -> str:
        full = f"{self.prefix}/{key}" if self.prefix else key

        def put_once() -> None:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data, ContentType=content_type)

        self._retried(put_once, f"S3 put {full}")
        return f"s3://{self.bucket}/{full}"

    def get(self, uri: str) -> bytes:
        parsed = urlparse(uri)
        if parsed.scheme != "s3":
            raise StoreError(f"not an s3:// URI: {uri}")
        key = parsed.path.lstrip("/")

        def get_once() -> bytes:
            return self.client.get_object(Bucket=parsed.netloc, Key=key)["Body"].read()

        return self._retried(get_once, f"S3 get {uri}")

    def _retried(self, operation, what: str):  # noqa: ANN001, ANN202 - a thunk and its result
        from botocore.exceptions import ClientError

        try:
            return retry_sync(
                operation, policy=self.retry, transient=is_transient_s3_error, what=what, log=log, stop=self.stop
            )
        except ClientError as error:
            raise StoreError(f"{what}: {error}") from error

    def close(self) -> None:
        self.client.close()


def is_transient_s3_error(error: Exception) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, ConnectionError | HTTPClientError):  # refused, reset, timeouts (botocore wraps them)
        return True
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return code in TRANSIENT_S3_CODES or status in TRANSIENT_S3_CODES
    return False


def s3_client(endpoint_url: str | None = None, region: str | None = None, **credentials: str) -> object:
    """A boto3 S3 client with botocore's retries off (ours are in ``S3Store``) and short timeouts."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        s3={"addressing_style": "path"},  # MinIO, Ceph and moto serve path-style requests
    )
    return boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region, config=config, **credentials)


def open_store(
    url: str,
    data_dir: Path,
    *,
    retry: RetryPolicy,
    stop: threading.Event,
    endpoint_url: str | None = None,
    client: object | None = None,
) -> ExampleStore:
    """The store a URL names: ``file:///path``, ``s3://bucket/prefix``, or empty for the data dir's folder."""
    if not url:
        return FileStore(data_dir / DEFAULT_FOLDER)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileStore(Path(parsed.path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"{url}: no bucket (expected s3://bucket/prefix)")
        return S3Store(parsed.netloc, parsed.path, client or s3_client(endpoint_url), retry=retry, stop=stop)
    raise StoreError(f"{url}: unsupported store (expected file:///path or s3://bucket/prefix)")


def file_path(uri: str) -> Path:
    """The local path of a ``file://`` URI (as ``FileStore.put`` returns them)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise StoreError(f"not a file:// URI: {uri}")
    return Path(unquote(parsed.path))


def fetch(
    uri: str,
    *,
    retry: RetryPolicy,
    stop: threading.Event,
    endpoint_url: str | None = None,
    client: object | None = None,
) -> bytes:
    """The bytes behind a stored URI (``file://`` or ``s3://``), e.g. for a labelling task."""
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return file_path(uri).read_bytes()
    if scheme == "s3":
        return S3Store("", "", client or s3_client(endpoint_url), retry=retry, stop=stop).get(uri)
    raise StoreError(f"{uri}: unsupported store URI")
