"""`make run`: the firmware on the MicroPython unix port charges a simulated car
against the bundled dev CSMS, and the terminal shows what happens.

Boot, plug in, present a card, charge with meter values flowing, present the
card again to stop, unplug. Exits 0 when the CSMS has recorded the whole
session with every frame valid against the official OCPP 1.6 schemas.

`--ocpp 2.0.1` (`make run OCPP=2.0.1`): the REON station's OCPP 2.0.1 session
(../shared/seeds/002: boot, status, a card transaction with Transaction.Begin /
Transaction.End meter values, Get/SetVariables of the EVSE's AvailabilityStatus)
against the dev CSMS speaking 2.0.1 only, every frame valid against the 2.0.1 schemas.
"""
import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "host_tests"))
from conftest import Firmware  # noqa: E402
from dev_csms import DevCSMS, V201  # noqa: E402

TAG = "04A2B3C4D5"
CP = "DEMO-CP-1"
ENERGY = "Energy.Active.Import.Register"


def say(text):
    print("\n==== " + text, flush=True)


def start_firmware(data, port, **kw):
    fw = Firmware(Path(data) / "data", "ws://127.0.0.1:%d" % port, CP, **kw)
    # Show the firmware's own log lines as they come.
    fw.cmd.remove("--frames")
    os.environ["FW_ECHO"] = "1"
    return fw.start()


def session16():
    csms = DevCSMS(heartbeat_interval=60)
    port = csms.start_in_thread()
    say("dev CSMS listening on ws://127.0.0.1:%d" % port)
    with tempfile.TemporaryDirectory() as data:
        fw = start_firmware(data, port)
        try:
            fw.wait_line(r"accepted this charge point")
            fw.send("set MeterValueSampleInterval 2")
            fw.wait_line(r"set MeterValueSampleInterval")
            say("a vehicle that will draw 16 A per phase plugs into connector 1")
            fw.send("load 1 16")
            fw.send("plug 1")
            fw.wait_line(r"connector 1: \w+ -> Preparing")
            say("the driver presents card %s" % TAG)
            fw.send("card 1 " + TAG)
            fw.wait_line(r"transaction started")
            csms.wait_for(lambda: csms.transactions and csms.transactions[1]["meterValues"][2:], 30,
                          "three meter values")
            say("the CSMS received %d meter values; the driver presents the card again"
                % len(csms.transactions[1]["meterValues"]))
            fw.send("card 1 " + TAG)
            fw.wait_line(r"transaction stopped")
            csms.wait_for(lambda: "meterStop" in csms.transactions[1], 20, "StopTransaction")
            say("the vehicle unplugs")
            fw.send("unplug 1")
            csms.wait_for(lambda: csms.status.get((CP, 1)) == "Available", 20, "Available")
        finally:
            fw.stop()
        tx = csms.transactions[1]
        say("the CSMS recorded transaction 1: idTag %s, meterStart %d Wh, meterStop %d Wh, %d meter values, "
            "reason %s" % (tx["idTag"], tx["meterStart"], tx["meterStop"], len(tx["meterValues"]), tx["reason"]))
        say("messages from the charge point: " + ", ".join(csms.actions()))
        csms.stop_thread()
        if csms.violations or fw.crashed() or tx["meterStop"] <= tx["meterStart"]:
            say("FAILED: %s" % (csms.violations or fw.crashed() or "no energy delivered"))
            return 1
        say("session complete, every frame valid against the OCPP 1.6 schemas")
        return 0


def energy(event, context):
    # The Energy.Active.Import.Register reading of that context in a TransactionEvent, or None.
    for mv in event.get("meterValue", ()):
        for s in mv["sampledValue"]:
            if s.get("context") == context and s.get("measurand", ENERGY) == ENERGY:
                return s["value"]
    return None


