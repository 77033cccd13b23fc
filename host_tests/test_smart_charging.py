"""Smart Charging end to end (OCPP 1.6 §3.13, §5.5, §5.7, §5.16) against the ocpp-library CSMS:
profiles in, the limit out to the (simulated) vehicle, GetCompositeSchedule from the same maths."""
import time
from datetime import datetime, timedelta, timezone

from ocpp.v16 import call

from scenario import boot, restart, settle, wait_status, statuses

TAG = "04A2B3C4D5"
QUIET = [("ClockAlignedDataInterval", 0), ("MeterValueSampleInterval", 0)]


def sched(*periods, unit="A", **kw):
    return dict(kw, chargingRateUnit=unit,
                chargingSchedulePeriod=[{"startPeriod": s, "limit": lim} for s, lim in periods])


def profile(pid, purpose, schedule, stack=0, kind="Absolute", **kw):
    if kind == "Absolute" and "startSchedule" not in schedule:
        schedule = dict(schedule, startSchedule=iso(0))
    return dict(kw, chargingProfileId=pid, stackLevel=stack, chargingProfilePurpose=purpose,
                chargingProfileKind=kind, chargingSchedule=schedule)


def iso(seconds_from_now):
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_profile(csms, cid, p):
    return csms.run_call("CP001", call.SetChargingProfile(connector_id=cid, cs_charging_profiles=p)).status


def clear(csms, **kw):
    return csms.run_call("CP001", call.ClearChargingProfile(**kw)).status


def composite(csms, cid, duration, unit=None):
    kw = {"charging_rate_unit": unit} if unit else {}
    return csms.run_call("CP001", call.GetCompositeSchedule(connector_id=cid, duration=duration, **kw))


def limits(answer):
    return [(p["start_period"], float(p["limit"])) for p in answer.charging_schedule["charging_schedule_period"]]


def start(fw, csms, cid=1, amps=16):
    fw.send("load %d %d" % (cid, amps))
    fw.send("plug %d" % cid)
    fw.send("card %d %s" % (cid, TAG))
    csms.wait_for(lambda: any(tx["connector"] == cid and "meterStop" not in tx for tx in csms.transactions.values()),
                  10, "transaction on connector %d" % cid)
    return max(t for t, tx in csms.transactions.items() if tx["connector"] == cid)


def test_refusals(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET + [("ChargeProfileMaxStackLevel", 3), ("ChargingScheduleMaxPeriods", 4),
                            ("MaxChargingProfilesInstalled", 3)])
    one = sched((0, 16))
    assert set_profile(csms, 1, profile(1, "ChargePointMaxProfile", one)) == "Rejected"  # only on connector 0
    assert set_profile(csms, 0, profile(2, "TxProfile", one)) == "Rejected"  # TxProfile needs a connector
    assert set_profile(csms, 1, profile(3, "TxProfile", one)) == "Rejected"  # and a transaction
    assert set_profile(csms, 9, profile(4, "TxDefaultProfile", one)) == "Rejected"  # unknown connector
    assert set_profile(csms, 1, profile(5, "TxDefaultProfile", one, stack=4)) == "Rejected"
    assert set_profile(csms, 1, profile(6, "TxDefaultProfile", sched(*[(i * 60, 16) for i in range(5)]))) \
        == "Rejected"  # 5 periods > ChargingScheduleMaxPeriods
    assert set_profile(csms, 1, profile(7, "TxDefaultProfile", one, kind="Recurring")) == "Rejected"
    settle(fw, [("ChargingScheduleAllowedChargingRateUnit", "Current")])
    assert set_profile(csms, 1, profile(8, "TxDefaultProfile", sched((0, 11000), unit="W"))) == "Rejected"
    for i in range(3):
        assert set_profile(csms, 1, profile(10 + i, "TxDefaultProfile", one, stack=i)) == "Accepted"
    assert set_profile(csms, 2, profile(13, "TxDefaultProfile", one)) == "Rejected"  # a fourth one
    assert set_profile(csms, 1, profile(10, "TxDefaultProfile", sched((0, 10)))) == "Accepted"  # same id replaces
    tx = start(fw, csms)
    assert set_profile(csms, 1, profile(20, "TxProfile", one, stack=3, transactionId=tx + 100)) == "Rejected"
    assert clear(csms) == "Accepted"
    assert set_profile(csms, 1, profile(20, "TxProfile", one, transactionId=tx)) == "Accepted"
    log = "\n".join(fw.lines)
    for why in ("ChargePointMaxProfile only on connector 0", "no transaction runs on connector 1",
                "stackLevel 4 is above ChargeProfileMaxStackLevel", "5 periods, more than ChargingScheduleMaxPeriods",
                "chargingRateUnit W is not allowed", "MaxChargingProfilesInstalled profiles are installed already"):
        assert why in log, why
    assert csms.violations == []


