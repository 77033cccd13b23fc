"""The performance budget (issue #6): the full session of scenario.budget_session
fits HEAP_BUDGET on the unix port with the modules loaded as .mpy, and the
compiled code fits MPY_BUDGET. `make bench` measures the figures themselves."""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
import scenario

sys.path.insert(0, str(ROOT / "tools"))
import build_mpy  # noqa: E402

# The smallest -X heapsize at which budget_session passed with .mpy modules (make bench,
# 2026-12-01: 200K passes, 196K fails; x64 unix port; 252K before GetConfiguration was
# streamed), rounded up to the next 16K. The target is 64K: see README, Performance.
# Lower it as the memory work lands: `make bench` prints the new smallest heap.
HEAP_BUDGET = "208K"
MPY_BUDGET = 120 * 1024  # bytes: .mpy of firmware/ + lib/ for xtensawin, main.py compiled too


@pytest.fixture(scope="module")
def mpy_tree(tmp_path_factory):
    """build_mpy --arch x64 into a temporary tree, and main.py (source, as on a board) in
    a directory of its own: MicroPython puts the script's directory first on sys.path, so
    running firmware/main.py would import firmware/*.py instead of the .mpy files."""
    d = tmp_path_factory.mktemp("mpy")
    total, sizes, failed = build_mpy.build("x64", d)
    assert failed == []
    (d / "main").mkdir()
    shutil.copyfile(ROOT / "firmware" / "main.py", d / "main" / "main.py")
    assert not list((d / "x64").rglob("*.py"))
    return d


def test_full_session_fits_the_heap_budget_with_mpy_modules(csms, firmware_factory, mpy_tree):
    fw = firmware_factory(csms, heapsize=HEAP_BUDGET, main=mpy_tree / "main" / "main.py",
                          micropypath="%s:.frozen" % (mpy_tree / "x64"))
    scenario.budget_session(fw, csms)
    fw.send("mem")
    print(fw.wait_line(r"memory: \d+ bytes in use"))
    assert scenario.firmware_failure(fw) is None
    assert csms.violations == []


def test_mpy_code_fits_the_budget(tmp_path):
    total, sizes, failed = build_mpy.build("xtensawin", tmp_path)
    assert failed == []
    main = tmp_path / "main.mpy"
    subprocess.run([build_mpy.MPY_CROSS, "-march=xtensawin", "-o", str(main), str(ROOT / "firmware" / "main.py")],
                   check=True)
    size = total + main.stat().st_size
    print("xtensawin: %d bytes of .mpy with main.py" % size)
    assert size <= MPY_BUDGET
