"""OCPP 2.0.1 on the unix port: boot, a card session and a remote session against the
2.0.1 dev CSMS (the ocpp library's v201 classes check every frame against the schemas)."""
from ocpp.v201 import call

from dev_csms import RFC3339
from v201help import CP, TAG, events, start, statuses, values, wait_event

ENERGY = "Energy.Active.Import.Register"



def test_boot_accepted_reports_station_and_every_evse(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201)
    boot = csms201.calls("BootNotification")[0][2]
    assert boot["reason"] == "PowerUp"
    assert boot["chargingStation"] == {"model": "UnixSimulator", "vendorName": "mpocpp",
                                       "serialNumber": "SIM-CP-0001",
                                       "firmwareVersion": boot["chargingStation"]["firmwareVersion"]}
    assert sorted(statuses(csms201)) == [(1, "Available"), (2, "Available")]
    for _, _, p in csms201.calls("StatusNotification"):
        assert p["connectorId"] == 1 and RFC3339.match(p["timestamp"])
    # the boot's security event goes out too (after the boot)
    csms201.wait_for(lambda: csms201.calls("SecurityEventNotification"), 10, "StartupOfTheDevice")
    acts = csms201.actions()
    assert acts[0] == "BootNotification"
    assert csms201.violations == []


def test_card_session_seqno_and_meter_values(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201, [("MeterValueSampleInterval", 1), ("ClockAlignedDataInterval", 0),
                        ("StopTxnSampledData", ENERGY), ("SampledDataTxEndedInterval", 1)])
    fw.send("load 1 16")
    fw.send("plug 1")
    csms201.wait_for(lambda: statuses(csms201, 1)[-1:] == [(1, "Occupied")], 10, "Occupied")
    fw.send("card 1 " + TAG)
    started = wait_event(csms201, lambda e: e["eventType"] == "Started", "Started")
    txid = started["transactionInfo"]["transactionId"]
    csms201.wait_for(lambda: len([e for e in events(csms201, txid) if e["triggerReason"] == "MeterValuePeriodic"]) >= 3,
                     20, "3 periodic meter values")
    fw.send("card 1 " + TAG)
    ended = wait_event(csms201, lambda e: e["eventType"] == "Ended", "Ended")
    fw.send("unplug 1")
    csms201.wait_for(lambda: statuses(csms201, 1)[-1:] == [(1, "Available")], 10, "Available after unplug")

    acts = csms201.actions()
    assert acts.index("Authorize") < acts.index("TransactionEvent")
    assert csms201.calls("Authorize")[0][2] == {"idToken": {"idToken": TAG, "type": "ISO14443"}}
    evs = events(csms201, txid)
    assert [e["seqNo"] for e in evs] == list(range(len(evs)))  # from 0, contiguous
    assert evs[0] is started and evs[-1] is ended
    assert all(e["eventType"] == "Updated" for e in evs[1:-1])
    assert started["triggerReason"] == "Authorized"  # the card came after the plug
    assert started["evse"] == {"id": 1, "connectorId": 1}
    assert started["idToken"] == {"idToken": TAG, "type": "ISO14443"}
    assert started["transactionInfo"]["chargingState"] == "EVConnected"
    assert values(started, "Transaction.Begin") == {ENERGY: 0}
    assert started["meterValue"][0]["sampledValue"][0]["unitOfMeasure"] == {"unit": "Wh"}
    states = [e["transactionInfo"].get("chargingState") for e in evs if e["triggerReason"] == "ChargingStateChanged"]
    assert states[-1] == "Charging"
    energies = []
    for e in evs:
        if e["triggerReason"] == "MeterValuePeriodic":
            v = values(e, "Sample.Periodic")
            energies.append(v[ENERGY])
            assert v["Power.Active.Import"] == 16 * 230 * 3
            assert "idToken" not in e and "evse" not in e and "offline" not in e
    assert energies == sorted(energies) and energies[-1] > 0
    assert ended["triggerReason"] == "StopAuthorized"
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert ended["transactionInfo"]["chargingState"] == "EVConnected"  # still plugged in
    assert "idToken" not in ended  # the same card
    ctx = [mv["sampledValue"][0]["context"] for mv in ended["meterValue"]]
    # TxEndedMeasurands every TxEndedInterval (1 s, as TxUpdatedInterval here) between Begin and End
    assert ctx[0] == "Transaction.Begin" and ctx[-1] == "Transaction.End"
    assert set(ctx[1:-1]) == {"Sample.Periodic"} and abs(len(ctx) - 2 - len(energies)) <= 1
    assert ended["meterValue"][-1]["sampledValue"][0]["value"] >= energies[-1]
    assert statuses(csms201, 1) == [(1, "Available"), (1, "Occupied"), (1, "Available")]
    for e in evs:
        assert RFC3339.match(e["timestamp"])
    assert csms201.seq_gaps == [] and csms201.duplicates["TransactionEvent"] == 0
    assert csms201.violations == []


