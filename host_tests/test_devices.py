"""Hardware ports on the MicroPython unix port against real peers.

- contactor / plug / Linux GPIO on real files (a tmp dir laid out like
  /sys/class/gpio, with a small "kernel" thread that answers export, and a
  "contactor" thread that moves the auxiliary contact when the coil file changes)
- the PN532 driver against a CPython PN532 simulator speaking the frames of the
  PN532 user manual (UM0701-02 §6.2) on a pty
- the modem against a CPython AT-command simulator on a pty
- the watchdog feeding a FIFO like the Linux /dev/watchdog

Every driver runs in a `micropython` subprocess (host_tests/mp/dev_*.py) with a
1 ms ticker task; the longest stall of that ticker is the longest time the
event loop was blocked (printed with -s).
"""
import json
import os
import select
import termios
import threading
import time
import tty

import pytest

import subprocess

from conftest import MICROPYTHON, ROOT, mp_env, run_mp

MP = ROOT / "host_tests" / "mp"
STALLS = {}


def result(out):
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError("no RESULT line in:\n" + out)


def logged(out, text):
    return [l for l in out.splitlines() if text in l]


def stall(name, r):
    STALLS[name] = r["stall_ms"]
    print("%s: longest event-loop stall %d ms (uart: %s)" % (name, r["stall_ms"], r["uart"]))


# ---- ptys ------------------------------------------------------------------

class Pty:
    """A raw pty pair: the driver opens `path`, a simulator uses `fd`."""

    def __init__(self):
        self.fd, self.sfd = os.openpty()
        tty.setraw(self.fd)
        tty.setraw(self.sfd)
        self.path = os.ttyname(self.sfd)

    def close(self):
        for fd in (self.fd, self.sfd):
            try:
                os.close(fd)
            except OSError:
                pass


class Peer(threading.Thread):
    """A simulated device on the master side of a pty."""

    def __init__(self, fd):
        super().__init__(daemon=True)
        self.fd = fd
        self.halt = threading.Event()
        self.rx = bytearray()

    def send(self, data):
        os.write(self.fd, data)

    def run(self):
        termios.tcflush(self.fd, termios.TCIFLUSH)  # a device powering up hears nothing old
        while not self.halt.is_set():
            r, _, _ = select.select([self.fd], [], [], 0.02)
            if not r:
                continue
            try:
                data = os.read(self.fd, 512)
            except OSError:
                return
            self.rx += data
            self.feed()

    def stop(self):
        self.halt.set()
        self.join(2)


# ---- a PN532 simulator -------------------------------------------------------

ACK = b"\x00\x00\xff\x00\xff\x00"


def pn532_frame(payload, corrupt=False):
    # 00 00 FF LEN LCS TFI PD.. DCS 00 (UM0701-02 §6.2.1.1)
    ln = len(payload)
    dcs = (-sum(payload)) & 0xFF
    if corrupt:
        dcs ^= 0x5A
    return bytes([0, 0, 0xFF, ln, (-ln) & 0xFF]) + bytes(payload) + bytes([dcs, 0])


