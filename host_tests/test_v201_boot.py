"""OCPP 2.0.1 boot (B01-B03), Reset (B11, B12) and availability (G03, G04) on the unix port."""
import time

from ocpp.v201 import call

from dev_csms import DevCSMS
from v201help import CP, TAG, events, start, statuses, wait_event


def csms_with(**kw):
    c = DevCSMS(heartbeat_interval=300, protocols=("ocpp2.0.1",), **kw)
    c.start_in_thread()
    return c



def test_pending_then_triggered_boot(firmware_factory, tmp_path):
    csms = csms_with(boot_replies=[("Pending", 60)])
    try:
        fw = firmware_factory(csms, ocpp="2.0.1")
        fw.start()
        fw.wait_line(r"the CSMS answered Pending")
        # B02: the CSMS may talk to a Pending station, remote start is refused (B02.FR.05)
        r = csms.run_call(CP, call.RequestStartTransaction(id_token={"id_token": TAG, "type": "ISO14443"},
                                                           remote_start_id=1))
        assert r.status == "Rejected"
        time.sleep(1)
        assert csms.actions() == ["BootNotification"]  # nothing else before Accepted
        r = csms.run_call(CP, call.TriggerMessage(requested_message="BootNotification"))
        assert r.status == "Accepted"
        fw.wait_line(r"accepted this charging station")
        boots = csms.calls("BootNotification")
        assert [b[2]["reason"] for b in boots] == ["PowerUp", "Triggered"]
        csms.wait_for(lambda: len(statuses(csms)) >= 2, 10, "statuses after Accepted")
        csms.wait_for(lambda: csms.calls("SecurityEventNotification"), 10, "the boot's security event")
        assert csms.before_accepted == []
        # F06.FR.17: no BootNotification on request once accepted
        assert csms.run_call(CP, call.TriggerMessage(requested_message="BootNotification")).status == "Rejected"
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_rejected_answers_security_error_and_waits_the_interval(firmware_factory, tmp_path):
    csms = csms_with(boot_replies=[("Rejected", 4)])
    try:
        fw = firmware_factory(csms, ocpp="2.0.1")
        fw.start()
        fw.wait_line(r"the CSMS answered Rejected")
        t0 = time.time()
        # B03.FR.08 (errata 2023-12): every CALL of the CSMS gets SecurityError
        answer = csms.call_raw(CP, "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})
        assert answer[0] == 4 and answer[2] == "SecurityError"
        fw.wait_line(r"accepted this charging station", 15)
        assert time.time() - t0 >= 3  # not before the interval (B03.FR.06)
        assert [a for a in csms.actions()][:2] == ["BootNotification", "BootNotification"]
        assert csms.before_accepted == []
        csms.wait_for(lambda: len(statuses(csms)) >= 2, 10, "statuses after Accepted")
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_availability_persists_across_a_reset(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201)
    r = csms201.run_call(CP, call.ChangeAvailability(operational_status="Inoperative", evse={"id": 2}))
    assert r.status == "Accepted"
    csms201.wait_for(lambda: statuses(csms201, 2)[-1:] == [(2, "Unavailable")], 10, "Unavailable")
    assert csms201.run_call(CP, call.ChangeAvailability(operational_status="Inoperative",
                                                        evse={"id": 3})).status == "Rejected"
    assert csms201.run_call(CP, call.ChangeAvailability(operational_status="Inoperative",
                                                        evse={"id": 1, "connector_id": 2})).status == "Rejected"
    # per EVSE: one controller runs them all (B11.FR.09)
    assert csms201.run_call(CP, call.Reset(type="OnIdle", evse_id=1)).status == "Rejected"
    n = len(csms201.calls("StatusNotification"))
    assert csms201.run_call(CP, call.Reset(type="OnIdle")).status == "Accepted"
    fw.wait_line(r"accepted this charging station", 30)
    boots = csms201.calls("BootNotification")
    assert boots[-1][2]["reason"] == "RemoteReset"
    csms201.wait_for(lambda: len(csms201.calls("StatusNotification")) >= n + 2, 10, "statuses after the reset")
    after = dict(statuses(csms201)[n:])
    assert after == {1: "Available", 2: "Unavailable"}  # G18: kept across the restart
    # the whole station, then back
    assert csms201.run_call(CP, call.ChangeAvailability(operational_status="Inoperative")).status == "Accepted"
    csms201.wait_for(lambda: dict(statuses(csms201)) == {1: "Unavailable", 2: "Unavailable"}, 10, "all Unavailable")
    assert csms201.run_call(CP, call.ChangeAvailability(operational_status="Operative")).status == "Accepted"
    assert csms201.run_call(CP, call.ChangeAvailability(operational_status="Operative",
                                                        evse={"id": 2, "connector_id": 1})).status == "Accepted"
    csms201.wait_for(lambda: dict(statuses(csms201)) == {1: "Available", 2: "Available"}, 10, "all Available")
    assert csms201.violations == []


def _charging(fw, csms, evse=1):
    fw.send("load %d 16" % evse)
    fw.send("plug %d" % evse)
    fw.send("card %d %s" % (evse, TAG))
    return wait_event(csms, lambda e: e["eventType"] == "Started" and e["evse"]["id"] == evse, "Started")


def test_reset_immediate_ends_the_transaction(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201, [("ClockAlignedDataInterval", 0)])
    started = _charging(fw, csms201)
    txid = started["transactionInfo"]["transactionId"]
    wait_event(csms201, lambda e: e["transactionInfo"].get("chargingState") == "Charging", "Charging")
    assert csms201.run_call(CP, call.Reset(type="Immediate")).status == "Accepted"
    ended = wait_event(csms201, lambda e: e["eventType"] == "Ended", "Ended")
    assert ended["transactionInfo"]["transactionId"] == txid
    assert ended["triggerReason"] == "ResetCommand"
    assert ended["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert ended["transactionInfo"]["chargingState"] == "EVConnected"
    assert "idToken" not in ended
    fw.wait_line(r"accepted this charging station", 30)
    assert csms201.calls("BootNotification")[-1][2]["reason"] == "RemoteReset"
    evs = events(csms201, txid)
    assert [e["seqNo"] for e in evs] == list(range(len(evs)))
    assert evs[-1] is ended  # nothing of it after the restart
    assert csms201.violations == []


def test_reset_on_idle_waits_for_the_transaction(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201, [("ClockAlignedDataInterval", 0)])
    _charging(fw, csms201, 2)
    assert csms201.run_call(CP, call.Reset(type="OnIdle")).status == "Scheduled"
    time.sleep(1)
    assert len(csms201.calls("BootNotification")) == 1
    fw.send("card 2 " + TAG)
    ended = wait_event(csms201, lambda e: e["eventType"] == "Ended", "Ended")
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    fw.wait_line(r"accepted this charging station", 30)
    assert csms201.calls("BootNotification")[-1][2]["reason"] == "ScheduledReset"
    assert csms201.violations == []
