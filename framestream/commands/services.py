"""``framestream services``: run the embedded broker and tritonserver in the foreground,
create the topics, and print the environment that points other commands at them.

The broker is Apache Kafka (KRaft) wherever Java 17+ and its jars (./scripts/setup.sh)
exist, else Tansu with a warning; ``--broker`` or ``FRAMESTREAM_EMBEDDED_BROKER`` picks one.

``--secure``: Apache Kafka with TLS, SCRAM-SHA-512 and ACLs. A private CA, the broker's
certificate and one password per role are made under ``<data_dir>/security`` (kept across
restarts), the users and ACLs are created as in ``framestream setup``, and each role's
settings, password included, go to ``<data_dir>/security/env/<role>.env`` (mode 0600). What
is printed (and ``--env-file``) holds no secret: load a role's env file to act as that role.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import threading
from pathlib import Path

from framestream.services.stack import EmbeddedStack
from framestream.settings import EmbeddedBroker, Settings
from streams.acls import apply_security
from streams.topics import create_deployment_topics

# Set per role by its env file on the secured stack, so left out of the shared exports.
_KAFKA_CLIENT_VARS = ("FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "services", help="run the embedded broker (Apache Kafka, or Tansu without Java) and Triton until interrupted"
    )
    parser.add_argument("--env-file", type=Path, help="also write `export VAR=value` lines to this file")
    parser.add_argument(
        "--broker",
        type=EmbeddedBroker,
        choices=list(EmbeddedBroker),
        default=None,
        metavar="{auto,kafka,kafka-cluster,tansu}",
        help="embedded broker: kafka (one node), kafka-cluster (three), tansu, or auto "
        "(default: FRAMESTREAM_EMBEDDED_BROKER, else auto: Apache Kafka where Java 17+ exists)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="Apache Kafka with TLS + SCRAM-SHA-512 + ACLs; one 0600 env file per role under <data_dir>/security/env",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    if args.broker is not None:
        settings = settings.model_copy(update={"embedded_broker": args.broker})
    with EmbeddedStack(settings, secure=args.secure) as stack:
        create_deployment_topics(stack.settings.kafka)
        env = {name: value for name, value in stack.env().items() if value}
        if stack.security is not None:
            apply_security(stack.settings.kafka, stack.security.passwords())
            shared = {name: value for name, value in env.items() if name not in _KAFKA_CLIENT_VARS}
            files = stack.security.write_env_files(stack.settings.kafka.bootstrap_servers, shared)
            print("# secured: one env file per role (secret, mode 0600); load one to act as that role:")
            for role, path in files.items():
                print(f"#   {role.value:9s} {path}")
            env = shared
        exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
        print(exports, end="", flush=True)
        if args.env_file:
            args.env_file.write_text(exports)
        stopping.wait()
    return 0
