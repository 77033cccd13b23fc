"""Core remote control on the unix port against the ocpp-library CSMS:
RemoteStart/Stop, ChangeAvailability, Change/GetConfiguration, UnlockConnector,
Reset; each answer, the bad inputs, and what must survive a restart."""
import json

from ocpp.v16 import call

from conftest import ROOT
from scenario import boot, restart, statuses, wait_status, answer_index, call_indexes

TAG = "04A2B3C4D5"
NO_ALIGNED = [("ClockAlignedDataInterval", 0)]


def stops(csms):
    return [p for _, _, p in csms.calls("StopTransaction")]


def test_remote_start_answers(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, NO_ALIGNED)
    run = lambda **kw: csms.run_call("CP001", call.RemoteStartTransaction(**kw)).status  # noqa: E731
    assert run(id_tag=TAG, connector_id=9) == "Rejected"  # unknown connector
    assert run(id_tag=TAG, connector_id=0) == "Rejected"  # connectorId SHALL be > 0
    # A vehicle waits on connector 2: a start without connectorId goes there.
    fw.send("plug 2")
    wait_status(csms, 2, "Preparing")
    assert run(id_tag=TAG) == "Accepted"
    csms.wait_for(lambda: csms.calls("StartTransaction"), 10, "StartTransaction")
    assert csms.calls("StartTransaction")[0][2]["connectorId"] == 2
    # Connector 2 is occupied now.
    assert run(id_tag="OTHER", connector_id=2) == "Rejected"
    # Connector 1 is free: accepted, and it waits ConnectionTimeOut for a vehicle.
    fw.send("set ConnectionTimeOut 1")
    assert run(id_tag="OTHER", connector_id=1) == "Accepted"
    wait_status(csms, 1, "Preparing")
    wait_status(csms, 1, "Available")  # nobody plugged in: the authorization lapsed
    # A TxProfile becomes the transaction's limit (test_smart_charging.py has the rest);
    # other purposes, or one naming a transaction, are refused.
    sched = {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}
    tx_profile = {"chargingProfileId": 7, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
                  "chargingProfileKind": "Relative", "chargingSchedule": sched}
    assert run(id_tag="P1", connector_id=1, charging_profile=dict(tx_profile, chargingProfilePurpose="TxDefaultProfile")) \
        == "Rejected"
    assert run(id_tag="P1", connector_id=1, charging_profile=dict(tx_profile, transactionId=3)) == "Rejected"
    fw.send("plug 1")
    assert run(id_tag="P1", connector_id=1, charging_profile=tx_profile) == "Accepted"
    fw.wait_line(r"connector 1: charging limit 16.0 A")
    # RemoteStop: unknown transaction Rejected, known Accepted with reason Remote.
    csms.wait_for(lambda: len(csms.transactions) == 2, 10, "two transactions")
    assert csms.run_call("CP001", call.RemoteStopTransaction(transaction_id=999)).status == "Rejected"
    assert csms.run_call("CP001", call.RemoteStopTransaction(transaction_id=1)).status == "Accepted"
    csms.wait_for(lambda: stops(csms), 10, "StopTransaction")
    assert stops(csms)[0]["reason"] == "Remote" and stops(csms)[0]["transactionId"] == 1
    assert csms.violations == []


def test_remote_start_authorized_first(csms, firmware_factory):
    csms.tags = {"BLOCKED": "Blocked"}
    fw = firmware_factory(csms)
    boot(fw, csms, NO_ALIGNED + [("AuthorizeRemoteTxRequests", "true")])
    fw.send("plug 1")
    # Accepted (the request is taken), but the idTag fails its Authorize: no transaction.
    assert csms.run_call("CP001", call.RemoteStartTransaction(id_tag="BLOCKED", connector_id=1)).status == "Accepted"
    fw.wait_line(r"remote start refused, BLOCKED is Blocked")
    assert csms.run_call("CP001", call.RemoteStartTransaction(id_tag=TAG, connector_id=1)).status == "Accepted"
    csms.wait_for(lambda: csms.calls("StartTransaction"), 10, "StartTransaction")
    assert csms.actions().count("Authorize") == 2
    assert call_indexes(csms, "Authorize")[-1] < call_indexes(csms, "StartTransaction")[0]
    assert csms.violations == []


