"""Security's pure parts: client configs on SASL_SSL, the password's sources and redaction, the
roles' grants, and the CA, certificates and env files of the secured embedded stack."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from confluent_kafka.admin import ResourceType
from cryptography import x509
from pydantic import ValidationError

from framestream.commands.setup import role_passwords
from framestream.services.kafka import NodePorts, node_properties
from framestream.services.security import SecurityMaterial, read_env_file
from streams.acls import Access, Role, acl_bindings, role_grants
from streams.kafka_config import (
    REDACTED,
    KafkaSettings,
    admin_config,
    consumer_config,
    faust_broker_settings,
    producer_config,
    redact,
    redacted_config,
)
from streams.topics import TopicNames

PASSWORD = "s3cret-Pa55word-do-not-print"


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> SecurityMaterial:
    return SecurityMaterial.ensure(tmp_path_factory.mktemp("sec") / "security", hosts=["localhost", "127.0.0.1"])


def secure(material: SecurityMaterial, **extra: object) -> KafkaSettings:
    values: dict[str, object] = {
        "bootstrap_servers": "127.0.0.1:9093",
        "security_protocol": "SASL_SSL",
        "sasl_username": "detect",
        "sasl_password": PASSWORD,
        "ssl_ca_file": material.ca_file,
    }
    return KafkaSettings(**{**values, **extra})


def test_every_librdkafka_config_carries_tls_and_scram(material: SecurityMaterial) -> None:
    kafka = secure(material)
    for config in (producer_config(kafka, "p"), consumer_config(kafka, "g"), admin_config(kafka)):
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.mechanism"] == "SCRAM-SHA-512"
        assert (config["sasl.username"], config["sasl.password"]) == ("detect", PASSWORD)
        assert config["ssl.ca.location"] == str(material.ca_file)
        assert config["ssl.endpoint.identification.algorithm"] == "https"


def test_plaintext_configs_have_no_security_keys() -> None:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9092")
    for config in (producer_config(kafka, "p"), consumer_config(kafka, "g"), admin_config(kafka), admin_config("h:1")):
        assert not [key for key in config if key.startswith(("sasl.", "ssl.", "security."))]
    assert "broker_credentials" not in faust_broker_settings(kafka)


def test_faust_gets_scram_credentials_over_a_verifying_tls_context(material: SecurityMaterial) -> None:
    credentials = faust_broker_settings(secure(material))["broker_credentials"]
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.protocol.value == "SASL_SSL"
    assert (credentials.username, credentials.password) == ("detect", PASSWORD)
    assert credentials.ssl_context.verify_mode is ssl.CERT_REQUIRED and credentials.ssl_context.check_hostname
    assert PASSWORD not in repr(credentials)


def test_the_password_may_come_from_a_secret_file(material: SecurityMaterial, tmp_path: Path) -> None:
    secret = tmp_path / "kafka_password"
    secret.write_text(PASSWORD + "\n")
    kafka = secure(material, sasl_password=None, sasl_password_file=secret)
    assert producer_config(kafka, "p")["sasl.password"] == PASSWORD


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ({"sasl_username": ""}, "SASL_USERNAME"),
        ({"sasl_password": None}, "SASL_PASSWORD"),
        ({"ssl_ca_file": None}, "SSL_CA_FILE"),
        ({"profile": "tansu"}, "Tansu"),
    ],
)
def test_incomplete_security_settings_are_refused_without_quoting_the_password(
    material: SecurityMaterial, missing: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        secure(material, **missing)
    assert named in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_settings_configs_and_errors_are_redacted(material: SecurityMaterial, tmp_path: Path) -> None:
    kafka = secure(material)
    assert PASSWORD not in repr(kafka) and PASSWORD not in str(kafka.model_dump())
    assert redacted_config(producer_config(kafka, "p"))["sasl.password"] == REDACTED
    assert PASSWORD not in str(redacted_config(consumer_config(kafka, "g")))
    assert redact(f"config was {producer_config(kafka, 'p')}", kafka).count(PASSWORD) == 0
    unreadable = secure(material, sasl_password=None, sasl_password_file=tmp_path / "absent")
    with pytest.raises(ValueError, match="cannot read the SASL password file"):
        producer_config(unreadable, "p")


# -- roles ---------------------------------------------------------------------------------

T = TopicNames("p.")


def allowed(role: Role) -> set[tuple[str, str]]:
    return {(g.access.value, g.name) for g in role_grants(role, T) if g.resource == ResourceType.TOPIC}


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (Role.INGEST, {("write", T.frames), ("write", T.camera_health)}),
        (Role.DETECT, {("read", T.frames), ("write", T.detections), ("write", T.deadletter)}),
        (Role.CONSUMER, {("read", T.alerts)}),
        (Role.REVIEW, {("write", T.alert_reviews)}),
        (Role.BRIDGE, {("read", T.alerts), ("write", T.deadletter)}),
        (Role.ADMIN, set()),
    ],
)
def test_role_topic_grants(role: Role, expected: set[tuple[str, str]]) -> None:
    assert allowed(role) == expected


def test_persist_reads_what_it_stores_and_writes_only_dead_letters() -> None:
    persisted = allowed(Role.PERSIST)
    assert {name for access, name in persisted if access == "write"} == {T.deadletter}
    assert {name for access, name in persisted if access == "read"} == set(T.all()) - {T.frames}


def test_each_changelog_belongs_to_its_stage_only() -> None:
    for changelog, owner in ((T.cooldowns_changelog, Role.ALERT), (T.tracker_changelog, Role.TRACK)):
        holders = {role for role in Role for _, name in allowed(role) if name == changelog}
        assert holders == {owner}
        assert {("read", changelog), ("write", changelog)} <= allowed(owner)


def test_groups_are_the_stage_app_ids_or_prefixes() -> None:
    groups = {
        role: {(g.name, g.prefixed) for g in role_grants(role, T) if g.resource == ResourceType.GROUP} for role in Role
    }
    assert groups[Role.DETECT] == {("p.framestream-detect", False)}
    assert groups[Role.BRIDGE] == {("p.framestream-bridge-", True)}
    assert groups[Role.CONSUMER] == {("p.downstream-", True)}
    assert groups[Role.INGEST] == set() and groups[Role.REVIEW] == set()
    assert all(
        g.access is Access.READ for role in Role for g in role_grants(role, T) if g.resource == ResourceType.GROUP
    )


def test_bindings_are_allow_only_and_every_name_carries_the_prefix() -> None:
    bindings = acl_bindings(T)
    assert bindings and all(b.name.startswith("p.") and b.permission_type.name == "ALLOW" for b in bindings)
    assert len(set(bindings)) == len(bindings)


# -- the secured embedded stack's material ---------------------------------------------------


def test_private_files_are_0600_and_the_certificate_names_the_hosts(material: SecurityMaterial) -> None:
    directory = material.directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for private in ("ca.key", "broker.pem"):
        assert stat.S_IMODE((directory / private).stat().st_mode) == 0o600
    leaf, ca = x509.load_pem_x509_certificates(
        material.broker_keystore.read_bytes().split(b"-----END PRIVATE KEY-----")[1]
    )
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(material.ca_file.read_bytes()))


def test_env_files_are_0600_and_hold_the_roles_settings(material: SecurityMaterial, tmp_path: Path) -> None:
    files = material.write_env_files("127.0.0.1:1", {"FRAMESTREAM_DATA_DIR": "/d"})
    assert set(files) == set(Role)
    for role, path in files.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        values = read_env_file(path)
        assert values["FRAMESTREAM_KAFKA_SASL_USERNAME"] == role.value
        assert values["FRAMESTREAM_KAFKA_SASL_PASSWORD"] == material.password(role)
        assert values["FRAMESTREAM_DATA_DIR"] == "/d"
    assert len({material.password(role) for role in Role}) == len(Role), "one password per role"
    reloaded = SecurityMaterial.ensure(material.directory, hosts=["localhost", "127.0.0.1"])
    assert reloaded.passwords() == material.passwords(), "a restart keeps the passwords"
    assert role_passwords(material.env_dir) == material.passwords()
    assert PASSWORD not in repr(material) and material.password(Role.ADMIN) not in repr(material.broker_security())


def test_secured_node_properties_hold_no_secret(material: SecurityMaterial, tmp_path: Path) -> None:
    security = material.broker_security()
    properties = node_properties(
        1, NodePorts(1, 2, 3), "1@h:2", tmp_path, host="h", replication_factor=1, partitions=4, security=security
    )
    assert properties["listener.security.protocol.map"] == "CLIENTS:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert security.admin_password not in str(properties)
    with pytest.raises(ValueError, match="internal"):
        node_properties(
            1, NodePorts(1, 2), "1@h:2", tmp_path, host="h", replication_factor=1, partitions=4, security=security
        )


def test_the_admin_password_reaches_storage_format_in_a_0600_argfile_not_the_command_line(
    material: SecurityMaterial, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from framestream.child_process import ChildProcess
    from framestream.services.kafka import KafkaNode

    seen: dict[str, object] = {}

    def capture(self: ChildProcess, timeout_s: float) -> None:  # instead of starting a JVM
        argfile = Path(self.command[-1].removeprefix("@"))
        seen.update(command=list(self.command), mode=stat.S_IMODE(argfile.stat().st_mode), args=argfile.read_text())

    monkeypatch.setattr(ChildProcess, "run_to_end", capture)
    security = material.broker_security()
    properties = node_properties(
        1,
        NodePorts(1, 2, 3),
        "1@h:2",
        tmp_path / "log",
        host="h",
        replication_factor=1,
        partitions=4,
        security=security,
    )
    node = KafkaNode(
        1,
        NodePorts(1, 2, 3),
        tmp_path,
        tmp_path / "kafka.log",
        cluster_id="-abc",
        properties=properties,
        java=Path("java"),
        classpath="libs/*",
        grace_s=1,
        security=security,
    )
    node.format_storage()
    assert security.admin_password not in " ".join(seen["command"])  # type: ignore[arg-type]
    assert str(seen["command"][-1]).startswith("@")  # type: ignore[index]
    assert seen["mode"] == 0o600
    lines = str(seen["args"]).splitlines()
    assert lines[:3] == ["kafka.tools.StorageTool", "format", "--cluster-id=-abc"]
    assert f"--add-scram=SCRAM-SHA-512=[name=admin,password={security.admin_password}]" in lines
    assert not (tmp_path / "format.args").exists(), "deleted once formatted"


def test_compose_secrets_are_made_once_and_private(tmp_path: Path) -> None:
    from framestream.services.security import write_compose_secrets

    made = write_compose_secrets(tmp_path, ["grafana.example.org"])
    for path in made:
        if path.suffix != ".crt":  # certificates are public; keys, keystores and passwords are not
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    passwords = sorted(tmp_path.rglob("*.password"))
    assert len(passwords) == len(Role) + 4
    before = {path: path.read_text() for path in passwords}
    write_compose_secrets(tmp_path, ["grafana.example.org"])
    assert {path: path.read_text() for path in passwords} == before, "kept, not regenerated"
    assert role_passwords(tmp_path / "kafka") == {
        role.value: before[tmp_path / "kafka" / f"{role.value}.password"].strip() for role in Role
    }
    grafana = x509.load_pem_x509_certificates((tmp_path / "grafana.crt").read_bytes())[0]
    san = grafana.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["grafana.example.org"]


def test_clickhouse_passwords_may_come_from_secret_files(tmp_path: Path) -> None:
    from streams.sinks.clickhouse_db import ClickHouseSettings

    secret = tmp_path / "writer"
    secret.write_text(PASSWORD + "\n")
    assert ClickHouseSettings(password_file=secret).password.get_secret_value() == PASSWORD
    with pytest.raises(ValidationError) as raised:
        ClickHouseSettings(password_file=tmp_path / "absent")
    assert "cannot read the secret file" in str(raised.value)


def test_log_lines_mask_every_password_the_process_used(material: SecurityMaterial) -> None:
    import logging

    from framestream.logs import JsonFormatter

    producer_config(secure(material), "p")  # the process now uses PASSWORD
    record = logging.makeLogRecord({"msg": f"config {{'sasl.password': '{PASSWORD}'}}", "args": None})
    record.__dict__["extra_field"] = PASSWORD
    line = JsonFormatter().format(record)
    assert PASSWORD not in line and line.count(REDACTED) == 2