class PN532Sim(Peer):
    """Answers real PN532 frames. `cards`: what each InListPassiveTarget finds
    (a UID hex string or None), the last entry repeating. Like the chip it
    sleeps until an HSU wake-up (0x55) and wants SAMConfiguration first; it
    never answers InListPassiveTarget without a card while the passive
    activation retries are infinite (the power-on default)."""

    def __init__(self, fd, cards, corrupt=None, noise=False):
        super().__init__(fd)
        self.cards = list(cards)
        self.corrupt = corrupt  # None, "once" or "always"
        self.noise = noise
        self.awake = False
        self.configured = False
        self.retries = 0xFF
        self.lists = 0
        self.nacks = 0
        self.aborts = 0
        self.commands = []
        self.last = None
        self.corrupted = False

    def answer(self, payload, corruptible=False):
        bad = corruptible and (self.corrupt == "always" or (self.corrupt == "once" and not self.corrupted))
        self.corrupted |= bad
        self.last = payload, corruptible
        junk = b"\x13\x00\xff\x05\x07\xaa\xff" if self.noise else b""  # noise with a false start code
        self.send(junk + pn532_frame(payload, bad))

    def feed(self):
        buf = self.rx
        while True:
            if not self.awake and 0x55 in buf:
                self.awake = True
            i = buf.find(b"\x00\xff")
            if i < 0:
                del buf[:-1]
                return
            if len(buf) < i + 4:
                return
            ln, lcs = buf[i + 2], buf[i + 3]
            if ln == 0 and lcs == 0xFF:  # ACK from the host: abort
                del buf[:i + 4]
                self.aborts += 1
                continue
            if ln == 0xFF and lcs == 0:  # NACK: send the last answer again
                del buf[:i + 4]
                self.nacks += 1
                if self.last:
                    self.answer(*self.last)
                continue
            if (ln + lcs) & 0xFF:
                del buf[:i + 2]
                continue
            if len(buf) < i + 5 + ln:
                return
            body = bytes(buf[i + 4:i + 4 + ln])
            dcs = buf[i + 4 + ln]
            if (sum(body) + dcs) & 0xFF or body[0] != 0xD4:
                del buf[:i + 2]
                continue
            del buf[:i + 5 + ln]
            if self.awake:
                self.command(body[1], body[2:])

    def command(self, cmd, params):
        if not self.configured and cmd != 0x14:
            return  # low-power mode: only SAMConfiguration wakes the firmware up
        self.commands.append(cmd)
        self.send(ACK)
        if cmd == 0x14:  # SAMConfiguration
            assert params[:1] == b"\x01", params
            self.configured = True
            self.answer(b"\xd5\x15")
        elif cmd == 0x32:  # RFConfiguration
            if params[:1] == b"\x05":
                self.retries = params[3]
            self.answer(b"\xd5\x33")
        elif cmd == 0x02:  # GetFirmwareVersion: PN532 v1.6
            self.answer(b"\xd5\x03\x32\x01\x06\x07")
        elif cmd == 0x4A:  # InListPassiveTarget
            assert params == b"\x01\x00", params
            uid = self.cards[min(self.lists, len(self.cards) - 1)]
            self.lists += 1
            if uid is None:
                if self.retries == 0xFF:
                    return  # waits for a card for ever
                self.answer(b"\xd5\x4b\x00")
                return
            u = bytes.fromhex(uid)
            sens = b"\x00\x04" if len(u) == 4 else b"\x00\x44"
            sel = b"\x08" if len(u) == 4 else b"\x00"
            self.answer(b"\xd5\x4b\x01\x01" + sens + sel + bytes([len(u)]) + u, corruptible=True)
        else:
            self.send(pn532_frame(b"\x7f"))  # application-level error frame


def run_pn532(sim_args, polls, gap=20, retry_ms=10000, start_after=None, timeout=30):
    pty = Pty()
    sim = PN532Sim(pty.fd, **sim_args) if sim_args is not None else None
    timer = None
    if sim and start_after is None:
        sim.start()
    elif sim:
        timer = threading.Timer(start_after, sim.start)
        timer.start()
    try:
        out = run_mp(MP / "dev_pn532.py", pty.path, str(polls), str(gap), str(retry_ms), timeout=timeout)
    finally:
        if timer:
            timer.cancel()
        if sim and sim.is_alive():
            sim.stop()
        pty.close()
    return result(out), out, sim


A = "04A1B2C3D4E5F6"  # 7-byte UID
B = "DEADBEEF"  # 4-byte UID


def test_pn532_card_once_per_presentation():
    cards = [None, A, A, A, A, None, None, A, A, B, B, None]
    r, out, sim = run_pn532({"cards": cards}, len(cards))
    assert r["tags"] == [None, A, None, None, None, None, None, A, None, B, None, None]
    assert r["firmware"] == "1.6"
    assert sim.retries != 0xFF  # the driver limited the passive activation retries
    assert sim.commands[:3] == [0x14, 0x32, 0x02]  # SAMConfiguration first
    assert logged(out, "PN532 card reader ready (firmware 1.6)")
    stall("pn532 cards", r)
    assert r["stall_ms"] < 50