def test_change_availability_all_answers_and_persistence(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, NO_ALIGNED)
    ca = lambda cid, kind: csms.run_call("CP001", call.ChangeAvailability(connector_id=cid, type=kind)).status  # noqa
    assert ca(9, "Inoperative") == "Rejected"  # unknown connector
    assert ca(1, "Operative") == "Accepted"  # already so
    assert ca(1, "Inoperative") == "Accepted"
    wait_status(csms, 1, "Unavailable")
    # An unavailable connector takes no card and no remote start.
    fw.send("card 1 " + TAG)
    fw.wait_line(r"connector 1 is Unavailable: card %s ignored" % TAG)
    assert csms.run_call("CP001", call.RemoteStartTransaction(id_tag=TAG, connector_id=1)).status == "Rejected"
    # A transaction on connector 2: the change waits for its end (Scheduled).
    fw.send("plug 2")
    fw.send("card 2 " + TAG)
    csms.wait_for(lambda: csms.transactions, 10, "transaction")
    assert ca(2, "Inoperative") == "Scheduled"
    assert statuses(csms, 2)[-1] != "Unavailable"
    fw.send("card 2 " + TAG)
    wait_status(csms, 2, "Unavailable")  # C8/F8: straight to Unavailable
    fw.send("unplug 2")  # the vehicle leaves (it would still be there after the restart below)
    # The whole station, then a connector while the station is down: Rejected.
    assert ca(0, "Inoperative") == "Accepted"
    wait_status(csms, 0, "Unavailable")
    assert ca(1, "Operative") == "Rejected"
    # It survives a restart of the firmware.
    restart(fw, csms, NO_ALIGNED)
    for cid in (0, 1, 2):
        assert statuses(csms, cid)[-1] == "Unavailable"
    assert ca(0, "Operative") == "Accepted"
    for cid in (0, 1, 2):
        wait_status(csms, cid, "Available")
    # Station-wide change while a transaction runs: Scheduled, applied at its end.
    fw.send("card 1 " + TAG)
    fw.send("plug 1")
    csms.wait_for(lambda: len(csms.transactions) == 2, 10, "second transaction")
    assert ca(0, "Inoperative") == "Scheduled"
    wait_status(csms, 2, "Unavailable")  # the idle connector at once
    assert statuses(csms, 0)[-1] == "Available"
    fw.send("unplug 1")  # EVDisconnected ends the transaction
    wait_status(csms, 1, "Unavailable")
    wait_status(csms, 0, "Unavailable")
    restart(fw, csms)
    assert [statuses(csms, cid)[-1] for cid in (0, 1, 2)] == ["Unavailable"] * 3
    assert csms.violations == []


def test_change_and_get_configuration(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, NO_ALIGNED)
    cc = lambda k, v: csms.run_call("CP001", call.ChangeConfiguration(key=k, value=v)).status  # noqa: E731
    assert cc("NoSuchKey", "1") == "NotSupported"
    assert cc("OfflineThreshold", "60") == "NotSupported"  # a 2.0.1 device model variable, no 1.6 key
    assert cc("NumberOfConnectors", "3") == "Rejected"  # read-only
    assert cc("MeterValueSampleInterval", "often") == "Rejected"  # not an integer
    assert cc("MeterValueSampleInterval", "-5") == "Rejected"  # out of range
    assert cc("LocalPreAuthorize", "maybe") == "Rejected"  # not a boolean
    assert cc("MeterValuesSampledData", "Energy.Active.Import.Register,Bogus") == "Rejected"
    assert cc("WifiSsid", "depot") == "RebootRequired"
    assert cc("AuthorizationKey", "0011223344556677aabb") == "Accepted"
    assert cc("localpreauthorize", "TRUE") == "Accepted"  # keys and booleans are case-insensitive
    # Takes effect at once: heartbeats every second, meter values every second.
    assert cc("HeartbeatInterval", "1") == "Accepted"
    csms.wait_for(lambda: len(csms.calls("Heartbeat")) >= 2, 5, "heartbeats at the new interval")
    assert cc("MeterValueSampleInterval", "1") == "Accepted"
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: len(csms.calls("MeterValues")) >= 2, 6, "meter values at the new interval")
    # GetConfiguration: known keys with readonly flags, unknown ones listed, the key never shown.
    answer = csms.run_call("CP001", call.GetConfiguration(key=["HeartbeatInterval", "Nope", "AuthorizationKey",
                                                                "NumberOfConnectors"]))
    kv = {k["key"]: k for k in answer.configuration_key}
    assert kv["HeartbeatInterval"] == {"key": "HeartbeatInterval", "readonly": False, "value": "1"}
    assert kv["NumberOfConnectors"]["readonly"] is True and kv["NumberOfConnectors"]["value"] == "2"
    assert kv["AuthorizationKey"] == {"key": "AuthorizationKey", "readonly": False}
    assert answer.unknown_key == ["Nope"]
    everything = csms.run_call("CP001", call.GetConfiguration()).configuration_key
    names = {k["key"] for k in everything}
    assert {"LocalAuthListMaxLength", "ReserveConnectorZeroSupported", "SupportedFeatureProfiles"} <= names
    # GetConfigurationMaxKeys is honoured.
    fw.send("set GetConfigurationMaxKeys 2")
    fw.wait_line(r"set GetConfigurationMaxKeys: Accepted")
    answer = csms.run_call("CP001", call.GetConfiguration(key=["HeartbeatInterval", "LocalPreAuthorize",
                                                                "MeterValueSampleInterval"]))
    assert [k["key"] for k in answer.configuration_key] == ["HeartbeatInterval", "LocalPreAuthorize"]
    # A wrong JSON type is a CALLERROR before any handler runs.
    csms.send_raw("CP001", '[2,"bad1","ChangeConfiguration",{"key":"HeartbeatInterval","value":5}]')
    csms.wait_for(lambda: [m for _, d, _, m in csms.frames if d == "<<" and m[:2] == [4, "bad1"]], 5, "CALLERROR")
    # Stored in flash: back after a restart.
    restart(fw, csms)
    got = {}
    for keys in (["MeterValueSampleInterval", "LocalPreAuthorize"], ["WifiSsid", "GetConfigurationMaxKeys"]):
        got.update({k["key"]: k["value"] for k in csms.run_call("CP001", call.GetConfiguration(key=keys)).configuration_key})
    assert got == {"MeterValueSampleInterval": "1", "LocalPreAuthorize": "true", "WifiSsid": "depot",
                   "GetConfigurationMaxKeys": "2"}
    assert csms.violations == []


