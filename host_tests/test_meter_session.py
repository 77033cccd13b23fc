"""The meter path end to end: the firmware on the unix port, with a board file whose
connector has a Modbus RTU meter, polls a pymodbus RTU server (tools/meter_sim.py) on
a pty and reports to the dev CSMS. Checked here: BootNotification carries the
meter's serial number, MeterValues carry the meter's values correctly scaled, a
silent or unplugged meter faults the connector with PowerMeterFailure and nothing
stale is sent while it is silent, the connector recovers to its previous state,
and meterStop is the last good reading."""
import json
import sys
import time

import pytest

from conftest import ROOT
from scenario import settle, statuses, wait_status

sys.path.insert(0, str(ROOT / "tools"))
from meter_sim import MeterSim  # noqa: E402

TAG = "04A2B3C4D5"
MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,Frequency"
SETTINGS = [("MeterValueSampleInterval", 1), ("ClockAlignedDataInterval", 0), ("MeterPollInterval", 300),
            ("MeterFailuresBeforeFault", 2), ("MeterValuesSampledData", MEASURANDS)]


def meter_sim(profile):
    sim = MeterSim(profile, 1, 9600, serial=20230815)
    sim.set(energy_wh=1500.4, power_w=7360.5, current_a=(10.5, 11.2, 9.8), voltage_v=(230.1, 229.4, 231.7),
            frequency_hz=49.98)
    sim.start()
    return sim


@pytest.fixture
def meter():
    sim = meter_sim("SDM630")
    yield sim
    sim.stop()


def modbus_board(tmp_path, tty, profile="SDM630"):
    board = {
        "name": "unix-modbus", "console": True,
        "uarts": {"meter": {"path": tty, "baudrate": 9600}},
        "connectors": [{"meter": {"type": "modbus", "uart": "meter", "address": 1, "profile": profile,
                                  "phases": 3},
                        "contactor": {"type": "sim"}}],
        "boot": {"meterType": profile},
        "config": {"ChargePointVendor": "mpocpp", "ChargePointModel": "AC-Modbus", "NumberOfConnectors": 1},
    }
    d = tmp_path / "board"
    d.mkdir()
    (d / "board.json").write_text(json.dumps(board))
    return str(d)


def tx_samples(csms):
    """{measurand or measurand.phase: float} of each transaction MeterValues, in order."""
    out = []
    for _, _, p in csms.calls("MeterValues"):
        if "transactionId" not in p:
            continue
        for mv in p["meterValue"]:
            out.append({s["measurand"] + ("." + s["phase"] if "phase" in s else ""): float(s["value"])
                        for s in mv["sampledValue"]})
    return out


def wait_energy(csms, wh, timeout=10):
    csms.wait_for(lambda: any(s.get("Energy.Active.Import.Register") == wh for s in tx_samples(csms)),
                  timeout, "a MeterValues with %d Wh" % wh)


