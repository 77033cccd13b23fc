"""Vehicle detection and automatic start/stop from the measured current, and free vend."""
import json

from conftest import ROOT

TAG = "04A2B3C4D5"


def board_with(tmp_path, plug):
    board = json.loads((ROOT / "boards" / "unix" / "board.json").read_text())
    for c in board["connectors"]:
        c["plug"] = plug
    d = tmp_path / "board"
    d.mkdir()
    (d / "board.json").write_text(json.dumps(board))
    return str(d)


def statuses(csms, cid):
    return [p["status"] for _, _, p in csms.calls("StatusNotification") if p["connectorId"] == cid]


def boot(fw, settings):
    fw.start()
    fw.wait_line(r"accepted this charge point")
    for key, value in settings:
        fw.send("set %s %s" % (key, value))
        fw.wait_line(r"set %s: Accepted" % key)


def test_card_starts_at_once_and_current_stops_without_plug_signal(csms, firmware_factory, tmp_path):
    fw = firmware_factory(csms, board=board_with(tmp_path, {"type": "current"}))
    boot(fw, [("ClockAlignedDataInterval", 0), ("MeterPollInterval", 200), ("ChargingDetectSeconds", 1),
              ("AutoStopIdleSeconds", 2)])
    fw.send("card 1 " + TAG)
    # No plug signal: the transaction starts on the card, power goes on, and
    # the vehicle's current makes it Charging.
    csms.wait_for(lambda: csms.calls("StartTransaction"), 10, "StartTransaction")
    fw.send("load 1 16")
    csms.wait_for(lambda: "Charging" in statuses(csms, 1), 10, "Charging")
    fw.send("load 1 0")  # the car is full / unplugged: no current for AutoStopIdleSeconds
    csms.wait_for(lambda: csms.calls("StopTransaction"), 10, "automatic stop")
    assert csms.calls("StopTransaction")[0][2]["reason"] == "EVDisconnected"
    csms.wait_for(lambda: statuses(csms, 1)[-1] == "Available", 10, "Available")
    assert csms.violations == []


def test_free_vend_starts_a_transaction_when_current_flows(csms, firmware_factory, tmp_path):
    fw = firmware_factory(csms, board=board_with(tmp_path, {"type": "current"}))
    boot(fw, [("ClockAlignedDataInterval", 0), ("MeterPollInterval", 200), ("ChargingDetectSeconds", 1),
              ("AutoStopIdleSeconds", 2), ("FreeVendEnabled", "true"), ("FreeVendIdTag", "FREE")])
    fw.wait_line(r"connector 1: contactor closed")  # free vend: power on while idle
    assert not csms.calls("StartTransaction")
    fw.send("load 1 10")
    csms.wait_for(lambda: csms.calls("StartTransaction"), 10, "StartTransaction")
    start = csms.calls("StartTransaction")[0][2]
    assert start["idTag"] == "FREE" and start["connectorId"] == 1
    assert not csms.calls("Authorize")  # free vend needs no authorization
    fw.send("load 1 0")
    csms.wait_for(lambda: csms.calls("StopTransaction"), 10, "automatic stop")
    assert csms.violations == []


def test_without_free_vend_power_stays_off_until_authorized(csms, firmware_factory, tmp_path):
    fw = firmware_factory(csms, board=board_with(tmp_path, {"type": "current"}))
    boot(fw, [("ClockAlignedDataInterval", 0), ("MeterPollInterval", 200), ("ChargingDetectSeconds", 1)])
    fw.send("load 1 16")
    fw.send("status")
    fw.wait_line(r"connector 1: Available NoError, 0 Wh")
    import time
    time.sleep(1.5)
    assert not any("contactor closed" in l for l in fw.lines)
    assert not csms.calls("StartTransaction")
