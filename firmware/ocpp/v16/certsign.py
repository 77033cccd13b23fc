# The charge point's own key pair and certificate for security profile 3
# (security whitepaper A02, A03): SignCertificate with a PKCS#10 request for a
# new EC P-256 key pair, each time, and CertificateSigned with the certificate
# the CSMS's CA made of it. Imported on first use (a trigger, a certificate,
# a renewal that is due), never at boot.
#
# "cpcert" (a storage.Store file) keeps what the renewal needs without
# parsing certificates: "exp" the client certificate's notAfter (Unix time),
# "crc" the CRC-32 of its DER (a certificate installed otherwise, e.g. by the
# installer's console, is noticed), "ask" when the station last asked for a
# new one itself, "due" when to look again; "next"/"at" a certificate that
# becomes valid later (A02.FR.08), with its notBefore. ocpp/v16/chargepoint.py
# reads it at each connection and when "due" comes.
import asyncio
import clock
import log
from micropython import const
from ocpp.rpc import CallError, CallTimeout, NotConnected

_TAG = "certs"
_DAY = const(86400)
_RENEW = const(30 * 86400)  # A03.FR.02: a certificate that expires within a month is renewed
_AGAIN = const(7 * 86400)  # a renewal the CSMS never answered is asked again a week later (A03 error handling)
_SKEW = const(300)  # s: a certificate valid from within this much is taken at once (clocks differ a little)


def _certs(cp):
    import certs
    return certs.Store(cp.station.store.root)


def let_go():
    # What a certificate operation loaded (the parsers, P-256 and its table,
    # this module) is tens of KB of RAM when loaded from .mpy: let go once the
    # operation is over (a running coroutine keeps what it uses).
    import certs
    certs.unload("ocpp.v16.certsign")


def _cn(cp):
    # A00.FR.511: the charge point's serial number as BootNotification
    # reports it, else its identity.
    c = cp.config
    return cp.boot_fields.get("chargePointSerialNumber") or c.get("ChargePointSerialNumber") or c.get("ChargePointId")


def trigger(cp):
    # ExtendedTriggerMessage(SignChargePointCertificate), A02: -> (status,
    # after); `after` sends SignCertificate once the confirmation is out.
    let_go()  # request() keeps what it needs
    if not cp.config.get("CpoName"):
        log.warn(_TAG, "SignChargePointCertificate rejected: CpoName is not set (A02 prerequisite)")
        return "Rejected", None
    return "Accepted", lambda: request(cp)


async def request(cp):
    # A02.FR.02, FR.03, FR.13: a new key pair (the pending key, until its
    # certificate comes), and SignCertificate with its CSR (CN = _cn, O = CpoName).
    # -> True when the CSMS accepted the request.
    await asyncio.sleep_ms(0)
    import p256
    import x509
    d, pub = p256.keygen()
    _certs(cp).set_pending_key(d, pub)
    csr = x509.csr(d, pub, _cn(cp), cp.config.get("CpoName") or None)
    d = p256 = x509 = None
    let_go()
    log.info(_TAG, "new key pair made; asking the CSMS to have it certified (CN=%s)" % _cn(cp))
    try:
        answer = await cp.rpc.call("SignCertificate", {"csr": csr}, cp.config.get("MessageTimeout"))
    except (CallError, CallTimeout, NotConnected) as e:
        log.warn(_TAG, "SignCertificate failed: %s" % (
            "%s %s" % (e.code, e.desc) if isinstance(e, CallError) else "no answer" if isinstance(e, CallTimeout)
            else "not connected"))
        return False
    status = answer["status"]
    (log.info if status == "Accepted" else log.warn)(_TAG, "the CSMS answered SignCertificate: %s" % status)
    return status == "Accepted"


def certificate_signed(cp, p):
    try:
        return _certificate_signed(cp, p)
    finally:
        let_go()