def session201():
    from ocpp.v201 import call
    csms = DevCSMS(heartbeat_interval=60, protocols=(V201,))
    port = csms.start_in_thread()
    say("dev CSMS listening on ws://127.0.0.1:%d, speaking OCPP 2.0.1 only" % port)
    avail = {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityStatus"}}
    status = lambda: csms.status201.get((CP, 1, 1))  # noqa: E731
    with tempfile.TemporaryDirectory() as data:
        fw = start_firmware(data, port, ocpp="2.0.1")
        try:
            csms.wait_for(lambda: csms.registration.get(CP) == "Accepted", 30, "BootNotification accepted")
            boot = csms.calls("BootNotification")[-1][2]
            say("BootNotification reason %s, chargingStation %s" % (boot["reason"], boot["chargingStation"]))
            csms.wait_for(lambda: status() == "Available", 20, "EVSE 1 Available")
            # meter values every 2 s; the energy register in the Ended event too (Transaction.End:
            # SampledDataCtrlr.TxEndedMeasurands, the 1.6 key StopTxnSampledData)
            for key, value in (("MeterValueSampleInterval", 2), ("StopTxnSampledData", ENERGY)):
                fw.send("set %s %s" % (key, value))
                fw.wait_line(r"set %s: Accepted" % key)
            say("a vehicle that will draw 16 A per phase plugs into EVSE 1")
            fw.send("load 1 16")
            fw.send("plug 1")
            csms.wait_for(lambda: status() == "Occupied", 20, "EVSE 1 Occupied")
            say("the driver presents card %s" % TAG)
            fw.send("card 1 " + TAG)
            txid = csms.wait_for(lambda: next((t for t, ev in csms.transactions201.items()
                                               if ev[0]["eventType"] == "Started"), None), 20, "Started")
            events = csms.transactions201[txid]
            csms.wait_for(lambda: len([e for e in events if e["triggerReason"] == "MeterValuePeriodic"]) >= 3,
                          30, "three periodic meter values")
            say("transaction %s: the CSMS received %d events; the driver presents the card again"
                % (txid, len(events)))
            fw.send("card 1 " + TAG)
            csms.wait_for(lambda: events[-1]["eventType"] == "Ended", 20, "Ended")
            say("the vehicle unplugs")
            fw.send("unplug 1")
            csms.wait_for(lambda: status() == "Available", 20, "EVSE 1 Available")
            say("the CSMS reads, then sets, the EVSE's AvailabilityStatus (the REON station's variable)")
            got = csms.run_call(CP, call.GetVariables(get_variable_data=[avail]), raw=True)
            say("GetVariables: %s" % got["getVariableResult"])
            answer = csms.run_call(CP, call.SetVariables(set_variable_data=[dict(avail, attribute_value="Unavailable")]),
                                   raw=True)
            say("SetVariables Unavailable: %s" % answer["setVariableResult"])
            csms.wait_for(lambda: status() == "Unavailable", 20, "EVSE 1 Unavailable")
            answer = csms.run_call(CP, call.SetVariables(set_variable_data=[dict(avail, attribute_value="Available")]),
                                   raw=True)
            say("SetVariables Available: %s" % answer["setVariableResult"])
            csms.wait_for(lambda: status() == "Available", 20, "EVSE 1 Available again")
        finally:
            fw.stop()
        csms.stop_thread()
        begin, end = energy(events[0], "Transaction.Begin"), energy(events[-1], "Transaction.End")
        say("the CSMS recorded transaction %s: idToken %s, seqNo %s, Begin %s Wh, End %s Wh, stoppedReason %s"
            % (txid, events[0].get("idToken"), [e["seqNo"] for e in events], begin, end,
               events[-1]["transactionInfo"].get("stoppedReason")))
        say("messages from the charging station: " + ", ".join(csms.actions()))
        problems = (csms.violations or fw.crashed() or csms.seq_gaps
                    or ([] if [e["seqNo"] for e in events] == list(range(len(events))) else "seqNo not 0, 1, ...")
                    or ([] if begin is not None and end is not None and float(end) > float(begin)
                        else "no Transaction.Begin / Transaction.End energy, or none delivered"))
        if problems:
            say("FAILED: %s" % (problems,))
            return 1
        say("session complete, every frame valid against the OCPP 2.0.1 schemas")
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ocpp", default="1.6", choices=("1.6", "2.0.1"), help="the protocol of the session")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return session201() if args.ocpp == "2.0.1" else session16()


if __name__ == "__main__":
    sys.exit(main())
