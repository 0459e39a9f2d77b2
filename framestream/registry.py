"""A model registry on Triton's model repository: numbered versions, one served, a log of changes.

Layout (Triton's own): ``<repository>/<model>/<N>/`` is version N. Which version Triton serves
is the model's ``version_policy: { specific: { versions: [N] } }`` in its config.pbtxt, so the
served version is written where Triton reads it and survives restarts. ``registry.json`` beside
config.pbtxt is the log: every register, promote and rollback with its time, the gate's figures
and, for a forced promotion, the reason.

A registered version of ``detector`` is self-contained: ``model.onnx``, ``detector.json`` (the
``DetectorSpec``, processors/decoders.py) and a copy of the serving code ``model.py`` taken from
the version served at registration. Version 1, the original NanoDet pipeline, has no spec: its
network is the ``nanodet`` model's (parameter ``nanodet_model``).

Promotion: the accuracy gate (``gate``) evaluates candidate and current in this process, with the
very code the served model runs (processors/detector.py, ONNX Runtime), so no unvetted model ever
answers live traffic; then the policy is rewritten and Triton's model-control API reloads the
model (tritonserver runs with ``--model-control-mode=explicit``). Triton loads the new version
while the old one keeps serving, switches, and unloads the old version once its in-flight
requests have finished; clients that name no version (the detect stage) follow, and each
response names the version that answered (``FrameDetections.model_version``).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from processors.decoders import NANODET_SPEC, SPEC_FILE, DetectorSpec, SpecError, load_spec

LOG_FILE = "registry.json"
SERVING_CODE = "model.py"
POLICY_COMMENT = "# The served version: `framestream model promote|rollback` rewrite the next line."
_POLICY = re.compile(r"^version_policy\s*:\s*\{.*?\}\s*\}\s*$\n?", re.M | re.S)
_SPECIFIC = re.compile(r"^version_policy\s*:\s*\{\s*specific\s*:\s*\{\s*versions\s*:\s*\[([\d,\s]*)\]", re.M)


class RegistryError(ValueError):
    """A registry operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class Network:
    """What one detector version runs: its ONNX file and spec."""

    onnx: Path
    spec: DetectorSpec