def test_stacking_fallback_and_the_vehicle_follows(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET + [("MeterValuesSampledData", "Current.Import.L1,Current.Offered")])
    assert set_profile(csms, 0, profile(1, "TxDefaultProfile", sched((0, 16)))) == "Accepted"
    assert set_profile(csms, 0, profile(2, "TxDefaultProfile", sched((0, 10), duration=6), stack=1)) == "Accepted"
    assert limits(composite(csms, 1, 60)) in ([(0, 10.0), (6, 16.0)], [(0, 10.0), (5, 16.0)])
    start(fw, csms, amps=20)
    settle(fw, [("MeterValueSampleInterval", 1)])

    def drawn():
        mv = [p for _, _, p in csms.calls("MeterValues")]
        return [(float(mv[-1]["meterValue"][0]["sampledValue"][0]["value"]),
                 float(mv[-1]["meterValue"][0]["sampledValue"][1]["value"]))] if mv else []

    csms.wait_for(lambda: drawn() == [(10.0, 10.0)], 10, "the vehicle draws 10 A")
    # stack level 1 ends after its 6 s: back to 16 A without any message
    csms.wait_for(lambda: drawn() == [(16.0, 16.0)], 15, "the vehicle draws 16 A")
    # 0 A: the power goes (SuspendedEVSE), and comes back when the profile is cleared
    assert set_profile(csms, 0, profile(3, "TxDefaultProfile", sched((0, 0)), stack=2)) == "Accepted"
    wait_status(csms, 1, "SuspendedEVSE")
    assert clear(csms, id=3) == "Accepted"
    wait_status(csms, 1, "Charging")
    assert csms.violations == []


def test_connector_tx_default_replaces_the_connector_zero_one_at_the_same_stack_level(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET)
    assert set_profile(csms, 0, profile(1, "TxDefaultProfile", sched((0, 10)))) == "Accepted"
    assert set_profile(csms, 1, profile(2, "TxDefaultProfile", sched((0, 20)))) == "Accepted"
    assert limits(composite(csms, 1, 300)) == [(0, 20.0)]
    assert limits(composite(csms, 2, 300)) == [(0, 10.0)]
    # ChargePointMaxProfile caps every connector; the rating (32 A) caps it all
    assert set_profile(csms, 0, profile(3, "ChargePointMaxProfile", sched((0, 14)))) == "Accepted"
    assert limits(composite(csms, 1, 300)) == [(0, 14.0)]
    assert clear(csms, charging_profile_purpose="ChargePointMaxProfile") == "Accepted"
    assert set_profile(csms, 1, profile(4, "TxDefaultProfile", sched((0, 63)), stack=1)) == "Accepted"
    assert limits(composite(csms, 1, 300)) == [(0, 32.0)]
    # W: 230 V x 3 phases; the answer in the unit asked for
    w = composite(csms, 2, 300, "W")
    assert w.charging_schedule["charging_rate_unit"] == "W" and limits(w) == [(0, 6900.0)]
    assert set_profile(csms, 2, profile(5, "TxDefaultProfile", sched((0, 4140), unit="W"), stack=1)) == "Accepted"
    assert limits(composite(csms, 2, 300)) == [(0, 6.0)]
    # 6000 W / (230 V x 3) = 8.69 A: 8.6 (rounded down), sent as 8.6, a multiple of 0.1 (csms.violations)
    assert set_profile(csms, 2, profile(6, "TxDefaultProfile", sched((0, 6000), unit="W"), stack=2)) == "Accepted"
    assert limits(composite(csms, 2, 300)) == [(0, 8.6)]
    assert '"limit":8.6,' in [line for line in fw.lines if "chargingSchedulePeriod" in line][-1]
    assert composite(csms, 9, 300).status == "Rejected"
    assert csms.violations == []


