"""The ``framestream`` command. Each subcommand lives in ``framestream/commands/<name>.py``
and exposes ``register(subparsers)``; the environment is read here, once."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, imported lazily so `framestream detect` does not pay for faust's import.
COMMANDS: dict[str, str] = {
    "run": "framestream.commands.run",
    "detect": "framestream.commands.detect",
    "ingest": "framestream.commands.ingest",
    "worker": "framestream.commands.worker",
    "services": "framestream.commands.services",
    "migrate": "framestream.commands.migrate",
    "report": "framestream.commands.report",
    "bench": "framestream.commands.bench",
    "setup": "framestream.commands.setup",
    "label": "framestream.commands.label",
    "eval": "framestream.commands.eval",
    "review": "framestream.commands.review",
    "bridge": "framestream.commands.bridge",
    "snapshots": "framestream.commands.snapshots",
    "model": "framestream.commands.model",
    "chaos": "framestream.commands.chaos",
    "train": "framestream.commands.train",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framestream", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, module_name in COMMANDS.items():
        if wanted is not None and name != wanted:
            subparsers.add_parser(name)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    from framestream.settings import Settings

    settings = Settings()
    from framestream.logs import configure_logging

    configure_logging(settings.log_level)
    return int(args.handler(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