class ModelRegistry:
    def __init__(self, repository: Path) -> None:
        self.repository = Path(repository)

    def model_dir(self, name: str) -> Path:
        folder = self.repository / name
        if not (folder / "config.pbtxt").is_file():
            raise RegistryError(f"no model {name!r} in {self.repository} (no {name}/config.pbtxt)")
        return folder

    def versions(self, name: str) -> list[int]:
        return sorted(int(p.name) for p in self.model_dir(name).iterdir() if p.is_dir() and p.name.isdigit())

    def served(self, name: str) -> int:
        """The version the config's policy serves (Triton's default, the latest, when it names none)."""
        config = (self.model_dir(name) / "config.pbtxt").read_text()
        found = _SPECIFIC.search(config)
        if found and found.group(1).strip():
            return max(int(v) for v in found.group(1).split(","))
        versions = self.versions(name)
        if not versions:
            raise RegistryError(f"model {name!r} has no version folders")
        return versions[-1]

    def set_served(self, name: str, version: int) -> None:
        """Rewrite config.pbtxt's version_policy to serve exactly ``version`` (atomically)."""
        if version not in self.versions(name):
            raise RegistryError(f"model {name!r} has no version {version} (versions: {self.versions(name)})")
        path = self.model_dir(name) / "config.pbtxt"
        text = _POLICY.sub("", path.read_text()).replace(POLICY_COMMENT + "\n", "").rstrip("\n")
        policy = f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}"
        temporary = path.with_suffix(".pbtxt.tmp")
        temporary.write_text(f"{text}\n\n{POLICY_COMMENT}\n{policy}\n")
        temporary.replace(path)

    def log(self, name: str) -> list[dict[str, object]]:
        path = self.model_dir(name) / LOG_FILE
        return list(json.loads(path.read_text())["events"]) if path.is_file() else []

    def record(self, name: str, action: str, version: int, **details: object) -> dict[str, object]:
        event = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "action": action, "version": version}
        event.update(details)
        path = self.model_dir(name) / LOG_FILE
        events = [*self.log(name), event]
        path.write_text(json.dumps({"events": events}, indent=1) + "\n")
        return event

    def register(self, name: str, source: Path, note: str = "") -> int:
        """Copy ``source`` (a folder with model.onnx and detector.json) in as the next version."""
        source = Path(source)
        network = check_network(source)
        folder = self.model_dir(name)
        if not _SPECIFIC.search((folder / "config.pbtxt").read_text()):
            self.set_served(name, self.served(name))  # pin it: a new version must not serve by itself
        version = max(self.versions(name), default=0) + 1
        served_code = folder / str(self.served(name)) / SERVING_CODE
        if not served_code.is_file():
            raise RegistryError(f"{served_code} is missing: no serving code to give the new version")
        target = folder / str(version)
        staging = folder / f".{version}.staging"  # Triton ignores it; renamed when complete
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        shutil.copy2(network.onnx, staging / "model.onnx")
        shutil.copy2(source / SPEC_FILE, staging / SPEC_FILE)
        shutil.copy2(served_code, staging / SERVING_CODE)
        staging.rename(target)
        self.record(name, "register", version, source=str(source), decoder=network.spec.decoder, note=note)
        return version

    def network(self, name: str, version: int) -> Network:
        """The ONNX file and spec a version runs (version folders without a spec: the nanodet network)."""
        folder = self.model_dir(name) / str(version)
        if not folder.is_dir():
            raise RegistryError(f"model {name!r} has no version {version}")
        if (folder / SPEC_FILE).is_file():
            return Network(folder / "model.onnx", load_spec(folder / SPEC_FILE))
        config = (self.model_dir(name) / "config.pbtxt").read_text()
        found = re.search(r'key:\s*"nanodet_model"\s*value:\s*\{\s*string_value:\s*"([^"]+)"', config)
        onnx = self.repository / (found.group(1) if found else "nanodet") / "1" / "model.onnx"
        return Network(onnx, NANODET_SPEC)

    def previous(self, name: str) -> int:
        """The version served before the current one: promotions push onto a stack, rollbacks pop."""
        stack: list[int] = []
        for event in self.log(name):
            if event["action"] == "promote":
                if not stack:
                    stack.append(int(event["from"]))  # type: ignore[call-overload]
                stack.append(int(event["version"]))  # type: ignore[call-overload]
            elif event["action"] == "rollback" and stack:
                stack.pop()
        if len(stack) < 2:
            raise RegistryError(f"model {name!r}: no earlier promoted version to roll back to")
        return stack[-2]


def check_network(source: Path) -> Network:
    """A folder's model.onnx and detector.json, checked: the spec parses, the graph is valid ONNX and
    has the spec's input and outputs."""
    import onnx

    onnx_path, spec_path = source / "model.onnx", source / SPEC_FILE
    for path in (onnx_path, spec_path):
        if not path.is_file():
            raise RegistryError(f"{source}: {path.name} is missing (a version needs model.onnx and {SPEC_FILE})")
    try:
        spec = load_spec(spec_path)
        model = onnx.load(str(onnx_path), load_external_data=False)
        onnx.checker.check_model(model)
    except (SpecError, onnx.checker.ValidationError, OSError) as error:
        raise RegistryError(str(error)) from None
    inputs = {i.name for i in model.graph.input} - {init.name for init in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    if spec.input_name not in inputs:
        raise RegistryError(f"{onnx_path}: no input {spec.input_name!r} (inputs: {sorted(inputs)})")
    missing = [name for name in spec.output_names if name not in outputs]
    if missing:
        raise RegistryError(f"{onnx_path}: outputs {missing} are missing (outputs: {sorted(outputs)})")
    return Network(onnx_path, spec)
