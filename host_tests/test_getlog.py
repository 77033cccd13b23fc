"""GetLog (security whitepaper N01) and ExtendedTriggerMessage (§5.5) end to end: the
firmware on the unix port, the ocpp-library dev CSMS (every frame checked against the
official schemas) and real servers on loopback (pyftpdlib, a threaded http.server, a TCP
server that never answers). The AuthorizationKey never reaches an uploaded log."""
import http.server
import logging
import re
import socket
import threading
import time
import warnings

import pytest
from ocpp.v16 import call

import scenario
from conftest import free_port

with warnings.catch_warnings():  # pyftpdlib 2.2 imports asyncore and asynchat (deprecated in 3.11)
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

KEY = "Sup3rSecretKey-0123456789"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


# ---- servers -------------------------------------------------------------------------

class Uploads(http.server.BaseHTTPRequestHandler):
    """PUT /up/<name> stores the body in `got`; /denied/ answers 403, /noput/ 405."""
    protocol_version = "HTTP/1.1"
    got = {}

    def log_message(self, *a):
        pass

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        code = 403 if self.path.startswith("/denied/") else 405 if self.path.startswith("/noput/") else 201
        if code == 201:
            self.got[self.path.split("/")[-1]] = body
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def web():
    Uploads.got = {}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Uploads)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()


@pytest.fixture
def ftp(tmp_path):
    root = tmp_path / "ftp"
    (root / "logs").mkdir(parents=True)
    auth = DummyAuthorizer()
    auth.add_user("cp", "secret", str(root), perm="elradfmw")
    auth.add_user("ro", "secret", str(root), perm="elr")  # may log in, may not store
    handler = type("H", (FTPHandler,), {"authorizer": auth, "passive_ports": None})
    logging.getLogger("pyftpdlib").setLevel(logging.ERROR)
    srv = FTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, kwargs={"timeout": 0.2}, daemon=True).start()
    yield root, "127.0.0.1:%d" % srv.address[1]
    srv.close_all()