def test_pn532_glitch_is_not_a_removal():
    # one "no card" answer while the card stays put does not make it new again
    cards = [A, None, A, A, None, None, A]
    r, out, sim = run_pn532({"cards": cards}, len(cards))
    assert r["tags"] == [A, None, None, None, None, None, A]


def test_pn532_corrupt_answer_is_asked_again():
    r, out, sim = run_pn532({"cards": [None, A], "corrupt": "once", "noise": True}, 4)
    assert r["tags"] == [None, A, None, None]
    assert sim.nacks == 1


def test_pn532_corrupt_answers_never_give_a_uid():
    r, out, sim = run_pn532({"cards": [A], "corrupt": "always", "noise": True}, 4)
    assert r["tags"] == [None] * 4
    assert sim.nacks >= 4
    assert not [l for l in out.splitlines() if "Traceback" in l]


def test_pn532_silent_reader_warns_once_then_recovers():
    # nobody on the line for 1.2 s (the reader is retried every 300 ms), then
    # the reader powers up with a card on it
    r, out, sim = run_pn532({"cards": [A]}, 40, gap=50, retry_ms=300, start_after=1.2)
    tags = r["tags"]
    assert tags[:10] == [None] * 10
    assert [t for t in tags if t] == [A]
    assert len(logged(out, "no answer from the PN532 card reader")) == 1
    assert logged(out, "PN532 card reader answers again")
    stall("pn532 silent", r)
    assert r["stall_ms"] < 50
    assert r["slowest_poll_ms"] < 1000


def test_pn532_absent_reader_never_blocks():
    r, out, sim = run_pn532(None, 30, gap=20, retry_ms=200)
    assert r["tags"] == [None] * 30
    assert len(logged(out, "WARN")) == 1
    stall("pn532 absent", r)
    assert r["stall_ms"] < 50


# ---- an AT-command modem simulator --------------------------------------------

PROFILES = {
    # u-blox style: +CCID, URCs on the line, echo on until ATE0
    "ublox": {"boot": ["RDY", "+CPIN: READY"],
              "AT+CCID": ["+CPIN: READY", "+CCID: 89441000301234567890", "OK"],
              "AT+CIMI": ["234107654321098", "OK"]},
    # Quectel: AT+CCID unknown, AT+QCCID answers (ICCID ending in F)
    "quectel": {"AT+CCID": ["ERROR"], "AT+QCCID": ["+QCCID: 8986031874020342635F", "OK"],
                "AT+CIMI": ["460001234567890", "OK"]},
    # echo that ATE0 does not switch off, AT+ICCID with a quoted, too long value
    "echo": {"keep_echo": True, "AT+CCID": ["+CME ERROR: 4"], "AT+QCCID": ["ERROR"],
             "AT+ICCID": ['+ICCID: "8901260012345678901234"', "OK"], "AT+CIMI": ["+CIMI: 310260123456789", "OK"]},
    # no SIM card
    "nosim": {"AT+CCID": ["+CME ERROR: 10"], "AT+QCCID": ["ERROR"], "AT+ICCID": ["ERROR"],
              "AT+CIMI": ["+CME ERROR: 10"]},
}


class ModemSim(Peer):
    def __init__(self, fd, profile):
        super().__init__(fd)
        self.p = PROFILES[profile]
        self.echo = True
        self.seen = []

    def run(self):
        for line in self.p.get("boot", []):
            self.send(b"\r\n" + line.encode() + b"\r\n")
        super().run()

    def feed(self):
        while b"\r" in self.rx:
            i = self.rx.index(b"\r")
            line = bytes(self.rx[:i]).strip(b"\n").decode()
            del self.rx[:i + 1]
            if self.echo:
                self.send(line.encode() + b"\r")
            if not line:
                continue
            self.seen.append(line)
            if line == "AT":
                answer = ["OK"]
            elif line == "ATE0":
                self.echo = self.p.get("keep_echo", False)
                answer = ["OK"]
            else:
                answer = self.p.get(line, ["ERROR"])
            self.send(b"".join(b"\r\n" + a.encode() + b"\r\n" for a in answer))


