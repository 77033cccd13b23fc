# Remote maintenance: a firmware update (OCPP 1.6 §5.19 UpdateFirmware, §4.5
# FirmwareStatusNotification; the security whitepaper's signed update, L01
# SignedUpdateFirmware and SignedFirmwareStatusNotification) and the upload of
# the station's log (§5.9 GetDiagnostics, §4.4 DiagnosticsStatusNotification).
# Both run as tasks beside charging; a failed or silent server costs them
# retries, never the OCPP link or a transaction. Imported on the first such
# request (or at boot when an update request is stored), never otherwise.
#
# The protocol layer gives each a notify(status) that sends the notification
# (the firmware update's: notify(status, request_id), request_id None for a
# plain update), and reads .status for TriggerMessage ("Idle" when nothing is
# under way; a signed update keeps its last status, L01.FR.29).
import asyncio
import os
from micropython import const
import clock
import log

_BLOCK = const(1024)  # the transfer buffer: one, shared by both (one transfer at a time each)
_TAG = "update"
_TX_POLL = const(5)  # seconds between looks at the running transactions before an install


def _client(url):
    # The transfer client for the URL's scheme, or None.
    if url.startswith("ftp://"):
        import ftp
        return ftp
    if url.startswith("http://") or url.startswith("https://"):
        import http
        return http
    return None


async def _sleep_until(t):
    # Until Unix time t; in steps, so that a clock set meanwhile (NTP, a
    # Heartbeat) is followed.
    while True:
        left = t - clock.now()
        if left <= 0:
            return
        await asyncio.sleep(min(left, 60))


class _Job:
    # What both have: a status, its notification, retries.
    def __init__(self, tag, notify):
        self.tag = tag
        self.notify = notify
        self.status = "Idle"
        self.task = None

    def _set(self, status, what=""):
        self.status = status
        log.info(self.tag, "%s%s" % (status, what and ": " + what))
        try:
            self._report(status)
        except Exception as e:  # the link's business; the job goes on
            log.exc(self.tag, "cannot report %s" % status, e)

    def _report(self, status):
        self.notify(status)

    def _start(self, coro):
        self.cancel()
        self.task = asyncio.create_task(coro)

    def running(self):
        return self.task is not None and not self.task.done()

    def cancel(self):
        if self.task:
            self.task.cancel()
            self.task = None

    async def _tries(self, attempts, interval, once, failed):
        # once() up to `attempts` times, `interval` s apart -> True when it succeeded
        for n in range(attempts):
            try:
                await once()
                return True
            except asyncio.CancelledError:
                raise
            except Exception as e:  # TransferError, UpdateError, OSError (flash), MemoryError
                self.error = e  # the last failure (GetLog reports it precisely)
                left = attempts - n - 1
                log.warn(self.tag, "attempt %d of %d failed: %s%s" % (
                    n + 1, attempts, e, "; again in %d s" % interval if left else ""))
                if left:
                    await asyncio.sleep(interval)
        self._set(failed)
        return False


