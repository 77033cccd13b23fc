# The connection supervisor: keeps one WebSocket to the CSMS up, reconnecting
# after any loss with exponential backoff and jitter (OCPP-J 1.6 §3.2 errata),
# with the security profile of the OCPP 1.6 security whitepaper (§2, A05):
#   0  no authentication: the CsmsUrl as it is (ws://, or wss:// verified
#      against the installed roots: what a 1.6 station without the extension does)
#   1  HTTP Basic auth (user = ChargePointId, password = AuthorizationKey), the
#      CsmsUrl as it is (a wss:// URL stays TLS)
#   2  Basic auth over TLS: a wss:// CsmsUrl, the server certificate checked
#      against the CentralSystemRootCertificates and the host name (IP SANs too)
#   3  TLS with the client certificate of the certificate store, no Basic auth
# SecurityProfile is stored with the configuration and is what counts; the
# CSMS can only raise it (A05.FR.01-04), the installer sets any value locally
# (cfg.set with the firmware stopped: lowering is not done over OCPP, A00.FR.005).
# Those rules and the fallback are in secprofile.py, loaded only when a
# security key changes or a raised profile is on trial.
# The OCPP version: the handshake offers the subprotocols of OcppVersion, in its
# order; the CSMS picks one. When it picks another version than the running
# ChargePoint's, `switch(protocol)` (app.py) puts a ChargePoint of that version
# in its place before the session starts.
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


def _rules(fn, *args):
    # secprofile.fn(*args); the module is let go again (these are rare).
    import sys
    import ocpp
    from ocpp import secprofile
    try:
        return getattr(secprofile, fn)(*args)
    finally:
        sys.modules.pop("ocpp.secprofile", None)
        try:
            delattr(ocpp, "secprofile")
        except AttributeError:
            pass


def prepare(config, store):
    # At boot: the first start of a data directory (no "secprofile" record yet)
    # gives SecurityProfile its value (secprofile.start).
    if store.load("secprofile") is None:
        _rules("start", config, store)


class Link:
    def __init__(self, cp, config, store):
        self.cp = cp
        self.config = config
        self.store = store  # storage.Store: the "secprofile" file (first-start mark, trial of a raise)
        self._certs = None
        self.switch = None  # fn(protocol) -> the ChargePoint for that version (set by app)
        self.ws = None  # the live connection
        self.tls = False  # whether it runs over TLS
        self.base = None  # the CsmsUrl it was made with
        self._now = False  # reconnect at once: new credentials or profile
        self._own = False  # the link itself changes SecurityProfile / CsmsUrl (fallback)
        self._p = None  # the profile before a change
        sec = store.load("secprofile") or {}  # prepare() made it
        # a trial: {"from", "to", "url", "fails"} while a raised profile has not connected yet
        self.trial = sec.get("trial")
        if self.trial and self.trial.get("to") != self.profile():  # changed at the console meanwhile
            self.trial = None
            _rules("save", self)
        self._p = self.profile()
        config.check(self._check)
        config.listen(self._changed)

    def protocols(self):
        # The subprotocols to offer, preferred first (OcppVersion).
        return tuple(self.config.get("OcppVersion")) or ("ocpp1.6",)

    def profile(self):
        return self.config.get("SecurityProfile")

    def certs(self):
        # The certificate store (certs.py), loaded when first needed: a ws://
        # station never does, a wss:// one at its first connection.
        if self._certs is None:
            from certs import Store
            self._certs = Store(self.store.root, self.config.get("CertificateStoreMaxLength"))
        return self._certs

    def roots_context(self):
        # For the https:// transfers (cp.tls): the same roots as the link.
        return self.certs().context()

    # ---- ChangeConfiguration of the security keys (secprofile.py) -----------
    def _check(self, key, v):
        if key == "OcppVersion":
            return len(v) > 0  # something to offer
        if self._own or key not in ("SecurityProfile", "CsmsUrl"):
            return True
        return _rules("check", self, key, v)

    def _changed(self, key, v):
        if key in ("SecurityProfile", "AuthorizationKey"):
            _rules("changed", self, key, v)

    # ---- the supervisor ---------------------------------------------------------
    async def supervise(self):
        wait = _FIRST_WAIT
        while True:
            p = self.profile()
            base = self.config.get("CsmsUrl")
            url = url_for(self.config)
            self._now = False
            conn = None
            try:
                if p >= 2 and not url.startswith("wss:"):
                    raise wslib.WSError("SecurityProfile %d needs a wss:// CsmsUrl" % p)
                log.info("link", "connecting to %s (security profile %d)" % (url, p))
                ctx = self.certs().context(p == 3) if url.startswith("wss:") else None
                key = self.config.get("AuthorizationKey")
                auth = (self.config.get("ChargePointId"), key) if key and p in (1, 2) else None
                conn = await wslib.connect(url, self.protocols(), auth, ctx, timeout=_CONNECT_TIMEOUT)
            except Exception as e:  # WSError, OSError, TLS errors: all mean "try later"
                self._failed(p, str(e))
            if conn and conn.protocol != self.cp.PROTOCOL and self.switch:
                log.info("link", "the CSMS chose %s: switching from %s" % (conn.protocol, self.cp.PROTOCOL))
                try:
                    self.cp = self.switch(conn.protocol)
                except Exception as e:  # (MemoryError) the other version could not load: try again later
                    log.exc("link", "cannot switch to %s" % conn.protocol, e)
                    await conn.close()
                    conn = None
            if conn:
                log.info("link", "connected (%s)" % conn.protocol)
                if self.trial:  # A05.FR.08: from now on no fallback
                    _rules("kept", self, p)
                self.ws, self.tls, self.base = conn, ctx is not None, base
                up = time.ticks_ms()
                try:
                    await self.cp.session(conn)
                finally:
                    self.ws = None
                log.warn("link", "connection to the CSMS lost")
                if time.ticks_diff(time.ticks_ms(), up) > _STABLE_MS:
                    wait = _FIRST_WAIT
            if self._now:  # new credentials or profile: no backoff
                wait = _FIRST_WAIT
                await asyncio.sleep_ms(500)
                continue
            # Jitter spreads the reconnects of many stations after a CSMS outage.
            delay = wait // 2 + random.getrandbits(16) % (wait // 2 + 1)
            log.info("link", "reconnecting in %d s" % delay)
            await asyncio.sleep(delay)
            wait = min(wait * 2, _MAX_WAIT)

    def _failed(self, p, why):
        log.warn("link", "cannot connect: %s" % why)
        if "HTTP 401" in why:
            security.event("FailedToAuthenticateAtCentralSystem", why[:200])
        elif "BAD_PROTOCOL_VERSION" in why:  # A00.FR.315: the server offers no TLS 1.2 or newer
            security.event("InvalidTLSVersion", why[:200])
        elif "TLS handshake failed" in why and "certificate" in why or "no CA certificate" in why:
            security.event("InvalidCentralSystemCertificate", why[:200])  # A00.FR.309/413 (mbedTLS's words)
        if self.trial:
            _rules("failed", self, p)
