"""`make bench`: the performance budget figures (issues #6 and #10), all measured in one run.

    python tools/bench.py [--no-source] [--no-wss] [--no-frozen] [--frozen-only] [--out build/bench.json]

Prints one table and writes the same figures to build/bench.json:

0. The real target: the 32-bit unix port with the firmware frozen in
   (tools/build_firmware.py --arch x86, cached in build/firmware/; needs a MicroPython
   source: $MPY_SRC or ../shared/toolchain/micropython-src.tar.xz, and gcc-multilib).
   The smallest `-X heapsize` at which budget_session passes 3 runs of 3 (the boundary
   moves 2-4K with timing): bisection in 4K steps between 32K and 96K, a size counts
   as passing only when all 3 runs pass, as failing at its first failed run. Then the
   live heap at the session's end (console `mem`, the median of those 3 runs), and the
   import footprint (gc.mem_alloc() after gc.collect(), before and after importing
   app, which main.py imports, and then every other module of firmware/ and lib/ that
   imports on the unix port). The same bisection for the OCPP 2.0.1 session
   (scenario.budget_session201 against a 2.0.1 dev CSMS: frozen32_201). The same bisection over wss:// (a test CA, the dev CSMS
   behind TLS) on the build with mbedTLS allocating in the MicroPython heap
   (--tls-heap: MICROPY_TRACKED_ALLOC, as on an RP2040), between 48K and 128K: there
   the TLS session is part of the heap figures. In bench.json as heap.frozen32 and
   heap.frozen32_tls (smallest_k, fails_k, live, imports); without a source or a
   32-bit compiler they hold "missing": why, and the rest of the bench runs as before.
1. Heap: the smallest `-X heapsize` (bisection between 32K and 512K, 4K steps)
   at which host_tests/scenario.py budget_session passes (it completes, the
   CSMS saw no schema violation, no Traceback and no MemoryError in the firmware
   log), with the modules loaded as .mpy (tools/build_mpy.py --arch x64 into
   build/mpy, MICROPYPATH=build/mpy/x64:.frozen) and compiled from .py
   (MICROPYPATH=firmware:lib:.frozen). main.py always runs from source, as on a
   board: a copy of firmware/main.py in a directory of its own
   (build/bench/main/), because MicroPython puts the script's directory first on
   sys.path and firmware/main.py would import firmware/*.py whatever MICROPYPATH
   says. Then the live heap after gc.collect() at the end of the session
   (console `mem`) and micropython.mem_peak() (console `quit`; on this port it
   counts memory the GC has freed, so it overstates), at the smallest passing
   heap and at the default heap. The heap runs log every frame (--frames), as
   the test suite does. A third bisection runs the same .mpy files from a ROMFS
   image (tools/romfs_main.py): the bytecode executes in place, as frozen
   modules or a ROM partition do on a board; the unix port holds the image in
   one heap block, whose size is subtracted.
2. Code size: .mpy bytes of firmware/ + lib/ for xtensawin and armv6m, main.py
   compiled on its own (build_mpy leaves it out: boards run it from source), and
   the modules a board holds (its manifest.py, without the unix-only ones).
3. Latency, CSMS side (dev CSMS, loopback; from the CALL frame leaving the CSMS
   to the CALLRESULT frame arriving, the dev CSMS's frame record), for
   GetConfiguration (no keys: every key), RemoteStartTransaction (connector 1,
   a new idTag each time, each followed by RemoteStopTransaction and a quiet
   link, untimed) and
   TriggerMessage(Heartbeat) (Heartbeat is a charge-point-initiated message in
   OCPP 1.6: the CSMS cannot send one, so the CSMS-side figure is the
   TriggerMessage that asks for it; the triggered Heartbeat is awaited, untimed,
   before the next call). Plus the charge-point-initiated Heartbeat round trip
   as the charge point sees it (console `heartbeat <n>`). The same for
   tools/ocpp_lib_cp.py (the `ocpp` library on CPython, its own process) against
   the same CSMS in the same run, interleaved in chunks; firmware/ocpp-lib ratio.
   Default heap, .mpy, no frame logging (production settings). On a shared
   2-core machine timings vary up to 2x between runs: compare the ratios.
4. Loop stall: the longest time the asyncio loop was blocked (console `stall`: a
   5 ms ticker's worst lateness) during budget_session at the default heap, plain
   ws:// (so no TLS handshake in it), meter polled every second, transactions
   writing the flash. Separately: one reconnect over wss:// (TLS handshake) and
   the same reconnect over ws://.
5. Boot: process start (just before the process is spawned) to the firmware's
   "accepted this charge point" log line; median of 3 boots on an existing flash
   image (a first, factory-new boot formats it and is not counted). The ocpp-lib
   charge point likewise (CPython start, imports, connect, BootNotification).
6. Transfers (tools/bench_transfer.py, which also runs alone): lib/http.py and lib/ftp.py
   downloading and uploading 1 MB through a 1024-byte buffer on loopback (HTTP, HTTPS, FTP),
   KB/s and the longest loop stall beside a 1 ms ticker. In bench.json as transfer.*.
"""
import argparse
import ast
import json
import logging
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tests"))
sys.path.insert(0, str(ROOT / "tools"))
os.chdir(ROOT)

import bench_transfer  # noqa: E402
import build_firmware  # noqa: E402
import build_mpy  # noqa: E402
import deploy  # noqa: E402
import scenario  # noqa: E402
from conftest import MICROPYTHON, Firmware, make_cert, server_tls  # noqa: E402
from dev_csms import DevCSMS  # noqa: E402
from ocpp.v16 import call  # noqa: E402

