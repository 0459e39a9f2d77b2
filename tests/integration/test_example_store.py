"""The example store against a real S3-protocol server (moto's, in server mode on a free port):
objects round-trip, a missing bucket fails at once, and a server that is away is waited for."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from moto.server import ThreadedMotoServer

from framestream.services.probes import free_port
from streams.example_store import S3Store, StoreError, fetch, open_store, s3_client
from streams.retry import RetryCancelled, RetryPolicy

pytestmark = pytest.mark.integration

FAST = RetryPolicy(initial_s=0.05, max_s=0.2)
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
CREDENTIALS = {"region": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}


@dataclass
class S3Server:
    port: int
    server: ThreadedMotoServer

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> object:
        return s3_client(self.endpoint, **CREDENTIALS)

    def restart(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()


@pytest.fixture
def s3() -> Iterator[S3Server]:
    port = free_port()
    server = S3Server(port, ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False))
    server.server.start()
    bucket = f"examples-{port}"
    server.client().create_bucket(Bucket=bucket)
    yield server
    server.server.stop()


def bucket(s3: S3Server) -> str:
    return f"examples-{s3.port}"


def test_objects_round_trip(s3: S3Server, tmp_path) -> None:  # noqa: ANN001
    store = open_store(
        f"s3://{bucket(s3)}/hard-examples/", tmp_path, retry=FAST, stop=threading.Event(), client=s3.client()
    )
    uri = store.put("cam-1/cam-1_000000000003.jpg", JPEG, "image/jpeg")
    assert uri == f"s3://{bucket(s3)}/hard-examples/cam-1/cam-1_000000000003.jpg"
    assert store.get(uri) == JPEG
    head = s3.client().head_object(Bucket=bucket(s3), Key="hard-examples/cam-1/cam-1_000000000003.jpg")
    assert head["ContentType"] == "image/jpeg" and head["ContentLength"] == len(JPEG)
    assert store.put("cam-1/cam-1_000000000003.jpg", JPEG, "image/jpeg") == uri, "a replay overwrites its own key"
    assert fetch(uri, retry=FAST, stop=threading.Event(), client=s3.client()) == JPEG
    store.close()


def test_a_missing_bucket_fails_at_once(s3: S3Server) -> None:
    store = S3Store("no-such-bucket", "x", s3.client(), retry=FAST, stop=threading.Event())
    started = time.monotonic()
    with pytest.raises(StoreError, match="NoSuchBucket"):
        store.put("a.jpg", JPEG, "image/jpeg")
    assert time.monotonic() - started < 5, "permanent: not retried"


def test_a_server_that_is_away_is_waited_for(s3: S3Server) -> None:
    store = S3Store(bucket(s3), "p", s3.client(), retry=FAST, stop=threading.Event())
    s3.server.stop()  # the objects stay in moto's backend; the port goes quiet
    result: dict[str, object] = {}
    writer = threading.Thread(target=lambda: result.update(uri=store.put("k.jpg", JPEG, "image/jpeg")))
    writer.start()
    time.sleep(1.0)
    assert writer.is_alive(), "connection refused is transient: still retrying"
    s3.restart()
    writer.join(30)
    assert result["uri"] == f"s3://{bucket(s3)}/p/k.jpg"
    assert store.get(str(result["uri"])) == JPEG


def test_stopping_ends_the_retries(s3: S3Server) -> None:
    stop = threading.Event()
    store = S3Store(bucket(s3), "p", s3_client("http://127.0.0.1:1", **CREDENTIALS), retry=FAST, stop=stop)
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(RetryCancelled):
        store.put("k.jpg", JPEG, "image/jpeg")