class FirmwareUpdate(_Job):
    # The request is kept in flash ("fwupdate") until it ends, so that one
    # whose retrieveDate lies ahead survives a restart. A signed update's
    # (SignedUpdateFirmware) also holds its requestId "id" (which marks the
    # kind), the signing certificate's public key "key" (checked against the
    # ManufacturerRootCertificate when it was asked for: ["ec", hex of the
    # point] or ["rsa", hex of n, e]), the signature "sig" (base64) and the
    # installDateTime "inst" (0: at once); its requestId is kept in "fwsigned"
    # across the restart into the new version, for Installed (L01.FR.10).
    def __init__(self, station, notify, tls, restart):
        super().__init__(_TAG, notify)
        self.station = station
        self.store = station.store
        self.tls = tls  # () -> the TLS context of the CSMS link (its CA), for https://
        self.restart = restart  # async (version): restarts the station into the new application
        self.request_id = None  # the signed update's requestId; None: UpdateFirmware
        self._held = []  # connectors held Unavailable until the install (L01.FR.07)

    def _report(self, status):
        self.notify(status, self.request_id)

    def installing(self):
        # The install has begun: it cannot be canceled any more (L01.FR.27).
        return self.running() and self.status in ("Installing", "InstallRebooting")

    def request(self, location, retrieve, retries, interval, signed=None):
        # UpdateFirmware, or SignedUpdateFirmware with signed = {"id", "key",
        # "sig", "inst"}: a new request replaces the one under way.
        req = {"location": location, "at": retrieve, "retries": max(retries, 0), "interval": max(interval, 0)}
        if signed:
            req.update(signed)
        self.cancel()
        self.store.remove("fwsigned")
        self.store.save("fwupdate", req)
        self._start(self._run(req))

    def resume(self):
        # At boot: a stored request goes on (from its download: a file on
        # flash may be damaged by the power cut that ended the last run).
        req = self.store.load("fwupdate")
        if req:
            v = req.get("ver")
            if v and _installed(v):  # the power went between the install and the request's removal
                self.store.remove("fwupdate")
                log.info(_TAG, "version %s was installed before the restart" % v)
                return
            log.info(_TAG, "firmware update from %s still to do" % _shown(req["location"]))
            self._start(self._run(req))

    async def _run(self, req):
        import update
        self.request_id = rid = req.get("id")
        url = req["location"]
        if req["at"] > clock.now():
            log.info(_TAG, "downloading %s at %s" % (_shown(url), clock.iso(req["at"])))
            if rid is not None:
                self._set("DownloadScheduled", clock.iso(req["at"]))
            await _sleep_until(req["at"])
        path = update.download_path()

        async def once():
            self._set("Downloading", _shown(url))
            self.version = await self._download(update, url, path)

        ok = await self._tries(1 + req["retries"], req["interval"], once, "DownloadFailed")
        if ok:
            self._set("Downloaded", "version %s" % self.version)
            if rid is not None:
                ok = await self._verify(path, req)
                if ok and req.get("inst", 0) > clock.now():  # L01.FR.16
                    self._set("InstallScheduled", clock.iso(req["inst"]))
                    await _sleep_until(req["inst"])
            if ok:
                req["ver"] = self.version  # for resume(): installed already if the boot stage has it
                self.store.save("fwupdate", req)
                ok = await self._install(update, path)
        self.store.remove("fwupdate")
        if not ok:
            _remove(path)
            if rid is None:
                self.status = "Idle"
            return
        # The new application is tried at the next boot; it reports Installed
        # (or the boot stage InstallationFailed) after its BootNotification.
        if rid is not None:
            self._set("InstallRebooting", "version %s" % self.version)
        await self.restart(self.version)  # once the last statuses went out

    async def _download(self, update, url, path):
        client = _client(url)
        if client is None:
            raise ValueError("%s: only ftp://, http:// and https:// locations" % _shown(url))
        buf = bytearray(_BLOCK)
        got = [None, None]  # the Checker, the file on flash

        def size(n):  # the server said how much comes (None: not said): is there room?
            got[0] = update.Checker(update.make_room(n))
            got[1] = open(path, "wb")

        def sink(mv):  # each block: checked as it goes to flash, never all in RAM
            got[0].feed(mv)
            got[1].write(mv)

        kw = {"ssl_context": self.tls()} if url.startswith("https:") and self.tls else {}
        try:
            await client.download(url, buf, sink, size, **kw)
        finally:
            if got[1]:
                got[1].close()
        if got[0] is None:
            raise ValueError("nothing received")
        return got[0].finish()

    async def _verify(self, path, req):
        # L01.FR.04: the signature over the whole file as stored on flash (its
        # SHA-256 taken block by block, never the file in RAM), with the
        # signing certificate's key -> True (SignatureVerified), or False
        # (InvalidSignature and the security event; nothing is installed).
        import hashlib
        h = hashlib.sha256()
        buf = bytearray(_BLOCK)
        mv = memoryview(buf)
        why = None
        try:
            with open(path, "rb") as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    h.update(mv[:n])
                    await asyncio.sleep_ms(0)
            buf = mv = None
            ok = signature_ok(req["key"], h.digest(), req["sig"])
            import certs
            certs.unload()  # the parsers: tens of KB from .mpy, not kept
            if not ok:
                why = "the signature does not match the file and the signing certificate"
        except Exception as e:  # a signature that is not base64, a flash error, MemoryError: not verified
            why = "the signature cannot be checked: %s %s" % (type(e).__name__, e)
        if why is None:
            self._set("SignatureVerified", "version %s" % self.version)
            return True
        self._set("InvalidSignature", why)
        import security
        security.event("InvalidFirmwareSignature", "version %s: %s" % (self.version, why))
        return False

    async def _install(self, update, path):
        # Not while a vehicle charges: the running transactions end first.
        # A signed update holds the connectors Unavailable from then until the
        # restart, so that no transaction starts that the restart would cut
        # (L01.FR.06, FR.07; not stored: the restart frees them, as does a
        # failed install or a cancel).
        said = False
        signed = self.request_id is not None
        try:
            while any(c.transaction for c in self.station.connectors):
                if not said:
                    log.info(_TAG, "version %s is downloaded; it is installed once the running transactions end"
                             % self.version)
                    said = True
                    if signed:
                        self._hold(True)
                await asyncio.sleep(_TX_POLL)
            if signed:
                self._hold(True)
                self.store.save("fwsigned", {"id": self.request_id})  # for Installed after the restart
            self._set("Installing", "version %s" % self.version)
            await update.install(path)
        except asyncio.CancelledError:
            self._hold(False)
            raise
        except Exception as e:  # UpdateError, OSError: the running application stays
            self._hold(False)
            self.store.remove("fwsigned")
            self._set("InstallationFailed", str(e))
            return False
        return True

    def _hold(self, on):
        st = self.station
        if on == bool(self._held):
            return
        if on:
            self._held = [c for c in st.connectors[1:] if c.operative]
        for c in self._held:
            c.operative = not on
            st.refresh(c)
        if not on:
            self._held = []


