"""UpdateFirmware (§5.19, FirmwareStatusNotification §4.5) and GetDiagnostics (§5.9,
DiagnosticsStatusNotification §4.4) end to end: the firmware on the unix port under
tools/unix_loop.sh, the ocpp-library dev CSMS, and real servers on loopback (a
threaded http.server, pyftpdlib). The update file is what `make bundle` builds."""
import http.server
import logging
import re
import subprocess
import threading
import time
import warnings

import pytest
from ocpp.v16 import call

from conftest import ROOT, free_port
import scenario

with warnings.catch_warnings():  # pyftpdlib 2.2 imports asyncore and asynchat (deprecated in 3.11)
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

NEW = "2.0.0-maint"
OLD = "0.1.0"  # firmware/version.py


# ---- servers -------------------------------------------------------------------------

class Files(http.server.BaseHTTPRequestHandler):
    """GET /<name> serves files[name]; /fail<n>/<name> answers 503 the first n times;
    PUT and POST /up/<name> store the body in uploads (a 500 for /broken/...)."""
    protocol_version = "HTTP/1.1"
    files = {}
    uploads = {}
    gets = []  # (time, path, status)
    failures = {}

    def log_message(self, *a):
        pass

    def _send(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.split("/")
        name = parts[-1]
        if parts[1].startswith("fail"):
            left = self.failures.setdefault(self.path, int(parts[1][4:]))
            if left:
                self.failures[self.path] = left - 1
                self.gets.append((time.time(), self.path, 503))
                return self._send(503, b"busy")
        if name not in self.files:
            self.gets.append((time.time(), self.path, 404))
            return self._send(404)
        self.gets.append((time.time(), self.path, 200))
        self._send(200, self.files[name])

    def do_PUT(self):
        n = int(self.headers["Content-Length"])
        body = self.rfile.read(n)
        if self.path.startswith("/broken/"):
            return self._send(500, b"disk full")
        self.uploads[self.path.split("/")[-1]] = body
        self._send(201)

    do_POST = do_PUT


@pytest.fixture
def web():
    Files.files, Files.uploads, Files.gets, Files.failures = {}, {}, [], {}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()


@pytest.fixture
def ftp_server(tmp_path):
    root = tmp_path / "ftp"
    root.mkdir()
    (root / "diag").mkdir()
    auth = DummyAuthorizer()
    auth.add_user("cp", "secret", str(root), perm="elradfmw")
    handler = type("H", (FTPHandler,), {"authorizer": auth, "passive_ports": None})
    logging.getLogger("pyftpdlib").setLevel(logging.ERROR)
    srv = FTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, kwargs={"timeout": 0.2}, daemon=True).start()
    yield root, "ftp://cp:secret@127.0.0.1:%d" % srv.address[1]
    srv.close_all()


