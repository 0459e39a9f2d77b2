"""Secrets for the embedded stack's secured mode: a private CA, the broker's certificate, one
SCRAM password per role, and one env file per role.

    material = SecurityMaterial.ensure(data_dir / "security", hosts=["localhost", "127.0.0.1"])
    LocalKafka(data_dir, security=material.broker_security()).start()
    material.write_env_files(bootstrap_servers, base_env)   # <dir>/env/<role>.env, mode 0600

Everything is made here with the ``cryptography`` library (no openssl or keytool on PATH) and
kept across restarts: an existing CA, certificate or password is reused. Private keys and
env files are written mode 0600 in a 0700 folder; the CA certificate is public. A password
lives only in its role's env file: nothing else here writes, prints or logs one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streams.acls import Role

CERT_DAYS = 365
BROKER_CN = "broker"  # the brokers' own principal (inter-broker and controller mTLS), a super user
PASSWORD_ENV = "FRAMESTREAM_KAFKA_SASL_PASSWORD"


@dataclass(frozen=True)
class BrokerSecurity:
    """What a secured embedded broker needs: PEM keystore (key + chain), PEM truststore (the CA),
    and the admin's password for its SCRAM credential, set when the storage is formatted."""

    keystore: Path
    truststore: Path
    admin_password: str

    def __repr__(self) -> str:  # a dataclass repr would show the password
        return f"BrokerSecurity(keystore={self.keystore}, truststore={self.truststore}, admin_password=**********)"