def _installed(v):
    # True when the boot stage has version v on trial, or its outcome still to
    # report: the request that brought it is over.
    import slots
    t = slots._trial()
    if t is None:
        return False
    st = t.state()
    o = st.get("out") or ""
    return st.get("try") and st.get("ver") == v or o == "Installed " + v or o.startswith(
        "InstallationFailed version %s:" % v)


def signature_ok(key, digest, sig):
    # key: ["rsa", hex n, e] -> RSA-PSS, SHA-256, MGF1-SHA-256, any salt length;
    # ["ec", hex point] -> ECDSA P-256 over SHA-256, the signature DER
    # (ECDSA-Sig-Value, as openssl writes it) or r|s (64 bytes). sig: base64.
    # Raises ValueError for a signature that is not base64.
    import binascii
    raw = binascii.a2b_base64(sig)
    if key[0] == "rsa":
        import rsa
        return rsa.verify_pss(int(key[1], 16), key[2], digest, raw)
    import p256
    pub = binascii.unhexlify(key[1])
    try:
        import der
        r, s = der.ecdsa_sig_decode(raw)
        if p256.verify(pub, digest, r, s):
            return True
    except ValueError:
        pass
    return len(raw) == 64 and p256.verify(pub, digest, int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


class DiagnosticsUpload(_Job):
    def __init__(self, name, notify, tls):
        super().__init__("diagnostics", notify)
        self.name = name  # the charge point's identity, in the file name
        self.tls = tls

    def request(self, location, retries, interval, start, stop):
        # GetDiagnostics -> the file name, or None when the location cannot be used.
        if _client(location) is None:
            log.warn(self.tag, "cannot upload to %s: only ftp://, http:// and https:// locations" % _shown(location))
            return None
        stamp = clock.iso().replace("-", "").replace(":", "")  # 20261201T230000Z
        name = "%s-%s.log" % (_safe(self.name), stamp)
        self._start(self._run(location, name, max(retries, 0), max(interval, 0), start, stop))
        return name

    async def _run(self, location, name, retries, interval, start, stop):
        url = location + ("" if location.endswith("/") else "/") + name

        async def once():
            self._set("Uploading", _shown(url))
            await self._upload(url, start, stop)

        if await self._tries(1 + retries, interval, once, "UploadFailed"):
            self._set("Uploaded", name)
        self.status = "Idle"

    def _reader(self, start, stop):
        # The lines to upload (GetLog's security log: secext.LogUpload).
        import logfile
        return logfile.Reader(start, stop)

    async def _upload(self, url, start, stop):
        client = _client(url)
        buf = bytearray(_BLOCK)
        r = self._reader(start, stop)

        def source(mv):  # mv views buf; the Reader wants the bytearray itself
            return r.readinto(buf)

        if client.__name__ == "ftp":
            n = await client.upload(url, buf, source)
        else:  # HTTP wants the length first: a pass that counts, then the one that sends the same bytes
            n = 0
            while True:
                k = r.readinto(buf)
                if not k:
                    break
                n += k
            r.rewind()
            kw = {"ssl_context": self.tls()} if url.startswith("https:") and self.tls else {}
            await client.upload(url, buf, source, n, content_type="text/plain", **kw)
        log.info(self.tag, "%d bytes of log uploaded" % n)


def _shown(url):
    # The URL for the log, without a password.
    i = url.find("://") + 3
    j = url.find("@", i)
    k = url.find(":", i)
    return url if j < 0 or k < 0 or k > j else url[:k] + ":***" + url[j:]


def _safe(name):
    return "".join(c if c.isalpha() or c.isdigit() or c in "-_." else "_" for c in name)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