def _certificate_signed(cp, p):
    # CertificateSigned (A02.FR.06-09): the chain must lead to an installed
    # CentralSystemRootCertificate (the CPO hierarchy), be valid (dates, once
    # the clock is set) and certify the pending key. Accepted: it is the client
    # certificate from the next connection on (or from its notBefore, when that
    # lies ahead). Rejected: the current one stays, security event
    # InvalidChargePointCertificate.
    import der
    import x509
    store = _certs(cp)
    text = p["certificateChain"]
    try:
        ders = [d for label, d in der.pem_decode(text) if label == "CERTIFICATE"]
        if not ders:
            raise ValueError("no PEM certificate")
        chain = [x509.Cert(d) for d in ders]
        leaf = chain[0]
        roots = [x509.Cert(d) for d in store.roots("CentralSystemRootCertificate")]
        if not roots:
            raise ValueError("no CentralSystemRootCertificate is installed")
        now = clock.now() if clock.synced() else None
        # valid from its start on (A02.FR.08): the whole chain then
        x509.chain(chain, roots, None if now is None else max(now, leaf.not_before))
        if leaf.is_ca:
            raise ValueError("a CA certificate")
        pending = store.pending_key()
        if pending is None:
            raise ValueError("no key pair waits for a certificate")
        if leaf.key[0] != "ec" or bytes(leaf.key[1]) != bytes(pending[1]):
            raise ValueError("it certifies another key than the one of the last SignCertificate")
    except ValueError as e:
        why = str(e) or "not a certificate"
        log.warn(_TAG, "CertificateSigned rejected: %s; the current certificate stays" % why)
        import security
        security.event("InvalidChargePointCertificate", why)
        return {"status": "Rejected"}
    if now is not None and leaf.not_before > now + _SKEW:
        rec = _record(cp)
        rec["next"], rec["at"] = text, leaf.not_before
        log.info(_TAG, "new client certificate (serial %x) accepted; it is used from %s on" % (
            leaf.serial, clock.iso(leaf.not_before)))
        _save(cp, rec)
    else:
        _install(cp, store, ders, leaf)
    return {"status": "Accepted"}


def _install(cp, store, ders, leaf):
    from binascii import crc32
    store.install_client(ders)
    log.info(_TAG, "new client certificate (serial %x, valid until %s) installed; it is used from the next "
                   "connection" % (leaf.serial, clock.iso(leaf.not_after)))
    _save(cp, {"exp": leaf.not_after, "crc": crc32(ders[0])})


def _record(cp):
    rec = cp.station.store.load("cpcert")
    return rec if type(rec) is dict else {}


def _save(cp, rec):
    # "due": the next time there is something to do: renew, or take "next".
    exp = rec.get("exp")
    due = None if exp is None else max(exp - _RENEW, rec.get("ask", 0) + _AGAIN)
    if "at" in rec:
        due = rec["at"] if due is None else min(due, rec["at"])
    rec["due"] = due
    try:
        cp.station.store.save("cpcert", rec)
    except OSError:
        pass  # logged by the store; looked at again at the next connection
    cp._cert_due = 0 if due is None else due


def check(cp):
    try:
        return _check(cp)
    finally:
        let_go()


def _check(cp):
    # A03, when "due" is reached (chargepoint.py): a certificate that became
    # valid is taken; one that expires within a month makes the station ask
    # for a new one (a new key pair), again a week later while none comes.
    # -> the Unix time of the next look.
    now = clock.now()
    rec = _record(cp)
    store = _certs(cp)
    if "next" in rec and now >= rec["at"] - _SKEW:
        _take_next(cp, store, rec)
        rec = _record(cp)
    c = store.client()
    if c is None:
        return min(now + _DAY, rec.get("at") or now + _DAY)  # no client certificate: nothing to renew
    from binascii import crc32
    crc = crc32(c[0][0])
    if rec.get("crc") != crc:  # not the one last seen: its expiry from the certificate itself
        import x509
        rec["exp"], rec["crc"] = x509.Cert(c[0][0]).not_after, crc
        rec.pop("ask", None)
    c = None
    if now >= rec["exp"] - _RENEW and now >= rec.get("ask", 0) + _AGAIN:
        if cp.config.get("CpoName"):
            log.info(_TAG, "the client certificate expires at %s: asking for a new one (A03)" % clock.iso(rec["exp"]))
            rec["ask"] = now
            asyncio.create_task(request(cp))
        else:
            log.warn(_TAG, "the client certificate expires at %s and CpoName is not set: it cannot be renewed"
                     % clock.iso(rec["exp"]))
            rec["ask"] = now
    _save(cp, rec)
    return rec["due"] if rec["due"] is not None else now + _DAY


def _take_next(cp, store, rec):
    # The accepted certificate whose time has come, if its key is still the
    # pending one (a newer SignCertificate replaces both).
    import der
    import x509
    text = rec.pop("next")
    rec.pop("at")
    ders = [d for label, d in der.pem_decode(text) if label == "CERTIFICATE"]
    leaf = x509.Cert(ders[0])
    pending = store.pending_key()
    if pending is not None and leaf.key[0] == "ec" and bytes(leaf.key[1]) == bytes(pending[1]):
        _install(cp, store, ders, leaf)
    else:
        log.warn(_TAG, "the certificate valid from %s is dropped: a newer key pair replaced its key"
                 % clock.iso(leaf.not_before))
        _save(cp, rec)
