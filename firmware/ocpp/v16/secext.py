# The security whitepaper's GetLog (N01, §5.9-5.10) and ExtendedTriggerMessage
# (§5.5-5.6), imported on the first such request (handlers.table has the
# entries), never at boot.
#
# GetLog uploads the security log (security.py) or the flash log (log.py, as
# GetDiagnostics does) with maintenance.DiagnosticsUpload's transfer, retries
# and file naming, and reports each step as LogStatusNotification {status,
# requestId}: Uploading at each attempt, then Uploaded, or the last attempt's
# failure as precisely as the server said it (N01.FR.10): PermissionDenied
# (FTP 530/532/550/553, HTTP 401/403), NotSupportedOperation (FTP 500/502/504,
# HTTP 405/501), BadMessage (the server does not speak the protocol of the
# URL), else UploadFailure. A location the station cannot use at all (another
# scheme than ftp://, http://, https://, or a malformed URL) and a log that is
# not there (the flash log off, the security log empty) are Rejected.
import os
import clock
import log
import maintenance
from ocpp.v16 import handlers

_TAG = "getlog"
_job = None  # the LogUpload, made on the first GetLog


class LogUpload(maintenance.DiagnosticsUpload):
    def __init__(self, cp):
        super().__init__(cp.config.get("ChargePointId"), self._notify, cp.tls)
        self.tag = _TAG
        self.cp = cp
        self.request_id = None
        self.security = False
        self.url = ""
        self.error = None

    def running(self):
        return self.task is not None and not self.task.done()

    def _notify(self, status):
        # N01.FR.07: every notification of an upload names its request.
        self.cp.outbox.put("LogStatusNotification", {"status": status, "requestId": self.request_id})
        self.cp.wake.set()

    def _set(self, status, what=""):
        if status == "UploadFailed":  # DiagnosticsUpload's word for it
            status = failure(self.error, self.url)
        super()._set(status, what)

    def _reader(self, start, stop):
        import logfile
        if self.security:
            import security
            return logfile.Reader(start, stop, security, "seclog.%d")
        return logfile.Reader(start, stop)

    async def begin(self, security, location, request_id, retries, interval, start, stop, name):
        # After GetLog.conf: ends an upload under way (N01.FR.11), starts this one.
        self.security = security
        self.request_id = request_id
        self.url = location
        self.error = None
        self._start(self._run(location, name, max(retries, 0), max(interval, 0), start, stop))


def failure(e, url):
    # The LogStatusNotification status for an upload that failed with e.
    code = getattr(e, "code", 0)
    ftp = url.startswith("ftp:")
    if code in ((530, 532, 550, 553) if ftp else (401, 403)):
        return "PermissionDenied"
    if code in ((500, 502, 504) if ftp else (405, 501)):
        return "NotSupportedOperation"
    why = str(e)
    if not code and ("malformed answer" in why or "not HTTP" in why):
        return "BadMessage"
    return "UploadFailure"


def unusable(location):
    # -> why the station cannot upload to this location, or None.
    if not (location.startswith("ftp://") or location.startswith("http://") or location.startswith("https://")):
        return "only ftp://, http:// and https:// locations"
    import transfer
    try:
        transfer.split_url(location)
    except transfer.TransferError as e:
        return str(e)
    return None


def get_log(cp, p):
    # N01: -> GetLog.conf, and the upload once it is out.
    global _job
    loc = p["log"]["remoteLocation"]
    security = p["logType"] == "SecurityLog"
    why = unusable(loc)
    if why is None and not _there(security):
        why = "the %s is empty" % ("security log" if security else "flash log (LogFileSizeKB 0)")
    if why:
        log.warn(_TAG, "GetLog %d refused: %s" % (p["requestId"], why))
        return {"status": "Rejected"}
    job = _job
    if job is None:
        job = _job = LogUpload(cp)
    stamp = clock.iso().replace("-", "").replace(":", "")  # 20261201T230000Z
    name = "%s-%s-%s.log" % (maintenance._safe(job.name), "security" if security else "diagnostics", stamp)
    start = p["log"].get("oldestTimestamp")
    stop = p["log"].get("latestTimestamp")
    start, stop = start and clock.parse(start), stop and clock.parse(stop)
    status = "AcceptedCanceled" if job.running() else "Accepted"
    log.info(_TAG, "GetLog %d (%s): %s, %s" % (p["requestId"], p["logType"], status, name))
    return {"status": status, "filename": name}, lambda: job.begin(
        security, loc, p["requestId"], p.get("retries", handlers._RETRIES),
        p.get("retryInterval", handlers._RETRY_INTERVAL), start, stop, name)


def _there(security):
    if security:
        import security as s
        return s._size > 0 or _exists(s._dir + "seclog.1")
    return log._buf is not None  # LogFileSizeKB 0: no flash log


def _exists(path):
    try:
        return os.stat(path)[6] > 0
    except OSError:
        return False


def clear_log():
    # Empties the security log; its first line then says so (section 8:
    # SecurityLogWasCleared). For the installer (cfg.clear_security_log()).
    import security
    for n in ("seclog.1", "seclog.0"):
        try:
            os.remove(security._dir + n)
        except OSError:
            pass
    security._size = 0
    security._gen += 2  # a Reader made before finds nothing
    security.event("SecurityLogWasCleared")


# ---- ExtendedTriggerMessage (§5.5; L01.FR.28-29, N01.FR.12) ----
def extended_trigger(cp, p):
    what = p["requestedMessage"]
    cid = p.get("connectorId")
    if cid is not None and not 0 < cid < len(cp.station.connectors):  # connectorId > 0
        status, after = "Rejected", None
    elif what == "LogStatusNotification":
        job = _job
        # N01.FR.12: the status of the upload under way with its requestId, else Idle without one
        pl = {"status": job.status, "requestId": job.request_id} if job and job.running() else {"status": "Idle"}
        status, after = "Accepted", lambda: cp._send_now(what, pl)
    elif what == "FirmwareStatusNotification":
        # SignedFirmwareStatusNotification: the signed update's last status and its requestId;
        # Idle when none runs or its last status was Installed (L01.FR.28)
        job = cp._jobs[True]
        st, rid = getattr(job, "status", "Idle"), getattr(job, "request_id", None)
        pl = {"status": "Idle"} if rid is None or st in ("Idle", "Installed") else {"status": st, "requestId": rid}
        status, after = "Accepted", lambda: cp._send_now("SignedFirmwareStatusNotification", pl)
    elif what == "SignChargePointCertificate":
        try:
            from ocpp.v16 import certsign
        except ImportError:  # no client certificate support in this build
            status, after = "Rejected", None
        else:
            status, after = certsign.trigger(cp)
    else:  # BootNotification, Heartbeat, MeterValues, StatusNotification: as TriggerMessage
        status, after = cp.trigger(what, cid)
    log.info("ocpp", "CSMS asks (ExtendedTriggerMessage) for %s: %s" % (what, status))
    return ({"status": status}, after) if after else {"status": status}
