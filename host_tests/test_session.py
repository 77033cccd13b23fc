"""A whole charging session on the unix port against the ocpp-library CSMS."""
from ocpp.v16 import call

from dev_csms import RFC3339

TAG = "04A2B3C4D5"


def statuses(csms, cp="CP001"):
    return [(p["connectorId"], p["status"]) for _, _, p in csms.calls("StatusNotification")]


def boot_and_configure(fw, csms, settings=()):
    fw.start()
    fw.wait_line(r"accepted this charge point")
    csms.wait_for(lambda: len(csms.calls("StatusNotification")) >= 3, 10, "boot statuses")
    for key, value in settings:
        fw.send("set %s %s" % (key, value))
        fw.wait_line(r"set %s: Accepted" % key)


def test_full_session_exact_order_and_content(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot_and_configure(fw, csms, [("MeterValueSampleInterval", 1), ("ClockAlignedDataInterval", 0),
                                  ("StopTxnSampledData", "Energy.Active.Import.Register")])
    fw.send("load 1 16")
    fw.send("plug 1")
    fw.wait_line(r"connector 1: Available -> Preparing")
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: csms.transactions.get(1, {}).get("meterValues", [])[2:], 20, "3 meter values")
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: "meterStop" in csms.transactions[1], 10, "StopTransaction")
    fw.send("unplug 1")
    csms.wait_for(lambda: statuses(csms)[-1:] == [(1, "Available")], 10, "Available after unplug")

    # The exact order of what the charge point said.
    acts = csms.actions()
    n_mv = acts.count("MeterValues")
    assert n_mv >= 3
    assert acts == (["BootNotification", "SecurityEventNotification"] + ["StatusNotification"] * 4
                    + ["Authorize", "StartTransaction"]
                    + ["StatusNotification"] * 2 + ["MeterValues"] * n_mv
                    + ["StopTransaction", "StatusNotification", "StatusNotification"])
    assert statuses(csms) == [(0, "Available"), (1, "Available"), (2, "Available"), (1, "Preparing"),
                              (1, "SuspendedEV"), (1, "Charging"), (1, "Finishing"), (1, "Available")]

    # Content.
    boot = csms.calls("BootNotification")[0][2]
    assert boot["chargePointVendor"] == "mpocpp" and boot["meterSerialNumber"] == "SIM-0001"
    assert csms.calls("Authorize")[0][2] == {"idTag": TAG}
    start = csms.calls("StartTransaction")[0][2]
    assert start["connectorId"] == 1 and start["idTag"] == TAG and start["meterStart"] == 0
    energies = []
    for _, _, mv in csms.calls("MeterValues"):
        assert mv["transactionId"] == 1 and mv["connectorId"] == 1
        sv = {s["measurand"]: s for s in mv["meterValue"][0]["sampledValue"]}
        e = sv["Energy.Active.Import.Register"]
        assert e["unit"] == "Wh" and e["context"] == "Sample.Periodic"
        energies.append(int(e["value"]))
        assert float(sv["Power.Active.Import"]["value"]) == 16 * 230 * 3
    assert energies == sorted(energies) and energies[-1] > 0
    stop = csms.calls("StopTransaction")[0][2]
    assert stop["transactionId"] == 1 and stop["reason"] == "Local" and stop["idTag"] == TAG
    assert stop["meterStop"] >= energies[-1]
    # StopTxnSampledData: the Begin and End values and every periodic sample between (§9.1.27)
    ctx = [d["sampledValue"][0]["context"] for d in stop["transactionData"]]
    assert ctx == ["Transaction.Begin"] + ["Sample.Periodic"] * n_mv + ["Transaction.End"]
    assert [int(d["sampledValue"][0]["value"]) for d in stop["transactionData"][1:-1]] == energies
    assert int(stop["transactionData"][-1]["sampledValue"][0]["value"]) == stop["meterStop"]

    # Every frame valid against the official schema, date-times included.
    assert csms.violations == []
    for _, _, p in csms.calls("StatusNotification"):
        assert RFC3339.match(p["timestamp"])


