"""Read-write configuration keys that act as OCPP 1.6 §9 says (issue #15.4): measurands the
meters cannot deliver are Rejected (errata 3.14.4), a phase can be picked, StopTxnAlignedData
and StopTxnSampledData fill StopTransaction's transactionData within
StopTransactionMaxMeterValues, MinimumStatusDuration holds back short-lived statuses and
UnlockConnectorOnEVSideDisconnect keeps the cable locked until the card comes back."""
import time

from ocpp.v16 import call

from scenario import boot, settle, wait_status, statuses

TAG = "04A2B3C4D5"
QUIET = [("ClockAlignedDataInterval", 0), ("MeterValueSampleInterval", 0)]


def change(csms, key, value):
    return csms.run_call("CP001", call.ChangeConfiguration(key=key, value=value)).status


def get(csms, key):
    return csms.run_call("CP001", call.GetConfiguration(key=[key])).configuration_key[0]["value"]


def charge(fw, csms, cid=1):
    fw.send("load %d 16" % cid)
    fw.send("plug %d" % cid)
    fw.send("card %d %s" % (cid, TAG))
    csms.wait_for(lambda: csms.transactions, 10, "StartTransaction")


def stop_payload(fw, csms):
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: csms.calls("StopTransaction"), 10, "StopTransaction")
    return csms.calls("StopTransaction")[-1][2]


def test_measurands_the_meter_cannot_deliver_are_rejected_and_nothing_changes(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET)
    for key in ("MeterValuesSampledData", "MeterValuesAlignedData", "StopTxnSampledData", "StopTxnAlignedData"):
        before = get(csms, key)
        for bad in ("SoC", "Temperature", "RPM", "Power.Offered", "Energy.Active.Export.Register",
                    "Energy.Active.Import.Register,SoC", "Current.Import.N", "Current.Import.L1-N"):
            assert change(csms, key, bad) == "Rejected", (key, bad)
            assert get(csms, key) == before
        # Current.Offered: the limit the station offers (smart charging), its own figure
        assert change(csms, key, "Energy.Active.Import.Register,Voltage.L1,Current.Import.L3,Frequency,"
                      "Current.Offered") == "Accepted"
    fw.wait_line(r"MeterValuesSampledData refused: the meter of connector 1 does not measure SoC")
    assert csms.violations == []


def test_a_phase_qualified_measurand_gives_that_phase_only(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET)
    assert change(csms, "MeterValuesSampledData", "Energy.Active.Import.Register,Voltage.L2,Current.Import") \
        == "Accepted"
    charge(fw, csms)
    settle(fw, [("MeterValueSampleInterval", 1)])
    csms.wait_for(lambda: csms.calls("MeterValues"), 10, "MeterValues")
    sv = csms.calls("MeterValues")[0][2]["meterValue"][0]["sampledValue"]
    assert [(s["measurand"], s.get("phase")) for s in sv] == [
        ("Energy.Active.Import.Register", None), ("Voltage", "L2-N"),
        ("Current.Import", "L1"), ("Current.Import", "L2"), ("Current.Import", "L3")]
    assert csms.violations == []


def test_stop_txn_aligned_data_reaches_the_stop_transaction(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET + [("StopTxnSampledData", ""), ("MeterValuesAlignedData", "")])
    assert change(csms, "StopTxnAlignedData", "Energy.Active.Import.Register,Voltage.L1") == "Accepted"
    charge(fw, csms)
    settle(fw, [("ClockAlignedDataInterval", 2)])
    time.sleep(7)
    stop = stop_payload(fw, csms)
    data = stop["transactionData"]
    ctx = [d["sampledValue"][0]["context"] for d in data]
    assert ctx[0] == "Transaction.Begin" and ctx[-1] == "Transaction.End"
    assert set(ctx[1:-1]) == {"Sample.Clock"} and len(ctx) - 2 >= 2
    for d in data:  # the Begin and End values of every measurand configured too (errata 3.16.6)
        assert [(s["measurand"], s.get("phase")) for s in d["sampledValue"]] == [
            ("Energy.Active.Import.Register", None), ("Voltage", "L1-N")]
    energy = [int(d["sampledValue"][0]["value"]) for d in data]
    assert energy == sorted(energy) and energy[-1] == stop["meterStop"]
    assert csms.calls("MeterValues") == []  # MeterValuesAlignedData empty: none sent on their own
    assert csms.violations == []


def test_stop_transaction_max_meter_values_thins_the_middle_evenly(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET + [("StopTxnSampledData", "Energy.Active.Import.Register"),
                            ("StopTransactionMaxMeterValues", 6)])  # read-only for the CSMS; set here
    assert change(csms, "StopTransactionMaxMeterValues", "100") == "Rejected"
    charge(fw, csms)
    settle(fw, [("MeterValueSampleInterval", 1)])
    csms.wait_for(lambda: len(csms.calls("MeterValues")) >= 11, 20, "11 MeterValues")
    stop = stop_payload(fw, csms)
    data = stop["transactionData"]
    assert 4 <= len(data) <= 6
    assert data[0]["sampledValue"][0]["context"] == "Transaction.Begin"
    assert data[-1]["sampledValue"][0]["context"] == "Transaction.End"
    # the kept samples are spread over the session, not just its first or last seconds
    sent = [mv[2]["meterValue"][0]["timestamp"] for mv in csms.calls("MeterValues")]
    kept = [d["timestamp"] for d in data[1:-1]]
    assert set(kept) <= set(sent) and kept == sorted(kept)
    assert kept[0] <= sent[3] and kept[-1] >= sent[-4], (kept, sent)
    assert csms.violations == []