@pytest.fixture(scope="module")
def new_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "new.bin"
    p = subprocess.run(["make", "-s", "bundle", "VERSION=" + NEW, "OUT=" + str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return out.read_bytes()


# ---- helpers -------------------------------------------------------------------------

def fw_statuses(csms):
    return [p["status"] for _, _, p in csms.calls("FirmwareStatusNotification")]


def diag_statuses(csms):
    return [p["status"] for _, _, p in csms.calls("DiagnosticsStatusNotification")]


def boot_versions(csms):
    return [p["firmwareVersion"] for _, _, p in csms.calls("BootNotification")]


def wait(predicate, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = predicate()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def update(csms, location, retrieve=0, retries=None, interval=None):
    kw = {}
    if retries is not None:
        kw["retries"] = retries
    if interval is not None:
        kw["retry_interval"] = interval
    return csms.run_call("CP001", call.UpdateFirmware(location=location, retrieve_date=scenario.iso(retrieve), **kw))


def booted(fw, csms):
    fw.start()
    fw.wait_line(r"accepted this charge point")
    wait(lambda: csms.calls("StatusNotification"), 10, "boot statuses")


def charge(fw, csms, tag="CARD42"):
    # a short session on whatever application runs now
    fw.send("plug 1")
    fw.send("card 1 " + tag)
    tx = wait(lambda: [p for _, _, p in csms.calls("StartTransaction") if p["idTag"] == tag], 10, "StartTransaction")
    fw.send("card 1 " + tag)
    wait(lambda: [p for _, _, p in csms.calls("StopTransaction")], 10, "StopTransaction")
    fw.send("unplug 1")
    return tx


# ---- UpdateFirmware ------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["http", "ftp"])
def test_update_end_to_end(csms, firmware_factory, web, ftp_server, new_bundle, scheme):
    root, ftp_url = ftp_server
    Files.files["new.bin"] = new_bundle
    (root / "new.bin").write_bytes(new_bundle)
    location = web + "/new.bin" if scheme == "http" else ftp_url + "/new.bin"
    fw = firmware_factory(csms)
    booted(fw, csms)
    fw.send("set MeterValueSampleInterval 17")
    fw.wait_line(r"set MeterValueSampleInterval: Accepted")
    update(csms, location)  # its confirmation is empty (the ocpp library checks it against the schema)
    wait(lambda: "Installed" in fw_statuses(csms), 60, "Installed")
    assert fw_statuses(csms) == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert boot_versions(csms) == [OLD, NEW]
    # the Installed notification comes after the new version's BootNotification
    order = [a for _, a, _ in csms.calls() if a in ("BootNotification", "FirmwareStatusNotification")]
    assert order[-2:] == ["BootNotification", "FirmwareStatusNotification"], order
    conf = csms.run_call("CP001", call.GetConfiguration(key=["MeterValueSampleInterval"]))
    assert conf.configuration_key[0]["value"] == "17"  # stored configuration untouched
    charge(fw, csms)
    assert csms.violations == []


def test_the_last_statuses_reach_a_slow_csms_before_the_restart(csms, firmware_factory, web, new_bundle):
    # Found by the soak: the statuses wait in RAM behind any CALL still waiting for its answer,
    # and the restart into the new version came after a fixed 2 s: a slow CSMS never heard
    # Downloaded or Installing. Now the restart waits for them (2 x MessageTimeout at most).
    Files.files["new.bin"] = new_bundle
    fw = firmware_factory(csms)
    booted(fw, csms)
    csms.delay["FirmwareStatusNotification"] = 2.5  # each status answered late
    update(csms, web + "/new.bin")
    wait(lambda: "Installed" in fw_statuses(csms), 60, "Installed")
    assert fw_statuses(csms) == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert boot_versions(csms) == [OLD, NEW]
    assert csms.violations == []


def test_truncated_or_damaged_file_fails_and_the_old_version_keeps_running(csms, firmware_factory, web, new_bundle):
    flipped = bytearray(new_bundle)
    flipped[len(flipped) // 2] ^= 1
    Files.files["cut.bin"] = new_bundle[:-100]
    Files.files["flip.bin"] = bytes(flipped)
    fw = firmware_factory(csms)
    booted(fw, csms)
    for name in ("cut.bin", "flip.bin"):
        before = len(fw_statuses(csms))
        update(csms, web + "/" + name, retries=0)
        wait(lambda: "DownloadFailed" in fw_statuses(csms)[before:], 20, "DownloadFailed for " + name)
        assert fw_statuses(csms)[before:] == ["Downloading", "DownloadFailed"]
    failed = [line for line in fw.lines if "attempt 1 of 1 failed" in line]
    assert "truncated" in failed[0] and "SHA-256" in failed[1], failed
    csms.run_call("CP001", call.Reset(type="Soft"))
    wait(lambda: len(boot_versions(csms)) == 2, 30, "the boot after the Reset")
    assert boot_versions(csms) == [OLD, OLD]
    assert csms.violations == []


def test_retry_after_503_waits_retry_interval(csms, firmware_factory, web, new_bundle):
    Files.files["new.bin"] = new_bundle
    fw = firmware_factory(csms)
    booted(fw, csms)
    update(csms, web + "/fail1/new.bin", retries=2, interval=3)
    wait(lambda: "Installed" in fw_statuses(csms), 60, "Installed")
    got = [(t, s) for t, p, s in Files.gets if p == "/fail1/new.bin"]
    assert [s for _, s in got] == [503, 200], got
    assert got[1][0] - got[0][0] >= 3, got  # the retry came after retryInterval
    assert fw_statuses(csms) == ["Downloading", "Downloading", "Downloaded", "Installing", "Installed"]
    assert boot_versions(csms) == [OLD, NEW]


def test_retrieve_date_is_kept_across_a_restart(csms, firmware_factory, web, new_bundle):
    Files.files["new.bin"] = new_bundle
    fw = firmware_factory(csms)
    booted(fw, csms)
    asked = time.time()
    update(csms, web + "/new.bin", retrieve=12)
    fw.wait_line(r"downloading http://127.0.0.1:\d+/new.bin at ")
    csms.run_call("CP001", call.Reset(type="Soft"))  # a restart before retrieveDate
    fw.wait_line(r"firmware update from http://127.0.0.1:\d+/new.bin still to do")
    wait(lambda: Files.gets, 40, "the download")
    assert Files.gets[0][0] >= asked + 11, (Files.gets, asked)  # nothing before retrieveDate
    wait(lambda: "Installed" in fw_statuses(csms), 60, "Installed")
    assert boot_versions(csms) == [OLD, OLD, NEW]


def test_install_waits_for_the_running_transaction(csms, firmware_factory, web, new_bundle):
    Files.files["new.bin"] = new_bundle
    fw = firmware_factory(csms)
    booted(fw, csms)
    fw.send("plug 1")
    fw.send("card 1 CARD7")
    wait(lambda: csms.calls("StartTransaction"), 10, "StartTransaction")
    update(csms, web + "/new.bin")
    fw.wait_line(r"installed once the running transactions end", timeout=30)
    time.sleep(2)
    assert fw_statuses(csms) == ["Downloading", "Downloaded"]  # no install while it charges
    fw.send("card 1 CARD7")
    wait(lambda: "Installed" in fw_statuses(csms), 60, "Installed")
    stop = [p for _, _, p in csms.calls("StopTransaction")]
    assert stop and stop[0]["reason"] == "Local", stop  # ended by its card, not by the update
    assert boot_versions(csms) == [OLD, NEW]


def test_an_application_that_fails_at_import_is_rolled_back(csms, firmware_factory, web, tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    import bundle
    src = tmp_path / "app_src.py"
    src.write_text("raise ImportError('this build is broken')\n")
    Files.files["bad.bin"] = bundle.pack(bundle.APP, "6.6.6-bad", [("app.mpy", bundle.compile_mpy(
        src, "app.py", "x64", tmp_path))])
    fw = firmware_factory(csms)
    booted(fw, csms)
    update(csms, web + "/bad.bin")
    wait(lambda: "InstallationFailed" in fw_statuses(csms), 60, "InstallationFailed")
    assert fw_statuses(csms) == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert boot_versions(csms)[0] == OLD and boot_versions(csms)[-1] == OLD
    charge(fw, csms)


# ---- GetDiagnostics ------------------------------------------------------------------

def _diagnostics(csms, location, **kw):
    return csms.run_call("CP001", call.GetDiagnostics(location=location, **kw))


@pytest.mark.parametrize("scheme", ["http", "ftp"])
def test_diagnostics_upload(csms, firmware_factory, web, ftp_server, scheme):
    root, ftp_url = ftp_server
    location = web + "/up/" if scheme == "http" else ftp_url + "/diag/"
    fw = firmware_factory(csms)
    booted(fw, csms)
    charge(fw, csms)
    answer = _diagnostics(csms, location)
    assert answer.file_name and answer.file_name.startswith("CP001-") and answer.file_name.endswith(".log")
    wait(lambda: "Uploaded" in diag_statuses(csms), 30, "Uploaded")
    assert diag_statuses(csms) == ["Uploading", "Uploaded"]
    body = Files.uploads[answer.file_name] if scheme == "http" else (root / "diag" / answer.file_name).read_bytes()
    text = body.decode()
    assert "accepted this charge point" in text and "StartTransaction" in text, text[-2000:]
    stamps = re.findall(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) ", text, re.M)
    assert stamps and stamps == sorted(stamps)

    # a window: only the lines stamped inside it
    t1 = scenario.iso(-1)
    fw.send("plug 2")
    time.sleep(1.5)
    answer = _diagnostics(csms, location, start_time=scenario.iso(-1), stop_time=scenario.iso(0))
    wait(lambda: diag_statuses(csms).count("Uploaded") == 2, 30, "the second Uploaded")
    body = Files.uploads[answer.file_name] if scheme == "http" else (root / "diag" / answer.file_name).read_bytes()
    inside = re.findall(r"^(\S+) ", body.decode(), re.M)
    assert inside and all(t1 <= s <= scenario.iso(1) for s in inside if s[0].isdigit()), inside


@pytest.mark.parametrize("how", ["login", "http500", "closed"])
def test_diagnostics_upload_failures_do_not_disturb_charging(csms, firmware_factory, web, ftp_server, how):
    _, ftp_url = ftp_server
    location = {"login": ftp_url.replace("secret", "wrong") + "/diag/", "http500": web + "/broken/",
                "closed": "http://127.0.0.1:%d/up/" % free_port()}[how]
    fw = firmware_factory(csms)
    booted(fw, csms)
    fw.send("plug 1")
    fw.send("card 1 CARD9")
    wait(lambda: csms.calls("StartTransaction"), 10, "StartTransaction")
    t = time.time()
    _diagnostics(csms, location, retries=1, retry_interval=2)
    wait(lambda: "UploadFailed" in diag_statuses(csms), 30, "UploadFailed")
    assert time.time() - t >= 2
    assert diag_statuses(csms) == ["Uploading", "Uploading", "UploadFailed"]
    trig = csms.run_call("CP001", call.TriggerMessage(requested_message="DiagnosticsStatusNotification"))
    assert trig.status == "Accepted"
    wait(lambda: diag_statuses(csms)[-1:] == ["Idle"], 10, "Idle after the failure")
    fw.send("card 1 CARD9")
    wait(lambda: csms.calls("StopTransaction"), 10, "StopTransaction")
    assert not fw.crashed() and csms.violations == []
