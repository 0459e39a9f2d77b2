"""Triton's gRPC over TLS: the real tritonserver with a certificate from the private CA; the
detect client verifies it, and a client that does not trust that CA, or speaks plaintext, is
refused. (The production stack does the same with certificates a deployer provides.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from framestream.services.security import SecurityMaterial
from framestream.services.triton import LocalTriton
from framestream.settings import REPO_ROOT
from streams.inference import DetectorClient, InferenceUnavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def tls_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SecurityMaterial, Path]]:
    base = tmp_path_factory.mktemp("triton-tls")
    material = SecurityMaterial.ensure(base / "security", hosts=["localhost", "127.0.0.1"])
    chain, key = material.server_certificate("triton", ["localhost", "127.0.0.1"])
    other = SecurityMaterial.ensure(base / "other", hosts=["localhost"])  # a CA Triton's certificate is not from
    triton = LocalTriton(
        REPO_ROOT / "triton_models", REPO_ROOT / ".venv-triton", log_file=base / "triton.log", grpc_tls=(chain, key)
    )
    with triton:
        yield triton.grpc_url, material, other.ca_file


async def ready(url: str, ca_file: Path | None) -> str:
    async with DetectorClient(url, timeout_s=5.0, tls_ca_file=ca_file) as client:
        await client.wait_ready(timeout_s=5.0)
        return await client.model_version()


def test_the_client_verifies_triton_over_tls(tls_triton: tuple[str, SecurityMaterial, Path]) -> None:
    url, material, _ = tls_triton
    assert asyncio.run(ready(url, material.ca_file))


def test_plaintext_and_untrusting_clients_get_nothing(tls_triton: tuple[str, SecurityMaterial, Path]) -> None:
    url, _, other_ca = tls_triton
    for ca_file in (None, other_ca):
        with pytest.raises(InferenceUnavailable):
            asyncio.run(ready(url, ca_file))
