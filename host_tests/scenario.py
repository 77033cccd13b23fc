"""Helpers for end-to-end scenarios: boot the firmware, watch statuses, check
the order of frames, a CSMS that answers with full idTagInfo (parentIdTag,
expiryDate) for the authorization tests, and the full session of the memory
budget (budget_session: host_tests/test_budget.py, tools/bench.py)."""
import time
from datetime import datetime, timedelta, timezone

import pytest
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v201 import call as call201

import dev_csms
from v201help import CP, events, statuses as statuses201


def boot(fw, csms, settings=()):
    """Start (or restart) the firmware, wait until it is accepted and has sent
    its statuses, then apply `set key value` console settings."""
    before = len(csms.calls("StatusNotification"))
    fw.start()
    fw.wait_line(r"accepted this charge point")
    csms.wait_for(lambda: len(csms.calls("StatusNotification")) >= before + 3, 10, "boot statuses")
    settle(fw, settings)


def settle(fw, settings):
    for key, value in settings:
        fw.send("set %s %s" % (key, value))
        fw.wait_line(r"set %s: Accepted" % key)


def restart(fw, csms, settings=()):
    """The firmware process stops (quit) and a new one starts on the same flash."""
    fw.stop()
    boot(fw, csms, settings)


def statuses(csms, cid):
    return [p["status"] for _, _, p in csms.calls("StatusNotification") if p["connectorId"] == cid]


def wait_status(csms, cid, status, timeout=10):
    csms.wait_for(lambda: statuses(csms, cid)[-1:] == [status], timeout, "connector %d %s" % (cid, status))


def iso(seconds_from_now):
    t = datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def answer_index(csms, action):
    """Index in csms.frames of our last answer to the CSMS's last `action` CALL."""
    ids = [m[1] for _, d, _, m in csms.frames if d == ">>" and isinstance(m, list) and m[0] == 2 and m[2] == action]
    for i, (_, d, _, m) in enumerate(csms.frames):
        if d == "<<" and isinstance(m, list) and m[0] == 3 and m[1] == ids[-1]:
            return i
    raise AssertionError("no answer to " + action)


def call_indexes(csms, action):
    return [i for i, (_, d, _, m) in enumerate(csms.frames)
            if d == "<<" and isinstance(m, list) and m[0] == 2 and m[2] == action]


_Handler = dev_csms.ChargePointHandler


class InfoHandler(_Handler):
    """Authorize and StartTransaction answers carry csms.infos[idTag] too."""

    @on("Authorize")
    def on_authorize(self, id_tag):
        return call_result.Authorize(id_tag_info=self.csms.tag_info(id_tag))

    @on("StartTransaction")
    def on_start(self, **kw):
        answer = _Handler.on_start(self, **kw)
        answer.id_tag_info = self.csms.tag_info(kw["id_tag"])
        return answer


def info_csms(monkeypatch, **kw):
    monkeypatch.setattr(dev_csms, "ChargePointHandler", InfoHandler)
    c = dev_csms.DevCSMS(**kw)
    c.infos = {}
    c.tag_info = lambda tag: dict({"status": c.tag_status(tag)}, **c.infos.get(tag, {}))
    c.start_in_thread()
    return c


@pytest.fixture
def icsms(monkeypatch):
    """A dev CSMS with full idTagInfo answers; a test may take it down for good."""
    c = info_csms(monkeypatch)
    yield c
    if c.loop.is_running():
        c.stop_thread()


def go_offline(fw, csms):
    csms.stop_thread()
    fw.wait_line(r"connection to the CSMS lost")


# ---- the full session of the performance budget (issue #6) ---------------------

BUDGET_TAG = "04A2B3C4D5"
BUDGET_REMOTE_TAG = "7E57CA4D01"
BUDGET_METER_VALUES = 10  # periodic MeterValues of the main transaction, one a second
BUDGET_MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage"


def firmware_failure(fw):
    """Why the firmware run counts as failed so far (a traceback, a MemoryError,
    the process gone), or None."""
    for line in fw.lines:
        if "Traceback" in line or "MemoryError" in line:
            return "firmware log: " + line
    if fw.proc is not None and fw.proc.poll() is not None:
        return "firmware exited with code %s" % fw.proc.returncode
    return None


def _check(fw):
    why = firmware_failure(fw)
    if why:
        raise AssertionError(why + "\nlast lines:\n" + "\n".join(fw.lines[-30:]))


def _wait(fw, predicate, timeout, what):
    # csms.wait_for that gives up at once when the firmware has failed.
    end = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        _check(fw)
        if time.time() > end:
            raise TimeoutError("timed out waiting for " + what)
        time.sleep(0.05)


def _line(fw, pattern, timeout=20):
    end = time.time() + timeout
    while True:
        try:
            return fw.wait_line(pattern, timeout=0.25)
        except AssertionError:
            _check(fw)
            if time.time() > end:
                raise


def _tx_id(csms, cp, connector):
    """transactionId the CSMS gave the last StartTransaction of `connector`."""
    ids = [t for t, tx in csms.transactions.items() if tx["cp"] == cp and tx["connector"] == connector]
    return max(ids) if ids else None