BUILD = ROOT / "build" / "bench"
MPY_OUT = ROOT / "build" / "mpy"  # build_mpy --arch x64 --out build/mpy -> build/mpy/x64
MAIN_DIR = BUILD / "main"  # main.py, as source, alone in its directory
ROMFS_IMAGE = BUILD / "romfs.img"  # build/mpy/x64 as a ROMFS image (mpremote romfs build)
MODES = {  # name -> (main.py to run, MICROPYPATH, the unix-port binary; None: the venv's)
    # [, extra environment: build_firmware.board_env for the frozen builds]
    "mpy": (str((MAIN_DIR / "main.py").relative_to(ROOT)), "build/mpy/x64:.frozen", None),
    "source": ("firmware/main.py", "firmware:lib:.frozen", None),
    "romfs": ("tools/romfs_main.py", ".frozen", None),  # .mpy executed in place from ROMFS_IMAGE
    # "frozen32", "frozen32_tls": added by build_frozen() (its main.py, ".frozen", its binary)
}
FROZEN = {  # mode -> (build_firmware.build arguments, over TLS, bisection bounds in K)
    "frozen32": ({"arch": "x86"}, False, (32, 96)),
    "frozen32_tls": ({"arch": "x86", "tls_heap": True}, True, (48, 128)),
    "frozen32_201": ({"arch": "x86"}, False, (32, 96)),  # the OCPP 2.0.1 session (budget_session201)
    "frozen32_tls_201": ({"arch": "x86", "tls_heap": True}, True, (48, 128)),
}
FROZEN_RUNS = 3  # a size passes only when this many runs in a row pass
PKI = BUILD / "pki"
HEAP_LO, HEAP_HI, HEAP_STEP = 32, 512, 4  # K
CALLS = 200  # timed calls per operation and charge point
CHUNK = 20  # the firmware and the ocpp-lib charge point take turns, CHUNK calls each
WARMUP = 5  # untimed calls per operation and charge point first
BOOTS = 3


class BenchFirmware(Firmware):
    """The test suite's Firmware, with the arrival time of every log line."""

    def start(self):
        self.stamps = []
        self.t_start = time.time()
        return super().start()

    def _pump(self):
        for line in self.proc.stdout:
            self.stamps.append(time.time())
            self.lines.append(line.rstrip("\n"))

    def line_time(self, pattern):
        rx = re.compile(pattern)
        for i, line in enumerate(self.lines):
            if rx.search(line):
                return self.stamps[i]
        return None

    def ask(self, command, pattern, timeout=20):
        self.send(command)
        return self.wait_line(pattern, timeout)


class LibChargePoint(BenchFirmware):
    """tools/ocpp_lib_cp.py as a process, driven like the firmware."""

    def __init__(self, csms_url, cp_id, config_file):
        self.data_dir = BUILD
        self.micropypath = None
        self.env = None
        self.cmd = [sys.executable, "tools/ocpp_lib_cp.py", "--csms", csms_url, "--cp", cp_id]
        if config_file:
            self.cmd += ["--config", str(config_file)]
        self.lines = []
        self.proc = None


def firmware(mode, csms_url, data, heap=None, frames=False, cp="CP001", extra=()):
    main, path, binary = MODES[mode][:3]
    return BenchFirmware(data, csms_url, cp, heapsize=heap, main=main, micropypath=path, frames=frames,
                         extra=list(extra), micropython=binary, env=MODES[mode][3] if len(MODES[mode]) > 3 else None,
                         ocpp="2.0.1" if mode.endswith("_201") else None)


def new_csms(ssl=None, protocols=("ocpp1.6",)):
    csms = DevCSMS(heartbeat_interval=300, protocols=protocols)
    csms.start_in_thread(ssl=ssl)
    return csms


def data_dir():
    (BUILD / "data").mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=BUILD / "data"))


def num(pattern, line):
    return int(re.search(pattern, line).group(1))


def quit_fw(fw):
    """quit: -> micropython.mem_peak() as the firmware reports it (with MICROPY_TRACKED_ALLOC
    it can even be negative: the tracked frees are counted, not all the allocations)."""
    try:
        return num(r"heap peak (-?\d+)", fw.ask("quit", r"heap peak"))
    finally:
        fw.stop()
        if fw.proc.poll() is None:
            fw.kill()


# ---- 1. heap ------------------------------------------------------------------

def session_run(mode, heap=None, frames=True, stall=False, tls=False):
    """budget_session once (over wss:// with the PKI of make_pki when tls)
    -> {"passed", "error", "live", "peak", "stall_us", ...}."""
    v201 = mode.endswith("_201")
    csms = new_csms(server_tls(PKI) if tls else None, ("ocpp2.0.1",) if v201 else ("ocpp1.6",))
    data = data_dir()
    url = ("wss://localhost:%d" if tls else "ws://127.0.0.1:%d") % csms.port
    fw = firmware(mode, url, data, heap, frames, extra=["--ca", str(PKI / "ca.pem")] if tls else ())
    r = {"heap": heap or "default", "passed": False}
    t = time.time()
    try:
        if v201:
            scenario.budget_session201(fw, csms)
        else:
            scenario.budget_session(fw, csms, after_boot=(lambda f: f.ask("stall", r"loop stall")) if stall else None)
        if stall:
            line = fw.ask("stall", r"loop stall")
            r["stall_us"], r["stall_over_s"] = num(r"longest (\d+) us", line), num(r"over (\d+) s", line)
        r["live"] = num(r"memory: (\d+) bytes in use", fw.ask("mem", r"memory: \d+ bytes in use"))
        r["qstr"] = num(r"n_total_bytes=(\d+)", fw.wait_line(r"qstr pool: .*n_total_bytes=\d+"))
        r["peak"] = quit_fw(fw)
        bad = [l for l in fw.lines if "Traceback" in l or "MemoryError" in l]
        if bad:
            raise AssertionError("firmware log: " + bad[0])
        if csms.violations:
            raise AssertionError("schema violations: %r" % (csms.violations[:1],))
        if fw.proc.returncode != 0:
            raise AssertionError("firmware exit code %s" % fw.proc.returncode)
        r["passed"] = True
    except Exception as e:
        r["error"] = ("%s: %s" % (type(e).__name__, e)).splitlines()[0][:200]
    finally:
        if fw.proc and fw.proc.poll() is None:
            fw.kill()
        csms.stop_thread()
        shutil.rmtree(data, ignore_errors=True)
    r["seconds"] = round(time.time() - t, 1)
    return r


