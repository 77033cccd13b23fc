"""OCPP 2.0.1 TriggerMessage (F06), UnlockConnector (F05), DataTransfer (P01, P02),
clock-aligned meter values (J01), Authorize with the cache (C01, C10, C15) and a
token the CSMS refuses in a TransactionEventResponse (E05)."""
import time

from ocpp.v201 import call

from dev_csms import DevCSMS
from v201help import CP, TAG, events, start, statuses, wait_event

ENERGY = "Energy.Active.Import.Register"



def trigger(csms, what, evse=None):
    return csms.run_call(CP, call.TriggerMessage(requested_message=what, evse=evse)).status


def test_trigger_messages(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201, [("ClockAlignedDataInterval", 0), ("MeterValueSampleInterval", 0)])
    n = len(csms201.calls("Heartbeat"))
    assert trigger(csms201, "Heartbeat") == "Accepted"
    csms201.wait_for(lambda: len(csms201.calls("Heartbeat")) == n + 1, 10, "Heartbeat")
    n = len(csms201.calls("StatusNotification"))
    assert trigger(csms201, "StatusNotification", {"id": 2, "connector_id": 1}) == "Accepted"
    csms201.wait_for(lambda: len(csms201.calls("StatusNotification")) == n + 1, 10, "StatusNotification")
    assert csms201.calls("StatusNotification")[-1][2]["evseId"] == 2
    assert trigger(csms201, "StatusNotification", {"id": 3}) == "Rejected"
    time.sleep(1.5)  # a meter reading
    assert trigger(csms201, "MeterValues", {"id": 1}) == "Accepted"
    mv = csms201.wait_for(lambda: csms201.calls("MeterValues"), 10, "MeterValues")[-1][2]
    assert mv["evseId"] == 1 and mv["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    assert trigger(csms201, "MeterValues") == "Accepted"  # every EVSE (F06.FR.11)
    csms201.wait_for(lambda: len(csms201.calls("MeterValues")) == 3, 10, "MeterValues of both EVSEs")
    assert sorted(p["evseId"] for _, _, p in csms201.calls("MeterValues")[1:]) == [1, 2]
    assert trigger(csms201, "TransactionEvent") == "Rejected"  # none running
    for what in ("FirmwareStatusNotification", "LogStatusNotification"):
        assert trigger(csms201, what, {"id": 1}) == "Accepted"  # the EVSE does not matter (TC_F_17)
        p = csms201.wait_for(lambda: csms201.calls(what), 10, what)[-1][2]
        assert p == {"status": "Idle"}
    assert trigger(csms201, "SignCombinedCertificate") == "NotImplemented"
    # a transaction: its Updated event on request, with chargingState and the latest values
    fw.send("load 1 16")
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    wait_event(csms201, lambda e: e["transactionInfo"].get("chargingState") == "Charging", "Charging")
    time.sleep(1.5)
    assert trigger(csms201, "TransactionEvent", {"id": 1}) == "Accepted"
    ev = wait_event(csms201, lambda e: e["triggerReason"] == "Trigger", "triggered TransactionEvent")
    assert ev["eventType"] == "Updated" and ev["transactionInfo"]["chargingState"] == "Charging"
    assert ev["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    assert trigger(csms201, "TransactionEvent", {"id": 2}) == "Rejected"
    assert csms201.violations == []


def test_unlock_connector(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201, [("ClockAlignedDataInterval", 0)])

    def unlock(evse, connector=1):
        return csms201.run_call(CP, call.UnlockConnector(evse_id=evse, connector_id=connector)).status

    assert unlock(1) == "Unlocked"  # no cable: nothing holds it (TC_F_07)
    assert unlock(3) == "UnknownConnector" and unlock(1, 2) == "UnknownConnector"
    fw.send("plug 2")
    fw.send("card 2 " + TAG)
    wait_event(csms201, lambda e: e["eventType"] == "Started", "Started")
    assert unlock(2) == "OngoingAuthorizedTransaction"  # F05.FR.02: the transaction goes on
    fw.send("lock 1 jam")
    assert unlock(1) == "UnlockFailed"
    assert [e["eventType"] for e in events(csms201)].count("Ended") == 0
    assert csms201.violations == []


def test_data_transfer_both_ways(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201)
    r = csms201.run_call(CP, call.DataTransfer(vendor_id="mpocpp", message_id="Echo", data={"a": [1, 2]}))
    assert r.status == "Accepted" and r.data == {"a": [1, 2]}
    assert csms201.run_call(CP, call.DataTransfer(vendor_id="mpocpp", message_id="Nope")).status == "UnknownMessageId"
    assert csms201.run_call(CP, call.DataTransfer(vendor_id="other")).status == "UnknownVendorId"
    fw.send("datatransfer devcsms ping hello")
    fw.wait_line(r"DataTransfer answer: .*Accepted")
    assert csms201.calls("DataTransfer")[-1][2] == {"vendorId": "devcsms", "messageId": "ping", "data": "hello"}
    assert csms201.violations == []


def test_clock_aligned_values_outside_a_transaction(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201, [("ClockAlignedDataInterval", 2), ("MeterValuesAlignedData", ENERGY + ",Voltage")])
    csms201.wait_for(lambda: len(csms201.calls("MeterValues")) >= 4, 15, "aligned values of both EVSEs")
    for _, _, p in csms201.calls("MeterValues"):
        sv = p["meterValue"][0]["sampledValue"]
        assert {s["context"] for s in sv} == {"Sample.Clock"}
        assert [s["phase"] for s in sv if s["measurand"] == "Voltage"] == ["L1-N", "L2-N", "L3-N"]
        assert {s["unitOfMeasure"]["unit"] for s in sv} == {"Wh", "V"}
    # during a transaction they are an Updated event (MeterValueClock)
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    ev = wait_event(csms201, lambda e: e["triggerReason"] == "MeterValueClock", "MeterValueClock")
    assert ev["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
    assert csms201.violations == []


def test_offline_authorization_through_the_cache(firmware_factory, tmp_path):
    csms = DevCSMS(heartbeat_interval=300, protocols=("ocpp2.0.1",), tags={"BLOCKED1": "Blocked"})
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms, ocpp="2.0.1")
        start(fw, csms, [("ClockAlignedDataInterval", 0)])
        fw.send("card 1 " + TAG)  # learnt Accepted (C10)
        fw.wait_line(r"card %s accepted" % TAG)
        fw.send("card 2 BLOCKED1")
        fw.wait_line(r"card BLOCKED1 refused: Blocked")
        csms.stop_thread()
        fw.wait_line(r"connection to the CSMS lost")
        fw.send("plug 1")  # the card's authorization lapsed meanwhile? then the card again, offline
        fw.send("card 1 " + TAG)
        fw.wait_line(r"transaction \S+ started")
        fw.send("card 2 BLOCKED1")
        fw.wait_line(r"offline: BLOCKED1 is Blocked")
        csms.start_in_thread(port=csms.port)
        started = wait_event(csms, lambda e: e["eventType"] == "Started", "Started", 40)
        assert started["offline"] is True and started["idToken"]["idToken"] == TAG
        assert len(csms.calls("Authorize")) == 2  # no Authorize while offline
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_token_refused_in_the_transaction_event_response(firmware_factory, tmp_path):
    # E05: started offline with an unknown token, the CSMS answers Invalid: the transaction ends
    csms = DevCSMS(heartbeat_interval=300, protocols=("ocpp2.0.1",), tags={"STRANGER": "Invalid"})
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms, ocpp="2.0.1")
        start(fw, csms, [("ClockAlignedDataInterval", 0), ("AllowOfflineTxForUnknownId", "true")])
        csms.stop_thread()
        fw.wait_line(r"connection to the CSMS lost")
        fw.send("plug 1")
        fw.send("card 1 STRANGER")
        fw.wait_line(r"transaction \S+ started")
        csms.start_in_thread(port=csms.port)
        ended = wait_event(csms, lambda e: e["eventType"] == "Ended", "Ended", 40)
        assert ended["triggerReason"] == "Deauthorized"
        assert ended["transactionInfo"]["stoppedReason"] == "DeAuthorized"
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_clear_cache(csms201, firmware_factory):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201)
    assert csms201.run_call(CP, call.ClearCache()).status == "Accepted"
    fw.send("set AuthorizationCacheEnabled false")
    fw.wait_line(r"set AuthorizationCacheEnabled: Accepted")
    assert csms201.run_call(CP, call.ClearCache()).status == "Rejected"  # C11.FR.04
    assert csms201.violations == []


