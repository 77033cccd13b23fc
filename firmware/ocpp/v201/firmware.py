# OCPP 2.0.1 UpdateFirmware (L01) and the report of the update installed
# before this boot. maintenance.FirmwareUpdate downloads, checks and installs;
# every FirmwareStatusNotification carries the request's requestId. Seldom
# run: imported for the call and let go again (handlers.rare).
import clock
import log
from ocpp.rpc import CallError

_RETRIES = 2  # without retries / retryInterval: 3 attempts, 60 s apart (as 1.6's UpdateFirmware)
_RETRY_INTERVAL = 60


def update_firmware(cp, p):
    fw = p["firmware"]
    job = cp.maintenance(True)
    signed = None
    from ocpp import signedfw  # the signature rules both versions share, let go below
    try:
        if fw.get("signature") and fw.get("signingCertificate"):
            key = signedfw.signing_key(cp, fw["signingCertificate"])  # logged, security event
            if key is None:
                return {"status": "InvalidCertificate"}  # L01.FR.02
            inst = clock.parse(fw.get("installDateTime") or "") or 0
            signed = {"id": p["requestId"], "key": key, "sig": fw["signature"], "inst": inst}
        else:
            try:  # none without a signature once a ManufacturerRootCertificate is installed
                signedfw.allow_plain(cp)
            except CallError:
                return {"status": "Rejected"}
    finally:
        signedfw.let_go()
    if job.installing():
        return {"status": "Rejected"}  # L01.FR.27: an install under way cannot be canceled
    replaced = job.running()  # L01.FR.24: the one under way is canceled
    at = clock.parse(fw["retrieveDateTime"]) or clock.now()

    async def start():
        cp.fw_request = p["requestId"]
        job.request(fw["location"], at, p.get("retries", _RETRIES), p.get("retryInterval", _RETRY_INTERVAL), signed)
        cp.station.store.save("fwsigned", {"id": p["requestId"]})  # for Installed after the restart
    return {"status": "AcceptedCanceled" if replaced else "Accepted"}, start


def report(cp, done):
    # The boot stage's word on the update installed before this boot
    # (Installed, or InstallationFailed after a rollback), after the
    # BootNotification of the version that runs now (L01.FR.10), with the
    # requestId kept in "fwsigned".
    log.info("update", "%s: %s" % done)
    rec = cp.station.store.load("fwsigned")
    cp.fw_request = rec.get("id") if type(rec) is dict else None
    cp.firmware_status(done[0])  # cleared once answered: Session._update_reported
