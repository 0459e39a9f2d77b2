"""streams.inference without a server: error classification, the retry helper, and what the
client does when nothing listens (a real refused gRPC connection, no mock)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from tritonclient.utils import InferenceServerException

from streams.inference import DetectorClient, InferenceRejected, InferenceUnavailable, classify, retry_transient
from streams.retry import RetryPolicy


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("StatusCode.INVALID_ARGUMENT", InferenceRejected),
        ("StatusCode.UNAVAILABLE", InferenceUnavailable),
        ("StatusCode.DEADLINE_EXCEEDED", InferenceUnavailable),
        ("StatusCode.RESOURCE_EXHAUSTED", InferenceUnavailable),
        ("StatusCode.INTERNAL", InferenceUnavailable),
        ("StatusCode.NOT_FOUND", InferenceUnavailable),  # a missing model is a deployment problem, not the image's
        (None, InferenceUnavailable),
    ],
)
def test_only_invalid_argument_is_permanent(status: str | None, expected: type[Exception]) -> None:
    error = classify(InferenceServerException("image 0: not a JPEG or PNG image", status=status))
    assert type(error) is expected
    assert "not a JPEG or PNG image" in str(error)


def test_rejected_message_is_tritons_own() -> None:
    error = classify(InferenceServerException("corrupt or truncated JPEG", status="StatusCode.INVALID_ARGUMENT"))
    assert str(error) == "corrupt or truncated JPEG"


class Flaky:
    """Fails with the given errors in turn, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_retry_transient_retries_until_success_and_logs_each_attempt(caplog: pytest.LogCaptureFixture) -> None:
    attempt = Flaky(InferenceUnavailable("down"), InferenceUnavailable("still down"))
    with caplog.at_level(logging.WARNING, logger="streams.inference"):
        result = asyncio.run(retry_transient(attempt, what="detect", retry=RetryPolicy(initial_s=0.001, max_s=30.0)))
    assert (result, attempt.calls) == ("done", 3)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "attempt 1" in warnings[0] and "still down" in warnings[1]


@pytest.mark.parametrize("error", [InferenceRejected("bad image"), KeyError("bug")])
def test_retry_transient_lets_other_errors_through_at_once(error: Exception) -> None:
    attempt = Flaky(error)
    with pytest.raises(type(error)):
        asyncio.run(retry_transient(attempt, retry=RetryPolicy(initial_s=0.001, max_s=30.0)))
    assert attempt.calls == 1


def test_retry_transient_never_gives_up_but_can_be_cancelled() -> None:
    attempt = Flaky(*[InferenceUnavailable("down")] * 10_000)

    async def run_for_a_while() -> None:
        task = asyncio.ensure_future(retry_transient(attempt, retry=RetryPolicy(initial_s=0.001, max_s=0.002)))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_for_a_while())
    assert attempt.calls > 10


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nothing_listening_is_unavailable_not_rejected() -> None:
    async def go() -> None:
        async with DetectorClient(f"127.0.0.1:{closed_port()}", timeout_s=5) as client:
            with pytest.raises(InferenceUnavailable, match="UNAVAILABLE"):
                await client.detect(b"\xff\xd8\xff")
            with pytest.raises(InferenceUnavailable, match="not ready after 1 s"):
                await client.wait_ready(timeout_s=1)
            with pytest.raises(InferenceUnavailable):
                await client.detect_many([b"a", b"b", b"c"])

    asyncio.run(go())


@pytest.mark.parametrize(("score", "iou"), [(1.5, 0.5), (0.5, -0.1), (float("nan"), 0.5)])
def test_bad_thresholds_fail_before_any_request(score: float, iou: float) -> None:
    async def go() -> None:
        async with DetectorClient(f"127.0.0.1:{closed_port()}") as client:
            await client.detect(b"", score, iou)

    with pytest.raises(ValueError, match="threshold must be within"):
        asyncio.run(go())


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        DetectorClient("127.0.0.1:1", max_in_flight=0)
