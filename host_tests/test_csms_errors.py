"""The CSMS answers our CALLs with a CALLERROR (or an invalid CALLRESULT): each kind of
message is handled as OCPP 1.6 says, and the link stays up through all of it.

- transaction messages (§3.7.1): sent at most TransactionMessageAttempts times, waiting
  TransactionMessageRetryInterval x the earlier sends, then dropped with a log line;
- other messages (StatusNotification, MeterValues outside a transaction, Heartbeat,
  DataTransfer, triggered notifications): not sent again;
- Authorize: decided like an unanswered one, by the offline rules (§3.5);
- BootNotification: the next one after BootRetryInterval (§4.2)."""
import json

from ocpp.v16 import call

from conftest import ROOT
from scenario import boot, settle, firmware_failure

TAG = "04A2B3C4D5"
FAST_RETRY = [("ClockAlignedDataInterval", 0), ("MeterValueSampleInterval", 0),
              ("TransactionMessageAttempts", 3), ("TransactionMessageRetryInterval", 1)]


def sends(csms, action):
    """Times at which the charge point sent `action`."""
    return [t for t, d, _, m in csms.frames if d == "<<" and isinstance(m, list) and len(m) == 4
            and m[0] == 2 and m[2] == action]


def link_kept(fw, csms):
    assert csms.connections == 1, "the link was dropped"
    assert "connection to the CSMS lost" not in "\n".join(fw.lines)
    assert firmware_failure(fw) is None
    assert csms.violations == []


def board_with(tmp_path, **config):
    """The unix board with other configuration defaults, in effect from the first boot."""
    board = json.loads((ROOT / "boards" / "unix" / "board.json").read_text())
    board["config"].update(config)
    d = tmp_path / "board"
    d.mkdir()
    (d / "board.json").write_text(json.dumps(board))
    return str(d)


def test_start_transaction_error_is_resent_then_dropped_and_later_messages_go_on(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, FAST_RETRY)
    csms.errors["StartTransaction"] = ("InternalError", True)
    fw.send("load 1 16")
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    fw.wait_line(r"StartTransaction of transaction 1 dropped after 3 attempts.*InternalError", 20)
    t = sends(csms, "StartTransaction")
    assert len(t) == 3
    # waits of 1 x 1 s and 2 x 1 s between the sends
    assert t[1] - t[0] >= 0.9 and t[2] - t[1] >= 1.9
    # the transaction goes on locally; the CSMS answers again; its Stop cannot be placed
    del csms.errors["StartTransaction"]
    fw.send("card 1 " + TAG)
    fw.wait_line(r"transaction stopped")
    fw.wait_line(r"StopTransaction of transaction 1 dropped: the CSMS never numbered the transaction")
    # the next session is delivered in full
    fw.send("unplug 1")
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: csms.transactions, 10, "second StartTransaction")
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: "meterStop" in csms.transactions.get(1, {}), 10, "second StopTransaction")
    link_kept(fw, csms)


def test_status_notifications_flow_while_a_transaction_message_waits_for_its_retry(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, FAST_RETRY[:2] + [("TransactionMessageAttempts", 2), ("TransactionMessageRetryInterval", 30)])
    csms.errors["StartTransaction"] = ("InternalError", 1)
    fw.send("load 1 16")
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    fw.wait_line(r"StartTransaction of transaction 1 failed \(InternalError.*again in 30 s")
    # the status changes are not held behind the StartTransaction's 30 s wait
    csms.wait_for(lambda: csms.status.get(("CP001", 1)) == "Charging", 10, "Charging status")
    fw.send("fault 2 GroundFailure")
    csms.wait_for(lambda: csms.status.get(("CP001", 2)) == "Faulted", 5, "Faulted status")
    assert len(sends(csms, "StartTransaction")) == 1
    link_kept(fw, csms)


def test_start_transaction_error_once_then_numbered(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, FAST_RETRY)
    csms.errors["StartTransaction"] = ("GenericError", 1)
    fw.send("load 1 16")
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    fw.wait_line(r"the CSMS numbered the transaction on connector 1: 1", 10)
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: "meterStop" in csms.transactions.get(1, {}), 10, "StopTransaction")
    assert len(sends(csms, "StartTransaction")) == 2 and csms.duplicates["StartTransaction"] == 0
    link_kept(fw, csms)


def test_transaction_meter_values_and_stop_errors_are_resent_up_to_the_attempts(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, FAST_RETRY)
    fw.send("load 1 16")
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: csms.transactions, 10, "StartTransaction")
    csms.errors["MeterValues"] = ("FormationViolation", 2)
    fw.send("set MeterValueSampleInterval 1")
    fw.wait_line(r"MeterValues of transaction 1 failed \(FormationViolation")
    fw.wait_line(r"MeterValues of transaction 1 failed \(FormationViolation")
    csms.wait_for(lambda: csms.transactions[1]["meterValues"], 10, "the third send accepted")
    fw.send("set MeterValueSampleInterval 0")
    csms.errors["StopTransaction"] = ("InternalError", True)
    fw.send("card 1 " + TAG)
    fw.wait_line(r"StopTransaction of transaction 1 dropped after 3 attempts.*InternalError", 20)
    assert len(sends(csms, "StopTransaction")) == 3
    assert "meterStop" not in csms.transactions[1]
    link_kept(fw, csms)


