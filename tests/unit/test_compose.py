"""docker-compose.yml cannot be run here (no Docker engine), so check what can be checked:
structure, files it references, CLI commands it runs and the settings it passes."""

from __future__ import annotations

import os
import re
from unittest import mock

import pytest
import yaml

from framestream.cli import COMMANDS
from framestream.settings import REPO_ROOT, Settings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES: dict = COMPOSE["services"]
WORKERS = ["ingest", "detect", "alert", "persist", "setup"]


@pytest.mark.parametrize(
    "service, image_prefix",
    [
        ("kafka", "apache/kafka:"),
        ("clickhouse", "clickhouse/clickhouse-server:"),
        ("grafana", "grafana/grafana:"),
    ],
)
def test_production_components_are_the_real_images(service: str, image_prefix: str) -> None:
    assert SERVICES[service]["image"].startswith(image_prefix)


def test_kafka_runs_kraft_without_zookeeper() -> None:
    env = SERVICES["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in SERVICES
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics are created explicitly by `setup`


def test_triton_reserves_a_gpu_and_serves_the_gpu_detector_config() -> None:
    triton = SERVICES["triton"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] for device in devices)
    assert any(volume.startswith("./infra/triton/gpu/nanodet/config.pbtxt:") for volume in triton["volumes"])


def _bind_sources() -> list[tuple[str, str]]:
    sources = []
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                sources.append((name, source))
    return sources


@pytest.mark.parametrize("service, source", _bind_sources())
def test_bind_mounts_point_at_files_that_exist(service: str, source: str) -> None:
    assert (REPO_ROOT / source).exists(), f"{service} mounts {source}, which does not exist"


@pytest.mark.parametrize("service", [name for name, svc in SERVICES.items() if "build" in svc])
def test_build_contexts_and_dockerfiles_exist(service: str) -> None:
    build = SERVICES[service]["build"]
    context = REPO_ROOT / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (context / dockerfile).is_file()
    for line in (context / dockerfile).read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (context / source).exists(), f"{dockerfile} copies missing {source}"


@pytest.mark.parametrize("service", WORKERS)
def test_workers_run_existing_cli_commands(service: str) -> None:
    command = SERVICES[service]["command"]
    assert command[0] in COMMANDS
    module = __import__(COMMANDS[command[0]], fromlist=["register"])
    assert hasattr(module, "register")


@pytest.mark.parametrize("service", WORKERS)
def test_worker_environment_is_valid_settings(service: str) -> None:
    env = {
        key: re.sub(r"\$\{[^}]+\}", "secret", str(value))
        for key, value in SERVICES[service]["environment"].items()
        if key.startswith("FRAMESTREAM_")
    }
    with mock.patch.dict(os.environ, env, clear=False):
        settings = Settings()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.kafka.profile.value == "kafka"
    assert settings.triton.url == "triton:8001"
    assert settings.clickhouse.password.get_secret_value() == "secret"


def test_every_worker_waits_for_setup() -> None:
    for service in ["ingest", "detect", "alert", "persist"]:
        assert SERVICES[service]["depends_on"]["setup"]["condition"] == "service_completed_successfully"


def test_grafana_mounts_provisioning_and_dashboards() -> None:
    mounts = {volume.split(":")[1] for volume in SERVICES["grafana"]["volumes"]}
    assert "/etc/grafana/provisioning" in mounts
    assert "grafana-clickhouse-datasource" in SERVICES["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    provisioned = yaml.safe_load((REPO_ROOT / "infra/grafana/provisioning/dashboards/dashboards.yaml").read_text())
    paths = {provider["options"]["path"] for provider in provisioned["providers"]}
    assert paths <= mounts, "the dashboards provider must read the mounted folder"


def test_secrets_are_required_not_defaulted() -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    for variable in ["CLICKHOUSE_WRITER_PASSWORD", "CLICKHOUSE_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD"]:
        assert "${" + variable + ":?" in text