@pytest.fixture
def silent():
    """A TCP server that accepts and never says a word: an upload to it hangs."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    conns = []

    def accept():
        try:
            for _ in range(4):
                conns.append(s.accept())
        except OSError:  # the listening socket closed at the end of the test
            pass
    threading.Thread(target=accept, daemon=True).start()
    yield "127.0.0.1:%d" % s.getsockname()[1]
    for c, _ in conns:
        c.close()
    s.close()


# ---- helpers -------------------------------------------------------------------------

def get_log(csms, location, log_type="SecurityLog", request_id=1, **kw):
    log = {"remoteLocation": location}
    for k in ("oldestTimestamp", "latestTimestamp"):
        if k in kw:
            log[k] = kw.pop(k)
    return csms.run_call("CP001", call.GetLog(log=log, log_type=log_type, request_id=request_id, **kw))


def log_statuses(csms, request_id="any"):
    return [(p["status"], p.get("requestId")) for _, _, p in csms.calls("LogStatusNotification")
            if request_id == "any" or p.get("requestId") == request_id]


def wait_final(csms, request_id, timeout=30):
    final = ("Uploaded", "UploadFailure", "PermissionDenied", "BadMessage", "NotSupportedOperation")
    csms.wait_for(lambda: [s for s, r in log_statuses(csms, request_id) if s in final], timeout,
                  "the end of upload %d" % request_id)
    return [s for s, _ in log_statuses(csms, request_id)]


def ext_trigger(csms, what, cid=None):
    kw = {} if cid is None else {"connector_id": cid}
    return csms.run_call("CP001", call.ExtendedTriggerMessage(requested_message=what, **kw)).status


# ---- GetLog --------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["ftp", "http"])
@pytest.mark.parametrize("log_type", ["SecurityLog", "DiagnosticsLog"])
def test_getlog_uploads_the_log_with_its_status_notifications(csms, firmware_factory, web, ftp, scheme, log_type):
    root, ftp_host = ftp
    fw = firmware_factory(csms)
    scenario.boot(fw, csms)
    csms.send_raw("CP001", "not json at all")  # an InvalidMessages event in the security log
    fw.wait_line(r"security: InvalidMessages")
    location = "ftp://cp:secret@%s/logs/" % ftp_host if scheme == "ftp" else web + "/up/"
    answer = get_log(csms, location, log_type, request_id=17)
    assert answer.status == "Accepted"
    kind = "security" if log_type == "SecurityLog" else "diagnostics"
    assert re.fullmatch(r"CP001-%s-\d{8}T\d{6}Z\.log" % kind, answer.filename), answer.filename
    assert wait_final(csms, 17) == ["Uploading", "Uploaded"]
    assert log_statuses(csms) == [("Uploading", 17), ("Uploaded", 17)]  # N01.FR.07: all with its requestId
    body = (root / "logs" / answer.filename).read_bytes() if scheme == "ftp" else Uploads.got[answer.filename]
    lines = body.decode().splitlines()
    assert lines and all(STAMP.match(ln) for ln in lines if ln[:1].isdigit()), lines[:5]
    if log_type == "SecurityLog":
        kinds = [ln.split()[2] for ln in lines]
        assert kinds == ["StartupOfTheDevice", "InvalidMessages"], lines
        assert " CRITICAL StartupOfTheDevice firmware 0.1.0" in lines[0]
    else:
        text = body.decode()
        assert "accepted this charge point" in text and "security: InvalidMessages" in text
        assert "getlog: GetLog 17 (DiagnosticsLog): Accepted" in text
    # once it is over, a trigger finds it idle (N01.FR.12: no requestId then)
    assert ext_trigger(csms, "LogStatusNotification") == "Accepted"
    csms.wait_for(lambda: len(log_statuses(csms)) == 3, 10, "the triggered LogStatusNotification")
    assert log_statuses(csms)[-1] == ("Idle", None)
    assert csms.violations == []


def test_getlog_window_selects_the_lines(csms, firmware_factory, web):
    fw = firmware_factory(csms)
    scenario.boot(fw, csms)
    time.sleep(1.2)
    csms.send_raw("CP001", "first garbage")
    fw.wait_line(r"security: InvalidMessages")
    t = scenario.iso(0)
    time.sleep(1.2)
    csms.send_raw("CP001", "second garbage")
    fw.wait_line(r"security: InvalidMessages")
    # the first garbage's second only: neither the boot's line nor the second garbage's
    first = [ln for ln in fw.lines if "security: InvalidMessages" in ln][0][:8]
    day = t[:11]
    answer = get_log(csms, web + "/up", request_id=3, oldestTimestamp=day + first + "Z",
                     latestTimestamp=day + first + "Z")
    assert wait_final(csms, 3) == ["Uploading", "Uploaded"]
    lines = Uploads.got[answer.filename].decode().splitlines()
    assert [ln.split()[2] for ln in lines] == ["InvalidMessages"], lines
    assert csms.violations == []


@pytest.mark.parametrize("location", ["sftp://cp:secret@127.0.0.1/logs/", "ftp://127.0.0.1:99999/logs/",
                                      "http:///logs/", "mailto:logs@example.com"])
def test_a_location_the_station_cannot_use_is_rejected(csms, firmware_factory, location):
    fw = firmware_factory(csms)
    scenario.boot(fw, csms)
    answer = get_log(csms, location, request_id=5)
    assert answer.status == "Rejected" and answer.filename is None
    time.sleep(1)
    assert log_statuses(csms) == []  # nothing was started
    assert csms.violations == []


def test_the_failures_are_reported_as_precisely_as_the_server_says(csms, firmware_factory, web, ftp):
    _, ftp_host = ftp
    fw = firmware_factory(csms)
    scenario.boot(fw, csms)
    cases = [
        ("ftp://cp:wrong@%s/logs/" % ftp_host, "PermissionDenied"),  # 530: the login refused
        ("ftp://ro:secret@%s/logs/" % ftp_host, "PermissionDenied"),  # 550: no right to store
        (web + "/denied/", "PermissionDenied"),  # HTTP 403
        (web + "/noput/", "NotSupportedOperation"),  # HTTP 405
        ("http://%s/logs/" % ftp_host, "BadMessage"),  # an FTP server's greeting is not HTTP
        ("http://127.0.0.1:%d/logs/" % free_port(), "UploadFailure"),  # nobody there
    ]
    for n, (location, status) in enumerate(cases, 1):
        assert get_log(csms, location, request_id=n, retries=0).status == "Accepted"
        assert wait_final(csms, n) == ["Uploading", status], (location, log_statuses(csms, n))
    # retries: each attempt says Uploading, retryInterval apart
    t = time.time()
    assert get_log(csms, "ftp://cp:wrong@%s/logs/" % ftp_host, request_id=50, retries=1,
                   retry_interval=2).status == "Accepted"
    assert wait_final(csms, 50) == ["Uploading", "Uploading", "PermissionDenied"]
    assert time.time() - t >= 2
    assert not fw.crashed() and csms.violations == []


def test_a_new_getlog_cancels_the_one_under_way(csms, firmware_factory, web, silent):
    fw = firmware_factory(csms)
    scenario.boot(fw, csms)
    assert ext_trigger(csms, "LogStatusNotification") == "Accepted"  # nothing under way yet
    csms.wait_for(lambda: log_statuses(csms), 10, "the Idle notification")
    assert log_statuses(csms) == [("Idle", None)]
    assert get_log(csms, "ftp://%s/logs/" % silent, request_id=1).status == "Accepted"
    csms.wait_for(lambda: log_statuses(csms, 1), 10, "Uploading")
    # under way: the trigger reports it with its requestId
    assert ext_trigger(csms, "LogStatusNotification") == "Accepted"
    csms.wait_for(lambda: len(log_statuses(csms, 1)) == 2, 10, "the triggered status")
    assert log_statuses(csms, 1) == [("Uploading", 1), ("Uploading", 1)]
    answer = get_log(csms, web + "/up/", "DiagnosticsLog", request_id=2)
    assert answer.status == "AcceptedCanceled"  # N01.FR.11
    assert wait_final(csms, 2) == ["Uploading", "Uploaded"]
    assert answer.filename in Uploads.got
    time.sleep(1)
    assert log_statuses(csms, 1) == [("Uploading", 1), ("Uploading", 1)]  # the first one ended, silently
    assert csms.violations == []


def test_the_authorization_key_never_reaches_an_uploaded_log(csms, firmware_factory, web):
    # Frames are logged (the tests run with --frames): the ChangeConfiguration that sets the
    # key goes to the console and the flash log, its value must not.
    fw = firmware_factory(csms)
    scenario.boot(fw, csms)
    assert csms.run_call("CP001", call.ChangeConfiguration(key="AuthorizationKey", value=KEY)).status == "Accepted"
    assert csms.run_call("CP001", call.ChangeConfiguration(key="authorizationkey", value=KEY + "x")).status \
        == "Accepted"  # a key name is case-insensitive (CiString50)
    fw.send("set AuthorizationKey %s" % KEY[::-1])
    fw.wait_line(r"set AuthorizationKey: Accepted")
    for n, log_type in ((1, "SecurityLog"), (2, "DiagnosticsLog")):
        answer = get_log(csms, web + "/up/", log_type, request_id=n)
        assert wait_final(csms, n) == ["Uploading", "Uploaded"]
        text = Uploads.got[answer.filename].decode()
        assert text and KEY not in text and KEY[::-1] not in text, text[-3000:]
        if log_type == "SecurityLog":
            assert text.count("ReconfigurationOfSecurityParameters AuthorizationKey set\n") == 3  # CSMS twice, console
        else:
            assert "(it sets a password: the rest is not logged)" in text
    diag = csms.run_call("CP001", call.GetDiagnostics(location=web + "/up/"))
    csms.wait_for(lambda: diag.file_name in Uploads.got, 20, "the diagnostics upload")
    assert KEY not in Uploads.got[diag.file_name].decode()
    assert not [ln for ln in fw.lines if KEY in ln or KEY[::-1] in ln]  # nor on the console
    assert csms.violations == []


# ---- ExtendedTriggerMessage ----------------------------------------------------------

def after_answer(csms, action, n=1):
    """The `action` CALLs the charge point sent after answering the last ExtendedTriggerMessage."""
    wait = lambda: [i for i in scenario.call_indexes(csms, action)  # noqa: E731
                    if i > scenario.answer_index(csms, "ExtendedTriggerMessage")]
    csms.wait_for(lambda: len(wait()) >= n, 10, "triggered " + action)
    return [csms.frames[i][3][3] for i in wait()]


def test_extended_trigger_message_for_every_message(csms, firmware_factory):
    fw = firmware_factory(csms)
    scenario.boot(fw, csms, [("ClockAlignedDataInterval", 0),
                             ("MeterValuesSampledData", "Energy.Active.Import.Register,Voltage")])
    assert ext_trigger(csms, "BootNotification") == "Rejected"  # accepted already
    assert ext_trigger(csms, "Heartbeat") == "Accepted"
    assert after_answer(csms, "Heartbeat") == [{}]
    assert ext_trigger(csms, "StatusNotification", 2) == "Accepted"
    assert [p["connectorId"] for p in after_answer(csms, "StatusNotification")] == [2]
    assert ext_trigger(csms, "StatusNotification") == "Accepted"
    assert [p["connectorId"] for p in after_answer(csms, "StatusNotification", 3)] == [0, 1, 2]
    assert ext_trigger(csms, "MeterValues", 1) == "Accepted"
    mv = after_answer(csms, "MeterValues")
    assert [m["connectorId"] for m in mv] == [1]
    assert {v["context"] for v in mv[0]["meterValue"][0]["sampledValue"]} == {"Trigger"}
    assert ext_trigger(csms, "MeterValues") == "Accepted"
    assert [m["connectorId"] for m in after_answer(csms, "MeterValues", 2)] == [1, 2]
    # the whitepaper's connectorId is > 0 and names a connector
    for cid in (0, 3, -1):
        assert ext_trigger(csms, "StatusNotification", cid) == "Rejected"
    assert ext_trigger(csms, "LogStatusNotification") == "Accepted"
    assert after_answer(csms, "LogStatusNotification") == [{"status": "Idle"}]
    # FirmwareStatusNotification: SignedFirmwareStatusNotification, Idle without a signed update
    assert ext_trigger(csms, "FirmwareStatusNotification") == "Accepted"
    assert after_answer(csms, "SignedFirmwareStatusNotification") == [{"status": "Idle"}]
    assert not [i for i in scenario.call_indexes(csms, "FirmwareStatusNotification")]
    # no client-certificate support in this build (ocpp/v16/certsign.py): Rejected
    assert ext_trigger(csms, "SignChargePointCertificate") == "Rejected"
    assert csms.violations == []


def test_extended_trigger_boot_notification_while_pending(firmware_factory):
    from dev_csms import DevCSMS
    csms = DevCSMS(boot_replies=[("Pending", 60)])
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms)
        fw.start()
        fw.wait_line(r"answered Pending")
        assert ext_trigger(csms, "BootNotification") == "Accepted"
        fw.wait_line(r"accepted this charge point", 10)
        assert csms.actions().count("BootNotification") == 2
        assert csms.violations == []
    finally:
        csms.stop_thread()