def test_non_transaction_messages_are_not_resent(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, FAST_RETRY)
    # StatusNotification
    csms.errors["StatusNotification"] = ("InternalError", True)
    fw.send("plug 2")
    fw.wait_line(r"StatusNotification dropped after 1 attempt.*InternalError")
    n = len(sends(csms, "StatusNotification"))
    # MeterValues outside a transaction (clock-aligned), as a CSMS that wants a transactionId answers
    del csms.errors["StatusNotification"]
    csms.errors["MeterValues"] = ("FormationViolation", True)
    settle(fw, [("ClockAlignedDataInterval", 1)])
    fw.wait_line(r"MeterValues dropped after 1 attempt.*FormationViolation")
    fw.wait_line(r"MeterValues dropped after 1 attempt.*FormationViolation")
    settle(fw, [("ClockAlignedDataInterval", 0)])
    mv = sends(csms, "MeterValues")
    # one send per reading (two connectors a second), never a resend of the same one
    payloads = [m[3] for _, d, _, m in csms.frames if d == "<<" and isinstance(m, list) and m[:1] == [2]
                and m[2] == "MeterValues"]
    assert len(mv) >= 2 and len({(p["connectorId"], p["meterValue"][0]["timestamp"]) for p in payloads}) == len(mv)
    # Heartbeat, an invalid answer (no currentTime) and an error
    csms.errors["Heartbeat"] = ({}, 1)
    fw.send("heartbeat")
    fw.wait_line(r"command failed: CallError")
    csms.errors["Heartbeat"] = ("NotSupported", 1)
    csms.run_call("CP001", call.TriggerMessage(requested_message="Heartbeat"))
    fw.wait_line(r"triggered Heartbeat failed: the CSMS answered NotSupported")
    # DataTransfer from the console
    csms.errors["DataTransfer"] = ("NotImplemented", 1)
    fw.send("datatransfer devcsms")
    fw.wait_line(r"DataTransfer failed, the CSMS answered NotImplemented")
    # triggered Diagnostics/FirmwareStatusNotification
    for action in ("DiagnosticsStatusNotification", "FirmwareStatusNotification"):
        csms.errors[action] = ("InternalError", 1)
        csms.run_call("CP001", call.TriggerMessage(requested_message=action))
        fw.wait_line(r"triggered %s failed: the CSMS answered InternalError" % action)
        assert len(sends(csms, action)) == 1
    assert len(sends(csms, "StatusNotification")) >= n
    # the session still works
    fw.send("datatransfer devcsms")
    fw.wait_line(r"DataTransfer answer: .*Accepted")
    link_kept(fw, csms)


def test_authorize_error_is_decided_by_the_offline_rules(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, FAST_RETRY + [("AllowOfflineTxForUnknownId", "false")])
    csms.errors["Authorize"] = ("InternalError", True)
    fw.send("plug 1")
    fw.send("card 1 UNKNOWN1")
    fw.wait_line(r"Authorize for UNKNOWN1 failed \(the CSMS answered InternalError")
    fw.wait_line(r"card UNKNOWN1 refused")
    settle(fw, [("AllowOfflineTxForUnknownId", "true")])
    fw.send("card 1 UNKNOWN2")
    fw.wait_line(r"Authorize for UNKNOWN2 failed")
    fw.wait_line(r"transaction started for UNKNOWN2")
    # the same card ends the session, without asking the CSMS
    fw.send("card 1 UNKNOWN2")
    fw.wait_line(r"transaction stopped")
    csms.wait_for(lambda: "meterStop" in csms.transactions.get(1, {}), 10, "StopTransaction")
    link_kept(fw, csms)


def test_boot_notification_error_waits_the_boot_retry_interval(csms, firmware_factory, tmp_path):
    fw = firmware_factory(csms, board=board_with(tmp_path, BootRetryInterval=3))
    csms.errors["BootNotification"] = ("InternalError", 2)
    fw.start()
    fw.wait_line(r"accepted this charge point", 20)
    t = sends(csms, "BootNotification")
    assert len(t) == 3
    assert t[1] - t[0] >= 2.9 and t[2] - t[1] >= 2.9
    # nothing else was sent before the boot was accepted (§4.2)
    acts = [m[2] for _, d, _, m in csms.frames if d == "<<" and isinstance(m, list) and m[:1] == [2]]
    assert acts[:3] == ["BootNotification"] * 3
    assert "BootNotification failed (the CSMS answered InternalError" in "\n".join(fw.lines)
    link_kept(fw, csms)
