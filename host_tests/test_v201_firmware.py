"""OCPP 2.0.1 UpdateFirmware (L01) on the unix port: maintenance.FirmwareUpdate's download,
check and install, FirmwareStatusNotification with the requestId of the request, the new
version's BootNotification with reason FirmwareUpdate."""
from ocpp.v201 import call

from test_maintenance import Files, NEW, OLD, new_bundle, web  # noqa: F401 (fixtures)
from v201help import CP, start

import scenario



def fw_statuses(csms):
    return [(p["status"], p.get("requestId")) for _, _, p in csms.calls("FirmwareStatusNotification")]


def test_update_firmware_end_to_end(csms201, firmware_factory, web, new_bundle, tmp_path):  # noqa: F811
    Files.files["new.bin"] = new_bundle
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201)
    r = csms201.run_call(CP, call.UpdateFirmware(request_id=42, firmware={
        "location": web + "/new.bin", "retrieve_date_time": scenario.iso(0)}))
    assert r.status == "Accepted"
    csms201.wait_for(lambda: ("Installed", 42) in fw_statuses(csms201), 60, "Installed")
    assert fw_statuses(csms201) == [("Downloading", 42), ("Downloaded", 42), ("Installing", 42), ("Installed", 42)]
    boots = [p for _, _, p in csms201.calls("BootNotification")]
    assert [b["chargingStation"]["firmwareVersion"] for b in boots] == [OLD, NEW]
    assert boots[-1]["reason"] == "FirmwareUpdate"
    order = [a for _, a, _ in csms201.calls() if a in ("BootNotification", "FirmwareStatusNotification")]
    assert order[-2:] == ["BootNotification", "FirmwareStatusNotification"], order
    # L01.FR.25: Idle once it is over
    r = csms201.run_call(CP, call.TriggerMessage(requested_message="FirmwareStatusNotification"))
    assert r.status == "Accepted"
    csms201.wait_for(lambda: fw_statuses(csms201)[-1] == ("Idle", None), 10, "Idle")
    assert csms201.violations == []


def test_update_that_cannot_be_downloaded(csms201, firmware_factory, web, tmp_path):  # noqa: F811
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201)
    r = csms201.run_call(CP, call.UpdateFirmware(request_id=7, retries=0, firmware={
        "location": web + "/missing.bin", "retrieve_date_time": scenario.iso(0)}))
    assert r.status == "Accepted"
    csms201.wait_for(lambda: ("DownloadFailed", 7) in fw_statuses(csms201), 30, "DownloadFailed")
    assert fw_statuses(csms201) == [("Downloading", 7), ("DownloadFailed", 7)]
    assert csms201.violations == []