def test_relative_profile_counts_from_the_session_start_and_remote_start_profile(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET)
    rel = profile(1, "TxDefaultProfile", sched((0, 8), (4, 12)), kind="Relative")
    assert set_profile(csms, 0, rel) == "Accepted"
    fw.send("load 1 16")
    fw.send("plug 1")
    time.sleep(3)  # the session starts later than the profile was set
    fw.send("card 1 " + TAG)
    fw.wait_line(r"connector 1: charging limit 8.0 A")
    t0 = time.time()
    fw.wait_line(r"connector 1: charging limit 12.0 A", 10)
    assert time.time() - t0 >= 3
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: csms.calls("StopTransaction"), 10, "StopTransaction")
    # RemoteStartTransaction's TxProfile: the transaction's limit, gone with it
    txp = profile(9, "TxProfile", sched((0, 7)), kind="Relative")
    answer = csms.run_call("CP001", call.RemoteStartTransaction(id_tag=TAG, connector_id=1, charging_profile=txp))
    assert answer.status == "Accepted"
    fw.wait_line(r"connector 1: charging limit 7.0 A")
    assert limits(composite(csms, 1, 60))[0] == (0, 7.0)
    fw.send("card 1 " + TAG)
    fw.wait_line(r"charging profile.* cleared")
    assert limits(composite(csms, 1, 60))[0] == (0, 8.0)  # the TxDefaultProfile again
    assert csms.violations == []


def test_clear_by_id_by_criteria_and_nothing_matching_and_persistence(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, QUIET)
    for pid, cid, stack, lim in ((1, 0, 0, 10), (2, 1, 1, 12), (3, 2, 1, 14), (4, 2, 2, 9)):
        assert set_profile(csms, cid, profile(pid, "TxDefaultProfile", sched((0, lim)), stack=stack)) == "Accepted"
    assert clear(csms, id=99) == "Unknown"
    assert clear(csms, id=2, connector_id=2) == "Accepted"  # the id alone decides
    assert limits(composite(csms, 1, 60)) == [(0, 10.0)]
    assert clear(csms, connector_id=2, stack_level=2, charging_profile_purpose="TxProfile") == "Unknown"
    assert clear(csms, connector_id=2, stack_level=2) == "Accepted"
    assert limits(composite(csms, 2, 60)) == [(0, 14.0)]
    restart(fw, csms, QUIET)  # kept in flash; what was cleared stays cleared
    assert limits(composite(csms, 1, 60)) == [(0, 10.0)]
    assert limits(composite(csms, 2, 60)) == [(0, 14.0)]
    assert clear(csms) == "Accepted"
    assert clear(csms) == "Unknown"
    restart(fw, csms, QUIET)
    assert limits(composite(csms, 2, 60)) == [(0, 32.0)]
    assert csms.violations == []


def pilot_board(tmp_path):
    """The unix board with connector 1 on a simulated control pilot line (no plug input)."""
    import json
    from conftest import ROOT
    board = json.loads((ROOT / "boards" / "unix" / "board.json").read_text())
    c = board["connectors"][0]
    del c["plug"]
    c["pilot"] = {"type": "sim_line"}
    board["config"]["MeterPollInterval"] = 200
    d = tmp_path / "pilot-board"
    d.mkdir()
    (d / "board.json").write_text(json.dumps(board))
    return str(d)


def test_pilot_state_drives_the_connector_and_the_contactor_waits_for_c(csms, firmware_factory, tmp_path):
    fw = firmware_factory(csms, board=pilot_board(tmp_path))
    boot(fw, csms, QUIET)
    fw.send("load 1 16")
    fw.send("ev 1 B")  # connected: plugged in
    fw.wait_line(r"connector 1: control pilot state B")
    wait_status(csms, 1, "Preparing")
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: csms.transactions, 10, "StartTransaction")
    wait_status(csms, 1, "SuspendedEV")  # the PWM offers 32 A, the vehicle does not ask yet
    time.sleep(1)
    assert not any("contactor closed" in line for line in fw.lines)  # never before C
    fw.send("ev 1 C")
    fw.wait_line(r"connector 1: contactor closed, power on")
    wait_status(csms, 1, "Charging")
    # a limit below 6 A: no PWM (steady +12 V), contactor open
    assert set_profile(csms, 1, profile(1, "TxProfile", sched((0, 5)))) == "Accepted"
    fw.wait_line(r"connector 1: contactor open, power off")
    wait_status(csms, 1, "SuspendedEVSE")
    assert clear(csms) == "Accepted"
    fw.wait_line(r"connector 1: contactor closed, power on")
    # E (pilot shorted): the connector faults and the transaction ends
    fw.send("ev 1 E")
    fw.wait_line(r"connector 1: control pilot error \(state E\)")
    wait_status(csms, 1, "Faulted")
    assert [p for _, _, p in csms.calls("StatusNotification") if p["connectorId"] == 1][-1]["errorCode"] \
        == "EVCommunicationError"
    csms.wait_for(lambda: csms.calls("StopTransaction"), 10, "StopTransaction")
    assert csms.calls("StopTransaction")[0][2]["reason"] == "Other"
    fw.send("ev 1 A")  # the vehicle gone: the fault clears
    wait_status(csms, 1, "Available")
    assert csms.violations == []
