"""Security events (OCPP 1.6 security whitepaper ed. 2, section 8; A04; N01.FR.05).

End to end against the dev CSMS (it checks every frame against the official schemas):
StartupOfTheDevice at each boot, ResetOrReboot after a Reset at the time of the reset,
SettingSystemTime when the CSMS moves the clock, ReconfigurationOfSecurityParameters,
InvalidMessages and FailedToAuthenticateAtCentralSystem in the security log only (they
are not critical), the critical ones as SecurityEventNotification queued in flash: raised
offline and across kill -9, delivered after the CSMS comes back, in order, with the times
they happened; the retry rule for a CALLERROR; FirmwareUpdated after an update.
Driver tests run security.py and the outbox on the unix port against the emulated flash."""
import json
import re
import time
from datetime import datetime, timezone

import pytest
from ocpp.v16 import call

import scenario
from conftest import run_mp
from test_flashlog import flash_files, run_mp_code
from dev_csms import DevCSMS
from test_maintenance import Files, booted, fw_statuses, update, web  # noqa: F401 (web: a fixture)
from conftest import free_port

EVENT = "SecurityEventNotification"
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (CRITICAL|INFO) (\w+)(?: (.*))?$")

def security_log(data_dir):
    """The security log in the emulated flash of data_dir: [(stamp, level, kind, techInfo)]."""
    files = flash_files(data_dir, ("seclog.1", "seclog.0"))
    text = files.get("seclog.1", "") + files.get("seclog.0", "")
    lines = text.splitlines()
    parsed = [LINE.match(ln) for ln in lines]
    assert all(parsed), lines
    return [m.groups() for m in parsed]


def events(csms, kind=None):
    return [p for _, _, p in csms.calls(EVENT) if kind is None or p["type"] == kind]