def test_time_source_decides_whether_the_csms_time_sets_the_clock(csms201, firmware_factory):
    # ClockCtrlr.TimeSource: without Heartbeat in it, the CSMS's currentTime is not taken.
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201)

    def station_year():
        a = csms201.run_call(CP, call.GetVariables(get_variable_data=[
            {"component": {"name": "ClockCtrlr"}, "variable": {"name": "DateTime"}}]))
        return a.get_variable_result[0]["attribute_value"][:4]

    def heartbeat():
        n = len(csms201.calls("Heartbeat"))
        assert csms201.run_call(CP, call.TriggerMessage(requested_message="Heartbeat")).status == "Accepted"
        csms201.wait_for(lambda: len(csms201.calls("Heartbeat")) > n, 10, "the triggered Heartbeat")
        time.sleep(0.3)  # (the answer is taken after the CSMS records the call)

    now = station_year()
    csms201.replies["Heartbeat"] = {"currentTime": "2031-06-01T12:00:00Z"}
    a = csms201.run_call(CP, call.SetVariables(set_variable_data=[
        {"component": {"name": "ClockCtrlr"}, "variable": {"name": "TimeSource"}, "attribute_value": "NTP"}]))
    assert a.set_variable_result[0]["attribute_status"] == "Accepted"
    heartbeat()
    assert station_year() == now
    a = csms201.run_call(CP, call.SetVariables(set_variable_data=[
        {"component": {"name": "ClockCtrlr"}, "variable": {"name": "TimeSource"},
         "attribute_value": "Heartbeat,NTP"}]))
    assert a.set_variable_result[0]["attribute_status"] == "Accepted"
    heartbeat()
    assert station_year() == "2031"
    assert csms201.violations == []