def test_unplug_during_charging_stops_with_ev_disconnected(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot_and_configure(fw, csms, [("ClockAlignedDataInterval", 0)])
    fw.send("load 2 10")
    fw.send("card 2 " + TAG)
    fw.wait_line(r"card .* accepted")
    fw.send("plug 2")
    csms.wait_for(lambda: statuses(csms)[-1:] == [(2, "Charging")], 10, "Charging")
    fw.send("unplug 2")
    csms.wait_for(lambda: csms.calls("StopTransaction"), 10, "StopTransaction")
    assert csms.calls("StopTransaction")[0][2]["reason"] == "EVDisconnected"
    csms.wait_for(lambda: statuses(csms)[-1:] == [(2, "Available")], 10, "Available")
    assert csms.violations == []


def test_clock_aligned_meter_values(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot_and_configure(fw, csms, [("ClockAlignedDataInterval", 2), ("MeterValueSampleInterval", 0)])
    csms.wait_for(lambda: len(csms.calls("MeterValues")) >= 4, 15, "aligned meter values")
    for _, _, mv in csms.calls("MeterValues"):
        assert "transactionId" not in mv
        stamp = mv["meterValue"][0]["timestamp"]
        assert RFC3339.match(stamp)
        assert {s["context"] for s in mv["meterValue"][0]["sampledValue"]} == {"Sample.Clock"}
    assert csms.violations == []


def test_data_transfer_both_ways(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot_and_configure(fw, csms)
    answer = csms.run_call("CP001", call.DataTransfer(vendor_id="someone.else", message_id="x"))
    assert answer.status == "UnknownVendorId"
    answer = csms.run_call("CP001", call.DataTransfer(vendor_id="mpocpp", message_id="Echo", data="hello"))
    assert answer.status == "Accepted" and answer.data == "hello"
    fw.send("datatransfer devcsms Note hi")
    fw.wait_line(r"DataTransfer answer: .*Accepted")
    fw.send("datatransfer nobody")
    fw.wait_line(r"DataTransfer answer: .*UnknownVendorId")
    assert csms.violations == []


def test_heartbeat_on_interval(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot_and_configure(fw, csms, [("HeartbeatInterval", 1)])
    csms.wait_for(lambda: len(csms.calls("Heartbeat")) >= 2, 10, "two heartbeats")
    assert csms.violations == []


def test_remote_start_and_stop(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot_and_configure(fw, csms, [("ClockAlignedDataInterval", 0)])
    fw.send("load 1 8")
    fw.send("plug 1")
    answer = csms.run_call("CP001", call.RemoteStartTransaction(id_tag=TAG, connector_id=1))
    assert answer.status == "Accepted"
    csms.wait_for(lambda: csms.calls("StartTransaction"), 10, "StartTransaction")
    tx_id = csms.wait_for(lambda: fw_tx_id(csms), 10, "transaction id")
    # Connector 1 is occupied: a second remote start on it is refused.
    assert csms.run_call("CP001", call.RemoteStartTransaction(id_tag="OTHER", connector_id=1)).status == "Rejected"
    assert csms.run_call("CP001", call.RemoteStartTransaction(id_tag=TAG, connector_id=9)).status == "Rejected"
    assert csms.run_call("CP001", call.RemoteStopTransaction(transaction_id=tx_id + 100)).status == "Rejected"
    assert csms.run_call("CP001", call.RemoteStopTransaction(transaction_id=tx_id)).status == "Accepted"
    csms.wait_for(lambda: csms.calls("StopTransaction"), 10, "StopTransaction")
    assert csms.calls("StopTransaction")[0][2]["reason"] == "Remote"
    assert csms.violations == []


def fw_tx_id(csms):
    return max(csms.transactions) if csms.transactions else None