def test_remote_session_plug_first(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201, [("ClockAlignedDataInterval", 0), ("AuthorizeRemoteTxRequests", "true")])
    fw.send("load 2 10")
    fw.send("plug 2")
    csms201.wait_for(lambda: statuses(csms201, 2)[-1:] == [(2, "Occupied")], 10, "Occupied")
    r = csms201.run_call(CP, call.RequestStartTransaction(
        id_token={"id_token": "REMOTE1", "type": "Central"}, remote_start_id=77, evse_id=2))
    assert r.status == "Accepted"
    started = wait_event(csms201, lambda e: e["eventType"] == "Started", "Started")
    assert csms201.calls("Authorize")[0][2] == {"idToken": {"idToken": "REMOTE1", "type": "Central"}}
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 77
    assert started["idToken"] == {"idToken": "REMOTE1", "type": "Central"}
    assert started["evse"] == {"id": 2, "connectorId": 1}
    txid = started["transactionInfo"]["transactionId"]
    wait_event(csms201, lambda e: e["transactionInfo"].get("chargingState") == "Charging", "Charging")
    # GetTransactionStatus of a running transaction (E14)
    r = csms201.run_call(CP, call.GetTransactionStatus(transaction_id=txid))
    assert r.ongoing_indicator is True
    r = csms201.run_call(CP, call.RequestStopTransaction(transaction_id="nosuch-1"))
    assert r.status == "Rejected"
    r = csms201.run_call(CP, call.RequestStopTransaction(transaction_id=txid))
    assert r.status == "Accepted"
    ended = wait_event(csms201, lambda e: e["eventType"] == "Ended", "Ended")
    assert ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    evs = events(csms201, txid)
    assert [e["seqNo"] for e in evs] == list(range(len(evs)))
    csms201.wait_for(lambda: not csms201.run_call(CP, call.GetTransactionStatus(transaction_id=txid)).messages_in_queue,
                     10, "queue empty")
    r = csms201.run_call(CP, call.GetTransactionStatus(transaction_id=txid))
    assert r.ongoing_indicator is False and r.messages_in_queue is False
    r = csms201.run_call(CP, call.GetTransactionStatus())
    assert r.messages_in_queue is False and r.ongoing_indicator is None
    assert csms201.violations == []


def test_remote_start_first_then_plug_and_no_vehicle_in_time(csms201, firmware_factory, tmp_path):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201, [("ClockAlignedDataInterval", 0), ("ConnectionTimeOut", 3)])
    r = csms201.run_call(CP, call.RequestStartTransaction(
        id_token={"id_token": "REMOTE2", "type": "Central"}, remote_start_id=5))
    assert r.status == "Accepted"
    # without evseId the station picks an idle EVSE
    evse = csms201.wait_for(lambda: next((e for e, s in statuses(csms201) if s == "Occupied"), None), 10,
                            "Occupied (authorized)")
    fw.wait_line(r"authorization lapsed")  # F04: no cable within ConnectionTimeOut
    csms201.wait_for(lambda: statuses(csms201, evse)[-1:] == [(evse, "Available")], 10, "Available again")
    assert events(csms201) == []
    r = csms201.run_call(CP, call.RequestStartTransaction(
        id_token={"id_token": "REMOTE2", "type": "Central"}, remote_start_id=6, evse_id=1))
    assert r.status == "Accepted"
    fw.send("plug 1")
    started = wait_event(csms201, lambda e: e["eventType"] == "Started", "Started")
    assert started["triggerReason"] == "RemoteStart" and started["transactionInfo"]["remoteStartId"] == 6
    assert csms201.violations == []


def test_cable_out_ends_or_suspends_the_transaction(csms201, firmware_factory):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201, [("ClockAlignedDataInterval", 0)])
    # the card first, then the cable: the Started is the cable's (CablePluggedIn)
    fw.send("card 1 " + TAG)
    csms201.wait_for(lambda: statuses(csms201, 1)[-1:] == [(1, "Occupied")], 10, "Occupied (authorized)")
    fw.send("load 1 16")
    fw.send("plug 1")
    started = wait_event(csms201, lambda e: e["eventType"] == "Started", "Started")
    assert started["triggerReason"] == "CablePluggedIn" and started["idToken"]["idToken"] == TAG
    wait_event(csms201, lambda e: e["transactionInfo"].get("chargingState") == "Charging", "Charging")
    fw.send("unplug 1")  # StopTxOnEVSideDisconnect true: it ends
    ended = wait_event(csms201, lambda e: e["eventType"] == "Ended", "Ended")
    assert ended["triggerReason"] == "EVCommunicationLost"
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert ended["transactionInfo"]["chargingState"] == "Idle"
    # StopTxOnEVSideDisconnect false: the transaction goes on without the vehicle
    fw.send("set StopTransactionOnEVSideDisconnect false")
    fw.wait_line(r"set StopTransactionOnEVSideDisconnect: Accepted")
    fw.send("plug 2")
    fw.send("load 2 16")
    fw.send("card 2 " + TAG)
    s2 = wait_event(csms201, lambda e: e["eventType"] == "Started" and e["evse"]["id"] == 2, "Started 2")
    tx2 = s2["transactionInfo"]["transactionId"]
    wait_event(csms201, lambda e: e["transactionInfo"] == {"transactionId": tx2, "chargingState": "Charging"},
               "Charging 2")
    fw.send("unplug 2")
    gone = wait_event(csms201, lambda e: e["transactionInfo"].get("transactionId") == tx2
                      and e["triggerReason"] == "EVCommunicationLost", "cable out")
    assert gone["eventType"] == "Updated" and gone["transactionInfo"]["chargingState"] == "Idle"
    fw.send("plug 2")
    back = wait_event(csms201, lambda e: e["transactionInfo"].get("transactionId") == tx2
                      and e["triggerReason"] == "CablePluggedIn", "cable in")
    assert back["eventType"] == "Updated" and back["transactionInfo"]["chargingState"] != "Idle"
    evs = events(csms201, tx2)
    assert [e["seqNo"] for e in evs] == list(range(len(evs)))
    assert csms201.violations == []
