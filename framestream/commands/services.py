"""``framestream services``: run the embedded broker and tritonserver in the foreground,
create the topics, and print the environment that points other commands at them."""

from __future__ import annotations

import argparse
import shlex
import signal
import threading
from pathlib import Path

from streams.topics import create_deployment_topics
from framestream.services.stack import EmbeddedStack
from framestream.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("services", help="run the embedded Kafka broker and Triton until interrupted")
    parser.add_argument("--env-file", type=Path, help="also write `export VAR=value` lines to this file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    with EmbeddedStack(settings) as stack:
        create_deployment_topics(stack.settings.kafka)
        exports = "".join(
            f"export {name}={shlex.quote(value)}\n" for name, value in stack.env().items() if value
        )
        print(exports, end="", flush=True)
        if args.env_file:
            args.env_file.write_text(exports)
        stopping.wait()
    return 0
