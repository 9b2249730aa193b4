"""libvirt's size grammar (https://libvirt.org/formatstorage.html#storage-volume-general-metadata).

b/bytes = 1; KB, MB, GB, TB, PB, EB are powers of 1000; K/KiB, M/MiB, G/GiB, T/TiB, P/PiB, E/EiB
are powers of 1024. A bare number is bytes. Letters are case-insensitive, as in libvirt.
"""
from __future__ import annotations

import re

_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")


class UnitError(ValueError):
    """A size string libvirt would not accept either."""


def unit_factor(unit: str) -> int:
    u = unit.lower()
    if u in ("", "b", "byte", "bytes"):
        return 1
    if u[0] in _POWERS:
        power = _POWERS[u[0]]
        rest = u[1:]
        if rest in ("", "ib"):
            return 1024 ** power
        if rest == "b":
            return 1000 ** power
    raise UnitError(
        f"unknown size unit {unit!r}: use b, bytes, KB, K, KiB, MB, M, MiB, GB, G, GiB, TB, T, TiB, "
        "PB, P, PiB, EB, E or EiB")


def parse_size(value: int | str, unit: str = "") -> int:
    """Bytes for '10GiB', '512 MB', '1024' or an int; a separate unit applies to a bare number."""
    if isinstance(value, bool):
        raise UnitError(f"size must be a number with an optional unit, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise UnitError(f"size must not be negative: {value}")
        return value * unit_factor(unit)
    match = _SIZE_RE.match(str(value))
    if not match:
        raise UnitError(f"cannot read size {value!r}: expected a whole number with an optional unit, e.g. 10GiB")
    number, suffix = match.groups()
    if suffix and unit:
        raise UnitError(f"size {value!r} has a unit and a separate unit {unit!r} was given")
    return int(number) * unit_factor(suffix or unit)