def write_private(path: Path, data: bytes) -> Path:
    """Create or replace ``path`` with mode 0600 from the first byte (never world-readable, even briefly)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return path


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8, unencrypted: the form Kafka's PEM keystore reads without a key password. The
    file's 0600 mode is its protection."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "framestream"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(common_name: str = "framestream private CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common_name: str, hosts: Iterable[str]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A leaf certificate for server and client TLS, naming ``hosts`` (DNS names or IP addresses)."""
    key = new_key()
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )  # digitalSignature, keyEncipherment
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def new_password() -> str:
    """256 random bits, URL-safe base64: no quote, comma, bracket or '=' (Kafka's --add-scram syntax)."""
    return secrets.token_urlsafe(32)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (the format ``docker --env-file`` and systemd's EnvironmentFile read)."""
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value
    return values


class SecurityMaterial:
    """The secured embedded stack's CA, broker certificate and role passwords, under ``directory``."""

    def __init__(self, directory: Path, passwords: Mapping[str, str]) -> None:
        self.directory = directory
        self._passwords = dict(passwords)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def broker_keystore(self) -> Path:
        return self.directory / "broker.pem"

    @property
    def env_dir(self) -> Path:
        return self.directory / "env"

    def env_file(self, role: Role | str) -> Path:
        return self.env_dir / f"{Role(role).value}.env"

    def password(self, role: Role | str) -> str:
        return self._passwords[Role(role).value]

    def passwords(self) -> dict[str, str]:
        """Every role's password, for ``streams.acls.apply_security``."""
        return dict(self._passwords)

    def __repr__(self) -> str:
        return f"SecurityMaterial({self.directory}, roles={sorted(self._passwords)})"

    @classmethod
    def ensure(cls, directory: Path, hosts: Iterable[str]) -> SecurityMaterial:
        """Load what ``directory`` holds, making whatever is missing (a CA, the broker's
        certificate for ``hosts``, a role's password)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        material = cls(directory, _load_passwords(directory / "env"))
        material._ensure_certificates(list(hosts))
        for role in Role:
            material._passwords.setdefault(role.value, new_password())
        return material

    def _ensure_certificates(self, hosts: list[str]) -> None:
        ca_key_file = self.directory / "ca.key"
        if ca_key_file.exists() and self.ca_file.exists():
            ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
            ca_cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        else:
            ca_key, ca_cert = make_ca()
            write_private(ca_key_file, key_pem(ca_key))
            self.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
            self.broker_keystore.unlink(missing_ok=True)  # signed by the old CA
        if not self.broker_keystore.exists() or not _names_hosts(self.broker_keystore, hosts):
            assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
            key, cert = issue(ca_key, ca_cert, BROKER_CN, hosts)
            chain = cert.public_bytes(serialization.Encoding.PEM) + self.ca_file.read_bytes()
            write_private(self.broker_keystore, key_pem(key) + chain)

    def server_certificate(self, name: str, hosts: Iterable[str]) -> tuple[Path, Path]:
        """``<name>.crt`` (certificate + CA chain) and ``<name>.key`` (0600), signed by this CA, for
        a TLS server other than the broker (Triton's gRPC). Made anew on every call."""
        ca_key = serialization.load_pem_private_key((self.directory / "ca.key").read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        key, cert = issue(ca_key, ca_cert, name, hosts)
        chain = self.directory / f"{name}.crt"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.ca_file.read_bytes())
        return chain, write_private(self.directory / f"{name}.key", key_pem(key))

    def broker_security(self) -> BrokerSecurity:
        return BrokerSecurity(self.broker_keystore, self.ca_file, self.password(Role.ADMIN))

    def client_env(self, role: Role | str, bootstrap_servers: str) -> dict[str, str]:
        """The Kafka settings of ``role``'s clients, its password included."""
        role = Role(role)
        return {
            "FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "FRAMESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FRAMESTREAM_KAFKA_SASL_USERNAME": role.value,
            PASSWORD_ENV: self.password(role),
            "FRAMESTREAM_KAFKA_SSL_CA_FILE": str(self.ca_file),
        }

    def write_env_files(self, bootstrap_servers: str, base_env: Mapping[str, str]) -> dict[Role, Path]:
        """One ``<role>.env`` per role (mode 0600): ``base_env`` (non-secret settings) plus the
        role's Kafka settings and password. Rewritten on every start (the broker's port changes)."""
        written = {}
        for role in Role:
            values = {**base_env, **self.client_env(role, bootstrap_servers)}
            text = "".join(f"{key}={value}\n" for key, value in values.items() if value)
            header = f"# framestream role {role.value}: secret, mode 0600; generated by framestream services --secure\n"
            written[role] = write_private(self.env_file(role), (header + text).encode())
        return written


def _load_passwords(env_dir: Path) -> dict[str, str]:
    passwords = {}
    for role in Role:
        path = env_dir / f"{role.value}.env"
        if path.exists():
            password = read_env_file(path).get(PASSWORD_ENV)
            if password:
                passwords[role.value] = password
    return passwords


def _names_hosts(keystore: Path, hosts: list[str]) -> bool:
    """Whether the certificate in ``keystore`` names every one of ``hosts`` and is valid a while yet."""
    cert = x509.load_pem_x509_certificates(keystore.read_bytes())[0]
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=7):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    named = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    return set(hosts) <= named


# -- docker-compose -------------------------------------------------------------------------

COMPOSE_PASSWORDS = ("clickhouse_admin", "clickhouse_writer", "clickhouse_reader", "grafana_admin")


def write_compose_secrets(directory: Path, grafana_hosts: Iterable[str] = ("localhost",)) -> list[Path]:
    """The files docker-compose.yml's ``secrets:`` name, under ``directory`` (kept if present):
    the CA, the Kafka broker's PEM keystore, Triton's and Grafana's certificates and keys, and
    one password file per Kafka role and per ClickHouse/Grafana account, all but the CA 0600.

        python -m framestream.services.security ./secrets [grafana.example.org]
    """
    material = SecurityMaterial.ensure(directory / "ca", hosts=["kafka", "localhost"])
    written = [directory / "framestream_ca.crt", directory / "kafka_broker.pem"]
    written[0].write_bytes(material.ca_file.read_bytes())
    write_private(written[1], material.broker_keystore.read_bytes())
    for name, hosts in (("triton", ["triton"]), ("grafana", list(grafana_hosts))):
        if not (directory / f"{name}.key").exists():
            chain, key = material.server_certificate(name, hosts)
            written += [chain.replace(directory / f"{name}.crt"), key.replace(directory / f"{name}.key")]
    for name in [f"kafka/{role.value}" for role in Role] + list(COMPOSE_PASSWORDS):
        path = directory / f"{name}.password"
        if not path.exists():
            written.append(write_private(path, (new_password() + "\n").encode()))
    return written


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "secrets")
    made = write_compose_secrets(target, sys.argv[2:] or ["localhost"])
    print(f"secrets under {target}: {len(made)} files written or refreshed (no secret printed)")
