# The connection supervisor: keeps one WebSocket to the CSMS up, reconnecting
# after any loss with exponential backoff and jitter (OCPP-J 1.6 §3.2 errata).
import asyncio
import random
import time
from micropython import const
import log
import security
import ws as wslib

_FIRST_WAIT = const(2)  # seconds
_MAX_WAIT = const(300)
_STABLE_MS = const(60000)  # a link up this long resets the backoff
# TCP connect + TLS + WebSocket handshake. Not ConnectionTimeOut: in OCPP 1.6
# that key is how long a plugged-in vehicle may wait for authorization.
_CONNECT_TIMEOUT = const(30)  # seconds


_SAFE = "-._~*+=@"  # kept as they are in the path segment (RFC 3986 unreserved, and pchar
# sub-delimiters that OCPP 2.0.1 allows in an identity); everything else is %XX


def path_segment(text):
    # The charge point identity percent-encoded as one path segment (RFC 3986 §3.3).
    out = []
    for b in text.encode():
        c = chr(b)
        if "a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in _SAFE:
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def url_for(config):
    # OCPP-J 1.6 §3.1.1: the identity is appended to the endpoint URL's path,
    # percent-encoded; a query stays at the end (ws://h/ocpp?site=7 -> ws://h/ocpp/CP1?site=7).
    url = config.get("CsmsUrl")
    q = url.find("?")
    base, query = (url, "") if q < 0 else (url[:q], url[q:])
    return base.rstrip("/") + "/" + path_segment(config.get("ChargePointId")) + query


def security_profile(config):
    # The OCPP security profile (whitepaper §2) a connection with this
    # configuration has: 1 Basic auth over ws://, 2 Basic auth over wss://
    # (the server's certificate is always verified), else 0. Profile 3 (a
    # client certificate) is not built yet.
    if not config.get("AuthorizationKey"):
        return 0
    return 2 if config.get("CsmsUrl").startswith("wss:") else 1


def guard_security_profile(config):
    # SecurityProfile reports the link's profile and accepts no other: until
    # the profiles and their A05 rules are built, a CSMS may not ask for one
    # the link does not have.
    def check(key, v):
        if key != "SecurityProfile":
            return True
        have = security_profile(config)
        if v != have:
            log.warn("link", "SecurityProfile %d refused: this connection uses profile %d" % (v, have))
            return False
        return True
    config.check(check)
    _report_profile(config)


def _report_profile(config):
    p = security_profile(config)
    if config.get("SecurityProfile") != p:
        config.set("SecurityProfile", p, False)


def credentials(config):
    # Security profiles 1 and 2: HTTP Basic auth with the AuthorizationKey.
    key = config.get("AuthorizationKey")
    return (config.get("ChargePointId"), key) if key else None


async def supervise(cp, config, tls=None):
    wait = _FIRST_WAIT
    while True:
        url = url_for(config)
        _report_profile(config)
        log.info("link", "connecting to %s" % url)
        ctx = tls() if tls and url.startswith("wss:") else None
        try:
            conn = await wslib.connect(url, ("ocpp1.6",), credentials(config), ctx,
                                       timeout=_CONNECT_TIMEOUT)
        except Exception as e:  # WSError, OSError, TLS errors: all mean "try later"
            log.warn("link", "cannot connect: %s" % (e,))
            if "HTTP 401" in str(e):  # whitepaper §8: the CSMS refused our credentials
                security.event("FailedToAuthenticateAtCentralSystem", str(e))
        else:
            log.info("link", "connected")
            up = time.ticks_ms()
            await cp.session(conn)
            log.warn("link", "connection to the CSMS lost")
            if time.ticks_diff(time.ticks_ms(), up) > _STABLE_MS:
                wait = _FIRST_WAIT
        # Jitter spreads the reconnects of many stations after a CSMS outage.
        delay = wait // 2 + random.getrandbits(16) % (wait // 2 + 1)
        log.info("link", "reconnecting in %d s" % delay)
        await asyncio.sleep(delay)
        wait = min(wait * 2, _MAX_WAIT)
