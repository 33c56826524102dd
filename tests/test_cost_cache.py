"""The persistent cost cache: exact round trips, untrusted databases moved aside, CSV exchange, kernel digest."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tasobuild.costs import cache as cache_module
from tasobuild.costs.cache import Cost, CostCache, CostKey, kernel_digest, split_call_key
from tasobuild.errors import UserError
from tasobuild.primitives import KernelCall

FP, KD = "host-abc", "kd-123"
ADD = KernelCall(
    function="tb_add",
    struct="tb_flat",
    params=(("n", 4), ("act", 1), ("act_a", 0.0), ("act_b", 6.5)),
    args=("in0", "in1", "out"),
    buffer_bytes=(("in0", 16), ("in1", 16), ("out", 16)),
)

# Floats that a lossy text or float32 store would change.
ROWS = [
    (CostKey(FP, KD, ADD.key()), Cost(0.1 + 0.2, 1e-300, 7, "measured")),
    (CostKey(FP, KD, "tb_relu(n=3)"), Cost(123456.789012345678, 0.0, 1, "imported")),
    (CostKey(FP, "kd-other", ADD.key()), Cost(2.0 / 3.0, 5e-324, 2**40, "measured")),
    (CostKey("other-target", KD, ADD.key()), Cost(0.0, 1.7976931348623157e308, 5, "measured")),
]


def open_cache(directory: Path, warnings: list[str] | None = None) -> CostCache:
    return CostCache(directory, on_warning=(warnings.append if warnings is not None else None))


def test_round_trip_is_exact_and_persists(tmp_path: Path) -> None:
    with open_cache(tmp_path) as cache:
        cache.put_many(ROWS)
        assert cache.get_many([k for k, _ in ROWS]) == dict(ROWS)
    with open_cache(tmp_path) as reopened:  # a later build, another process
        got = reopened.get_many([k for k, _ in ROWS])
        assert got == dict(ROWS)
        assert [c.median_ms for c in got.values()] == [c.median_ms for _, c in ROWS]  # bit-exact floats
        assert reopened.rows() == sorted(ROWS)


def test_keys_are_isolated_and_misses_absent(tmp_path: Path) -> None:
    with open_cache(tmp_path) as cache:
        cache.put_many(ROWS[:1])
        asked = [
            CostKey(FP, KD, ADD.key()),
            CostKey(FP, KD, "tb_add(n=5,act=1,act_a=0.0,act_b=6.5)"),  # other params
            CostKey(FP, "kd-new", ADD.key()),  # edited kernels
            CostKey("arm", KD, ADD.key()),  # other target
        ]
        assert cache.get_many(asked) == {asked[0]: ROWS[0][1]}
        assert cache.get_many([]) == {}


def test_put_replaces_and_get_handles_many_keys(tmp_path: Path) -> None:
    with open_cache(tmp_path) as cache:
        many = [(CostKey(FP, KD, f"tb_x(i={i})"), Cost(float(i), 0.5, 5, "measured")) for i in range(1234)]
        cache.put_many(many)
        cache.put_many([(many[7][0], Cost(99.0, 1.0, 9, "imported"))])
        got = cache.get_many([k for k, _ in many])
        assert len(got) == 1234
        assert got[many[7][0]] == Cost(99.0, 1.0, 9, "imported")
        assert got[many[1233][0]] == Cost(1233.0, 0.5, 5, "measured")


def test_cost_rejects_impossible_values() -> None:
    with pytest.raises(ValueError):
        Cost(-1.0, 0.0, 5, "measured")
    with pytest.raises(ValueError):
        Cost(1.0, float("nan"), 5, "measured")
    with pytest.raises(ValueError):
        Cost(1.0, 0.0, 0, "measured")
    with pytest.raises(ValueError):
        Cost(1.0, 0.0, 5, "guessed")  # type: ignore[arg-type]


def test_fresh_directory_is_created_without_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    with open_cache(tmp_path / "a" / "b", warnings) as cache:
        assert cache.rows() == []
    assert warnings == []
    assert (tmp_path / "a" / "b" / "costs.sqlite").is_file()


def test_unusable_directory_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cost cache .*file/sub/costs.sqlite cannot be used .*TASOBUILD_CACHE_DIR"):
        CostCache(tmp_path / "file" / "sub")
    assert (tmp_path / "file").read_text() == "x"


def test_garbage_file_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    garbage = b"this is not a database\n" * 100
    (tmp_path / "costs.sqlite").write_bytes(garbage)
    warnings: list[str] = []
    with open_cache(tmp_path, warnings) as cache:
        assert cache.rows() == []
        cache.put_many(ROWS[:1])  # the rebuilt cache works
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "is not an SQLite database" in warnings[0] and "costs.sqlite.corrupt-1" in warnings[0]
    assert (tmp_path / "costs.sqlite.corrupt-1").read_bytes() == garbage
    # A second bad file goes to the next free number; the first is kept.
    (tmp_path / "costs.sqlite").write_bytes(b"\x00garbage")
    with open_cache(tmp_path, warnings) as cache:
        assert cache.rows() == []
    assert len(warnings) == 2 and "costs.sqlite.corrupt-2" in warnings[1]
    assert (tmp_path / "costs.sqlite.corrupt-1").read_bytes() == garbage


def test_damaged_pages_fail_integrity_check(tmp_path: Path) -> None:
    with open_cache(tmp_path) as cache:
        cache.put_many([(CostKey(FP, KD, f"tb_x(i={i})" + "p" * 200), Cost(1.0, 0.0, 5, "measured"))
                        for i in range(400)])
    path = tmp_path / "costs.sqlite"
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096 and data[:16] == b"SQLite format 3\x00"
    data[3 * 4096 : 5 * 4096] = bytes([0xA5]) * (2 * 4096)  # clobber two b-tree pages, keep the header
    path.write_bytes(bytes(data))
    warnings: list[str] = []
    with open_cache(tmp_path, warnings) as cache:
        assert cache.rows() == []
    assert len(warnings) == 1 and "costs.sqlite.corrupt-1" in warnings[0]
    assert "integrity check" in warnings[0] or "is corrupt" in warnings[0]


def test_foreign_schema_version_is_rebuilt(tmp_path: Path) -> None:
    with open_cache(tmp_path) as cache:
        cache.put_many(ROWS)
    db = sqlite3.connect(tmp_path / "costs.sqlite")
    db.execute("UPDATE schema_version SET version = 2")
    db.commit()
    db.close()
    warnings: list[str] = []
    with open_cache(tmp_path, warnings) as cache:
        assert cache.get_many([k for k, _ in ROWS]) == {}  # never read as truth
    assert len(warnings) == 1 and "schema version [2]" in warnings[0] and "corrupt-1" in warnings[0]


def test_foreign_tables_are_rebuilt(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "costs.sqlite")
    db.execute("CREATE TABLE costs (call_key TEXT, ms REAL)")
    db.execute("INSERT INTO costs VALUES ('tb_add(n=4)', 1.0)")
    db.commit()
    db.close()
    warnings: list[str] = []
    with open_cache(tmp_path, warnings) as cache:
        assert cache.rows() == []
    assert len(warnings) == 1 and "foreign tables" in warnings[0]


def test_default_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASOBUILD_CACHE_DIR", str(tmp_path / "c"))
    with CostCache() as cache:
        assert cache.path == tmp_path / "c" / "costs.sqlite"


def test_split_call_key() -> None:
    assert split_call_key(ADD.key()) == ("tb_add", "n=4,act=1,act_a=0.0,act_b=6.5")
    with pytest.raises(ValueError):
        split_call_key("tb_add")


def test_csv_export_import_round_trip(tmp_path: Path) -> None:
    csv_path = tmp_path / "host.csv"
    with open_cache(tmp_path / "a") as cache:
        cache.put_many(ROWS)
        assert cache.export_csv(csv_path, fingerprint=FP, kernel_digest=KD) == 2
    assert csv_path.read_text() == (
        "function,params,median_ms,spread_ms,reps\n"
        'tb_add,"n=4,act=1,act_a=0.0,act_b=6.5",0.30000000000000004,1e-300,7\n'
        "tb_relu,n=3,123456.78901234567,0.0,1\n"
    )
    with open_cache(tmp_path / "b") as other:
        assert other.import_csv(csv_path, "device-x", KD) == 2
        assert other.rows() == [
            (CostKey("device-x", KD, ADD.key()), Cost(0.1 + 0.2, 1e-300, 7, "imported")),
            (CostKey("device-x", KD, "tb_relu(n=3)"), Cost(123456.789012345678, 0.0, 1, "imported")),
        ]
        # Without an explicit digest the rows belong to the current kernel sources.
        other.import_csv(csv_path, "device-y")
        assert len(other.get_many([CostKey("device-y", kernel_digest(), ADD.key())])) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("function,params,ms\n", "host.csv:1: cost CSV must start with the header"),
        ("function,params,median_ms,spread_ms,reps\ntb_add,n=1,0.5,0.1\n", "host.csv:2: expected 5 fields"),
        ("function,params,median_ms,spread_ms,reps\ntb_add,n=1,0.5,0.1,5\ntb_add,n=1,-1,0,5\n",
         "host.csv:3: bad numbers"),
        ("function,params,median_ms,spread_ms,reps\ntb_add,n=1,0.5,0.1,0\n", "host.csv:2: bad numbers"),
        ("function,params,median_ms,spread_ms,reps\ntb add,n=1,0.5,0.1,5\n", "host.csv:2: function 'tb add'"),
        ("function,params,median_ms,spread_ms,reps\ntb_a,n=1,1,0,5\ntb_a,n=1,2,0,5\n",
         "host.csv:3: tb_a(n=1) repeats line 2"),
    ],
)
def test_csv_import_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "host.csv").write_text(text)
    with open_cache(tmp_path) as cache:
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            cache.import_csv(tmp_path / "host.csv", "device-x", KD)
        assert cache.rows() == []  # nothing half-imported


def test_kernel_digest_covers_sources_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = kernel_digest.__wrapped__  # the uncached function, pointed at a tree of our own
    monkeypatch.setattr(cache_module, "kernels_dir", lambda: tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.c").write_bytes(b"int b;")
    (tmp_path / "sub" / "a.h").write_bytes(b"#x")
    expected = hashlib.sha256()
    for name, data in ((b"b.c", b"int b;"), (b"sub/a.h", b"#x")):
        expected.update(len(name).to_bytes(8, "little") + name + len(data).to_bytes(8, "little") + data)
    assert digest() == expected.hexdigest()
    # Build products and caches do not change it; a renamed or edited source does.
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (tmp_path / "tb.cpython-311-x86_64-linux-gnu.so").write_bytes(b"elf")
    assert digest() == expected.hexdigest()
    (tmp_path / "b.c").rename(tmp_path / "c.c")
    assert digest() != expected.hexdigest()
    # The real one is a stable sha256, computed once per process.
    assert len(kernel_digest()) == 64 and kernel_digest() == kernel_digest()