def _cp_statuses(csms, cp, cid):
    return [m[3]["status"] for _, d, c, m in csms.frames if d == "<<" and c == cp and isinstance(m, list)
            and len(m) == 4 and m[0] == 2 and m[2] == "StatusNotification" and m[3].get("connectorId") == cid]


def budget_session(fw, csms, cp="CP001", after_boot=None):
    """One full charging session, the yardstick of the memory budget: boot;
    MeterValueSampleInterval 1 s and MeterPollInterval 1000 ms; plug 1, card
    (Authorize, StartTransaction); BUDGET_METER_VALUES periodic MeterValues
    while the CSMS sends GetConfiguration (every key), ChangeConfiguration
    (MeterValuesSampledData with per-phase current and voltage),
    TriggerMessage(StatusNotification) and RemoteStartTransaction on connector 2
    followed by RemoteStopTransaction; the card again (StopTransaction); unplug.
    Raises on anything missing, any schema violation, any traceback or
    MemoryError. `after_boot(fw)` runs once the boot statuses are in.
    Takes about 15 s. -> {"transactions": (id 1, id 2), "meter_values": n}"""
    fw.start()
    _line(fw, r"accepted this charge point")
    _wait(fw, lambda: len(_cp_statuses(csms, cp, 0)) >= 1 and len(_cp_statuses(csms, cp, 2)) >= 1,
          10, "boot statuses")
    if after_boot:
        after_boot(fw)
    for key, value in (("MeterValueSampleInterval", 1), ("MeterPollInterval", 1000)):
        fw.send("set %s %s" % (key, value))
        _line(fw, r"set %s: Accepted" % key)

    # The main transaction: plug, card.
    fw.send("load 1 16")
    fw.send("plug 1")
    _wait(fw, lambda: _cp_statuses(csms, cp, 1)[-1:] == ["Preparing"], 10, "connector 1 Preparing")
    fw.send("card 1 " + BUDGET_TAG)
    tx1 = _wait(fw, lambda: _tx_id(csms, cp, 1), 10, "StartTransaction on connector 1")

    def meter_values(tx):
        # the periodic ones: a clock-aligned reading (every 15 min by default) may fall in the session
        return [p for _, _, p in csms.calls("MeterValues") if p.get("transactionId") == tx
                and p["meterValue"][0]["sampledValue"][0].get("context") == "Sample.Periodic"]

    _wait(fw, lambda: meter_values(tx1), 10, "the first MeterValues")

    # Remote commands from the CSMS while it charges.
    conf = csms.run_call(cp, call.GetConfiguration())
    keys = {k["key"]: k.get("value") for k in conf.configuration_key}
    assert keys.get("MeterValueSampleInterval") == "1" and len(keys) >= 50, keys
    answer = csms.run_call(cp, call.ChangeConfiguration(key="MeterValuesSampledData", value=BUDGET_MEASURANDS))
    assert answer.status == "Accepted", answer
    before = len(_cp_statuses(csms, cp, 1))
    answer = csms.run_call(cp, call.TriggerMessage(requested_message="StatusNotification", connector_id=1))
    assert answer.status == "Accepted", answer
    _wait(fw, lambda: len(_cp_statuses(csms, cp, 1)) > before, 10, "the triggered StatusNotification")
    fw.send("load 2 10")
    fw.send("plug 2")
    _wait(fw, lambda: _cp_statuses(csms, cp, 2)[-1:] == ["Preparing"], 10, "connector 2 Preparing")
    answer = csms.run_call(cp, call.RemoteStartTransaction(id_tag=BUDGET_REMOTE_TAG, connector_id=2))
    assert answer.status == "Accepted", answer
    tx2 = _wait(fw, lambda: _tx_id(csms, cp, 2), 10, "StartTransaction on connector 2")
    _wait(fw, lambda: _cp_statuses(csms, cp, 2)[-1:] in (["Charging"], ["SuspendedEV"]), 10, "connector 2 charging")
    answer = csms.run_call(cp, call.RemoteStopTransaction(transaction_id=tx2))
    assert answer.status == "Accepted", answer
    _wait(fw, lambda: "meterStop" in csms.transactions[tx2], 10, "StopTransaction of the remote transaction")
    fw.send("unplug 2")

    # The rest of the main transaction's meter values, then the card ends it.
    _wait(fw, lambda: len(meter_values(tx1)) >= BUDGET_METER_VALUES, 30, "%d MeterValues" % BUDGET_METER_VALUES)
    fw.send("card 1 " + BUDGET_TAG)
    _wait(fw, lambda: "meterStop" in csms.transactions[tx1], 10, "StopTransaction of the main transaction")
    fw.send("unplug 1")
    _wait(fw, lambda: _cp_statuses(csms, cp, 1)[-1:] == ["Available"] and _cp_statuses(csms, cp, 2)[-1:]
          == ["Available"], 10, "both connectors Available")

    # Everything arrived, in good shape.
    _check(fw)
    assert csms.violations == [], csms.violations
    mine = [a for _, a, _ in csms.calls() if a in ("Authorize", "StartTransaction", "StopTransaction")]
    assert mine == ["Authorize", "StartTransaction", "StartTransaction", "StopTransaction", "StopTransaction"], mine
    t1, t2 = csms.transactions[tx1], csms.transactions[tx2]
    assert t1["idTag"] == BUDGET_TAG and t1["meterStart"] == 0 and t1["reason"] == "Local", t1
    assert t2["idTag"] == BUDGET_REMOTE_TAG and t2["reason"] == "Remote", t2
    mvs = meter_values(tx1)
    energy = [int(s["value"]) for p in mvs for s in p["meterValue"][0]["sampledValue"]
              if s["measurand"] == "Energy.Active.Import.Register"]
    assert len(energy) == len(mvs) and energy == sorted(energy) and 0 < energy[-1] <= t1["meterStop"], energy
    phases = [s for s in mvs[-1]["meterValue"][0]["sampledValue"] if s["measurand"] in ("Current.Import", "Voltage")]
    assert len(phases) == 6, mvs[-1]  # the changed MeterValuesSampledData: 3 currents, 3 voltages
    return {"transactions": (tx1, tx2), "meter_values": len(mvs)}