def test_minimum_status_duration_holds_back_short_lived_statuses(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET)
    assert change(csms, "MinimumStatusDuration", "3") == "Accepted"
    n = len(statuses(csms, 2))
    fw.send("plug 2")
    fw.wait_line(r"connector 2: Available -> Preparing")
    fw.send("unplug 2")
    fw.wait_line(r"connector 2: Preparing -> Available")
    time.sleep(4.5)
    assert len(statuses(csms, 2)) == n  # Preparing lasted under 3 s: never sent, Available unchanged
    fw.send("plug 2")
    t = time.time()
    wait_status(csms, 2, "Preparing", timeout=8)
    assert time.time() - t >= 2.5
    assert change(csms, "MinimumStatusDuration", "0") == "Accepted"
    fw.send("unplug 2")
    wait_status(csms, 2, "Available", timeout=2)
    assert csms.violations == []


def test_cable_stays_locked_after_ev_side_disconnect_until_the_card(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET)
    assert get(csms, "UnlockConnectorOnEVSideDisconnect") == "true"
    charge(fw, csms)
    fw.wait_line(r"connector 1: cable locked")
    fw.send("unplug 1")
    fw.wait_line(r"connector 1: cable unlocked")
    fw.wait_line(r"transaction stopped \(EVDisconnected\)")
    # false: the session ends, the cable stays locked until its card is presented
    assert change(csms, "UnlockConnectorOnEVSideDisconnect", "false") == "Accepted"
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    fw.wait_line(r"connector 1: cable locked")
    fw.send("unplug 1")
    fw.wait_line(r"the cable stays locked until %s presents the card again" % TAG)
    csms.wait_for(lambda: len([p for _, _, p in csms.calls("StopTransaction")
                               if p["reason"] == "EVDisconnected"]) == 2, 10, "second StopTransaction")
    fw.send("card 1 OTHER")  # someone else's card does not open it
    fw.wait_line(r"card OTHER accepted")
    time.sleep(1)
    second = max(i for i, line in enumerate(fw.lines) if "stays locked until" in line)
    assert not any("cable unlocked" in line for line in fw.lines[second:])
    fw.send("card 1 " + TAG)
    fw.wait_line(r"card %s unlocks the cable" % TAG)
    fw.wait_line(r"connector 1: cable unlocked")
    assert len(csms.calls("StartTransaction")) == 2  # the card opened the lock, it started nothing
    assert csms.violations == []


def test_session_goes_on_without_the_vehicle_when_stop_on_ev_side_disconnect_is_false(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET)
    assert change(csms, "StopTransactionOnEVSideDisconnect", "false") == "Accepted"
    charge(fw, csms)
    wait_status(csms, 1, "Charging")
    fw.send("unplug 1")
    fw.wait_line(r"connector 1: contactor open, power off")  # no power on an empty socket
    wait_status(csms, 1, "SuspendedEV")
    last = [p for _, _, p in csms.calls("StatusNotification") if p["connectorId"] == 1][-1]
    assert last.get("info") == "EV side disconnected"
    assert csms.calls("StopTransaction") == []
    assert not any("cable unlocked" in line for line in fw.lines)  # the cable stays locked
    fw.send("plug 1")  # back: energy flows again in the same transaction
    fw.wait_line(r"connector 1: contactor closed, power on")
    wait_status(csms, 1, "Charging")
    stop = stop_payload(fw, csms)
    assert stop["reason"] == "Local" and len(csms.calls("StartTransaction")) == 1
    assert csms.violations == []


def test_charging_current_threshold_tells_charging_from_suspended_ev(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET)
    assert change(csms, "ChargingCurrentThreshold", "20000") == "Accepted"  # mA
    charge(fw, csms)
    wait_status(csms, 1, "SuspendedEV")
    time.sleep(2)
    assert statuses(csms, 1)[-1] == "SuspendedEV"  # 16 A is below 20 A: not charging
    assert change(csms, "ChargingCurrentThreshold", "10000") == "Accepted"
    wait_status(csms, 1, "Charging")
    assert csms.violations == []


def test_log_frames_takes_effect_at_once(csms, firmware_factory):
    fw = firmware_factory(csms, frames=False)
    boot(fw, csms, QUIET)
    assert not any(" FRAME " in line for line in fw.lines)
    assert change(csms, "LogFrames", "true") == "Accepted"
    fw.send("datatransfer devcsms")
    fw.wait_line(r'FRAME ocpp: >> \[2, ?"[^"]+", ?"DataTransfer"')
    assert change(csms, "LogFrames", "false") == "Accepted"
    n = len(fw.lines)
    fw.send("datatransfer devcsms")
    fw.wait_line(r"DataTransfer answer")
    assert not any(" FRAME " in line for line in fw.lines[n + 1:])
