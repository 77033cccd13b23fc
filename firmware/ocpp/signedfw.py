# Signed firmware updates (security whitepaper L01): SignedUpdateFirmware, and
# the policy for the plain UpdateFirmware (L01.FR.20); the signing-certificate
# rules serve OCPP 2.0.1's UpdateFirmware too (ocpp/v201/firmware.py), so the
# module lies outside both packages. Imported on the first such request, never at boot. The download, the signature check and the
# install are maintenance.FirmwareUpdate's, as for UpdateFirmware.
import clock
import log
from ocpp.rpc import CallError

_TAG = "update"
_RETRIES = 2  # without retries / retryInterval: 3 attempts, 60 s apart (as UpdateFirmware)
_RETRY_INTERVAL = 60


def _certs(cp):
    import certs
    return certs.Store(cp.station.store.root)


def let_go():
    # The parsers and this module are tens of KB of RAM from .mpy: let go
    # once the request is answered (the update's task keeps what it uses).
    import certs
    certs.unload("ocpp.signedfw")


def allow_plain(cp):
    try:
        _allow_plain(cp)
    finally:
        let_go()


def _allow_plain(cp):
    # L01.FR.20, as a policy: while no ManufacturerRootCertificate is
    # installed the plain UpdateFirmware works (a CSMS without the security
    # extension can still update the station); once one is, only signed
    # files can reach it: UpdateFirmware gets CALLERROR NotSupported.
    try:
        store = _certs(cp)
    except ImportError:  # a build without the certificate store: no root can be installed
        return
    if store.roots("ManufacturerRootCertificate"):
        log.warn(_TAG, "UpdateFirmware refused (NotSupported): a ManufacturerRootCertificate is installed, "
                       "so only SignedUpdateFirmware is accepted")
        raise CallError("NotSupported", "a ManufacturerRootCertificate is installed: use SignedUpdateFirmware")


def signing_key(cp, pem):
    # The signing certificate (the first certificate of the PEM text: no
    # intermediates for firmware signing, L01 remarks) must be issued by an
    # installed ManufacturerRootCertificate and, once the clock is set, be
    # within its validity -> its key as maintenance stores it, or None
    # (logged, security event InvalidFirmwareSigningCertificate).
    import der
    import x509
    try:
        ders = [d for label, d in der.pem_decode(pem) if label == "CERTIFICATE"]
        if not ders:
            raise ValueError("no PEM certificate")
        cert = x509.Cert(ders[0])
        ders = None
        roots = [x509.Cert(d) for d in _certs(cp).roots("ManufacturerRootCertificate")]
        if not roots:
            raise ValueError("no ManufacturerRootCertificate is installed")
        x509.chain([cert], roots, clock.now() if clock.synced() else None)
        key = cert.key
        if key[0] == "rsa":
            if not key[1] >> 2047:
                raise ValueError("an RSA key of less than 2048 bits (A00.FR.502)")
            return ["rsa", "%x" % key[1], key[2]]
        if key[0] == "ec":
            import binascii
            return ["ec", binascii.hexlify(key[1]).decode()]
        raise ValueError("a %s key: RSA or EC P-256 only" % key[0])
    except ValueError as e:
        why = str(e) or "not a certificate"
    log.warn(_TAG, "SignedUpdateFirmware refused: the signing certificate is not valid: %s" % why)
    import security
    security.event("InvalidFirmwareSigningCertificate", why)
    return None


def signed_update_firmware(cp, p):
    try:
        return _signed_update_firmware(cp, p)
    finally:
        let_go()


def _signed_update_firmware(cp, p):
    # L01: the certificate is checked before the request is accepted
    # (L01.FR.23, 24); nothing is downloaded with an invalid one. A request
    # replaces the one under way (AcceptedCanceled, L01.FR.26) unless that one
    # is installing already (Rejected, L01.FR.27).
    import maintenance
    fw = p["firmware"]
    rid = p["requestId"]
    key = signing_key(cp, fw["signingCertificate"])
    if key is None:
        return {"status": "InvalidCertificate"}
    location = fw["location"]
    if maintenance._client(location) is None:
        log.warn(_TAG, "SignedUpdateFirmware %d rejected: only ftp://, http:// and https:// locations" % rid)
        return {"status": "Rejected"}
    job = cp.maintenance(True)
    if job.installing():
        log.warn(_TAG, "SignedUpdateFirmware %d rejected: version %s is being installed" % (rid, job.version))
        return {"status": "Rejected"}
    status = "Accepted"
    if job.running():
        log.info(_TAG, "SignedUpdateFirmware %d cancels the firmware update under way%s" % (
            rid, "" if job.request_id is None else " (request %d)" % job.request_id))
        job.cancel()
        status = "AcceptedCanceled"
    at = clock.parse(fw["retrieveDateTime"]) or clock.now()
    inst = fw.get("installDateTime")
    signed = {"id": rid, "key": key, "sig": fw["signature"], "inst": inst and clock.parse(inst) or 0}
    log.info(_TAG, "SignedUpdateFirmware %d: %s" % (rid, status))

    async def start():  # after the confirmation: the first status follows it
        job.request(location, at, p.get("retries", _RETRIES), p.get("retryInterval", _RETRY_INTERVAL), signed)
    return {"status": status}, start