def epoch(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


# ---- end to end --------------------------------------------------------------------


def test_startup_of_the_device_is_delivered_with_the_time_it_booted(csms, firmware_factory):
    fw = firmware_factory(csms)
    t0 = time.time()
    scenario.boot(fw, csms)
    got = csms.wait_for(lambda: events(csms, "StartupOfTheDevice"), 10, "StartupOfTheDevice")
    assert len(got) == 1 and got[0]["techInfo"] == "firmware 0.1.0", got
    assert int(t0) - 1 <= epoch(got[0]["timestamp"]) <= time.time() + 1
    # after the BootNotification (A04: the CSMS knows the station first)
    order = [a for a in csms.actions() if a in ("BootNotification", EVENT)]
    assert order == ["BootNotification", EVENT], order
    fw.stop()
    log = security_log(fw.data_dir)
    assert [(lv, k, i) for _, lv, k, i in log] == [("CRITICAL", "StartupOfTheDevice", "firmware 0.1.0")]
    assert log[0][0] == got[0]["timestamp"]
    assert csms.violations == []


@pytest.mark.parametrize("kind", ["Soft", "Hard"])
def test_a_reset_gives_reset_or_reboot_at_its_time_then_startup(csms, firmware_factory, kind):
    fw = firmware_factory(csms)
    scenario.boot(fw, csms)
    csms.wait_for(lambda: events(csms), 10, "the first event")
    time.sleep(1.1)  # the reset's second differs from the boot's
    asked = time.time()
    assert csms.run_call("CP001", call.Reset(type=kind)).status == "Accepted"
    fw.wait_line(r"accepted this charge point", 30)
    csms.wait_for(lambda: len(events(csms)) >= 3, 10, "the events of the second boot")
    time.sleep(0.5)
    got = events(csms)
    assert [e["type"] for e in got] == ["StartupOfTheDevice", "ResetOrReboot", "StartupOfTheDevice"], got
    assert got[1]["techInfo"] == "restart: OCPP Reset (%s)" % kind
    assert int(asked) - 1 <= epoch(got[1]["timestamp"]) <= epoch(got[2]["timestamp"])
    assert epoch(got[0]["timestamp"]) < epoch(got[1]["timestamp"])
    assert csms.violations == []


def test_events_raised_offline_and_across_kill_9_are_delivered_in_order(firmware_factory):
    # Three boots with the CSMS down, the second one ended by SIGKILL right after its
    # event was queued (a power cut): every StartupOfTheDevice arrives once the CSMS is
    # up, in order, with the time of its boot, after the BootNotification.
    port = free_port()
    fw = firmware_factory("ws://127.0.0.1:%d" % port)
    stamps = []
    for how in ("stop", "kill", None):
        stamps.append(time.time())
        fw.start()
        fw.wait_line(r"security: StartupOfTheDevice \(critical\)")
        if how == "kill":
            fw.kill()
        elif how == "stop":
            fw.wait_line(r"cannot connect")
            fw.stop()
        time.sleep(1.2)
    csms = DevCSMS()
    csms.start_in_thread(port=port)
    try:
        got = csms.wait_for(lambda: len(events(csms)) >= 3 and events(csms), 40, "three events")
        time.sleep(1)
        got = events(csms)
        assert [e["type"] for e in got] == ["StartupOfTheDevice"] * 3, got
        times = [epoch(e["timestamp"]) for e in got]
        assert times == sorted(times) and len(set(times)) == 3, got
        for t, started in zip(times, stamps):
            assert int(started) - 1 <= t <= started + 10, (got, stamps)  # (a loaded machine boots slowly)
        assert csms.actions()[0] == "BootNotification"
        # delivered once: a restart now sends only the new boot's event
        fw.stop()
        fw.start()
        csms.wait_for(lambda: len(events(csms)) >= 4, 20, "the fourth event")
        time.sleep(1)
        assert len(events(csms)) == 4
        log = security_log(fw.data_dir)
        assert [k for _, _, k, _ in log] == ["StartupOfTheDevice"] * 4
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_a_reset_then_an_outage_delivers_reset_or_reboot_later(firmware_factory):
    # The CSMS commands a Reset and goes down before the station is back.
    port = free_port()
    csms = DevCSMS()
    csms.start_in_thread(port=port)
    fw = firmware_factory("ws://127.0.0.1:%d" % port)
    scenario.boot(fw, csms)
    csms.wait_for(lambda: events(csms), 10, "the first event")
    csms.run_call("CP001", call.Reset(type="Soft"))
    csms.stop_thread()
    fw.wait_line(r"security: StartupOfTheDevice \(critical\)", 30)  # the second boot
    fw.wait_line(r"cannot connect")
    csms.start_in_thread(port=port)
    try:
        csms.wait_for(lambda: len(events(csms)) >= 3, 40, "the events after the outage")
        time.sleep(0.5)
        assert [e["type"] for e in events(csms)] == ["StartupOfTheDevice", "ResetOrReboot", "StartupOfTheDevice"]
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_every_event_is_in_the_security_log_and_only_critical_ones_are_sent(firmware_factory):
    csms = DevCSMS(reject_auth=True)  # first the CSMS refuses our credentials: 401
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms)
        fw.start()
        fw.wait_line(r"security: FailedToAuthenticateAtCentralSystem: server answered HTTP 401", 20)
        csms.reject_auth = False
        fw.wait_line(r"accepted this charge point", 30)
        csms.wait_for(lambda: events(csms), 10, "StartupOfTheDevice")
        # a frame that is not OCPP, and one whose payload breaks the schema
        csms.send_raw("CP001", "this is not json")
        csms.send_raw("CP001", '[2,"bad1","Reset",{"type":"Sideways"}]')
        csms.wait_for(lambda: [m for _, d, _, m in csms.frames if d == "<<" and m[:2] == [4, "bad1"]], 5, "CALLERROR")
        # security parameters changed by the CSMS (the key is never logged: test_getlog.py)
        assert csms.run_call("CP001", call.ChangeConfiguration(
            key="AuthorizationKey", value="0123456789abcdefXYZ")).status == "Accepted"
        # with a key the CSMS may raise the profile to 1 (A05): the station reconnects with it
        conns = csms.connections
        assert csms.run_call("CP001", call.ChangeConfiguration(key="SecurityProfile", value="1")).status == "Accepted"
        fw.wait_line(r"security: ReconfigurationOfSecurityParameters: SecurityProfile set to 1", 20)
        csms.wait_for(lambda: csms.connections > conns and "CP001" in csms.handlers, 20, "the reconnect")
        # the CSMS moves the clock an hour ahead in a Heartbeat answer, then back
        ahead = datetime.fromtimestamp(time.time() + 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        csms.errors["Heartbeat"] = ({"currentTime": ahead}, 1)
        csms.run_call("CP001", call.TriggerMessage(requested_message="Heartbeat"))
        csms.wait_for(lambda: events(csms, "SettingSystemTime"), 10, "SettingSystemTime")
        csms.run_call("CP001", call.TriggerMessage(requested_message="Heartbeat"))
        csms.wait_for(lambda: len(events(csms, "SettingSystemTime")) == 2, 10, "the clock set back")
        time.sleep(0.5)
        sent = events(csms)
        fw.stop()
        log = security_log(fw.data_dir)
    finally:
        csms.stop_thread()
    kinds = [(lv, k) for _, lv, k, _ in log]
    assert kinds[0] == ("CRITICAL", "StartupOfTheDevice"), kinds
    for entry in [("INFO", "FailedToAuthenticateAtCentralSystem"), ("INFO", "InvalidMessages"),
                  ("INFO", "ReconfigurationOfSecurityParameters"), ("CRITICAL", "SettingSystemTime")]:
        assert entry in kinds, (entry, kinds)
    assert kinds.count(("INFO", "InvalidMessages")) == 2, kinds
    assert [i for _, _, k, i in log if k == "ReconfigurationOfSecurityParameters"] == [
        "AuthorizationKey set", "SecurityProfile set to 1"]
    assert "0123456789abcdefXYZ" not in json.dumps(log)
    # only the critical ones went to the CSMS, each as its log line says
    assert [e["type"] for e in sent] == ["StartupOfTheDevice", "SettingSystemTime", "SettingSystemTime"], sent
    crit = [(s, k, i) for s, lv, k, i in log if lv == "CRITICAL"]
    assert crit == [(e["timestamp"], e["type"], e.get("techInfo")) for e in sent]
    jump = sent[1]
    assert jump["techInfo"].endswith("to " + ahead) and abs(epoch(jump["timestamp"]) - epoch(ahead)) <= 2
    assert csms.violations == []


@pytest.fixture(scope="module")
def new_bundle(tmp_path_factory):
    # what `make bundle VERSION=2.0.0-sec` builds (tools/bundle.py, without make's venv step)
    import subprocess
    import sys
    from conftest import ROOT
    out = tmp_path_factory.mktemp("bundle") / "new.bin"
    subprocess.run([sys.executable, "tools/bundle.py", "--version", "2.0.0-sec", "--board", "unix", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    return out.read_bytes()


def test_an_installed_update_is_firmware_updated_after_the_new_version_boots(csms, firmware_factory, web,
                                                                            new_bundle):
    Files.files["new.bin"] = new_bundle
    fw = firmware_factory(csms)
    booted(fw, csms)
    update(csms, web + "/new.bin")
    csms.wait_for(lambda: "Installed" in fw_statuses(csms), 60, "Installed")
    csms.wait_for(lambda: events(csms, "FirmwareUpdated"), 10, "FirmwareUpdated")
    time.sleep(0.5)
    got = events(csms)
    assert [e["type"] for e in got] == ["StartupOfTheDevice", "ResetOrReboot", "StartupOfTheDevice",
                                        "FirmwareUpdated"], got
    assert got[1]["techInfo"] == "restart: installing an update"
    assert got[3]["techInfo"] == "version 2.0.0-sec installed"
    assert epoch(got[2]["timestamp"]) <= epoch(got[3]["timestamp"])
    fw.stop()
    assert [k for _, _, k, _ in security_log(fw.data_dir)] == [e["type"] for e in got]
    assert csms.violations == []


def test_the_installer_clears_the_security_log_and_the_csms_hears_of_it(csms, firmware_factory):
    fw = firmware_factory(csms)
    scenario.boot(fw, csms)
    csms.wait_for(lambda: events(csms), 10, "StartupOfTheDevice")
    fw.stop()
    out = run_mp("-c", "import cfg\ncfg.open(%r)\ncfg.clear_security_log()\ncfg.clear_security_log('yes')"
                 % str(fw.data_dir))
    assert "To go ahead" in out and "Security log emptied" in out, out
    assert [k for _, _, k, _ in security_log(fw.data_dir)] == ["SecurityLogWasCleared"]
    fw.start()
    csms.wait_for(lambda: len(events(csms)) >= 3, 20, "the events after the clear")
    time.sleep(0.5)
    assert [e["type"] for e in events(csms)] == ["StartupOfTheDevice", "SecurityLogWasCleared", "StartupOfTheDevice"]
    fw.stop()
    assert [k for _, _, k, _ in security_log(fw.data_dir)] == ["SecurityLogWasCleared", "StartupOfTheDevice"]
    assert csms.violations == []


def test_a_csms_without_the_security_extension_is_not_asked_again(firmware_factory):
    # NotImplemented: given up at once, the station goes on; another CALLERROR: resent
    # like a transaction message (TransactionMessageRetryInterval x attempts).
    csms = DevCSMS()
    csms.errors[EVENT] = ("NotImplemented", 1)
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms)
        scenario.boot(fw, csms, [("TransactionMessageRetryInterval", 1)])
        assert [ln for ln in fw.lines if "SecurityEventNotification dropped after 1 attempt, the CSMS did not "
                "process it: NotImplemented" in ln]
        csms.errors[EVENT] = ("InternalError", 1)
        csms.run_call("CP001", call.Reset(type="Soft"))
        csms.wait_for(lambda: len(events(csms)) >= 4, 40, "the events after the reset")
        time.sleep(0.5)
        sent = [(ts, m[3]["type"]) for ts, d, _, m in csms.frames if d == "<<" and m[0] == 2 and m[2] == EVENT]
        assert [k for _, k in sent] == ["StartupOfTheDevice", "ResetOrReboot", "ResetOrReboot", "StartupOfTheDevice"]
        assert sent[2][0] - sent[1][0] >= 1, sent  # resent after TransactionMessageRetryInterval
        assert [(a, code) for _, _, a, code in csms.errored] == [(EVENT, "NotImplemented"), (EVENT, "InternalError")]
        assert csms.violations == []
    finally:
        csms.stop_thread()


# ---- the outbox's KEPT messages and security.py on the unix port -------------------

DRIVER = """
import json, os, time
from hw import unixflash
import clock, security, logfile
from ocpp.outbox import Outbox, KEPT
root = unixflash.mount(%(data)r)
def out(x):
    print("= " + json.dumps(x))
def drain(q):
    seen = []
    while True:
        e = q.peek()
        if e is None:
            return seen
        p = e.payload
        seen.append(p["type"] if e.action == "SecurityEventNotification" else
                    p["meterValue"][0]["sampledValue"][0]["value"] if e.action == "MeterValues" else e.action)
        q.pop(e)
def sev(q, t):
    q.put("SecurityEventNotification", {"type": t, "timestamp": "2026-12-01T22:00:00Z", "techInfo": "x" * 60}, KEPT)
def read(src=security, name="seclog.%%d"):
    r = logfile.Reader(None, None, src, name)
    b = bytearray(100)
    o = bytearray()
    while True:
        k = r.readinto(b)
        if not k:
            return o.decode()
        o += b[:k]
"""


def drive(tmp_path, code):
    text = run_mp_code(DRIVER % {"data": str(tmp_path / "d")} + code, tmp_path)
    return [json.loads(ln[2:]) for ln in text.splitlines() if ln.startswith("= ")], text


def test_kept_messages_survive_a_restart_in_order_and_are_bounded(tmp_path):
    res, text = drive(tmp_path, """
q = Outbox(root)
sev(q, "A")
q.put("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "x"}, 1)
q.put("StatusNotification", {"connectorId": 1})  # volatile: gone with the restart
sev(q, "B")
out([len(q), q.pending_tx()])
q2 = Outbox(root)
out(drain(q2))
out(len(Outbox(root)))  # answered means gone for good
q3 = Outbox(root)
for i in range(55):
    sev(q3, "E%d" % i)
q4 = Outbox(root)
got = drain(q4)
out([len(got), got[0], got[-1]])
""")
    assert res[0] == [4, 3]
    assert res[1] == ["A", "StartTransaction", "B"]
    assert res[2] == 0
    assert res[3] == [50, "E5", "E54"], text  # past 50 the oldest go
    assert text.count("security events waiting: the oldest dropped") == 5


def test_kept_messages_neither_count_against_the_transaction_budget_nor_get_thinned(tmp_path):
    res, text = drive(tmp_path, """
def session(q, local, events):
    q.put("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "x"}, local)
    for i in range(12):
        if events:
            sev(q, "S%d" % i)
        q.put("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "t%d" % i, "sampledValue": [
            {"value": str(i), "context": "Sample.Periodic"}]}]}, local, True)
    q.put("StopTransaction", {"meterStop": 9, "timestamp": "y", "reason": "Local"}, local)
    return drain(Outbox(root, budget=1200))
plain = session(Outbox(root, budget=1200), 1, False)
mixed = session(Outbox(root, budget=1200), 2, True)
out([plain, mixed])
""")
    plain, mixed = res[0]
    assert len(plain) < 14 and plain[0] == "StartTransaction" and plain[-1] == "StopTransaction"
    assert [x for x in mixed if not x.startswith("S") or x[1:2] == "t"] == plain  # the same thinning
    assert [x for x in mixed if x.startswith("S") and x[1:].isdigit()] == ["S%d" % i for i in range(12)]


def test_an_earlier_firmware_journal_is_read_and_kept_entries_are_plain_lines(tmp_path):
    # A journal line of the earlier layout ("<crc> <json>") is still read; a KEPT entry is
    # a "P" record with local 0, which the earlier firmware drops as a message of a
    # transaction the CSMS never numbered (see the rollback test below).
    res, text = drive(tmp_path, """
import binascii
body = json.dumps(["P", 7, "StartTransaction", 3, {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "x"}])
with open(root + "/txq.log", "wb") as f:
    f.write(b"%08x %s\\n" % (binascii.crc32(body.encode()) & 0xFFFFFFFF, body))
q = Outbox(root)
sev(q, "A")
with open(root + "/txq.log") as f:
    out(f.read().splitlines()[-1])
out(drain(Outbox(root)))
""")
    assert res[0].startswith('["P", 8, "SecurityEventNotification", 0, {')
    assert res[1] == ["StartTransaction", "A"]


def test_security_log_lines_bursts_early_events_rotation_and_clear(tmp_path):
    res, text = drive(tmp_path, """
security.event("StartupOfTheDevice", "before the flash")  # waits in RAM
out(security._size)
q = Outbox(root)
security.start(root + "/", q)
security.event("InvalidMessages", "line one\\nline two " + "y" * 300)
for i in range(6):
    security.event("InvalidMessages", "n%d" % i)
security._bursts["InvalidMessages"][0] -= 61000  # a minute later
security.event("InvalidMessages", "after the burst")
security.event("SomeVendorEvent")
out(read().splitlines())
out(drain(q))
# rotation: the pair stays under 16 KB, the newest lines are kept
for i in range(400):
    security._bursts.clear()
    security.event("TamperDetectionActivated", "t%d" % i)
n = os.stat(root + "/seclog.0")[6] + os.stat(root + "/seclog.1")[6]
lines = read().splitlines()
out([n, lines[-1], len(lines)])
out(len(drain(q)))
from ocpp.v16 import secext
secext.clear_log()
out(read().splitlines())
out(drain(q))
""")
    assert res[0] == 0
    lines = res[1]
    assert lines[0].endswith(" CRITICAL StartupOfTheDevice before the flash")
    first = lines[1].split(" ", 3)
    assert first[1:3] == ["INFO", "InvalidMessages"] and first[3].startswith("line one line two yyy")
    assert len(first[3]) == 255
    assert [ln.split(" ", 3)[3] for ln in lines[2:6]] == ["n0", "n1", "n2", "n3"]  # 5 a minute
    assert lines[6].endswith(" INFO InvalidMessages 2 more in the minute before, not recorded one by one; "
                             "after the burst")
    assert lines[7].endswith(" INFO SomeVendorEvent") and len(lines) == 8
    assert res[2] == ["StartupOfTheDevice"]  # only the critical one is queued
    n, last, count = res[3]
    assert n <= 16384 and last.endswith("TamperDetectionActivated t399") and 100 < count < 400
    assert res[4] == 50  # the queue's bound
    assert len(res[5]) == 1 and res[5][0].endswith(" CRITICAL SecurityLogWasCleared")
    assert res[6] == ["SecurityLogWasCleared"]


def test_an_event_before_the_clock_is_set_gets_its_time_at_delivery(tmp_path):
    # A board without a battery-backed clock boots in 2000: the event is stamped by the
    # port's clock, and at delivery (this boot) with the time since converted anew.
    res, text = drive(tmp_path, """
q = Outbox(root)
security.start(root + "/", q)
security.event("StartupOfTheDevice")
time.sleep(1)
e = q.peek()
before = e.payload["timestamp"]
clock.set(clock.now() + 100000)  # the CSMS's time: the clock was 100000 s behind
security.restamp(e.payload)
out([before, e.payload["timestamp"], clock.iso()])
q.pop(e)
out(drain(q))
""")
    before, after, now = res[0]
    assert epoch(after) - epoch(before) == 100000
    assert 0 <= epoch(now) - epoch(after) <= 2
    assert res[1] == ["SettingSystemTime"]  # the jump itself is an event


def test_the_signed_firmware_state_in_extended_trigger(tmp_path):
    # SignedFirmwareStatusNotification from the "signed" piece's job (cp._jobs[True], its
    # status and request_id): Idle without one, after Installed (L01.FR.28) and for a
    # plain UpdateFirmware job (no request_id); else its status with its requestId.
    res, text = drive(tmp_path, """
import asyncio
from ocpp.v16 import secext
class Job:
    pass
class CP:
    def __init__(self, job):
        self._jobs = [None, job]
        self.station = Job()
        self.station.connectors = [0, 1, 2]
        self.sent = []
    async def _send_now(self, action, p):
        self.sent.append((action, p))
def job(**kw):
    j = Job()
    for k, v in kw.items():
        setattr(j, k, v)
    return j
for j in (None, job(status="Downloading"), job(status="Downloading", request_id=7),
          job(status="Installed", request_id=7), job(status="InvalidSignature", request_id=8)):
    cp = CP(j)
    answer, after = secext.extended_trigger(cp, {"requestedMessage": "FirmwareStatusNotification"})
    asyncio.run(after())
    out([answer, cp.sent])
""")
    sfsn = "SignedFirmwareStatusNotification"
    assert res == [[{"status": "Accepted"}, [[sfsn, p]]] for p in (
        {"status": "Idle"}, {"status": "Idle"}, {"status": "Downloading", "requestId": 7}, {"status": "Idle"},
        {"status": "InvalidSignature", "requestId": 8})]


def test_an_earlier_firmware_drops_queued_events_without_harm(firmware_factory, tmp_path):
    # A rollback to the firmware before the security events (the commit before the one
    # that added firmware/security.py): the SecurityEventNotification queued by the newer one is dropped as
    # a message of an unnumbered transaction, nothing invalid is sent, the station runs.
    import subprocess
    from conftest import ROOT
    old = tmp_path / "old"
    old.mkdir()
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "HEAD", "--", "firmware/security.py"],
                           cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not added:
        pytest.skip("not a git checkout with the history of firmware/security.py")
    rev = added[-1] + "~1"  # the firmware before security.py came
    tar = subprocess.run(["git", "archive", rev, "firmware", "lib"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(old)], input=tar.stdout, check=True)
    port = free_port()
    data = tmp_path / "CP001"
    fw = firmware_factory("ws://127.0.0.1:%d" % port, data=data)
    fw.start()
    fw.wait_line(r"security: StartupOfTheDevice \(critical\)")
    fw.wait_line(r"cannot connect")
    fw.stop()
    csms = DevCSMS()
    csms.start_in_thread(port=port)
    try:
        was = firmware_factory("ws://127.0.0.1:%d" % port, data=data, main=old / "firmware" / "main.py",
                               micropypath="%s:%s:.frozen" % (old / "firmware", old / "lib"))
        scenario.boot(was, csms)
        was.wait_line(r"SecurityEventNotification of transaction 0 dropped: the CSMS never numbered the transaction")
        was.stop()
        assert events(csms) == [] and csms.violations == []
        fw.start()  # forward again: only the new boot's event
        csms.wait_for(lambda: events(csms), 20, "the new boot's event")
        time.sleep(1)
        assert len(events(csms)) == 1 and csms.violations == []
    finally:
        csms.stop_thread()


def test_memory_exhaustion_when_an_answer_does_not_fit_the_heap(tmp_path):
    # ocpp.rpc on a 192K heap with a handler whose answer is larger than the free heap:
    # the CSMS gets InternalError, the security log and the queue get MemoryExhaustion.
    code = DRIVER % {"data": str(tmp_path / "d")} + """
import asyncio, gc
from ocpp.rpc import Rpc
q = Outbox(root)
security.start(root + "/", q)
class Link:
    def __init__(self, frames):
        self.inbox = frames
        self.sent = []
    async def recv(self):
        await asyncio.sleep(0)
        return self.inbox.pop(0) if self.inbox else None
    async def send_parts(self, parts):
        self.sent.append("".join(parts())[:80])
def big(p):
    gc.collect()
    return {"data": ["x" * 1000] * (gc.mem_free() // 1000 + 10)}
link = Link(['[2,"c1","Big",{}]', '[2,"c2","Big2",{}]'])
asyncio.run(Rpc({"Big": big, "Big2": lambda p: {}}, lambda a, p, r: None).serve(link))
out(link.sent)
out(read().splitlines())
out(drain(q))
"""
    path = tmp_path / "script.py"
    path.write_text(code)
    text = run_mp(path, heapsize="192K", timeout=120)
    res = [json.loads(ln[2:]) for ln in text.splitlines() if ln.startswith("= ")]
    assert res[0][0].startswith('[4,"c1","InternalError"') and res[0][1] == '[3,"c2",{}]', res[0]
    assert [ln.split(" ", 3)[1:] for ln in res[1]] == [["CRITICAL", "MemoryExhaustion", "no RAM to send an answer"]]
    assert res[2] == ["MemoryExhaustion"]
