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
from dev_csms import DevCSMS
from test_transaction_queue import free_port

EVENT = "SecurityEventNotification"
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (CRITICAL|INFO) (\w+)(?: (.*))?$")

READ = """
import json
from hw import unixflash
unixflash.mount(%r)
d = {}
for n in ("seclog.1", "seclog.0"):
    try:
        with open("/flash/" + n) as f:
            d[n] = f.read()
    except OSError:
        pass
print("= " + json.dumps(d))
"""


def run_code(code, where):
    path = where / "script.py"
    path.write_text(code)
    return run_mp(path, timeout=120)


def security_log(data_dir):
    """The security log in the emulated flash of data_dir: [(stamp, level, kind, techInfo)]."""
    out = run_code(READ % str(data_dir), data_dir.parent)
    files = json.loads([ln for ln in out.splitlines() if ln.startswith("= ")][0][2:])
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
            assert int(started) - 1 <= t <= started + 3, (got, stamps)
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
    info = {k: i for _, _, k, i in log}
    assert info["ReconfigurationOfSecurityParameters"] == "AuthorizationKey changed by the CSMS"
    assert "0123456789abcdefXYZ" not in json.dumps(log)
    # only the critical ones went to the CSMS, each as its log line says
    assert [e["type"] for e in sent] == ["StartupOfTheDevice", "SettingSystemTime", "SettingSystemTime"], sent
    crit = [(s, k, i) for s, lv, k, i in log if lv == "CRITICAL"]
    assert crit == [(e["timestamp"], e["type"], e.get("techInfo")) for e in sent]
    jump = sent[1]
    assert jump["techInfo"].endswith("to " + ahead) and abs(epoch(jump["timestamp"]) - epoch(ahead)) <= 2
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
