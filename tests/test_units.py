from __future__ import annotations

import pytest

from tasobuild.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize("text, expected", [
    ("64 KiB", 65536),
    ("64KiB", 65536),
    ("64 kib", 65536),
    ("64 KIB", 65536),
    ("1 KB", 1000),
    ("1 kB", 1000),
    ("1.5 MB", 1_500_000),
    ("1.5 MiB", 1_572_864),
    ("2 GB", 2_000_000_000),
    ("1 GiB", 1_073_741_824),
    ("100 B", 100),
    (" 3 bytes ", 3),
    ("256K", 262_144),   # linker-script spelling
    ("2M", 2_097_152),
    (".5 KiB", 512),
    ("65536", 65536),
    (65536, 65536),
    (0, 0),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_rejects_other_forms_and_says_which_are_accepted():
    with pytest.raises(ValueError) as error:
        parse_size("64 KB/s")
    assert str(error.value) == \
        """'64 KB/s' is not a size (e.g. "64 KiB", "1.5 MB"; units: B, KB, KiB, MB, MiB, GB, GiB)"""


@pytest.mark.parametrize("bad", ["", "KiB", "64 XB", "-1 KiB", "1e3 B", "1,5 MB", True, 1.5, None])
def test_parse_size_errors(bad):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(bad)


def test_parse_size_rejects_fractional_bytes_and_negative_ints():
    with pytest.raises(ValueError, match=r"^'1.3 B' is not a whole number of bytes \(1.3 B\)$"):
        parse_size("1.3 B")
    with pytest.raises(ValueError, match=r"^'0.1 KiB' is not a whole number of bytes \(102.4 B\)$"):
        parse_size("0.1 KiB")
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_size(-5)


@pytest.mark.parametrize("text, expected", [
    ("20 ms", 20.0),
    ("20ms", 20.0),
    ("1.5 s", 1500.0),
    ("10 s", 10_000.0),
    ("250 us", 0.25),
    ("2 µs", 0.002),
    ("0.5 ms", 0.5),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["20", "20 min", "ms", "fast", 20, None])
def test_parse_duration_errors(bad):
    with pytest.raises(ValueError) as error:
        parse_duration(bad)
    assert str(error.value) == f'{bad!r} is not a duration (e.g. "20 ms", "1.5 s"; units: us, ms, s)'


@pytest.mark.parametrize("n, expected", [
    (65536, "64 KiB"),
    (1536, "1.5 KiB"),
    (50_000, "48.83 KiB"),
    (1000, "1000 B"),
    (1023, "1023 B"),
    (0, "0 B"),
    (1_572_864, "1.5 MiB"),
    (3 * 1024**3, "3 GiB"),
])
def test_format_size(n, expected):
    assert format_size(n) == expected


@pytest.mark.parametrize("n, expected", [
    (262_144, "256 KiB"),
    (50_000, "50 KB"),
    (1000, "1 KB"),
    (1001, "1001 B"),
    (1_500_000, "1.5 MB"),
    (1536, "1.5 KiB"),
    (49_664, "48.5 KiB"),
    (123_457, "123457 B"),
])
def test_format_size_exact_reads_back(n, expected):
    assert format_size(n, exact=True) == expected
    assert parse_size(expected) == n


def test_format_size_exact_round_trips_every_small_size():
    for n in range(0, 5000, 7):
        assert parse_size(format_size(n, exact=True)) == n


@pytest.mark.parametrize("ms, expected", [
    (10_000.0, "10 s"),
    (1500.0, "1.5 s"),
    (20.0, "20 ms"),
    (1.25, "1.25 ms"),
    (0.25, "250 us"),
    (0.0, "0 ms"),
])
def test_format_duration(ms, expected):
    assert format_duration(ms) == expected
    assert parse_duration(expected) == ms
