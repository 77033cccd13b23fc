# The security extension's certificate operations (whitepaper M03-M05):
# InstallCertificate, GetInstalledCertificateIds, DeleteCertificate. Imported
# on the first such CALL (handlers.py), never at boot; the X.509 parser it
# loads is let go again once the operation is over.
import log
from certs import unload as _unload
import security

_CS = "CentralSystemRootCertificate"


def install(cp, p):
    # M05: Accepted / Rejected (garbage, not a CA, store full) / Failed (flash)
    s = cp.link.certs()
    n = s.count()
    try:
        status = s.install(p["certificateType"], p["certificate"])
    finally:
        _unload()
    if s.count() > n:  # not for one installed already
        security.event("ReconfigurationOfSecurityParameters", "%s installed" % p["certificateType"])
    return {"status": status}


def ids(cp, p):
    # M03: the hash data of every certificate of the type, NotFound for none
    try:
        found = cp.link.certs().ids(p["certificateType"])
    finally:
        _unload()
    if not found:
        return {"status": "NotFound"}
    return {"status": "Accepted", "certificateHashData": found}


def delete(cp, p):
    # M04: NotFound / Accepted / Failed. A CentralSystemRootCertificate may
    # not go while it validates the connection in use (M04.FR.06): the TLS
    # stack of this port does not show the server's certificate, so the
    # station asks the CSMS itself: a second TLS handshake (no HTTP beyond a
    # HEAD) with the other roots only; if that fails, this root is needed.
    h = p["certificateHashData"]
    try:
        import certstore
        found = certstore.find(cp.link.certs(), h)
    finally:
        _unload()
    if found is None:
        return {"status": "NotFound"}
    kind, name = found
    ln = cp.link
    if kind != _CS or not (ln and ln.ws and ln.tls):
        return _deleted(cp, h, name)
    others = [d for n, d in _named(cp.link.certs()) if n != name]
    if not others:
        log.warn("certs", "the CentralSystemRootCertificate %s validates the connection in use: not deleted" % name[3:-4])
        return {"status": "Failed"}
    return _probe_then_delete(cp, h, name, others)


def _named(certs):
    for n in certs.names("cs-"):
        yield n, certs.read(n)


def _deleted(cp, h, name):
    status = cp.link.certs().delete(h, name)
    if status == "Accepted":
        security.event("ReconfigurationOfSecurityParameters", "certificate %s deleted" % name[3:-4])
    return {"status": status}


async def _probe_then_delete(cp, h, name, others):
    why = await probe(cp, others)
    if why:
        log.warn("certs", "the CentralSystemRootCertificate %s validates the connection in use "
                 "(without it: %s): not deleted" % (name[3:-4], why))
        return {"status": "Failed"}
    return _deleted(cp, h, name)


async def probe(cp, roots, timeout=15):
    # -> None if a TLS connection to the CSMS verifies with these roots alone
    # (the client certificate too at profile 3), else why not.
    import asyncio
    import ws as wslib
    ln = cp.link
    tls, host, port, _ = wslib._parse_url(ln.base)
    c = cp.link.certs().client() if ln.profile() == 3 else None
    try:
        ctx = wslib.tls_context(roots, c[0][0], c[1]) if c else wslib.tls_context(roots)
    except wslib.WSError as e:
        return str(e)
    w = wslib.WebSocket(0)
    try:
        ev = asyncio.Event()
        asyncio.create_task(w._open(host, port, ctx, ev))
        await asyncio.wait_for(ev.wait(), timeout)
        if w._err:
            raise w._err
        s = w._s
        s.write(("HEAD / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode())
        await asyncio.wait_for(s.drain(), timeout)
        await asyncio.wait_for(s.readline(), timeout)  # any answer (or none) once TLS is up
        return None
    except asyncio.TimeoutError:
        return "no answer from %s:%d within %d s" % (host, port, timeout)
    except Exception as e:
        return wslib._why(e)
    finally:
        w._shut()
