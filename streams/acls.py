"""Who may do what on a secured broker: one SCRAM principal per role, and its ACLs.

    grants = role_grants(Role.DETECT, TopicNames(prefix))      # what detect may do
    apply_security(admin_kafka, passwords, prefix)             # users + ACLs, idempotent

The broker runs KRaft's ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``:
whatever is not granted here is refused. ``admin`` (setup: topics, users, ACLs) and the
brokers themselves are super users in the broker's configuration, so they have no ACLs.
Reading a topic needs READ on it and on the consumer group; writing needs WRITE (which
also lets librdkafka's idempotent producer get a producer id, KIP-679). Consumer groups are
the faust app ids (``<prefix>framestream-<stage>``, streams/app.py), one stage per
principal: a worker running several stages needs a principal holding the union (not made
here; a secured deployment runs one stage per worker).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from streams.kafka_config import KafkaSettings, admin_config
from streams.topics import TopicNames

SCRAM_ITERATIONS = 8192  # RFC 7677 recommends at least 4096; Kafka's own tools default to 4096


class Role(StrEnum):
    ADMIN = "admin"  # framestream setup: topics, users, ACLs (a super user)
    INGEST = "ingest"
    DETECT = "detect"
    TRACK = "track"
    ALERT = "alert"
    PERSIST = "persist"
    MONITOR = "monitor"
    SHADOW = "shadow"  # a candidate detector beside the served one (streams/shadow.py)
    BRIDGE = "bridge"  # framestream bridge mqtt|webhook
    REVIEW = "review"  # writes verdicts on alerts (the review CLI, a downstream labelling tool)
    CONSUMER = "consumer"  # a downstream system: reads alerts only


class Access(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Grant:
    """One allowed operation: ``access`` on a topic or group named ``name`` (or every name
    starting with it, when ``prefixed``)."""

    resource: ResourceType
    name: str
    access: Access
    prefixed: bool = False

    def binding(self, principal: str) -> AclBinding:
        return AclBinding(
            self.resource,
            self.name,
            ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL,
            f"User:{principal}",
            "*",
            AclOperation.READ if self.access is Access.READ else AclOperation.WRITE,
            AclPermissionType.ALLOW,
        )


def _topics(access: Access, *names: str) -> list[Grant]:
    return [Grant(ResourceType.TOPIC, name, access) for name in names]


def _group(name: str, *, prefixed: bool = False) -> Grant:
    return Grant(ResourceType.GROUP, name, Access.READ, prefixed)


def role_grants(role: Role, topics: TopicNames) -> list[Grant]:
    """Everything ``role`` may do; nothing else is allowed. Changelogs are read and written by
    their one stage (faust restores a table by reading its changelog)."""
    t, p = topics, topics.prefix
    stage_group = _group(f"{p}framestream-{role.value}")
    # streams/frame_reader.py reads one frame back by offset (assign, no commits) under this group id.
    frame_fetch_group = _group(f"{p}framestream-frame-reader")
    read, write = Access.READ, Access.WRITE
    grants: dict[Role, list[Grant]] = {
        Role.ADMIN: [],
        Role.INGEST: _topics(write, t.frames, t.camera_health),
        Role.DETECT: [*_topics(read, t.frames), *_topics(write, t.detections, t.deadletter), stage_group],
        # Track raises track-rule alerts, with snapshots: it reads their frames back by offset.
        Role.TRACK: [
            *_topics(read, t.detections, t.tracker_changelog, t.frames),
            *_topics(write, t.tracks, t.tracker_changelog, t.alerts, t.deadletter),
            stage_group,
            frame_fetch_group,
        ],
        # Alert also reads an alert's frame back by offset for its snapshot (streams/snapshots.py).
        Role.ALERT: [
            *_topics(read, t.detections, t.cooldowns_changelog, t.frames),
            *_topics(write, t.alerts, t.cooldowns_changelog, t.deadletter),
            stage_group,
            frame_fetch_group,
        ],
        # Persist writes only dead letters: a record it cannot store goes there (streams/deadletter.py).
        Role.PERSIST: [
            *_topics(
                read,
                t.detections,
                t.alerts,
                t.deadletter,
                t.tracks,
                t.model_alerts,
                t.alert_reviews,
                t.hard_examples,
                t.camera_health,
                t.model_agreement,
            ),
            *_topics(write, t.deadletter),
            stage_group,
        ],
        Role.MONITOR: [
            *_topics(read, t.detections, t.alert_reviews, t.frames),
            *_topics(write, t.model_alerts, t.hard_examples, t.deadletter),
            stage_group,
            frame_fetch_group,
        ],
        Role.SHADOW: [
            *_topics(read, t.detections, t.frames),
            *_topics(write, t.model_agreement, t.deadletter),
            stage_group,
            frame_fetch_group,
        ],
        Role.BRIDGE: [
            *_topics(read, t.alerts),
            *_topics(write, t.deadletter),
            _group(f"{p}framestream-bridge-", prefixed=True),
        ],
        Role.REVIEW: _topics(write, t.alert_reviews),
        Role.CONSUMER: [*_topics(read, t.alerts), _group(f"{p}downstream-", prefixed=True)],
    }
    return grants[role]


def acl_bindings(topics: TopicNames, roles: list[Role] | None = None) -> list[AclBinding]:
    """The ALLOW bindings of every role (principal name = role name)."""
    return [grant.binding(role.value) for role in roles or list(Role) for grant in role_grants(role, topics)]


class SecuritySetupError(RuntimeError):
    """Creating users or ACLs failed; the message names which, never a password."""


def upsert_users(admin: AdminClient, passwords: Mapping[str, str], timeout_s: float = 30.0) -> None:
    """Set each user's SCRAM-SHA-512 password (creates or replaces it: idempotent)."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts = [UserScramCredentialUpsertion(user, info, password.encode()) for user, password in passwords.items()]
    if not upserts:
        return
    for user, future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as error:
            raise SecuritySetupError(f"cannot set the SCRAM credential of {user!r}: {error.args[0].str()}") from None


