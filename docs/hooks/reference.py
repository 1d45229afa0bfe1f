"""MkDocs hook: the configuration reference (docs/reference.md), generated from the code.

It imports ``qunlearn.registries`` (which fills ``qunlearn.plugins.METHODS``, ``QUANTIZERS`` and
``METRICS``) and renders one table per plugin (name, summary, source, traits, and every setting of
``spec.setting_docs()``: key, type, default), then every stage dataclass of ``qunlearn.config`` with
its field defaults (``dataclasses.fields``). The page's marker ``<!-- qunlearn-reference -->`` is
replaced by the generated text.

The import must work (``pip install -e .``, or ``PYTHONPATH=src``); if it does not, the build stops
with the reason instead of publishing a reference without the registries.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import traceback

from mkdocs.exceptions import PluginError

MARKER = "<!-- qunlearn-reference -->"
PAGE = "reference.md"
# Fields every PluginSpec has; the other fields of a spec's dataclass are its traits.
_BASE_FIELDS = ("name", "settings", "impl", "summary", "source")

_modules: dict = {}


def on_config(config, **kwargs):
    """Import the registries once, before anything is built: a failure stops the build here."""
    try:
        _modules["plugins"] = importlib.import_module("qunlearn.plugins")
        _modules["registries"] = importlib.import_module("qunlearn.registries")
        _modules["config"] = importlib.import_module("qunlearn.config")
    except Exception as err:  # noqa: BLE001 - any failure must stop the build, with its reason
        raise PluginError(
            "docs/hooks/reference.py: cannot import qunlearn.registries / qunlearn.plugins / "
            "qunlearn.config, so the configuration reference cannot be generated.\n"
            "Install the project (`pip install -e .[docs]`) or build with PYTHONPATH=src.\n"
            f"The import failed with:\n{traceback.format_exc()}"
        ) from err
    return config


def on_page_markdown(markdown, page, config, files, **kwargs):
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"docs/hooks/reference.py: {PAGE} lacks the marker {MARKER}")
    return markdown.replace(MARKER, render())


# --- rendering ------------------------------------------------------------------------------------
def _cell(value) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text


def _code(value) -> str:
    text = repr(value) if not isinstance(value, str) else repr(value)
    return "`" + _cell(text).replace("`", "'") + "`"


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return f"{type(value).__name__}()"
        return value
    return dataclasses.MISSING


def _default_cell(value) -> str:
    if value is dataclasses.MISSING:
        return "*(required)*"
    if isinstance(value, str) and value.endswith("()"):
        return f"`{value}` (see below)"
    return _code(value)


def _traits(spec) -> list[tuple[str, object]]:
    return [(f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec) if f.name not in _BASE_FIELDS]


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def render_plugin(spec) -> str:
    lines = [f"### `{spec.name}`", "", _cell(spec.summary), ""]
    lines += ["| | |", "|---|---|"]
    lines.append(f"| source | {_cell(spec.source) or '-'} |")
    lines.append(f"| implementation | `{_cell(spec.impl)}` (imported when a job runs it) |")
    lines.append(f"| settings class | `{spec.settings.__module__}.{spec.settings.__qualname__}` |")
    for key, value in _traits(spec):
        lines.append(f"| trait `{key}` | {_code(value)} |")
    lines.append("")
    settings = spec.setting_docs()
    if settings:
        lines += ["| setting | type | default |", "|---|---|---|"]
        for key, type_, default in settings:
            lines.append(f"| `{key}` | `{_cell(type_)}` | {_code(default)} |")
    else:
        lines.append("No settings.")
    lines.append("")
    return "\n".join(lines)


def render_registry(title: str, registry, config_path: str) -> str:
    specs = registry.specs()
    lines = [f"## {title}", "",
             f"{len(specs)} registered {registry.kind}s; config: `{config_path}`.", ""]
    if not specs:
        lines += [f"No {registry.kind} is registered in this build.", ""]
    lines += [render_plugin(spec) for spec in specs]
    return "\n".join(lines)


def _config_dataclasses(module) -> list[type]:
    return [obj for obj in vars(module).values()
            if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__]


def render_dataclass(cls) -> str:
    lines = [f"### `{cls.__name__}`", ""]
    doc = _first_paragraph(cls.__doc__)
    if doc and not doc.startswith(f"{cls.__name__}("):  # skip the dataclass auto-signature
        lines += [_cell(doc), ""]
    lines += ["| key | type | default |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        lines.append(f"| `{f.name}` | `{_cell(f.type)}` | {_default_cell(_default(f))} |")
    lines.append("")
    return "\n".join(lines)


def render() -> str:
    plugins, config = _modules["plugins"], _modules["config"]
    parts = [
        render_registry("Unlearning methods", plugins.METHODS, "unlearn.methods.<name>"),
        render_registry("Quantizers", plugins.QUANTIZERS, "quantize.schemes.<scheme>: {quantizer: <name>, ...}"),
        render_registry("Metrics", plugins.METRICS, "(reported in every eval JSON and metrics.csv)"),
        render_registry("Recovery attacks", plugins.ATTACKS, "attacks.runs.<name>"),
        "## Stage configuration (`qunlearn.config`)", "",
        "Every dataclass of `src/qunlearn/config.py`, in definition order, with its field defaults. "
        "A stage receives its slice of the config as one of these; an unknown key or a value of the "
        "wrong type is an error naming the key.", "",
    ]
    parts += [render_dataclass(cls) for cls in _config_dataclasses(config)]
    return "\n".join(parts)