def run_modem(profile):
    pty = Pty()
    sim = ModemSim(pty.fd, profile) if profile else None
    if sim:
        sim.start()
    try:
        out = run_mp(MP / "dev_modem.py", pty.path, timeout=30)
    finally:
        if sim:
            sim.stop()
        pty.close()
    return result(out), out, sim


@pytest.mark.parametrize("profile,ident", [
    ("ublox", {"iccid": "89441000301234567890", "imsi": "234107654321098"}),
    ("quectel", {"iccid": "8986031874020342635F", "imsi": "460001234567890"}),
    ("echo", {"iccid": "89012600123456789012", "imsi": "310260123456789"}),
    ("nosim", {}),
])
def test_modem_identify(profile, ident):
    r, out, sim = run_modem(profile)
    assert r["ident"] == ident
    assert sim.seen[:2] == ["AT", "ATE0"]
    if not ident:
        assert logged(out, "is a SIM card inserted?")
    stall("modem " + profile, r)
    assert r["stall_ms"] < 50


def test_modem_silent_returns_empty_in_bounded_time():
    r, out, _ = run_modem(None)
    assert r["ident"] == {}
    assert r["ms"] < 2500
    assert len(logged(out, "no answer from the modem")) == 1
    stall("modem silent", r)
    assert r["stall_ms"] < 50


# ---- watchdog -----------------------------------------------------------------

def read_fifo(path, stop):
    """Reads the FIFO like the kernel driver would see the writes: (time, byte)."""
    got = []
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def pump():
        while not stop.is_set():
            r, _, _ = select.select([fd], [], [], 0.01)
            if r:
                data = os.read(fd, 64)
                t = time.monotonic()
                got.extend((t, b) for b in data)
        os.close(fd)

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    return got, th