def sync_acls(admin: AdminClient, topics: TopicNames, timeout_s: float = 30.0) -> tuple[int, int]:
    """Make the roles' ACLs exactly ``acl_bindings``: create missing ones, delete any other ALLOW
    ACL held by a role principal (a grant removed from the code is revoked). Returns (created, deleted)."""
    wanted = set(acl_bindings(topics))
    principals = {f"User:{role.value}" for role in Role}
    existing = admin.describe_acls(
        AclBindingFilter(
            ResourceType.ANY,
            None,
            ResourcePatternType.ANY,
            None,
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        ),
        request_timeout=timeout_s,
    ).result()
    ours = {binding for binding in existing if binding.principal in principals}
    # Only this deployment's names: another prefix's ACLs on the same broker are not ours to drop.
    stale = [binding for binding in ours - wanted if binding.name.startswith(topics.prefix)]
    missing = list(wanted - ours)
    if missing:
        for binding, future in admin.create_acls(missing, request_timeout=timeout_s).items():
            _result(future, f"cannot create ACL {binding}")
    if stale:
        filters = [
            AclBindingFilter(
                b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
            )
            for b in stale
        ]
        for binding, future in admin.delete_acls(filters, request_timeout=timeout_s).items():
            _result(future, f"cannot delete ACL {binding}")
    return len(missing), len(stale)


def _result(future: object, what: str) -> None:
    try:
        future.result()  # type: ignore[attr-defined]
    except KafkaException as error:
        raise SecuritySetupError(f"{what}: {error.args[0].str()}") from None


def apply_security(kafka: KafkaSettings, passwords: Mapping[str, str], timeout_s: float = 30.0) -> tuple[int, int]:
    """As the admin principal ``kafka`` names: set the role users' passwords, then the ACLs of
    ``kafka.topic_prefix``. Safe to run again (``framestream setup`` does on every deploy)."""
    unknown = sorted(set(passwords) - {role.value for role in Role})
    if unknown:
        raise SecuritySetupError(f"no such role(s): {', '.join(unknown)}; roles are {', '.join(Role)}")
    admin = AdminClient(admin_config(kafka))
    upsert_users(admin, {user: pw for user, pw in passwords.items() if user != Role.ADMIN}, timeout_s)
    return sync_acls(admin, TopicNames(kafka.topic_prefix), timeout_s)
