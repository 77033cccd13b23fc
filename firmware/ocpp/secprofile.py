# The security profile's rules (OCPP 1.6 security whitepaper §2, A05), for
# ocpp/link.py: which raises the CSMS may ask for, what a change sets off,
# and the fallback of a raised profile that does not connect. Imported only
# when one of these happens.
import asyncio
import log


# A05.FR.08: failed connections in a row at a newly raised profile before the
# station goes back to the previous profile (and CsmsUrl).
FALLBACK_AFTER = 3


def derive_profile(config, root):
    # The profile a configuration from before SecurityProfile was stored
    # stands for: ws:// without a key 0, ws:// with one 1, wss:// with one 2,
    # wss:// with a client certificate (certs.py's file) 3; wss:// without
    # either stays 0 (TLS, no authentication).
    wss = config.get("CsmsUrl").startswith("wss:")
    if wss:
        import os
        try:
            os.stat(root + "certs/client")
            return 3
        except OSError:
            pass
    if not config.get("AuthorizationKey"):
        return 0
    return 2 if wss else 1


def start(config, store):
    # No "secprofile" record yet: a new data directory, or one from before the
    # profiles. A SecurityProfile the installer stored (cfg.set) is kept, else
    # it is derived from the configuration.
    if "SecurityProfile" not in (store.load("config") or {}):
        p = derive_profile(config, store.root)
        config.set("SecurityProfile", p, False)
        log.info("link", "SecurityProfile %d, from the configuration (first start with security profiles)" % p)
    try:
        store.save("secprofile", {})
    except OSError:
        pass  # logged by the store: derived again at the next start


def save(ln):
    try:
        ln.store.save("secprofile", {"trial": ln.trial} if ln.trial else {})
    except OSError:
        pass  # logged by the store; the trial state then lives in RAM only


def kept(ln, p):
    # A05.FR.08: the raised profile connected: from now on no fallback.
    ln.trial = None
    save(ln)
    log.info("link", "security profile %d works: kept" % p)  # (once it is on the flash)


def renew(ln):
    # A05.FR.06, A01: close the connection (once the ChangeConfiguration
    # answer is out: it holds the WebSocket's send lock until then) and
    # reconnect at once with the new settings.
    ln._now = True
    if ln.ws:
        asyncio.create_task(_close(ln.ws))


async def _close(conn):
    log.info("link", "reconnecting with the new security settings")
    await conn.close()


def check(ln, key, v):
    if key == "SecurityProfile":
        why = refusal(ln, v)
        if why:
            log.warn("link", "SecurityProfile %d refused: %s" % (v, why))
            return False
    elif ln.profile() >= 2 and not v.startswith("wss:"):  # CsmsUrl
        log.warn("link", "a ws:// CsmsUrl is refused at SecurityProfile %d, which needs TLS" % ln.profile())
        return False
    return True


def refusal(ln, v):
    # -> why the CSMS may not raise the profile to v (A05.FR.01-04), or None.
    p = ln.profile()
    if v <= p:
        return "the profile can only be raised, it is %d" % p
    if v < 3 and not ln.config.get("AuthorizationKey"):
        return "no AuthorizationKey is set"
    if v < 2:
        return None
    if not ln.config.get("CsmsUrl").startswith("wss:"):
        return "the CsmsUrl is not a wss:// URL"
    import certs
    import certstore
    s = ln.certs()
    try:
        if not certstore.valid(s, certs.CS):
            return "no valid CentralSystemRootCertificate is installed"
        if v == 3 and not certstore.client_valid(s):
            return "no valid client certificate is installed"
    finally:
        certs.unload()
    return None


def changed(ln, key, v):
    # (ReconfigurationOfSecurityParameters: security.reconfigured, a listener of app.py's)
    if key == "SecurityProfile":
        if not ln._own:  # a raise: on trial until a connection works (A05.FR.08)
            ln.trial = {"from": ln._p, "to": v, "url": ln.base or ln.config.get("CsmsUrl"), "fails": 0}
            save(ln)
        ln._p = v
        renew(ln)
    elif ln.profile() in (1, 2):  # a new AuthorizationKey (A01)
        renew(ln)


def failed(ln, p):
    # A connection at a raised profile failed: after FALLBACK_AFTER in a row,
    # back to the previous profile settings (A05.FR.08), and said so.
    t = ln.trial
    if t["to"] != p:
        return
    t["fails"] += 1
    if t["fails"] < FALLBACK_AFTER:
        save(ln)
        return
    config = ln.config
    log.warn("link", "no connection at security profile %d in %d attempts: back to profile %d%s" % (
        p, t["fails"], t["from"], " and CsmsUrl %s" % t["url"] if t["url"] != config.get("CsmsUrl") else ""))
    ln.trial = None
    ln._own = True
    try:
        config.set("SecurityProfile", t["from"], False)  # (ReconfigurationOfSecurityParameters too)
        if t["url"] != config.get("CsmsUrl"):
            config.set("CsmsUrl", t["url"], False)
    finally:
        ln._own = False
    save(ln)
    ln._now = True
