"""``framestream services``: run the embedded broker and tritonserver in the foreground,
create the topics, and print the environment that points other commands at them.

The broker is Apache Kafka (KRaft) wherever Java 17+ and its jars (./scripts/setup.sh)
exist, else Tansu with a warning; ``--broker`` or ``FRAMESTREAM_EMBEDDED_BROKER`` picks one."""

from __future__ import annotations

import argparse
import shlex
import signal
import threading
from pathlib import Path

from framestream.services.stack import EmbeddedStack
from framestream.settings import EmbeddedBroker, Settings
from streams.topics import create_deployment_topics


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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    if args.broker is not None:
        settings = settings.model_copy(update={"embedded_broker": args.broker})
    with EmbeddedStack(settings) as stack:
        create_deployment_topics(stack.settings.kafka)
        exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in stack.env().items() if value)
        print(exports, end="", flush=True)
        if args.env_file:
            args.env_file.write_text(exports)
        stopping.wait()
    return 0
