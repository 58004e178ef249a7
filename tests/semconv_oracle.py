"""The semantic conventions as an oracle: every name Safiri emits is either a current name of
the opentelemetry-semantic-conventions package or one of Safiri's own in docs/registry.yaml.

``known_names()`` reads the package's modules (attribute and metric constants, each followed by
its docstring; a docstring starting ``Deprecated:`` marks a deprecated name). ``problems()``
takes what was emitted and returns one line per name that is deprecated or unregistered.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "docs" / "registry.yaml"

_CONSTANT = re.compile(r'^[A-Z][A-Z0-9_]*: Final = "([^"]+)"\n"""\n(.*?)"""', re.M | re.S)
_PACKAGES = (
    "opentelemetry.semconv.attributes",
    "opentelemetry.semconv._incubating.attributes",
    "opentelemetry.semconv.metrics",
    "opentelemetry.semconv._incubating.metrics",
)
# Prometheus suffixes the OpenTelemetry Prometheus compatibility rules add for a unit.
_UNIT_SUFFIX = {"s": "_seconds", "By": "_bytes", "1": "_ratio", "ms": "_milliseconds"}
# Labels Prometheus itself adds, or that are part of a histogram's encoding.
_PROMETHEUS_LABELS = {"le", "quantile", "job", "instance"}


@dataclass(frozen=True)
class Name:
    name: str
    kind: str  # attribute or metric
    deprecated: bool
    unit: str | None = None


@cache
def known_names() -> dict[str, Name]:
    """Every attribute and metric name of the installed conventions package."""
    found: dict[str, Name] = {}
    for package_name in _PACKAGES:
        package = importlib.import_module(package_name)
        kind = "metric" if package_name.endswith("metrics") else "attribute"
        for module in pkgutil.iter_modules(package.__path__):
            spec = importlib.util.find_spec(f"{package_name}.{module.name}")
            assert spec is not None and spec.origin is not None
            text = Path(spec.origin).read_text()
            for value, doc in _CONSTANT.findall(text):
                unit = re.search(r"^Unit: (\S+)", doc, re.M)
                entry = Name(value, kind, doc.lstrip().startswith("Deprecated:"), unit and unit[1])
                previous = found.get(f"{kind}:{value}")
                # A name defined current in one module and deprecated in another is current.
                if previous is None or previous.deprecated:
                    found[f"{kind}:{value}"] = entry
    return found


def _prometheus_metric_names() -> dict[str, Name]:
    """The conventions' metric names as an OpenTelemetry Prometheus exporter writes them."""
    out: dict[str, Name] = {}
    for entry in known_names().values():
        if entry.kind != "metric":
            continue
        base = entry.name.replace(".", "_")
        with_unit = base + _UNIT_SUFFIX.get(entry.unit or "", "")
        for name in (base, with_unit, base + "_total", with_unit + "_total"):
            out[name] = entry
    return out


def _label_attributes() -> dict[str, Name]:
    """The conventions' attribute names as Prometheus labels (dots become underscores)."""
    return {e.name.replace(".", "_"): e for e in known_names().values() if e.kind == "attribute"}


@cache
def registry() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(REGISTRY.read_text())
    return loaded


@dataclass
class Emitted:
    """Everything observed of a running suite."""

    spans: dict[str, set[str]] = field(default_factory=dict)  # span name -> kinds
    span_attributes: set[str] = field(default_factory=set)
    resource_attributes: set[str] = field(default_factory=set)
    log_attributes: set[str] = field(default_factory=set)  # OTLP log records
    log_fields: set[str] = field(default_factory=set)  # JSON lines on stdout
    metrics: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # name -> type, labels


_HTTP_SERVER = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /\S*$")
_HTTP_CLIENT = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)$")


def _attribute_problem(name: str, where: str, own: set[str]) -> str | None:
    if name in own:
        return None  # Safiri's own, documented (a log field "state" is not the old attribute)
    entry = known_names().get(f"attribute:{name}")
    if entry is not None:
        return f"{where} attribute {name!r} is deprecated" if entry.deprecated else None
    return f"{where} attribute {name!r} is neither in the conventions nor in docs/registry.yaml"


def problems(emitted: Emitted) -> list[str]:
    """One line per deprecated or unregistered name in ``emitted``."""
    reg = registry()
    own_attributes = set(reg["attributes"])
    out: list[str] = []
    for name, kinds in sorted(emitted.spans.items()):
        if kinds <= {"SERVER"} and _HTTP_SERVER.match(name):
            continue
        if kinds <= {"CLIENT"} and _HTTP_CLIENT.match(name):
            continue
        if kinds <= {"PRODUCER"} and re.match(r"^publish( \S+)?$", name):
            continue
        if kinds <= {"CONSUMER"} and re.match(r"^process \S+$", name):
            continue
        if name not in reg["spans"]:
            out.append(f"span {name!r} ({', '.join(sorted(kinds))}) is not in docs/registry.yaml")
    tolerated = set(reg["emitted_by_dependencies"])
    for name in sorted(emitted.span_attributes - tolerated):
        out.append(_attribute_problem(name, "span", own_attributes) or "")
    for name in sorted(emitted.resource_attributes):
        out.append(_attribute_problem(name, "resource", own_attributes) or "")
    log_own = own_attributes | set(reg["log_fields"])
    for name in sorted(emitted.log_attributes):
        out.append(_attribute_problem(name, "log record", log_own) or "")
    for name in sorted(emitted.log_fields):
        out.append(_attribute_problem(name, "log line", log_own) or "")
    out += _metric_problems(emitted.metrics, reg)
    return [line for line in out if line]


def _metric_problems(metrics: dict[str, tuple[str, set[str]]], reg: dict[str, Any]) -> list[str]:
    out: list[str] = []
    conventions = _prometheus_metric_names()
    labels_known = _label_attributes()
    external = tuple(reg["external_metric_prefixes"])
    for name, (kind, labels) in sorted(metrics.items()):
        if name.startswith(external):
            continue
        if name.endswith("_created") and (
            name.removesuffix("_created") in metrics
            or name.removesuffix("_created") + "_total" in metrics
        ):
            continue  # prometheus_client's creation time of a counter or histogram
        own = reg["metrics"].get(name)
        convention = conventions.get(name)
        if own is None and convention is None:
            out.append(f"metric {name!r} is neither in the conventions nor in docs/registry.yaml")
            continue
        if own is None and convention is not None and convention.deprecated:
            out.append(f"metric {name!r} is deprecated ({convention.name})")
            continue
        if own is not None and own["type"] != kind:
            out.append(f"metric {name!r} is a {kind}, docs/registry.yaml says {own['type']}")
        own_labels = set(own.get("labels", [])) if own is not None else set()
        # A label the registry lists for the metric is Safiri's own, whatever else it names.
        for label in sorted(labels - _PROMETHEUS_LABELS - own_labels):
            entry = labels_known.get(label)
            if entry is not None and entry.deprecated:
                out.append(f"metric {name!r} label {label!r} is deprecated ({entry.name})")
            elif entry is None:
                out.append(
                    f"metric {name!r} label {label!r} is neither a convention attribute nor"
                    " listed for it in docs/registry.yaml"
                )
    return out
