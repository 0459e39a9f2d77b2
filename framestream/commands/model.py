"""``framestream model list|register|promote|rollback``: the model registry (framestream/registry.py).

- ``list [NAME]``: each model's versions, which one the config serves, and, with a live Triton
  (settings or --triton-url), the state of every version Triton knows.
- ``register PATH --model NAME``: PATH holds ``model.onnx`` and ``detector.json``; checked, copied
  in as the next version (not served).
- ``promote NAME VERSION``: the accuracy gate (framestream/model_gate.py) on the labelled set
  (--dataset/--format, or FRAMESTREAM_EVAL_DATASET / FRAMESTREAM_EVAL_FORMAT); a candidate not
  better by --margin on --metric is refused (exit 3) unless ``--force --reason TEXT``, which the
  log records. Then the config serves VERSION and Triton reloads the model while it serves.
- ``rollback NAME``: back to the version the last promotion replaced (no gate).

Without a Triton URL only the repository changes; the next tritonserver start serves it.
Exit 1: bad input; 2: Triton unavailable (the config is restored); 3: refused by the gate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from framestream.settings import Settings

EXIT_BAD_INPUT = 1
EXIT_UNAVAILABLE = 2
EXIT_REFUSED = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="model registry: list, register, promote, rollback")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repository", type=Path, default=None, help="model repository (default: settings)")
    common.add_argument("--triton-url", default=None, help="Triton gRPC host:port (default: settings)")

    listing = actions.add_parser("list", parents=[common], help="versions and which is served")
    listing.add_argument("name", nargs="?", default=None)
    listing.set_defaults(handler=run_list)

    adding = actions.add_parser("register", parents=[common], help="add a folder as the next version")
    adding.add_argument("path", type=Path, help="folder with model.onnx and detector.json")
    adding.add_argument("--model", default="detector")
    adding.add_argument("--note", default="", help="recorded in the registry log")
    adding.set_defaults(handler=run_register)

    promoting = actions.add_parser("promote", parents=[common], help="gate, then serve VERSION")
    promoting.add_argument("name")
    promoting.add_argument("version", type=int)
    promoting.add_argument("--dataset", type=Path, default=None, help="labelled set (FRAMESTREAM_EVAL_DATASET)")
    promoting.add_argument("--format", default=None, help="its label format (FRAMESTREAM_EVAL_FORMAT)")
    promoting.add_argument("--metric", default="map", choices=("map", "map50"), help="mAP@[.5:.95] or mAP@.5")
    promoting.add_argument("--margin", type=float, default=0.01, help="how much better the candidate must be")
    promoting.add_argument("--force", action="store_true", help="promote even if the gate refuses")
    promoting.add_argument("--reason", default="", help="why (required with --force; recorded)")
    promoting.set_defaults(handler=run_promote)

    back = actions.add_parser("rollback", parents=[common], help="serve the previously promoted version")
    back.add_argument("name")
    back.set_defaults(handler=run_rollback)


def _registry(args: argparse.Namespace, settings: Settings):  # noqa: ANN202
    from framestream.registry import ModelRegistry

    return ModelRegistry(args.repository or settings.triton.model_repository)


def _url(args: argparse.Namespace, settings: Settings) -> str:
    return settings.triton.url if args.triton_url is None else args.triton_url


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"framestream model: {message}", file=sys.stderr)
    return code


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from framestream.registry import RegistryError

    registry = _registry(args, settings)
    names = [args.name] if args.name else sorted(p.parent.name for p in registry.repository.glob("*/config.pbtxt"))
    states: dict[tuple[str, str], str] = {}
    url = _url(args, settings)
    if url:
        try:
            states = TritonControl(url, settings).states()
        except TritonUnavailable as error:
            print(f"(Triton at {url} unavailable: {error})", file=sys.stderr)
    try:
        for name in names:
            served = registry.served(name)
            for version in registry.versions(name):
                marks = ["served"] if version == served else []
                if (name, str(version)) in states:
                    marks.append(f"triton: {states[name, str(version)]}")
                print(f"{name} {version}" + (f"  ({', '.join(marks)})" if marks else ""))
    except RegistryError as error:
        return _fail(str(error))
    return 0


def run_register(args: argparse.Namespace, settings: Settings) -> int:
    from framestream.registry import RegistryError

    try:
        version = _registry(args, settings).register(args.model, args.path, note=args.note)
    except RegistryError as error:
        return _fail(str(error))
    print(f"registered {args.path} as {args.model} version {version} (not served; promote it to serve it)")
    return 0


def run_promote(args: argparse.Namespace, settings: Settings) -> int:
    from framestream.model_gate import LabelledSet, gate
    from framestream.registry import RegistryError
    from processors.labels import LabelError

    registry = _registry(args, settings)
    if args.force and not args.reason.strip():
        return _fail("--force needs --reason TEXT (it is recorded in the registry log)")
    dataset = args.dataset or settings.eval_dataset
    label_format = args.format or settings.eval_format
    try:
        current = registry.served(args.name)
        if args.version not in registry.versions(args.name):
            return _fail(
                f"model {args.name!r} has no version {args.version} (versions: {registry.versions(args.name)})"
            )
        if args.version == current:
            return _fail(f"{args.name} version {args.version} is already served")
        details: dict[str, object] = {"from": current, "forced": False}
        if dataset is None:
            if not args.force:
                return _fail("no labelled set for the gate: --dataset PATH --format F, or FRAMESTREAM_EVAL_DATASET")
            print("no labelled set: the gate did not run")
        else:
            result = gate(
                registry,
                args.name,
                args.version,
                LabelledSet.read(dataset, label_format),
                args.metric,
                args.margin,
                current,
            )
            print(result.summary())
            details["gate"] = {**result.as_record(), "dataset": str(dataset), "passed": result.passed}
            if not result.passed and not args.force:
                return _fail(
                    f"refused: {args.name} v{args.version} is not better than v{current} by {args.margin}", EXIT_REFUSED
                )
        if args.force:
            details.update(forced=True, reason=args.reason)
        _serve(registry, args.name, args.version, current, _url(args, settings), settings)
    except (RegistryError, LabelError) as error:
        return _fail(str(error))
    except TritonUnavailable as error:
        return _fail(f"Triton unavailable, {args.name} still serves v{current}: {error}", EXIT_UNAVAILABLE)
    registry.record(args.name, "promote", args.version, **details)
    print(f"{args.name}: version {args.version} serves (was {current})")
    return 0


def run_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from framestream.registry import RegistryError

    registry = _registry(args, settings)
    try:
        current = registry.served(args.name)
        target = registry.previous(args.name)
        _serve(registry, args.name, target, current, _url(args, settings), settings)
    except RegistryError as error:
        return _fail(str(error))
    except TritonUnavailable as error:
        return _fail(f"Triton unavailable, {args.name} still serves v{current}: {error}", EXIT_UNAVAILABLE)
    registry.record(args.name, "rollback", target, **{"from": current})
    print(f"{args.name}: rolled back to version {target} (was {current})")
    return 0


def _serve(registry, name: str, version: int, current: int, url: str, settings: Settings) -> None:  # noqa: ANN001
    """The config serves ``version``; a live Triton reloads the model (config restored if it fails)."""
    registry.set_served(name, version)
    if not url:
        print("no Triton URL: the repository serves it from the next tritonserver start")
        return
    try:
        TritonControl(url, settings).switch(name, str(version))
    except TritonUnavailable:
        registry.set_served(name, current)
        raise


class TritonUnavailable(ConnectionError):
    pass


class TritonControl:
    """Triton's model-control API (gRPC): reload a model and wait for a version to serve alone."""

    def __init__(self, url: str, settings: Settings, timeout_s: float = 180.0) -> None:
        import tritonclient.grpc as grpcclient

        ca = settings.triton.tls_ca_file
        self.client = grpcclient.InferenceServerClient(
            url, ssl=ca is not None, root_certificates=str(ca) if ca is not None else None
        )
        self.timeout_s = timeout_s

    def states(self) -> dict[tuple[str, str], str]:
        from tritonclient.utils import InferenceServerException

        try:
            index = self.client.get_model_repository_index(as_json=True)
        except InferenceServerException as error:
            raise TritonUnavailable(str(error)) from error
        return {(m["name"], m.get("version", "")): m.get("state", "") for m in index.get("models", [])}

    def switch(self, name: str, version: str) -> None:
        """Reload ``name`` (Triton reads the new policy, loads ``version`` while the old serves, then
        unloads the old after its in-flight requests), then wait until only ``version`` is ready."""
        from tritonclient.utils import InferenceServerException

        try:
            self.client.load_model(name)
        except InferenceServerException as error:
            raise TritonUnavailable(f"loading {name}: {error}") from error
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            ready = sorted(v for (model, v), state in self.states().items() if model == name and state == "READY")
            if ready == [version]:
                return
            time.sleep(0.2)
        raise TritonUnavailable(f"{name} version {version} not serving alone after {self.timeout_s:.0f} s")