def test_unlock_connector(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, NO_ALIGNED)
    unlock = lambda cid: csms.run_call("CP001", call.UnlockConnector(connector_id=cid)).status  # noqa: E731
    assert unlock(9) == "NotSupported"  # errata 3.85: unknown connector
    assert unlock(1) == "Unlocked"
    # A running transaction ends first, with reason UnlockCommand.
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    fw.wait_line(r"connector 1: cable locked")
    csms.wait_for(lambda: csms.transactions, 10, "transaction")
    assert unlock(1) == "Unlocked"
    csms.wait_for(lambda: stops(csms), 10, "StopTransaction")
    assert stops(csms)[0]["reason"] == "UnlockCommand"
    assert call_indexes(csms, "StopTransaction")[0] > answer_index(csms, "UnlockConnector")
    # A stuck latch.
    fw.send("lock 2 jam")
    assert unlock(2) == "UnlockFailed"
    assert csms.violations == []


def test_unlock_connector_without_a_lock(csms, firmware_factory, tmp_path):
    board = json.loads((ROOT / "boards/unix/board.json").read_text())
    for c in board["connectors"]:
        c.pop("lock")
    (tmp_path / "nolock").mkdir()
    (tmp_path / "nolock/board.json").write_text(json.dumps(board))
    fw = firmware_factory(csms, board=str(tmp_path / "nolock"))
    boot(fw, csms, NO_ALIGNED)
    assert csms.run_call("CP001", call.UnlockConnector(connector_id=1)).status == "NotSupported"
    assert csms.violations == []


def reset_scenario(csms, fw, kind):
    boot(fw, csms, NO_ALIGNED)
    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: csms.transactions, 10, "transaction")
    assert csms.run_call("CP001", call.ChangeAvailability(connector_id=2, type="Inoperative")).status == "Accepted"
    assert csms.run_call("CP001", call.Reset(type=kind)).status == "Accepted"
    fw.wait_line(r"restarting now")
    fw.wait_line(r"boot: charge point CP001")  # the process came back
    fw.wait_line(r"accepted this charge point")
    csms.wait_for(lambda: csms.actions().count("BootNotification") == 2, 5, "second boot")
    # The StopTransaction went out before the restart, after the Reset answer.
    assert stops(csms)[0]["reason"] == kind + "Reset"
    assert answer_index(csms, "Reset") < call_indexes(csms, "StopTransaction")[0] < call_indexes(csms, "BootNotification")[1]
    # It came back with its state.
    csms.wait_for(lambda: statuses(csms, 2)[-1:] == ["Unavailable"] and len(statuses(csms, 2)) >= 3, 10, "statuses")
    assert not [line for line in fw.lines if "interrupted" in line]  # nothing was left running
    assert csms.violations == []


def test_soft_reset(csms, firmware_factory):
    reset_scenario(csms, firmware_factory(csms), "Soft")


def test_hard_reset(csms, firmware_factory):
    reset_scenario(csms, firmware_factory(csms), "Hard")
