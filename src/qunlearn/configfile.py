"""Config files as the workflow reads them: every error names the file, the line and the key.

Snakemake loads config files itself (PyYAML: a duplicated key silently keeps the last value) and
validates them with ``snakemake.utils.validate`` (a jsonschema error followed by the whole schema).
The Snakefile therefore re-reads every config file Snakemake used with :func:`load_config_file`
(a loader that rejects duplicated keys and reports syntax errors and empty files with file and
line) and checks the merged config with :func:`validate_config` (one short line: the key path, what
is wrong, and the allowed keys or values of that node).

Snakemake reads a ``--configfile`` before the Snakefile runs, so a syntax error or an empty file
given there is reported by Snakemake first (without file or line); ``python -m qunlearn.configfile
FILE...`` runs every parse-time check of this module and of :class:`qunlearn.experiment.Experiment`
on the files and names file and line (docs: "Bad input and what you see").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key_path: str, first_line: int, line: int):
        self.key_path, self.first_line, self.line = key_path, first_line, line
        super().__init__(f"{key_path}: duplicated key (first at line {first_line}, again at line {line})")


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader on which a key given twice in one mapping is an error (:class:`DuplicateKeyError`)
    naming the key's path and both lines; PyYAML (and so Snakemake) would keep the last one."""

    def construct_document(self, node):
        self._check_unique(node, [])
        return super().construct_document(node)

    def _check_unique(self, node, path: list[str]) -> None:
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_unique(item, [*path[:-1], f"{path[-1]}[{i}]"] if path else [f"[{i}]"])
        if not isinstance(node, yaml.MappingNode):
            return
        seen: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # << merge keys: overriding them is allowed
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None:
                if key in seen:
                    raise DuplicateKeyError(
                        ".".join([*path, str(key)]), seen[key].start_mark.line + 1, key_node.start_mark.line + 1
                    )
                seen[key] = key_node
            self._check_unique(value_node, [*path, str(key)])


def _json_pairs(path: str):
    def hook(pairs):
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise ConfigError(f"{path}: duplicated key {key!r}: the last one would silently win")
            out[key] = value
        return out

    return hook


def load_config_file(path: str | Path) -> dict:
    """The mapping in a config file (JSON or YAML, as Snakemake reads them); a syntax error, an
    empty file, a top level that is not a mapping or a duplicated key is a ConfigError naming the
    file and line."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    try:  # Snakemake tries JSON first
        data = json.loads(text, object_pairs_hook=_json_pairs(path))
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        try:
            data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
        except DuplicateKeyError as dup:
            raise ConfigError(
                f"{path}:{dup.line}: duplicated key {dup.key_path} (first at line {dup.first_line}, again at "
                f"line {dup.line}); YAML would silently keep the last one"
            ) from None
        except yaml.MarkedYAMLError as yerr:
            mark = yerr.problem_mark or yerr.context_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
            what = str(yerr.problem or "")
            if yerr.context:
                line = f" at line {yerr.context_mark.line + 1}" if yerr.context_mark else ""
                what += f" ({yerr.context}{line})"
            raise ConfigError(f"{where}: invalid YAML: {what}") from None
        except yaml.YAMLError as yerr:
            raise ConfigError(f"{path}: invalid YAML: {yerr}") from None
    if data is None:
        raise ConfigError(f"{path}:1: the config file is empty (or only comments); expected a mapping of sections")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Re-read every config file Snakemake used with :func:`load_config_file` (its errors)."""
    for path in paths:
        load_config_file(path)


# --- schema -----------------------------------------------------------------------------------------


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _allowed(node: dict) -> str:
    """The keys or values a schema node allows, as one short list."""
    if "enum" in node:
        return ", ".join(map(str, node["enum"]))
    if "properties" in node:
        return ", ".join(node["properties"])
    return ""


def _key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def _resolve(node: dict, schema: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            break
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def schema_error_message(err, schema: dict) -> str:
    """One short line for a jsonschema ValidationError: key path, what is wrong, what is allowed."""
    path = list(err.absolute_path)
    node = _resolve(err.schema, schema)
    v = err.validator
    if "propertyNames" in err.absolute_schema_path:  # a bad key (a name checked as a value)
        if "enum" in node:
            return f"{_key_path([*path, err.instance])}: unknown name; allowed: {_allowed(node)}"
        return f"{_key_path([*path, err.instance])}: not a valid name (must match {node.get('pattern')})"
    if v == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(node.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        key = extra[0] if extra else "?"
        return f"{_key_path([*path, key])}: unknown key; allowed: {_allowed(node)}"
    if v in ("enum", "const"):
        values = node.get("enum", [node.get("const")])
        return f"{_key_path(path)}: {_short(err.instance)} is not allowed; allowed: {', '.join(map(str, values))}"
    if v == "required":
        return f"{_key_path(path)}: {err.message.split(' is a required')[0]} is required"
    if v == "type":
        want = node.get("type")
        want = " or ".join(want) if isinstance(want, list) else want
        return f"{_key_path(path)}: expected {want}, got {type(err.instance).__name__} {_short(err.instance)}"
    bound = node.get(v)
    return f"{_key_path(path)}: {_short(err.instance)} fails {v} {_short(bound)}"


def validate_config(config: dict, schema_path: str | Path = SCHEMA) -> None:
    """Check ``config`` against the workflow's JSON schema; a violation is a one-line ConfigError.
    Top-level defaults declared in the schema are filled in (as ``snakemake.utils.validate`` does)."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    err = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if err is not None:
        raise ConfigError(schema_error_message(err, schema))
    for key, node in schema.get("properties", {}).items():
        if "default" in node and key not in config:
            config[key] = node["default"]


def check_files(paths: list[str]) -> None:
    """Every parse-time check on these config files, merged in order (as ``--configfile A B``)."""
    from .experiment import Experiment

    config = load_config_files(paths)
    validate_config(config)
    Experiment(config)


def load_config_files(paths: Iterable[str | Path]) -> dict:
    """The config of ``--configfile A B ...``: the files merged in order, a later file's mapping into
    an earlier one's key by key (as Snakemake merges them), its lists and scalars replacing."""
    config: dict = {}
    for path in paths:
        _merge(config, load_config_file(path))
    return config


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def main(argv: list[str] | None = None) -> int:
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m qunlearn.configfile CONFIG.yaml [MORE.yaml ...]", file=sys.stderr)
        return 2
    try:
        check_files(paths)
    except ConfigError as err:
        print(f"invalid config: {err}", file=sys.stderr)
        return 1
    print(f"config OK: {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