def smallest_heap(mode, log):
    """Bisection in HEAP_STEP K steps -> {"smallest_k", "fails_k", "runs": [...], ...}."""
    runs = []

    def run(k):
        r = session_run(mode, "%dK" % k)
        r["k"] = k
        runs.append(r)
        log("  heap %-6s %4dK %s (%.0f s)%s" % (mode, k, "passes" if r["passed"] else "fails", r["seconds"],
                                                 "" if r["passed"] else ": " + r.get("error", "")[:120]))
        return r["passed"]

    out = {"runs": runs, "smallest_k": None, "fails_k": None}
    lo, hi = HEAP_LO, HEAP_HI
    if not run(hi):
        out["note"] = "fails at %dK, the upper bound" % hi
        return out
    if run(lo):
        out["smallest_k"] = lo
        out["note"] = "passes at %dK, the lower bound" % lo
        return out
    while hi - lo > HEAP_STEP:
        mid = (lo + hi) // 2 // HEAP_STEP * HEAP_STEP
        if run(mid):
            hi = mid
        else:
            lo = mid
    out["smallest_k"], out["fails_k"] = hi, lo
    best = [r for r in runs if r["k"] == hi][0]
    out["live"], out["peak"], out["qstr"] = best["live"], best["peak"], best["qstr"]
    return out


# ---- 0. the 32-bit frozen build ---------------------------------------------------

def build_frozen(log):
    """Build (or take from the cache) the frozen firmware of every FROZEN mode and add
    it to MODES -> {mode: {"path", "cached", "seconds", ...} or {"missing": why}}."""
    out = {}
    for mode, (kw, _, _) in FROZEN.items():
        try:
            info = build_firmware.build(jobs=os.cpu_count() or 2, log=lambda t: log("  " + t), **kw)
        except (build_firmware.Unavailable, build_firmware.BuildFailed) as e:
            out[mode] = {"missing": str(e).splitlines()[0]}
            log("  %s: not measured: %s" % (mode, out[mode]["missing"]))
            continue
        MODES[mode] = (os.path.relpath(info["main"], ROOT), ".frozen", info["path"], info["env"])
        out[mode] = {k: info[k] for k in ("path", "cached", "seconds", "key", "source")}
        log("  %s: %s (%s, %.1f s)" % (mode, os.path.relpath(info["path"], ROOT),
                                       "cached" if info["cached"] else "built", info["seconds"]))
    return out


def smallest_heap_all_pass(mode, log):
    """Bisection in HEAP_STEP K steps where a size passes only when FROZEN_RUNS runs in a
    row pass (it fails at its first failed run) -> {"smallest_k", "fails_k", "live", ...}."""
    _, tls, (lo, hi) = FROZEN[mode]
    runs = []

    def probe(k):
        for i in range(FROZEN_RUNS):
            r = session_run(mode, "%dK" % k, tls=tls)
            r["k"] = k
            runs.append(r)
            log("  heap %-12s %4dK run %d/%d %s (%.0f s)%s" % (
                mode, k, i + 1, FROZEN_RUNS, "passes" if r["passed"] else "fails", r["seconds"],
                "" if r["passed"] else ": " + r.get("error", "")[:120]))
            if not r["passed"]:
                return False
        return True

    out = {"runs": runs, "smallest_k": None, "fails_k": None, "runs_per_size": FROZEN_RUNS}
    lo_fails = False
    while not probe(hi):
        if hi >= HEAP_HI:
            out["note"] = "fails at %dK" % hi
            return out
        lo, hi, lo_fails = hi, min(HEAP_HI, hi * 2), True
    if not lo_fails and probe(lo):
        out["smallest_k"] = lo
        out["note"] = "passes at %dK, the lower bound" % lo
    else:
        while hi - lo > HEAP_STEP:
            mid = (lo + hi) // 2 // HEAP_STEP * HEAP_STEP
            if probe(mid):
                hi = mid
            else:
                lo = mid
        out["smallest_k"], out["fails_k"] = hi, lo
    best = [r for r in runs if r["k"] == out["smallest_k"]]
    out["live"] = int(statistics.median(r["live"] for r in best))
    out["live_runs"] = [r["live"] for r in best]
    out["peak"], out["qstr"] = best[0]["peak"], best[0]["qstr"]
    out["fails_k_runs"] = len([r for r in runs if r["k"] == out["fails_k"]])
    out["fails_k_passed"] = len([r for r in runs if r["k"] == out["fails_k"] and r["passed"]])
    return out


IMPORTS = """
import gc, sys, json
gc.collect()
a = gc.mem_alloc()
import app
gc.collect()
b = gc.mem_alloc()
skipped = []
for name in %r:
    try:
        __import__(name)
    except Exception:  # ImportError: a module of another board (network, machine.Pin)
        skipped.append(name)
gc.collect()
c = gc.mem_alloc()
print(json.dumps({"app": b - a, "all": c - a, "modules": len(%r) - len(skipped), "skipped": skipped}))
"""


