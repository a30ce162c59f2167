"""Values with units, as scenario files and thresholds write them.

* durations: ``20s``, ``500ms``, ``250us``, ``2m``, ``1h``, or a plain number of seconds -> seconds (float)
* rates: ``2000/s``, ``120/min``, ``5/ms``, or a plain number per second -> per second (float)
* sizes: ``512B``, ``1KiB``, ``1.5MiB``, ``2KB`` (decimal), or a plain number of bytes -> bytes (int)

Parsing is by hand (a regular expression and a unit table): the few unit libraries on PyPI (pint,
humanfriendly) are large for three tables, and none parses rates written as ``2000/s``.
"""

from __future__ import annotations

import math
import re

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_VALUE_RE = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-zµ/]*)\s*$")

DURATION_UNITS: dict[str, float] = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
}
RATE_UNITS: dict[str, float] = {
    "": 1.0,
    "/s": 1.0,
    "/sec": 1.0,
    "/ms": 1e3,
    "/m": 1 / 60,
    "/min": 1 / 60,
    "/h": 1 / 3600,
}
SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "k": 1024,
    "m": 1024**2,
}

DURATION_PATTERN = rf"^\s*{_NUMBER}\s*(s|sec|ms|us|µs|ns|m|min|h)?\s*$"
RATE_PATTERN = rf"^\s*{_NUMBER}\s*(/s|/sec|/ms|/m|/min|/h)?\s*$"
SIZE_PATTERN = rf"^\s*{_NUMBER}\s*([bB]|[kKmMgG][iI]?[bB]|[kKmM])?\s*$"


class UnitError(ValueError):
    """A value that does not parse; the message says what was expected."""


def _split(value: object, what: str, example: str) -> tuple[float, str]:
    if isinstance(value, bool):
        raise UnitError(f"expected {what} such as {example}, got {value!r}")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    elif isinstance(value, str):
        m = _VALUE_RE.match(value)
        if not m:
            raise UnitError(f"expected {what} such as {example}, got {value!r}")
        number, unit = float(m.group(1)), m.group(2)
    else:
        raise UnitError(f"expected {what} such as {example}, got {type(value).__name__} {value!r}")
    if not math.isfinite(number):
        raise UnitError(f"expected a finite {what}, got {value!r}")
    return number, unit


def _scaled(
    value: object, kind: str, example: str, units: dict[str, float] | dict[str, int], use: str, fold: bool = False
) -> float:
    """``value`` in the base unit of ``units`` (keyed by the unit as written; ``fold``: lower-cased);
    ``kind`` and ``example`` name what was expected, ``use`` the units to suggest."""
    number, unit = _split(value, f"a {kind}", example)
    factor = units.get(unit.lower() if fold else unit)
    if factor is None:
        raise UnitError(f"unknown {kind} unit {unit!r} in {value!r}: use {use}")
    if number < 0:
        raise UnitError(f"a {kind} cannot be negative, got {value!r}")
    return number * factor


def parse_duration(value: object) -> float:
    """Seconds. ``"500ms"`` -> 0.5; a plain number is seconds."""
    return _scaled(value, "duration", "20s, 500ms or 2m", DURATION_UNITS, "s, ms, us, m or h")


def parse_rate(value: object) -> float:
    """Events per second. ``"2000/s"`` -> 2000.0; ``"120/min"`` -> 2.0; a plain number is per second."""
    return _scaled(value, "rate", "2000/s or 120/min", RATE_UNITS, "/s, /ms, /min or /h")


def parse_size(value: object) -> int:
    """Bytes. ``"1KiB"`` -> 1024, ``"2KB"`` -> 2000; a plain number is bytes."""
    result = _scaled(value, "size", "512B, 1KiB or 1MiB", SIZE_UNITS, "B, KiB, MiB, KB or MB", fold=True)
    if abs(result - round(result)) > 1e-9:
        raise UnitError(f"a size must be a whole number of bytes, got {value!r}")
    return round(result)


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:g}us"
    if seconds < 1:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds:g}s"


def format_size(n: int) -> str:
    for unit, factor in (("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"
