"""The performance budget (issues #6 and #10).

On the real target's shape, the 32-bit unix port with the firmware frozen in
(tools/build_firmware.py, cached in build/firmware/; it needs a MicroPython source,
$MPY_SRC or ../shared/toolchain/micropython-src.tar.xz, and gcc-multilib): the full
session of scenario.budget_session passes in FROZEN_WS_BUDGET over ws://, and in
FROZEN_WSS_BUDGET over wss:// on the build whose mbedTLS allocates in the heap (as
on an RP2040). Where that cannot be built, those tests skip and say why.

Always: the session fits HEAP_BUDGET on the 64-bit PyPI unix port with the modules
loaded as .mpy (what `make deploy` gives a board), and the compiled code fits
MPY_BUDGET. `make bench` measures the figures themselves."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, server_tls
from dev_csms import DevCSMS
import scenario

sys.path.insert(0, str(ROOT / "tools"))
import build_firmware  # noqa: E402
import build_mpy  # noqa: E402

# Issue #10's budget, on the 32-bit frozen build (make bench, 2026-12-02: ws:// passes 3 of 3
# from 48K, wss:// with TLS in the heap from 88K). FROZEN_RUNS runs each: the pass/fail
# boundary moves 2-4K with timing, and the budgets leave more than that.
FROZEN_WS_BUDGET = "64K"
FROZEN_WSS_BUDGET = "96K"
FROZEN_RUNS = 2

# The smallest -X heapsize at which budget_session passed with .mpy modules on the 64-bit
# port (what `make deploy` gives a board that loads .mpy files): 200K at issue #6; after
# issue #15's work 208K failed once (a 974-byte allocation in the sampler) and 216K passes,
# rounded up to 224K; issue #12's log in flash (a 512 B buffer, and a file opened to write it out: 1.2 KB
# here, every 512 B of frames with frame logging on) took it to 240K. The budget that counts is the 32-bit
# frozen one above (README, Performance).
# Issue #13's profiles piece (the Link class with the security profile, the certificate
# handlers' table entries) moved the boundary from 236-240K to 240-244K; with the signed
# pieces merged 248K failed once in a full run: 256K.
# Issue #14 (OCPP 2.0.1 beside 1.6: ocpp/session.py, the larger check/rpc/outbox/config loaded as
# .mpy here) moved it to 252-256K: 256K failed 2 of 8 runs in full runs, 264K and 272K passed 3 of 3.
# The board's budget is the 32-bit frozen one below (52K of 64K); this one guards the .mpy boards.
HEAP_BUDGET = "272K"
# 120 KB until issue #12, whose transfer clients, boot stage, update and diagnostics code (all
# but the boot stage imported only when used) take it past; two application slots and the
# built-in copy must fit a board's file system (an RP2040 Pico W has 848 KB of it).
# 160 KB until issue #13 (the security whitepaper: crypto, X.509, security events, GetLog;
# all but security.py imported only when used); 176 -> 192 KB
# for its profiles piece (certificate store, profile rules, certificate operations, console
# provisioning: 13 KB, of which link.py's 3 KB is loaded at boot).
# 192 -> 248 KB for issue #14, OCPP 2.0.1 as a second package (ocpp/v201: 44 KB, of which the
# schema tables are 15 KB; only one version's package is ever in RAM): three copies (two slots
# and the built-in one) are 3 x 241 KB = 723 KB of the Pico W's 848 KB.
MPY_BUDGET = 248 * 1024  # bytes: .mpy of firmware/ + lib/ for xtensawin, main.py compiled too


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


def frozen_build(tls_heap):
    src, why = build_firmware.available("x86")
    if why:
        pytest.skip("the 32-bit frozen budget (%s over %s) was not checked: %s; the 64-bit .mpy check "
                    "(%s) ran instead" % (FROZEN_WSS_BUDGET if tls_heap else FROZEN_WS_BUDGET,
                                          "wss:// with TLS in the heap" if tls_heap else "ws://", why, HEAP_BUDGET))
    # A source and a compiler are there: a build that fails is a failure, not a skip.
    return build_firmware.build(arch="x86", tls_heap=tls_heap, src=src, jobs=os.cpu_count() or 2)


@pytest.fixture(scope="module")
def frozen32():
    return frozen_build(False)


@pytest.fixture(scope="module")
def frozen32_tls():
    return frozen_build(True)


def frozen_session(firmware_factory, csms_or_url, build, heapsize, extra=()):
    # The build's binary, its copy of main.py, and nothing but the frozen modules on the path.
    return firmware_factory(csms_or_url, heapsize=heapsize, main=build["main"], micropypath=".frozen",
                            micropython=build["path"], extra=list(extra), env=build["env"])


@pytest.mark.parametrize("run", range(FROZEN_RUNS))
def test_full_session_fits_64K_on_the_32bit_frozen_build_over_ws(csms, firmware_factory, frozen32, run):
    fw = frozen_session(firmware_factory, csms, frozen32, FROZEN_WS_BUDGET)
    scenario.budget_session(fw, csms)
    fw.send("mem")
    print(fw.wait_line(r"memory: \d+ bytes in use"))
    assert scenario.firmware_failure(fw) is None
    assert csms.violations == []


@pytest.mark.parametrize("run", range(FROZEN_RUNS))
def test_full_session_fits_96K_over_wss_with_tls_in_the_heap(pki, firmware_factory, frozen32_tls, run):
    csms = DevCSMS(heartbeat_interval=300)
    csms.start_in_thread(ssl=server_tls(pki))
    fw = None
    try:
        fw = frozen_session(firmware_factory, "wss://localhost:%d" % csms.port, frozen32_tls, FROZEN_WSS_BUDGET,
                            ["--ca", str(pki / "ca.pem")])
        scenario.budget_session(fw, csms)
        fw.send("mem")
        print(fw.wait_line(r"memory: \d+ bytes in use"))
        assert scenario.firmware_failure(fw) is None
        assert csms.violations == []
    finally:
        if fw:
            fw.stop()
        csms.stop_thread()
