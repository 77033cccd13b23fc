"""Remote Trigger profile (OCPP 1.6 §5.17): every requested message, per
connector or for all, the answers, and the confirmation going out before the
message it announces."""
from ocpp.v16 import call

from dev_csms import DevCSMS
from scenario import boot, settle, answer_index, call_indexes

NO_ALIGNED = [("ClockAlignedDataInterval", 0)]


def trigger(csms, what, cid=None):
    kw = {} if cid is None else {"connector_id": cid}
    return csms.run_call("CP001", call.TriggerMessage(requested_message=what, **kw)).status


def after_answer(csms, action, n=1):
    """The `action` CALLs the charge point sent after answering the last TriggerMessage."""
    wait = lambda: [i for i in call_indexes(csms, action) if i > answer_index(csms, "TriggerMessage")]  # noqa: E731
    csms.wait_for(lambda: len(wait()) >= n, 10, "triggered " + action)
    return [csms.frames[i][3][3] for i in wait()]


def test_trigger_every_message(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, NO_ALIGNED + [("MeterValuesSampledData", "Energy.Active.Import.Register,Voltage")])
    # StatusNotification for one connector, for the station, for all.
    assert trigger(csms, "StatusNotification", 2) == "Accepted"
    assert [p["connectorId"] for p in after_answer(csms, "StatusNotification")] == [2]
    assert trigger(csms, "StatusNotification", 0) == "Accepted"
    assert [p["connectorId"] for p in after_answer(csms, "StatusNotification")] == [0]
    assert trigger(csms, "StatusNotification") == "Accepted"
    assert [p["connectorId"] for p in after_answer(csms, "StatusNotification", 3)] == [0, 1, 2]
    assert trigger(csms, "StatusNotification", 7) == "Rejected"
    # Heartbeat.
    assert trigger(csms, "Heartbeat") == "Accepted"
    assert after_answer(csms, "Heartbeat") == [{}]
    # MeterValues: the latest MeterValuesSampledData values, context Trigger.
    assert trigger(csms, "MeterValues", 1) == "Accepted"
    mv = after_answer(csms, "MeterValues")
    assert [m["connectorId"] for m in mv] == [1] and "transactionId" not in mv[0]
    values = mv[0]["meterValue"][0]["sampledValue"]
    assert {v["context"] for v in values} == {"Trigger"}
    assert sorted({v["measurand"] for v in values}) == ["Energy.Active.Import.Register", "Voltage"]
    assert trigger(csms, "MeterValues", 0) == "Rejected"  # no meter for the station as a whole
    # During a transaction the values belong to it.
    fw.send("plug 2")
    fw.send("card 2 04A2B3C4D5")
    fw.wait_line(r"the CSMS numbered the transaction")
    assert trigger(csms, "MeterValues") == "Accepted"
    mv = after_answer(csms, "MeterValues", 2)
    assert [(m["connectorId"], m.get("transactionId")) for m in mv] == [(1, None), (2, 1)]
    # Diagnostics and firmware: nothing under way, Idle.
    assert trigger(csms, "DiagnosticsStatusNotification") == "Accepted"
    assert after_answer(csms, "DiagnosticsStatusNotification") == [{"status": "Idle"}]
    assert trigger(csms, "FirmwareStatusNotification") == "Accepted"
    assert after_answer(csms, "FirmwareStatusNotification") == [{"status": "Idle"}]
    # BootNotification once accepted: Rejected (errata 3.35).
    assert trigger(csms, "BootNotification") == "Rejected"
    # A message outside MessageTrigger never reaches the handler.
    csms.send_raw("CP001", '[2,"tm1","TriggerMessage",{"requestedMessage":"LogStatusNotification"}]')
    got = csms.wait_for(lambda: [m for _, d, _, m in csms.frames if d == "<<" and m[:2] == [4, "tm1"]], 5, "CALLERROR")
    assert got[0][2] == "PropertyConstraintViolation"
    assert csms.actions().count("BootNotification") == 1
    assert csms.violations == []


def test_trigger_while_pending(firmware_factory):
    # Pending for 60 s: the CSMS asks for a status, then for the BootNotification
    # that ends the wait at once.
    csms = DevCSMS(boot_replies=[("Pending", 60)])
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms)
        fw.start()
        fw.wait_line(r"answered Pending")
        settle(fw, NO_ALIGNED)
        assert trigger(csms, "StatusNotification", 1) == "Accepted"
        assert [p["connectorId"] for p in after_answer(csms, "StatusNotification")] == [1]
        assert trigger(csms, "BootNotification") == "Accepted"
        after_answer(csms, "BootNotification")
        fw.wait_line(r"accepted this charge point", 5)
        assert csms.actions().count("BootNotification") == 2
        assert csms.violations == []
    finally:
        csms.stop_thread()
