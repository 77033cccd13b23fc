"""Shared fixtures: the firmware on the MicroPython unix port, and the dev CSMS
(`csms`: OCPP 1.6 and 2.0.1, 1.6 preferred; `csms201`: 2.0.1 only)."""
import os
import queue
import ssl
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from dev_csms import DevCSMS  # noqa: E402
import board_config  # noqa: E402

MICROPYTHON = str(Path(sys.executable).parent / "micropython")
MICROPYPATH = os.environ.get("FW_MICROPYPATH", "firmware:lib:.frozen")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then let go)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mp_env(micropypath=None, extra=None):
    env = dict(os.environ)
    env["MICROPYPATH"] = micropypath or MICROPYPATH
    env.update(extra or {})
    return env


def run_mp(script, *args, timeout=60, heapsize=None):
    """Run a MicroPython script on the unix port from the project root; return stdout."""
    cmd = [MICROPYTHON] + (["-X", "heapsize=" + heapsize] if heapsize else []) + [str(script)] + list(args)
    p = subprocess.run(cmd, cwd=ROOT, env=mp_env(), capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("micropython failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
    return p.stdout


class Firmware:
    """The firmware as a process: stdin takes simulator commands, stdout is its log.

    It runs under tools/unix_loop.sh, as `make sim` does: after an OCPP Reset the
    firmware exits with code 75 and comes back on the same stdin/stdout and data.

    ocpp: the station's OcppVersion, the OCPP versions it offers in the handshake,
    preferred first ("2.0.1", "2.0.1,1.6", "ocpp1.6,ocpp2.0.1", a tuple): a board default,
    in a copy of the board's board.json next to the data directory (<data>-board/), so a
    value stored later (console `set OcppVersion ...`, then a restart) wins over it, as
    on a real station. None: the board's own (1.6 unless the board says otherwise)."""

    def __init__(self, data_dir, csms_url, cp_id="CP001", board="boards/unix", extra=(), heapsize=None,
                 main="firmware/main.py", micropypath=None, frames=True, micropython=None, env=None, ocpp=None):
        # main, micropypath: to run compiled modules, give a main.py copy in a directory of its
        # own and micropypath=<.mpy dir>:.frozen (MicroPython puts the script's directory first
        # on sys.path, so firmware/main.py would import firmware/*.py whatever MICROPYPATH says).
        # micropython: another unix-port binary, e.g. one with the firmware frozen in
        # (tools/build_firmware.py; then micropypath=".frozen" and its main.py).
        self.data_dir = Path(data_dir)
        self.micropypath = micropypath
        if ocpp:
            self.ocpp = board_config.ocpp_versions(ocpp)
            board = str(board_config.derive(ROOT / board, self.data_dir.with_name(self.data_dir.name + "-board"),
                                            OcppVersion=self.ocpp))
        else:
            self.ocpp = None
        self.env = env  # extra environment variables, e.g. FLASH_UNIT (hw/unixflash.py)
        heapsize = heapsize or os.environ.get("FW_HEAPSIZE")
        self.cmd = [str(micropython or MICROPYTHON)] + (["-X", "heapsize=" + heapsize] if heapsize else []) + [
            str(main), "--board", board, "--data", str(data_dir),
            "--csms", csms_url, "--cp", cp_id] + (["--frames"] if frames else []) + list(extra)
        self.lines = []
        self.proc = None

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lines = []
        self._seen = 0
        self.proc = subprocess.Popen([str(ROOT / "tools" / "unix_loop.sh")] + self.cmd, cwd=ROOT, env=mp_env(self.micropypath, self.env),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, start_new_session=True)
        self._q = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if os.environ.get("FW_ECHO"):
                print("FW|", line.rstrip("\n"), flush=True)

    def send(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def wait_line(self, pattern, timeout=20):
        """Wait for a log line matching `pattern` (regex) printed after the last match."""
        rx = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            for i in range(self._seen, len(self.lines)):
                if rx.search(self.lines[i]):
                    self._seen = i + 1
                    return self.lines[i]
            if self.proc.poll() is not None and self._seen >= len(self.lines):
                break
            time.sleep(0.05)
        raise AssertionError("firmware never logged %r; last lines:\n%s" % (pattern, "\n".join(self.lines[-40:])))

    def crashed(self):
        return [l for l in self.lines if "Traceback" in l]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(5)
            except Exception:
                self.kill()
        return self.proc.returncode if self.proc else None

    def kill(self):
        # The wrapper and the firmware together, as a power cut would.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)


@pytest.fixture
def csms():
    """The dev CSMS, speaking OCPP 1.6 and 2.0.1 and choosing 1.6 when offered both."""
    c = DevCSMS(heartbeat_interval=300)
    c.start_in_thread()
    yield c
    c.stop_thread()


@pytest.fixture
def csms201():
    """The dev CSMS speaking OCPP 2.0.1 only: start the firmware with
    firmware_factory(csms201, ocpp="2.0.1") (or "2.0.1,1.6")."""
    c = DevCSMS(heartbeat_interval=300, protocols=("ocpp2.0.1",))
    c.start_in_thread()
    yield c
    c.stop_thread()


@pytest.fixture
def firmware_factory(tmp_path):
    started = []

    def make(csms_or_url, cp_id="CP001", data=None, **kw):
        url = csms_or_url if isinstance(csms_or_url, str) else "ws://127.0.0.1:%d" % csms_or_url.port
        fw = Firmware(data or tmp_path / cp_id, url, cp_id, **kw)
        started.append(fw)
        return fw

    yield make
    for fw in started:
        fw.stop()
        assert not fw.crashed(), "firmware printed a traceback:\n" + "\n".join(fw.lines[-60:])


# ---- certificates ------------------------------------------------------------------

def make_cert(d, name, subject, *ext, ca=None):
    """d/name.pem and d/name.key with the openssl CLI (the bench tools): an EC P-256
    certificate, self-signed or signed by d/ca.pem. The tests use the `pki` fixture."""
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-days", "2", "-keyout", d / (name + ".key"), "-out", d / (name + ".pem"), "-subj", subject]
    if ca:
        cmd += ["-CA", d / (ca + ".pem"), "-CAkey", d / (ca + ".key")]
    for e in ext:
        cmd += ["-addext", e]
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The test PKI (host_tests/testpki.py, made with `cryptography`): ca.pem/.key, ca2, server
    (localhost + IP 127.0.0.1), otherhost, ipsan, server2 (signed by ca2), client (CN=CP001),
    rsaca, expiredca, bundle.pem; a Path-like object (pki / "ca.pem"), with .certs and .keys."""
    import testpki
    return testpki.make(tmp_path_factory.mktemp("pki"))


def server_tls(pki, name="server", client_ca=None, max_version=None):
    """A TLS server context with pki/<name>.pem; client_ca: require a client certificate
    from that CA file; max_version: e.g. ssl.TLSVersion.TLSv1_1 (an outdated server)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if max_version:
        import warnings
        with warnings.catch_warnings():  # "TLSv1 is deprecated": that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = max_version
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 allows TLS 1.0/1.1 only so
    ctx.load_cert_chain(pki / (name + ".pem"), pki / (name + ".key"))
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki / client_ca)
    return ctx