def test_watchdog_device_hung_loop_stops_feeding(tmp_path):
    fifo = str(tmp_path / "watchdog")
    os.mkfifo(fifo)
    stop = threading.Event()
    got, th = read_fifo(fifo, stop)
    try:
        out = run_mp(MP / "dev_watchdog.py", "device", fifo, timeout=20)
        time.sleep(0.1)
    finally:
        stop.set()
        th.join(2)
    assert result(out)["kind"] == "device"
    data = bytes(b for _, b in got)
    assert data.endswith(b"V") and data.count(b"V") == 1  # magic close only on stop()
    feeds = [t for t, b in got if b != ord("V")]
    gaps = [b - a for a, b in zip(feeds, feeds[1:])]
    assert len(feeds) >= 10
    assert max(gaps) >= 0.6  # the loop hung 700 ms: no feeding meanwhile
    assert sorted(gaps)[len(gaps) // 2] < 0.1  # fed every ~50 ms otherwise


def test_watchdog_crash_leaves_it_armed(tmp_path):
    fifo = str(tmp_path / "watchdog")
    os.mkfifo(fifo)
    stop = threading.Event()
    got, th = read_fifo(fifo, stop)
    p = subprocess.run([MICROPYTHON, str(MP / "dev_watchdog.py"), "crash", fifo], cwd=ROOT, env=mp_env(),
                       capture_output=True, text=True, timeout=20)
    time.sleep(0.1)
    stop.set()
    th.join(2)
    assert p.returncode != 0 and "firmware crashed" in p.stderr + p.stdout
    data = bytes(b for _, b in got)
    assert len(data) >= 2 and b"V" not in data


def test_watchdog_simulator_and_machine_wdt():
    r = result(run_mp(MP / "dev_watchdog.py", "none"))
    assert r["kind"] == "none"
    r = result(run_mp(MP / "dev_watchdog.py", "machine"))
    assert r["kind"] == "machine" and r["timeouts"] == [5000] and r["fed"] >= 3


# ---- Linux GPIO, contactor, plug on files ----------------------------------------

class FakeKernel(threading.Thread):
    """Answers writes to <root>/export like the GPIO sysfs class: gpioN appears
    (after a short delay) with direction "in" and value "0". Lines in `absent`
    do not exist."""

    def __init__(self, root, absent=()):
        super().__init__(daemon=True)
        self.root = root
        self.absent = set(absent)
        self.halt = threading.Event()
        self.exported = []
        (root / "export").write_text("")

    def run(self):
        while not self.halt.is_set():
            text = (self.root / "export").read_text().strip()
            if text:
                (self.root / "export").write_text("")
                n = int(text)
                self.exported.append(n)
                if n not in self.absent:
                    time.sleep(0.03)
                    d = self.root / ("gpio%d" % n)
                    d.mkdir()
                    (d / "direction").write_text("in\n")
                    (d / "value").write_text("0\n")
            time.sleep(0.005)

    def stop(self):
        self.halt.set()
        self.join(2)


def test_linux_gpio_sysfs_layout(tmp_path):
    root = tmp_path / "gpio"
    root.mkdir()
    for n in (5, 6):
        (root / ("gpio%d" % n)).mkdir()
        (root / ("gpio%d" % n) / "direction").write_text("in\n")
        (root / ("gpio%d" % n) / "value").write_text("0\n")
    (root / "relay1").write_text("0\n")
    kernel = FakeKernel(root, absent=[99])
    kernel.start()
    try:
        r = result(run_mp(MP / "dev_gpio.py", "sysfs", str(root)))
    finally:
        kernel.stop()
    assert kernel.exported == [17, 18, 99]  # 5 and 6 were exported already
    assert (root / "gpio17" / "direction").read_text() == "low"  # out, starting low
    assert r["p17_first"] == 0 and r["p17_after"] == 1
    assert (root / "gpio17" / "value").read_text().startswith("1")
    assert (root / "gpio18" / "direction").read_text() == "high"  # active low: off = high
    assert (root / "gpio18" / "value").read_text().startswith("0")
    assert r["p5"] == [0, 1, 0] and r["input_write"] == "refused"
    assert (root / "gpio6" / "direction").read_text() == "out"
    assert r["relay"] == 1 and (root / "relay1").read_text().startswith("1")
    assert "did not appear after export" in r["p99"] and 900 <= r["p99_ms"] < 3000
    assert "cannot open" in r["missing"]


class FakeContactor(threading.Thread):
    """The contactor itself: its auxiliary contact (fb file) follows the coil
    file after 30 ms, unless it is welded (stays closed once closed) or does
    not close (coil supply missing)."""

    def __init__(self, coil, fb, active, fb_active, fault=None):
        super().__init__(daemon=True)
        self.coil, self.fb, self.active, self.fb_active, self.fault = coil, fb, active, fb_active, fault
        self.halt = threading.Event()
        self.closed = False

    def run(self):
        while not self.halt.is_set():
            on = self.coil.read_text()[:1] == str(self.active)
            want = on
            if self.fault == "welded" and self.closed:
                want = True
            if self.fault == "stuck open":
                want = False
            if want != self.closed:
                time.sleep(0.03)
                self.closed = want
                self.fb.write_text(str(self.fb_active if want else 1 - self.fb_active))
            time.sleep(0.003)

    def stop(self):
        self.halt.set()
        self.join(2)


@pytest.mark.parametrize("fault,active,fb_active,use_sysfs", [
    (None, 1, 1, True),
    ("welded", 0, 0, False),
    ("stuck open", 1, 0, True),
])
def test_contactor_feedback(tmp_path, fault, active, fb_active, use_sysfs):
    if use_sysfs:
        root = tmp_path / "gpio"
        for n in (20, 21):
            d = root / ("gpio%d" % n)
            d.mkdir(parents=True)
            (d / "direction").write_text("in\n")
        coil, fb = root / "gpio20" / "value", root / "gpio21" / "value"
        args = ["20", "21"]
    else:
        coil, fb = tmp_path / "coil", tmp_path / "fb"
        args = [str(coil), str(fb)]
    coil.write_text(str(1 - active))
    fb.write_text(str(1 - fb_active))
    hw = FakeContactor(coil, fb, active, fb_active, fault)
    hw.start()
    env_root = str(tmp_path / "gpio")
    try:
        cmd = [MICROPYTHON, str(MP / "dev_gpio.py"), "contactor"] + args + [str(active), str(fb_active)]
        p = subprocess.run(cmd, cwd=ROOT, env=dict(mp_env(), GPIO_ROOT=env_root), capture_output=True,
                           text=True, timeout=20)
        assert p.returncode == 0, p.stdout + p.stderr
        out = p.stdout
    finally:
        hw.stop()
    steps = {s[0]: s[1:] for s in result(out)["steps"]}  # name: [commanded closed, feedback, ok]
    assert steps["start"] == [False, False, True]
    assert steps["closing"][2] is True  # settling: no verdict yet
    assert steps["opening"][2] is True
    if fault is None:
        assert steps["closed"] == [True, True, True] and steps["open"] == [False, False, True]
        assert not logged(out, "ERROR")
    elif fault == "welded":
        assert steps["closed"] == [True, True, True]
        assert steps["open"] == [False, True, False] and steps["open again"] == [False, True, False]
        assert len(logged(out, "WELDED")) == 1
    else:
        assert steps["closed"] == [True, False, False] and steps["closed again"] == [True, False, False]
        assert steps["open"] == [False, False, True]  # agrees again once opened
        assert len(logged(out, "DOES NOT CLOSE")) == 1
        assert logged(out, "agrees with the command again")


def test_plug_debounce(tmp_path):
    r = result(run_mp(MP / "dev_gpio.py", "plug", str(tmp_path / "plug")))
    seen = dict((label, v) for label, v in r["seen"])
    assert [v for label, v in r["seen"] if label.startswith("bounce")] == [False] * 6
    assert seen["idle"] is False
    assert seen["settled low"] is True and 50 <= r["plug_delay_ms"] < 100
    assert seen["glitch"] is True and seen["after glitch"] is True
    assert seen["unplugged"] is False


def test_board_uart_parity_and_stop_bits_reach_the_tty():
    # An ABB B23 talks 8E1 by default: the board file's parity and stop bits
    # must reach the tty. (A pty keeps the stop bits but drops parity.)
    p = Pty()
    try:
        out = run_mp("-c", "from hw import build\nimport termios\n"
                     "ctx = build.Context({'uarts': {'m': {'path': %r, 'baudrate': 19200, 'parity': 'E', 'stop': 2}}}, None)\n"
                     "u = ctx.uart('m')\nprint(u._setting[2])\nprint(termios.tcgetattr(u._f.fileno())[2] & 0o100)"
                     % p.path)
    finally:
        p.close()
    assert "19200 Bd, parity 'E', 2 stop bit(s)" in out and out.split()[-1] == "64", out


def test_build_ports_from_board_spec(tmp_path):
    (tmp_path / "coil").write_text("1")
    (tmp_path / "fb").write_text("0")
    (tmp_path / "plug").write_text("0")
    (tmp_path / "watchdog").write_text("")
    hw = FakeContactor(tmp_path / "coil", tmp_path / "fb", 1, 1)
    rp, mp_ = Pty(), Pty()
    sims = [PN532Sim(rp.fd, [B]), ModemSim(mp_.fd, "quectel"), hw]
    for s in sims:
        s.start()
    try:
        r = result(run_mp(MP / "dev_build.py", str(tmp_path), rp.path, mp_.path, timeout=30))
    finally:
        for s in sims:
            s.stop()
        rp.close()
        mp_.close()
    assert r["coil_at_start"] == "0" and r["coil_closed"] == "1"
    assert r["contactor_ok"] is True
    assert r["plugged"] is True
    assert r["tag"] == B
    assert r["modem"] == {"iccid": "8986031874020342635F", "imsi": "460001234567890"}
    assert r["watchdog"] == "device" and (tmp_path / "watchdog").read_text() == "1V"
    assert r["none"] == [None, None, None, None]
    assert len(r["errors"]) == 2 and "acr122" in r["errors"][0]
    assert r["uart"] == ("Tty" if os.getenv("DEV_TTY") == "own" else "Serial")