# ---- the same yardstick for OCPP 2.0.1 (issue #14) ----------------------------------

def budget_session201(fw, csms):
    """Boot; MeterValueSampleInterval 1 s; plug 1, card (Authorize, Started); GetBaseReport
    FullInventory (NotifyReports); SetVariables TxUpdatedMeasurands with per-phase current and
    voltage; 10 periodic Updated events; TriggerMessage(StatusNotification),
    RequestStartTransaction on EVSE 2 then RequestStopTransaction; the card again (Ended
    with its Begin, samples and End values); unplug."""
    fw.start()
    _line(fw, r"accepted this charging station")
    _wait(fw, lambda: len(statuses201(csms)) >= 2, 10, "boot statuses")
    for key, value in (("MeterValueSampleInterval", 1), ("MeterPollInterval", 1000),
                       ("StopTxnSampledData", "Energy.Active.Import.Register")):
        fw.send("set %s %s" % (key, value))
        fw.wait_line(r"set %s: Accepted" % key)
    fw.send("load 1 16")
    fw.send("plug 1")
    fw.send("card 1 " + BUDGET_TAG)
    tx1 = _wait(fw, lambda: next((e["transactionInfo"]["transactionId"] for e in events(csms)
                                  if e["eventType"] == "Started"), None), 10, "Started")
    # the largest answer: every variable of the device model, in NotifyReports (as 1.6's GetConfiguration)
    assert csms.run_call(CP, call201.GetBaseReport(request_id=9, report_base="FullInventory")).status == "Accepted"
    _wait(fw, lambda: csms.report_done(9), 20, "the FullInventory report")
    assert len(csms.report_data(9)) >= 50
    assert csms.run_call(CP, call201.SetVariables(set_variable_data=[{
        "component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedMeasurands"},
        "attribute_value": BUDGET_MEASURANDS}])).set_variable_result[0]["attribute_status"] == "Accepted"
    n = len(statuses201(csms, 1))
    assert csms.run_call(CP, call201.TriggerMessage(requested_message="StatusNotification",
                                                    evse={"id": 1, "connector_id": 1})).status == "Accepted"
    _wait(fw, lambda: len(statuses201(csms, 1)) > n, 10, "the triggered StatusNotification")
    fw.send("load 2 10")
    fw.send("plug 2")
    assert csms.run_call(CP, call201.RequestStartTransaction(
        id_token={"id_token": BUDGET_REMOTE_TAG, "type": "Central"}, remote_start_id=1, evse_id=2)).status == "Accepted"
    tx2 = _wait(fw, lambda: next((e["transactionInfo"]["transactionId"] for e in events(csms)
                                  if e["eventType"] == "Started" and e["evse"]["id"] == 2), None), 10, "Started 2")
    assert csms.run_call(CP, call201.RequestStopTransaction(transaction_id=tx2)).status == "Accepted"
    _wait(fw, lambda: events(csms, tx2)[-1]["eventType"] == "Ended", 10, "Ended 2")
    fw.send("unplug 2")

    def periodic():
        return [e for e in events(csms, tx1) if e["triggerReason"] == "MeterValuePeriodic"]
    _wait(fw, lambda: len(periodic()) >= BUDGET_METER_VALUES, 30, "10 periodic values")
    fw.send("card 1 " + BUDGET_TAG)
    _wait(fw, lambda: events(csms, tx1)[-1]["eventType"] == "Ended", 10, "Ended")
    fw.send("unplug 1")
    _wait(fw, lambda: dict(statuses201(csms)) == {1: "Available", 2: "Available"}, 10, "Available")
    assert csms.violations == [] and csms.seq_gaps == []
    assert len([s for s in periodic()[-1]["meterValue"][0]["sampledValue"]
                if s["measurand"] in ("Current.Import", "Voltage")]) == 6
    return tx1, tx2