def test_modbus_meter_session_with_meter_failures(csms, firmware_factory, tmp_path, meter):
    fw = firmware_factory(csms, board=modbus_board(tmp_path, meter.path))
    fw.start()
    fw.wait_line(r"accepted this charge point")
    boot = csms.calls("BootNotification")[-1][2]
    assert boot["meterSerialNumber"] == "20230815" and boot["meterType"] == "SDM630"
    settle(fw, SETTINGS)

    fw.send("plug 1")
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: csms.calls("StartTransaction"), 10, "StartTransaction")
    assert csms.calls("StartTransaction")[0][2]["meterStart"] == 1500  # Wh, from the meter's kWh float
    wait_status(csms, 1, "Charging")  # the meter's current says the vehicle draws

    # Every measurand, scaled to the OCPP unit, per phase where the meter has phases.
    meter.set(energy_wh=2345.6)
    wait_energy(csms, 2346)  # to the nearest Wh
    s = [x for x in tx_samples(csms) if x.get("Energy.Active.Import.Register") == 2346][-1]
    assert s["Power.Active.Import"] == 7360.5
    assert (s["Current.Import.L1"], s["Current.Import.L2"], s["Current.Import.L3"]) == (10.5, 11.2, 9.8)
    assert (s["Voltage.L1-N"], s["Voltage.L2-N"], s["Voltage.L3-N"]) == (230.1, 229.4, 231.7)
    assert s["Frequency"] == 50.0  # 49.98 Hz to one decimal

    # A silent meter: Faulted/PowerMeterFailure after MeterFailuresBeforeFault polls,
    # and no MeterValues at all while it gives no reading.
    meter.fault("silent")
    csms.wait_for(lambda: statuses(csms, 1)[-1:] == ["Faulted"], 10, "Faulted")
    fault = [p for _, _, p in csms.calls("StatusNotification") if p["status"] == "Faulted"][-1]
    assert fault["errorCode"] == "PowerMeterFailure"
    fw.wait_line(r"energy meter failed 2 polls in a row")
    n = len(tx_samples(csms))
    meter.set(energy_wh=2400)  # what the meter would say; the firmware cannot know it
    time.sleep(2.5)
    assert len(tx_samples(csms)) == n, "MeterValues were sent while the meter gave no reading"

    # The meter answers again: back to the state it had before, fresh values again.
    meter.fault(None)
    wait_status(csms, 1, "Charging")
    assert csms.calls("StatusNotification")[-1][2]["errorCode"] == "NoError"
    fw.wait_line(r"the energy meter answers again")
    wait_energy(csms, 2400)

    # The cable is pulled mid-transaction, the meter's count moves on unseen, and
    # the transaction is stopped: meterStop is the last good reading, not a guess.
    meter.set(energy_wh=3000.2)
    wait_energy(csms, 3000)
    meter.fault("unplugged")
    csms.wait_for(lambda: statuses(csms, 1)[-1:] == ["Faulted"], 10, "Faulted (unplugged meter)")
    meter.set(energy_wh=3500)
    fw.send("card 1 " + TAG)
    csms.wait_for(lambda: csms.calls("StopTransaction"), 10, "StopTransaction")
    stop = csms.calls("StopTransaction")[0][2]
    assert stop["meterStop"] == 3000
    assert max(x.get("Energy.Active.Import.Register", 0) for x in tx_samples(csms)) == 3000
    assert csms.violations == []


@pytest.mark.parametrize("profile, phases", [("SDM120", 1), ("SDM72D-M", 3), ("ABB_B23", 3)])
def test_every_meter_profile_reaches_meter_values(csms, firmware_factory, tmp_path, profile, phases):
    sim = meter_sim(profile)
    try:
        fw = firmware_factory(csms, board=modbus_board(tmp_path, sim.path, profile))
        fw.start()
        fw.wait_line(r"accepted this charge point")
        assert csms.calls("BootNotification")[-1][2]["meterSerialNumber"] == "20230815"
        settle(fw, SETTINGS)
        fw.send("plug 1")
        fw.send("card 1 " + TAG)
        csms.wait_for(lambda: csms.calls("StartTransaction"), 10, "StartTransaction")
        sim.set(energy_wh=2340.0)  # the ABB B23 counts in 10 Wh steps, float32 kWh is not exact
        wait_energy(csms, 2340)
        s = [x for x in tx_samples(csms) if x.get("Energy.Active.Import.Register") == 2340][-1]
        assert s["Power.Active.Import"] == 7360.5
        names = ("L1", "L2", "L3")[:phases]
        assert [s["Current.Import." + p] for p in names] == [10.5, 11.2, 9.8][:phases]
        assert [s["Voltage.%s-N" % p] for p in names] == [230.1, 229.4, 231.7][:phases]
        assert s["Frequency"] == 50.0
        assert csms.violations == []
    finally:
        sim.stop()
