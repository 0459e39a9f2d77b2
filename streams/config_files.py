"""Load YAML configuration files (cameras, rules) into pydantic models, failing fast.

A bad file stops the program with the file, the field and the problem, e.g.::

    cameras.yaml: cameras[1].fps: Input should be greater than 0 (got -5)
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from schemas.rules import RuleSet

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigFileError(ValueError):
    """A configuration file that cannot be used. ``problems`` lists (field, message) pairs."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}: {field}: {message}" if field else f"{path}: {message}" for field, message in problems]
        super().__init__("\n".join(lines))


def _field_path(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in location:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def problems_from_validation(error: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for detail in error.errors(include_url=False):
        message = detail["msg"]
        if detail.get("type") not in ("missing", "extra_forbidden") and "input" in detail:
            message = f"{message} (got {detail['input']!r})"
        if detail.get("type") == "extra_forbidden":
            message = "unknown field (check the spelling)"
        problems.append((_field_path(tuple(detail["loc"])), message))
    return problems


def load_yaml_model(path: Path, model: type[ModelT]) -> ModelT:
    """Read ``path`` as YAML and validate it as ``model``; raise ``ConfigFileError`` on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigFileError(path, [("", f"cannot read file: {error.strerror or error}")]) from error
    except UnicodeDecodeError as error:  # found by tests/fuzz/test_fuzz_config_files.py
        raise ConfigFileError(path, [("", f"not UTF-8 text: {error.reason} at byte {error.start}")]) from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigFileError(path, [("", f"invalid YAML: {error}")]) from error
    if data is None:
        raise ConfigFileError(path, [("", "file is empty")])
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigFileError(path, problems_from_validation(error)) from error


def load_rules(path: Path) -> RuleSet:
    """Read an alert rules file (``processors.rules.RuleSet``), failing fast like every config file."""
    return load_yaml_model(Path(path), RuleSet)
