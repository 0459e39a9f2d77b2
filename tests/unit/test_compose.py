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
    properties = (REPO_ROOT / "infra/kafka/compose/server.properties").read_text().splitlines()
    assert "process.roles=broker,controller" in properties
    assert "zookeeper" not in SERVICES
    assert "auto.create.topics.enable=false" in properties  # topics are created explicitly by `setup`
    assert any(volume.startswith("./infra/kafka/compose:") for volume in SERVICES["kafka"]["volumes"])


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
            if source.startswith(".") and not source.startswith("./secrets"):  # made by the deployer
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
    env["FRAMESTREAM_CLICKHOUSE_PASSWORD"] = "secret"  # stands in for the secret file, absent here
    with mock.patch.dict(os.environ, env, clear=False):
        settings = Settings()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.kafka.profile.value == "kafka"
    assert settings.kafka.security_protocol.value == "SASL_SSL"
    assert settings.kafka.sasl_password_file is not None and settings.kafka.sasl_password is None
    assert settings.triton.url == "triton:8001"
    assert settings.triton.tls_ca_file is not None
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


# -- security (README, "Security") ---------------------------------------------------------

ROLE_WORKERS = {"ingest": "ingest", "detect": "detect", "alert": "alert", "persist": "persist"}


def _secret_files(service: str) -> set[str]:
    return {secret if isinstance(secret, str) else secret["source"] for secret in SERVICES[service].get("secrets", [])}


def test_no_password_is_in_the_file_or_the_environment() -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    assert "${" not in text, "no secret interpolated from the host's environment (nor a default for one)"
    for name, service in SERVICES.items():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key:
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (name, key)


def test_every_secret_is_a_file_under_secrets() -> None:
    declared = COMPOSE["secrets"]
    assert all(secret["file"].startswith("./secrets/") for secret in declared.values())
    used = set().union(*(_secret_files(name) for name in SERVICES))
    assert used == set(declared), "every declared secret is used, every used one declared"


def test_each_worker_is_its_own_kafka_principal_with_only_its_password() -> None:
    for service, role in ROLE_WORKERS.items():
        env = SERVICES[service]["environment"]
        assert env["FRAMESTREAM_KAFKA_SASL_USERNAME"] == role
        assert env["FRAMESTREAM_KAFKA_SASL_PASSWORD_FILE"] == f"/run/secrets/kafka_{role}_password"
        kafka_secrets = {name for name in _secret_files(service) if name.startswith("kafka_")}
        assert kafka_secrets == {f"kafka_{role}_password"}
        assert env["FRAMESTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert "clickhouse_writer_password" in _secret_files("persist")
    assert not any("clickhouse" in name for name in _secret_files("detect") | _secret_files("alert"))


def test_only_grafana_is_published_and_the_backend_is_internal() -> None:
    assert COMPOSE["networks"]["backend"]["internal"] is True
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"grafana"}
    for name in ("kafka", "clickhouse", "triton", "setup", *ROLE_WORKERS):
        assert SERVICES[name]["networks"] == ["backend"], name


def test_kafka_listens_on_sasl_ssl_with_acls() -> None:
    properties = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / "infra/kafka/compose/server.properties").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert properties["listener.security.protocol.map"] == "CLIENTS:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert "PLAINTEXT" not in properties["listeners"]
    start = (REPO_ROOT / "infra/kafka/compose/start.sh").read_text()
    assert "--add-scram" in start and "@$argfile" in start and "kafka_admin_password" in start


def test_triton_serves_grpc_over_tls() -> None:
    command = SERVICES["triton"]["command"]
    assert "--grpc-use-ssl=true" in command
    assert {"triton_cert", "triton_key"} <= _secret_files("triton")


def test_grafana_admin_from_a_secret_no_anonymous_access_analysts_are_viewers() -> None:
    env = SERVICES["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_USERS_AUTO_ASSIGN_ORG_ROLE"] == "Viewer"
    assert env["GF_SERVER_PROTOCOL"] == "https"
    datasource = yaml.safe_load((REPO_ROOT / "infra/grafana/provisioning/datasources/clickhouse.yaml").read_text())
    reader = datasource["datasources"][0]
    assert reader["jsonData"]["username"] == "grafana_reader"
    assert reader["secureJsonData"]["password"] == "$__file{/run/secrets/clickhouse_reader_password}"


def test_clickhouse_restricts_system_tables() -> None:
    mounts = SERVICES["clickhouse"]["volumes"]
    assert any(volume.endswith("/config.d/access_control.xml:ro") for volume in mounts)
    xml = (REPO_ROOT / "infra/clickhouse/server/access_control.xml").read_text()
    assert "<select_from_system_db_requires_grant>true</select_from_system_db_requires_grant>" in xml