def import_footprint(mode):
    """gc.mem_alloc() growth from importing app (what main.py imports), and then every
    other module of firmware/ and lib/ (those that import on the unix port)."""
    names = []
    for top in ("firmware", "lib"):
        for py in sorted((ROOT / top).rglob("*.py")):
            rel = py.relative_to(ROOT / top).with_suffix("")
            if rel.name == "__init__":
                rel = rel.parent
            if str(rel) not in ("main", "app"):
                names.append(str(rel).replace("/", "."))
    _, path, binary = MODES[mode][:3]
    with tempfile.TemporaryDirectory() as d:  # an empty current directory: nothing but .frozen
        p = subprocess.run([binary, "-c", IMPORTS % (names, names)], cwd=d, env=dict(os.environ, MICROPYPATH=path),
                           capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise RuntimeError("import footprint: %s" % (p.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(p.stdout.strip().splitlines()[-1])


def frozen_heap(mode, log):
    out = smallest_heap_all_pass(mode, log)
    if mode == "frozen32":
        try:
            out["imports"] = import_footprint(mode)
        except Exception as e:
            out["imports"] = {"error": str(e)}
    return out


# ---- 2. code size -------------------------------------------------------------

def code_size():
    out = {}
    board_files = {}
    for board, arch in deploy.ARCH.items():
        files, _ = deploy.read_manifest(ROOT / "boards" / board / "manifest.py")
        board_files[arch] = {str(Path(src).resolve().relative_to(ROOT)) for src, _ in files}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("xtensawin", "armv6m"):
            total, sizes, failed = build_mpy.build(arch, tmp)
            if failed:
                raise SystemExit("bench: mpy-cross failed:\n" + "\n".join(failed))
            main_mpy = Path(tmp) / ("main-%s.mpy" % arch)
            subprocess.run([build_mpy.MPY_CROSS, "-march=" + arch, "-o", str(main_mpy), "firmware/main.py"],
                           check=True)
            main = main_mpy.stat().st_size
            board = sum(s for name, s in sizes.items() if name in board_files.get(arch, ()))
            out[arch] = {"modules": len(sizes), "modules_bytes": total, "main_bytes": main,
                         "total_bytes": total + main,
                         "board_modules": len([n for n in sizes if n in board_files.get(arch, ())]),
                         "board_bytes": board + main}
    return out


# ---- 3. latency ---------------------------------------------------------------

def scan(csms, start, pred, timeout=10):
    """Index of the first frame from `start` on that satisfies pred(frame)."""
    end = time.time() + timeout
    i = start
    while True:
        frames = csms.frames
        while i < len(frames):
            if pred(frames[i]):
                return i
            i += 1
        if time.time() > end:
            raise TimeoutError("no such frame")
        time.sleep(0.0005)


def timed_call(csms, cp, payload):
    """run_call -> (answer, ms from our CALL frame leaving to the CALLRESULT arriving)."""
    n = len(csms.frames)
    answer = csms.run_call(cp, payload)
    i = scan(csms, n, lambda f: f[1] == ">>" and f[2] == cp and f[3][0] == 2)
    mid = csms.frames[i][3][1]
    j = scan(csms, i, lambda f: f[1] == "<<" and f[2] == cp and f[3][0] == 3 and f[3][1] == mid)
    return answer, (csms.frames[j][0] - csms.frames[i][0]) * 1000


def answered(csms, start, cp, action):
    """Wait for the charge point's next `action` CALL from frame `start` on and the CSMS's answer;
    -> (its payload, the answer payload)."""
    i = scan(csms, start, lambda f: f[1] == "<<" and f[2] == cp and f[3][0] == 2 and f[3][2] == action)
    mid = csms.frames[i][3][1]
    j = scan(csms, i, lambda f: f[1] == ">>" and f[2] == cp and f[3][0] == 3 and f[3][1] == mid)
    return csms.frames[i][3][3], csms.frames[j][3][2]


def quiet(csms, cp, ms=30, timeout=5):
    """Wait until the link of cp has been silent for `ms`."""
    end = time.time() + timeout
    while time.time() < end:
        last = [f[0] for f in csms.frames[-50:] if f[2] == cp]
        if not last or time.time() - last[-1] >= ms / 1000:
            return
        time.sleep(0.002)


def op_get_configuration(csms, cp):
    answer, ms = timed_call(csms, cp, call.GetConfiguration())
    assert len(answer.configuration_key) >= 50, answer
    return ms


def op_trigger_heartbeat(csms, cp):
    n = len(csms.frames)
    answer, ms = timed_call(csms, cp, call.TriggerMessage(requested_message="Heartbeat"))
    assert answer.status == "Accepted", answer
    answered(csms, n, cp, "Heartbeat")
    quiet(csms, cp, 5)
    return ms


_tags = iter(range(1, 10 ** 6))


def op_remote_start(csms, cp):
    # A new idTag each time: the dev CSMS takes a StartTransaction with the same (connector,
    # idTag, meterStart, timestamp to the second) for a repeat and gives the same transactionId.
    n = len(csms.frames)
    tag = "BENCH%05d" % next(_tags)
    answer, ms = timed_call(csms, cp, call.RemoteStartTransaction(id_tag=tag, connector_id=1))
    assert answer.status == "Accepted", answer
    start, started = answered(csms, n, cp, "StartTransaction")
    assert start["idTag"] == tag, start
    for _ in range(200):  # the charge point may not have read the transactionId yet
        n = len(csms.frames)
        if csms.run_call(cp, call.RemoteStopTransaction(transaction_id=started["transactionId"])).status == "Accepted":
            break
        time.sleep(0.005)
    else:
        raise AssertionError("%s never accepted RemoteStopTransaction(%s)" % (cp, started["transactionId"]))
    answered(csms, n, cp, "StopTransaction")
    quiet(csms, cp, 30)
    return ms


OPERATIONS = (("GetConfiguration", op_get_configuration),
              ("RemoteStartTransaction", op_remote_start),
              ("TriggerMessage(Heartbeat)", op_trigger_heartbeat))


def stats(samples):
    s = sorted(samples)
    if not s:
        return None
    return {"n": len(s), "p50_ms": round(statistics.median(s), 3),
            "p99_ms": round(s[max(0, math.ceil(0.99 * len(s)) - 1)], 3),
            "min_ms": round(s[0], 3), "max_ms": round(s[-1], 3)}


def heartbeat_round_trips(proc, n):
    proc.send("heartbeat %d" % n)
    return [proc.wait_line(r"heartbeat round trip \d+ us", 20) for _ in range(n)]


def latency(log):
    csms = new_csms()
    url = "ws://127.0.0.1:%d" % csms.port
    data = data_dir()
    fw = firmware("mpy", url, data, cp="FW001")
    lib = None
    out = {}
    try:
        fw.start()
        fw.wait_line(r"accepted this charge point")
        csms.wait_for(lambda: len([1 for f in csms.frames if f[2] == "FW001" and f[3][0] == 2
                                   and f[3][2] == "StatusNotification"]) >= 3, 10, "firmware boot statuses")
        fw.send("plug 1")
        fw.wait_line(r"connector 1: Available -> Preparing")
        # The ocpp-lib charge point answers GetConfiguration with the firmware's keys and values.
        keys = csms.run_call("FW001", call.GetConfiguration()).configuration_key
        conf = BUILD / "configuration.json"
        conf.write_text(json.dumps(keys))
        out["configuration_keys"] = len(keys)
        lib = LibChargePoint(url, "LIB001", conf)
        lib.start()
        lib.wait_line(r"accepted this charge point", 30)
        csms.wait_for(lambda: "LIB001" in csms.handlers, 10, "ocpp-lib charge point")
        quiet(csms, "LIB001", 50)
        quiet(csms, "FW001", 50)
        cps = (("firmware", "FW001"), ("ocpp_lib", "LIB001"))
        for name, op in OPERATIONS:
            samples = {who: [] for who, _ in cps}
            for who, cp in cps:
                for _ in range(WARMUP):
                    op(csms, cp)
            for _ in range(CALLS // CHUNK):
                for who, cp in cps:
                    for _ in range(CHUNK):
                        samples[who].append(op(csms, cp))
            out[name] = {who: stats(s) for who, s in samples.items()}
            log("  %-26s firmware p50 %.2f ms, ocpp-lib p50 %.2f ms" % (
                name, out[name]["firmware"]["p50_ms"], out[name]["ocpp_lib"]["p50_ms"]))
        # Heartbeat as the charge point sees it (its own CALL, the CSMS's answer).
        samples = {"firmware": [], "ocpp_lib": []}
        for who, proc in (("firmware", fw), ("ocpp_lib", lib)):
            heartbeat_round_trips(proc, WARMUP)
        for _ in range(CALLS // 50):
            for who, proc in (("firmware", fw), ("ocpp_lib", lib)):
                samples[who] += [num(r"round trip (\d+) us", l) / 1000 for l in heartbeat_round_trips(proc, 50)]
        out["Heartbeat (charge point side)"] = {who: stats(s) for who, s in samples.items()}
        # Figures from a run that went wrong are no figures.
        assert not csms.violations, "schema violations: %r" % (csms.violations[:1],)
        why = scenario.firmware_failure(fw)
        assert why is None, why
    finally:
        if lib:
            lib.stop()
        fw.stop()
        csms.stop_thread()
        shutil.rmtree(data, ignore_errors=True)
    return out


# ---- 4. loop stall over wss / ws reconnects -------------------------------------

def composite_schedule(log, calls=20):
    """GetCompositeSchedule of a two-day window over 4 Recurring Daily TxDefaultProfiles of
    24 hourly periods each (issue #11: under 50 ms), CSMS side, firmware on .mpy."""
    csms = new_csms()
    data = data_dir()
    fw = firmware("mpy", "ws://127.0.0.1:%d" % csms.port, data, cp="FW001")
    try:
        fw.start()
        fw.wait_line(r"accepted this charge point")
        start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime())
        for stack in range(4):
            periods = [{"startPeriod": h * 3600, "limit": 6 + (h * 7 + stack * 5) % 26} for h in range(24)]
            p = {"chargingProfileId": 100 + stack, "stackLevel": stack, "chargingProfilePurpose": "TxDefaultProfile",
                 "chargingProfileKind": "Recurring", "recurrencyKind": "Daily",
                 "chargingSchedule": {"chargingRateUnit": "A", "startSchedule": start,
                                      "duration": 86400 - stack * 3 * 3600, "chargingSchedulePeriod": periods}}
            answer = csms.run_call("FW001", call.SetChargingProfile(connector_id=0, cs_charging_profiles=p))
            assert answer.status == "Accepted", answer
        samples = []
        n = 0
        for _ in range(calls):
            answer, ms = timed_call(csms, "FW001", call.GetCompositeSchedule(connector_id=1, duration=172800))
            n = len(answer.charging_schedule["charging_schedule_period"])
            samples.append(ms)
        assert not csms.violations, "schema violations: %r" % (csms.violations[:1],)
        why = scenario.firmware_failure(fw)
        assert why is None, why
        out = dict(stats(samples), periods=n)
        log("  GetCompositeSchedule, 2 days, 4 recurring profiles: p50 %.2f ms, %d periods" % (out["p50_ms"], n))
        return out
    finally:
        fw.stop()
        csms.stop_thread()
        shutil.rmtree(data, ignore_errors=True)


def make_pki(d):
    d.mkdir(parents=True, exist_ok=True)
    make_cert(d, "ca", "/CN=Bench CSMS CA", "basicConstraints=critical,CA:TRUE",
              "keyUsage=critical,keyCertSign,cRLSign")
    make_cert(d, "server", "/CN=localhost", "basicConstraints=CA:FALSE",
              "subjectAltName=DNS:localhost,IP:127.0.0.1", ca="ca")
    return d


def reconnect_stall(tls):
    """Boot, start the stall monitor, 1 s idle (reading), the CSMS drops the link, the
    firmware reconnects (reading) -> {"idle_us", "reconnect_us"}."""
    pki = make_pki(BUILD / "pki") if tls else None
    csms = new_csms(server_tls(pki) if tls else None)
    data = data_dir()
    url = ("wss://localhost:%d" if tls else "ws://127.0.0.1:%d") % csms.port
    fw = firmware("mpy", url, data, extra=["--ca", str(pki / "ca.pem")] if tls else ())
    try:
        fw.start()
        fw.wait_line(r"accepted this charge point")
        csms.wait_for(lambda: len(csms.calls("StatusNotification")) >= 3, 10, "boot statuses")
        fw.ask("stall", r"loop stall")
        time.sleep(1)
        idle = num(r"longest (\d+) us", fw.ask("stall", r"loop stall"))
        n = len(csms.calls("StatusNotification"))
        csms.drop("CP001")
        fw.wait_line(r"connection to the CSMS lost")
        fw.wait_line(r"link: connected", 20)
        csms.wait_for(lambda: len(csms.calls("StatusNotification")) >= n + 3, 10, "statuses after the reconnect")
        time.sleep(0.3)
        again = num(r"longest (\d+) us", fw.ask("stall", r"loop stall"))
        why = scenario.firmware_failure(fw)
        assert why is None, why
        return {"idle_us": idle, "reconnect_us": again}
    finally:
        quit_fw(fw)
        csms.stop_thread()
        shutil.rmtree(data, ignore_errors=True)


# ---- 5. boot ------------------------------------------------------------------

def boots(log):
    csms = new_csms()
    url = "ws://127.0.0.1:%d" % csms.port
    data = data_dir()
    out = {"firmware": [], "ocpp_lib": []}
    try:
        fw = firmware("mpy", url, data)
        fw.start()  # factory-new: formats the flash image; not counted
        fw.wait_line(r"accepted this charge point")
        first = round((fw.line_time(r"accepted this charge point") - fw.t_start) * 1000, 1)
        quit_fw(fw)
        for _ in range(BOOTS):
            for who in out:
                p = fw if who == "firmware" else LibChargePoint(url, "LIB001", None)
                p.start()
                p.wait_line(r"accepted this charge point", 30)
                out[who].append(round((p.line_time(r"accepted this charge point") - p.t_start) * 1000, 1))
                if p is fw:
                    quit_fw(fw)
                else:
                    p.stop()
    finally:
        csms.stop_thread()
        shutil.rmtree(data, ignore_errors=True)
    return {"firmware_ms": out["firmware"], "ocpp_lib_ms": out["ocpp_lib"],
            "firmware_median_ms": statistics.median(out["firmware"]),
            "ocpp_lib_median_ms": statistics.median(out["ocpp_lib"]),
            "firmware_first_boot_ms": first}


# ---- the table ----------------------------------------------------------------

def kb(n):
    return "%d B (%.1f KB)" % (n, n / 1024)


def frozen_rows(res):
    h = res["heap"]
    rows = []
    labels = {"frozen32": "full session over ws://, 32-bit unix port, firmware frozen "
                          "(build/firmware/unix-x86; TLS outside the heap, as on an ESP32)",
              "frozen32_tls": "the same over wss://, mbedTLS in the heap "
                              "(build/firmware/unix-x86-tls, as on an RP2040)",
              "frozen32_201": "the OCPP 2.0.1 session over ws:// (budget_session201, FullInventory report "
                              "included), build/firmware/unix-x86",
              "frozen32_tls_201": "the OCPP 2.0.1 session over wss://, mbedTLS in the heap (build/firmware/unix-x86-tls)"}
    for mode, what in labels.items():
        m = h.get(mode)
        if m is None:
            continue
        label = "smallest `-X heapsize`, %s, %d of %d runs pass" % (what, FROZEN_RUNS, FROZEN_RUNS)
        if "missing" in m:
            rows.append((label, "not measured: " + m["missing"], "", ""))
            continue
        if m["smallest_k"] is None:
            rows.append((label, m.get("note", "not measured"), "", ""))
            continue
        if m["fails_k"] is None:
            fig = m.get("note", "%dK passes" % m["smallest_k"])
        else:
            fig = "%dK passes, %dK fails (%d of %d runs passed)" % (
                m["smallest_k"], m["fails_k"], m["fails_k_passed"], m["fails_k_runs"])
        rows.append((label, fig, "", ""))
        rows.append(("  live heap after gc.collect() at the session's end (median of %d runs at %dK%s)" % (
            len(m["live_runs"]), m["smallest_k"], "; the TLS session included" if mode.endswith("tls") else ""),
            kb(m["live"]), "", ""))
        imp = m.get("imports")
        if imp and "error" in imp:
            rows.append(("  import footprint", "not measured: " + imp["error"], "", ""))
        elif imp:
            rows.append(("  import footprint: app (what main.py imports), gc.mem_alloc() growth",
                         kb(imp["app"]), "", ""))
            rows.append(("  import footprint: every module of firmware/ + lib/ that imports here (%d)"
                         % imp["modules"], kb(imp["all"]), "", ""))
    seen = set()
    for mode, info in (res.get("firmware") or {}).items():
        if "missing" not in info and info["path"] not in seen:  # (frozen32_201 runs frozen32's build)
            seen.add(info["path"])
            rows.append(("  build/firmware/%s (tools/build_firmware.py, -j%d)" % (
                os.path.basename(os.path.dirname(info["path"])), res["cpus"]),
                         "%s in %.1f s" % ("cached" if info["cached"] else "built", info["seconds"]), "", ""))
    return rows


def table(res):
    rows = frozen_rows(res)
    h = res["heap"]
    if "code" not in res:  # --frozen-only
        return render(rows)
    for mode, what in (("mpy", ".mpy"), ("source", "compiled from .py at import")):
        m = h.get(mode)
        if m is None:
            rows.append(("smallest `-X heapsize`, full session, 64-bit unix port (PyPI), modules " + what, "not measured", "", ""))
            continue
        if m["smallest_k"] is None or m["fails_k"] is None:
            fig = m.get("note", "not measured")
        else:
            fig = "%dK passes, %dK fails" % (m["smallest_k"], m["fails_k"])
        rows.append(("smallest `-X heapsize`, full session, 64-bit unix port (PyPI), modules " + what, fig, "", ""))
    m = h.get("romfs")
    if m and m["smallest_k"] is not None and m["fails_k"] is not None:
        img = res["romfs_image"]
        rows.append(("the same, .mpy executed in place from a ROMFS image (as frozen modules on a board): "
                     "heap needed beside the %.1f KB image" % (img / 1024),
                     "%.1f KB passes, %.1f KB fails (%dK / %dK heaps)" % (
                         (m["smallest_k"] * 1024 - img) / 1024, (m["fails_k"] * 1024 - img) / 1024,
                         m["smallest_k"], m["fails_k"]), "", ""))
        if m.get("live") is not None:
            rows.append(("  its live heap after gc.collect() at the session's end, without the image",
                         kb(m["live"] - img), "", ""))
            rows.append(("  of which interned names (qstr pools; frozen modules keep theirs in flash)",
                         kb(m["qstr"]), "", ""))
    m = h.get("mpy", {})
    if m.get("live") is not None:
        rows.append(("live heap after gc.collect() at the session's end (.mpy, %dK heap)" % m["smallest_k"],
                     kb(m["live"]), "", ""))
    d = h.get("default") or {}
    if d.get("passed"):
        rows.append(("the same at the default heap", kb(d["live"]), "", ""))
    if m.get("peak") is not None:
        rows.append(("micropython.mem_peak() (.mpy, %dK heap; overstates: counts memory the GC freed)"
                     % m["smallest_k"], kb(m["peak"]), "", ""))
    if d.get("passed"):
        rows.append(("micropython.mem_peak() at the default heap (overstates)", kb(d["peak"]), "", ""))
    for arch in ("xtensawin", "armv6m"):
        c = res["code"][arch]
        rows.append((".mpy of firmware/ + lib/, %s (%d modules; main.py not included)" % (arch, c["modules"]),
                     kb(c["modules_bytes"]), "", ""))
        rows.append(("  + main.py compiled: %s total" % arch,
                     "%s (main.py %d B)" % (kb(c["total_bytes"]), c["main_bytes"]), "", ""))
        rows.append(("  what a board holds (its manifest, %d modules, + main.py), %s" % (c["board_modules"], arch),
                     kb(c["board_bytes"]), "", ""))
    lat = res.get("latency")
    if lat:
        for name in [n for n, _ in OPERATIONS] + ["Heartbeat (charge point side)"]:
            f, l = lat[name]["firmware"], lat[name]["ocpp_lib"]
            side = "charge point side: own CALL -> CALLRESULT" if "charge point" in name else "CSMS side"
            label = "%s, %s, p50 / p99 of %d" % (name.replace(" (charge point side)", ""), side, f["n"])
            if name == "GetConfiguration":
                label += " (%d keys)" % lat["configuration_keys"]
            rows.append((label, "%.2f / %.2f ms" % (f["p50_ms"], f["p99_ms"]),
                         "%.2f / %.2f ms" % (l["p50_ms"], l["p99_ms"]),
                         "%.2f / %.2f" % (f["p50_ms"] / l["p50_ms"], f["p99_ms"] / l["p99_ms"])))
    else:
        rows.append(("latency", "not measured: " + res.get("latency_error", "?"), "", ""))
    if d.get("passed"):
        rows.append(("longest loop stall, full session at the default heap over ws:// (no TLS handshake), "
                     "meter polled every 1 s, flash writes", "%.1f ms over %d s" % (d["stall_us"] / 1000,
                                                                                   d["stall_over_s"]), "", ""))
    else:
        rows.append(("longest loop stall, full session", "not measured: " + d.get("error", "?"), "", ""))
    for key, label in (("wss", "one reconnect over wss:// (TLS context from the CA file, handshake; x64 mbedTLS)"),
                       ("ws", "the same reconnect over ws://")):
        s = res.get("stall_" + key)
        if s and "reconnect_us" in s:
            rows.append(("longest loop stall, " + label, "%.1f ms (1 s idle before it: %.1f ms)" % (
                s["reconnect_us"] / 1000, s["idle_us"] / 1000), "", ""))
        elif s:
            rows.append(("longest loop stall, " + label, "not measured: " + s.get("error", "?"), "", ""))
    c = res.get("composite_schedule")
    if c:
        rows.append(("GetCompositeSchedule, CSMS side: 2-day window, 4 Recurring Daily profiles of 24 periods, p50 / p99 "
                     "of %d" % c.get("n", 0), "%.2f / %.2f ms (%d periods)" % (c["p50_ms"], c["p99_ms"], c["periods"])
                     if "p50_ms" in c else "not measured: " + c.get("error", "?"), "", ""))
    b = res.get("boot")
    if b:
        rows.append(("boot: process start to BootNotification Accepted, median of %d (.mpy, existing flash)"
                     % len(b["firmware_ms"]), "%.0f ms" % b["firmware_median_ms"], "%.0f ms" % b["ocpp_lib_median_ms"],
                     "%.2f" % (b["firmware_median_ms"] / b["ocpp_lib_median_ms"])))
    if "transfer" in res:
        rows += bench_transfer.rows(res["transfer"])
    return render(rows)


def render(rows):
    widths = [max(len(r[i]) for r in rows + [HEAD]) for i in range(4)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(HEAD, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


HEAD = ("what", "firmware (MicroPython unix port)", "ocpp library (CPython)", "firmware / ocpp lib")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "bench.json"))
    ap.add_argument("--no-source", action="store_true", help="skip the heap bisection from .py sources")
    ap.add_argument("--no-wss", action="store_true", help="skip the wss reconnect stall")
    ap.add_argument("--no-frozen", action="store_true", help="skip the 32-bit frozen build's figures")
    ap.add_argument("--frozen-only", action="store_true", help="only the 32-bit frozen build's figures")
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.CRITICAL)  # the CSMS's and the library's own chatter
    os.environ.pop("FW_HEAPSIZE", None)  # "default heap" means the port's default
    t0 = time.time()
    log_lock = threading.Lock()

    def log(text):
        with log_lock:
            print("[%5.0f s] %s" % (time.time() - t0, text), flush=True)

    BUILD.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(MPY_OUT / "x64", ignore_errors=True)  # no stale .mpy of a module that is gone
    total, sizes, failed = build_mpy.build("x64", MPY_OUT)
    if failed:
        raise SystemExit("bench: mpy-cross failed:\n" + "\n".join(failed))
    shutil.rmtree(MAIN_DIR, ignore_errors=True)
    MAIN_DIR.mkdir(parents=True)
    shutil.copyfile(ROOT / "firmware" / "main.py", MAIN_DIR / "main.py")
    ROMFS_IMAGE.unlink(missing_ok=True)
    subprocess.run([str(Path(sys.executable).parent / "mpremote"), "romfs", "--no-mpy", "-o", str(ROMFS_IMAGE),
                    "build", str(MPY_OUT / "x64")], check=True, capture_output=True)
    os.environ["ROMFS_IMAGE"] = str(ROMFS_IMAGE)
    res_image = ROMFS_IMAGE.stat().st_size
    log("x64 .mpy in build/mpy/x64 (%d modules); main.py runs from build/bench/main/main.py" % len(sizes))

    v = subprocess.run([MICROPYTHON, "-c", "import sys; print(repr((sys.implementation.version, sys.platform, "
                        "sys.maxsize > 2 ** 32)))"], capture_output=True, text=True).stdout
    v = ast.literal_eval(v)  # ((1, 29, 0, 'preview'), 'linux', True)
    version = "v%d.%d.%d%s, %s, %d-bit" % (v[0][:3] + ("-" + v[0][3] if v[0][3:] and v[0][3] else "", v[1],
                                                     64 if v[2] else 32))
    res = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "micropython": version, "host": platform.node(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "heap": {}, "romfs_image": res_image}

    # 0. The 32-bit frozen builds (cached), and the PKI their wss runs use.
    frozen = []
    if not args.no_frozen:
        log("32-bit frozen firmware (tools/build_firmware.py)")
        res["firmware"] = build_frozen(log)
        for mode, info in res["firmware"].items():
            if "missing" in info:
                res["heap"][mode] = {"missing": info["missing"], "smallest_k": None, "live": None}
            else:
                frozen.append(mode)
        make_pki(PKI)
    if not args.frozen_only:
        res["code"] = code_size()
        log("code size: xtensawin %d B with main.py" % res["code"]["xtensawin"]["total_bytes"])

    # 1. Heap bisections, the frozen builds, .mpy and source side by side (no timing is measured in them).
    modes = [] if args.frozen_only else ["mpy", "romfs"] + ([] if args.no_source else ["source"])
    threads = [threading.Thread(target=lambda m=m: res["heap"].__setitem__(m, frozen_heap(m, log))) for m in frozen]
    threads += [threading.Thread(target=lambda m=m: res["heap"].__setitem__(m, smallest_heap(m, log)))
                for m in modes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if args.frozen_only:
        return finish(res, args, t0, version)

    # Everything timed from here on runs alone.
    log("full session at the default heap, with the loop stall monitor")
    res["heap"]["default"] = session_run("mpy", None, frames=False, stall=True)
    log("  %s" % res["heap"]["default"])
    log("latency: %d calls per operation and charge point" % CALLS)
    try:
        res["latency"] = latency(log)
    except Exception as e:
        res["latency_error"] = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        log("latency failed: " + res["latency_error"])
    log("GetCompositeSchedule")
    try:
        res["composite_schedule"] = composite_schedule(log)
    except Exception as e:
        res["composite_schedule"] = {"error": "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")}
    for key in ([] if args.no_wss else ["wss"]) + ["ws"]:
        log("loop stall over one %s reconnect" % key)
        try:
            res["stall_" + key] = reconnect_stall(key == "wss")
        except Exception as e:
            res["stall_" + key] = {"error": "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")}
    log("boot times")
    res["boot"] = boots(log)
    log("transfers: HTTP, HTTPS, FTP, 1 MB each way")
    try:
        res["transfer"] = bench_transfer.run(log)
    except Exception as e:
        res["transfer"] = {"error": "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")}
    return finish(res, args, t0, version)


def finish(res, args, t0, version):
    res["seconds"] = round(time.time() - t0)
    text = table(res)
    res["table"] = text
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print()
    print("mpocpp bench, %s: MicroPython unix port %s; %d CPUs; took %d s" % (
        res["when"], version, res["cpus"], res["seconds"]))
    print(text)
    print("figures in %s" % os.path.relpath(args.out, ROOT))
    if args.frozen_only:  # a figure that is missing says why; only a run that went wrong fails
        return 0 if all(res["heap"][m].get("smallest_k") or "missing" in res["heap"][m] for m in FROZEN) else 1
    ok = res["heap"]["mpy"].get("smallest_k") and res["heap"]["default"].get("passed") and "latency" in res
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
