"""Smaller interop details (issue #15.6): date-times without an offset from the CSMS are
taken as UTC, as the clock takes them, and logged once; the simulated vehicle is still
plugged in after a hard reset, as a board's plug signal would show it."""
from datetime import datetime, timedelta, timezone

from ocpp.v16 import call

from scenario import boot, wait_status


def test_date_time_without_offset_is_taken_as_utc_and_logged_once(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, [("ClockAlignedDataInterval", 0)])
    naive = (datetime.now(timezone.utc) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S")
    answer = csms.run_call("CP001", call.ReserveNow(connector_id=1, expiry_date=naive, id_tag="R1",
                                                    reservation_id=5))
    assert answer.status == "Accepted"
    wait_status(csms, 1, "Reserved")
    # it expires at that time as UTC (not as some local time zone)
    wait_status(csms, 1, "Available", timeout=8)
    later = (datetime.now(timezone.utc) + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    assert csms.run_call("CP001", call.ReserveNow(connector_id=2, expiry_date=later, id_tag="R2",
                                                  reservation_id=6)).status == "Accepted"
    log = "\n".join(fw.lines)
    assert log.count("the CSMS sends date-times without a time zone") == 1
    # what we send always carries Z
    assert all(p["timestamp"].endswith("Z") for _, _, p in csms.calls("StatusNotification"))
    assert csms.violations == []


def test_vehicle_stays_plugged_across_a_hard_reset(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, [("ClockAlignedDataInterval", 0)])
    fw.send("load 1 16")
    fw.send("plug 1")
    wait_status(csms, 1, "Preparing")
    assert csms.run_call("CP001", call.Reset(type="Hard")).status == "Accepted"
    fw.wait_line(r"restarting now")
    fw.wait_line(r"accepted this charge point", 20)
    # the first statuses after the restart: the vehicle is still there
    csms.wait_for(lambda: csms.connections == 2 and [p for _, _, p in csms.calls("StatusNotification")
                                                     if p["connectorId"] == 1][-1:], 10, "status after reset")
    wait_status(csms, 1, "Preparing")
    # and it still asks for 16 A: a card starts charging at once
    fw.send("card 1 T1")
    wait_status(csms, 1, "Charging")
    fw.send("unplug 1")
    wait_status(csms, 1, "Available")
    assert csms.violations == []
