"""libvirt's size grammar: powers of 1000 vs 1024 must never be confused (community.libvirt's GiB trap)."""
import pytest

from module_utils.cocos_libvirt.units import UnitError, parse_size


@pytest.mark.parametrize("text, expected", [
    ("1024", 1024), (2048, 2048), ("7b", 7), ("7 bytes", 7),
    ("1KB", 1000), ("1K", 1024), ("1KiB", 1024), ("1kib", 1024),
    ("2MB", 2_000_000), ("2M", 2 * 1024 ** 2), ("2MiB", 2 * 1024 ** 2),
    ("10GB", 10 * 1000 ** 3), ("10G", 10 * 1024 ** 3), ("10GiB", 10 * 1024 ** 3),
    ("1TB", 1000 ** 4), ("1T", 1024 ** 4), ("1TiB", 1024 ** 4),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_separate_unit_applies_to_bare_number():
    assert parse_size("3", "MiB") == 3 * 1024 ** 2


@pytest.mark.parametrize("bad", ["10XB", "10 GiBs", "-1", "1.5GiB", "", "GiB", True, -5])
def test_bad_sizes_are_clear_errors(bad):
    with pytest.raises(UnitError):
        parse_size(bad)


def test_unit_given_twice_is_an_error():
    with pytest.raises(UnitError, match="separate unit"):
        parse_size("1GiB", "MiB")
