"""Edit a flag file in flagd's format the way an operator does in an incident: one flag's
``defaultVariant`` changed, the file replaced whole.

The services' flagd provider polls the file's modification time and re-reads it when it is
newer than the last it read (within about a second), so the new file is written beside the old
one, given a modification time later than the old one's, and moved over it (``os.replace``): a
reader never sees half a file, and the edit is never missed within one clock tick.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["FlagEditError", "default_variant", "set_default_variant"]

_MIN_STEP_NS = 10_000_000  # the new file is at least 10 ms newer than the old one


class FlagEditError(ValueError):
    """The flag or the variant is not in the file: nothing was changed."""


def _flags(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    document = json.loads(path.read_text(encoding="utf-8"))
    flags = document.get("flags") if isinstance(document, dict) else None
    if not isinstance(flags, dict):
        raise FlagEditError(f"{path} has no 'flags' object (flagd's format)")
    return document, flags


def default_variant(path: str | Path, flag: str) -> str:
    """The variant the file serves for ``flag`` now."""
    _, flags = _flags(Path(path))
    if flag not in flags:
        raise FlagEditError(f"{path} has no flag {flag!r}")
    return str(flags[flag]["defaultVariant"])


def set_default_variant(path: str | Path, flag: str, variant: str) -> str:
    """Serve ``variant`` for ``flag`` from now on; returns the variant it replaced."""
    file = Path(path)
    document, flags = _flags(file)
    if flag not in flags:
        raise FlagEditError(f"{file} has no flag {flag!r} (it has {', '.join(sorted(flags))})")
    variants = flags[flag].get("variants") or {}
    if variant not in variants:
        raise FlagEditError(
            f"flag {flag!r} in {file} has no variant {variant!r}"
            f" (it has {', '.join(sorted(variants))})"
        )
    previous = str(flags[flag]["defaultVariant"])
    flags[flag]["defaultVariant"] = variant
    before = file.stat().st_mtime_ns
    partial = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    stamp = max(time.time_ns(), before + _MIN_STEP_NS)
    os.utime(partial, ns=(stamp, stamp))
    os.replace(partial, file)
    return previous
