# The installer's configuration commands at the REPL. Connect a terminal
# (mpremote, or any serial terminal at 115200 Bd), stop the firmware with
# Ctrl-C, then:
#   >>> import cfg
#   >>> cfg.help()
# Every command prints one readable line per setting and never a traceback.
# Settings go through Config.set, exactly like a local "set" in the simulator,
# into the same flash store the firmware reads at boot. On a board that store is
# the flash root (next to board.json). On the unix port (simulator, Linux
# controller) open the station's data directory first, while the firmware is
# NOT running (two processes must not mount the same flash image):
#   >>> cfg.open("data/CP001", "boards/unix")
import sys
import io
import json
import log
import config as _config
import tasks
from config import Config
from storage import Store

_c = None  # the open Config
_store = None
_defaults = None  # the board file's "config": the board's defaults


class _Stop(Exception):
    # A message for the installer instead of a traceback.
    pass


def _safe(name):
    def wrap(fn):
        def run(*args, **kw):
            try:
                fn(*args, **kw)
            except _Stop as e:
                print("cfg: " + str(e))
            except Exception as e:
                print("cfg: %s failed: %s %s" % (name, type(e).__name__, e))

        return run

    return wrap


def _on_board():
    try:
        from machine import Pin  # noqa: F401  (the unix port has no machine.Pin)

        return True
    except ImportError:
        return False


def _exists(path):
    try:
        import os

        os.stat(path)
        return True
    except OSError:
        return False


def _load_board(path):
    # -> the board file's dict ({} if none): its "config" holds the board's defaults.
    if path and not path.endswith(".json"):
        path = path.rstrip("/") + "/board.json"
    if not path or not _exists(path):
        return None, path
    with io.open(path) as f:
        return json.load(f), path


def _open(data, board):
    global _c, _store, _defaults
    if data and not _on_board():
        from hw import unixflash

        img = data.rstrip("/") + "/flash.img"
        if not _exists(img):
            raise _Stop("no flash image %s: is %s the station's data directory? (the firmware "
                        "creates it at its first start)" % (img, data))
        root = unixflash.mount(data)  # the LittleFS image DATA/flash.img
        where = "%s (flash image in %s)" % (root, data)
        if board is None and _exists("boards/unix/board.json"):
            board = "boards/unix"
    else:
        root = data or ""  # a board: the flash root, where board.json is
        where = root or "the flash root"
        if board is None:
            board = (root.rstrip("/") + "/" if root else "") + "board.json"
    b, path = _load_board(board)
    store = Store(root)
    defaults = (b or {}).get("config")
    c = Config(store, defaults)
    _c, _store, _defaults = c, store, defaults
    n = len(store.load("config", {}) or {})
    print("cfg: charge point %s, settings in %s, %d differ from the defaults" % (
        c.get("ChargePointId") or "(no ChargePointId yet)", where, n))
    if b is None:
        print("cfg: WARNING no board file %s: the board's defaults are not applied" % path)
    else:
        print("cfg: board %s (%s)" % (b.get("name", "?"), path))


def _cfg():
    if _c is None:
        if _on_board() or _exists("board.json"):
            _open(None, None)
        else:
            raise _Stop("on the unix port, open the station's data directory first: "
                        "cfg.open('data/CP001', 'boards/unix')")
    return _c


def _meta(key):
    # -> (name, type, flags, limits) of a key, or None if unknown.
    j = _config._row(key)
    if j < 0:
        return None
    f = _config._fields(j)
    return f[0], f[1][0], f[1][1:], f[2]


def _text(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, list):
        return ",".join(v)
    return str(v)


def _shown(name, flags, v):
    if "W" in flags:  # write-only secrets: never shown
        return "(set)" if v else "(not set)"
    return _text(v)


def _expects(name, t, limits):
    # What a valid value looks like, for a Rejected answer.
    if t == "b":
        return "true or false"
    if t == "i":
        a, b = limits.split("-")
        return "a whole number from %s to %s" % (a, b)
    if t == "s":
        if name == "CsmsUrl":
            return "a ws:// or wss:// URL without spaces, at most %s characters" % limits
        if name == "ChargePointId":
            return "at most %s plain ASCII characters, without ':' or '/'" % limits
        if name == "AuthorizationKey":
            return "16 to %s printable ASCII characters, used exactly as given" % limits
        return "text of at most %s plain ASCII characters" % limits
    if limits == "measurand":
        what = "measurands, e.g. Energy.Active.Import.Register,Power.Active.Import,Voltage.L1"
    elif limits == "rotation":
        what = "phase rotations, e.g. RST or 1.RST,2.RTS"
    else:
        what = "values from %s" % limits
    return "a comma separated list of " + what


def _set(key, value):
    c = _cfg()
    m = _meta(key)
    if m is None:
        print("%s: NotSupported, there is no such key (cfg.show() lists them)" % key)
        return None
    name, t, flags, limits = m
    lvl = log.level
    log.level = log.ERROR  # our own line below says it better; keep real errors
    try:
        status = c.set(name, value, False)
    finally:
        log.level = lvl
    if status in ("Accepted", "RebootRequired"):
        if name == "SecurityProfile":  # set by the installer: kept as it is (no derivation, no trial)
            _store.save("secprofile", {})
        line = "%s = %s: %s" % (name, _shown(name, flags, c.get(name)), status)
        if status == "RebootRequired":
            line += ", takes effect after a restart (cfg.restart())"
        print(line)
    else:
        why = _config.problem(name, value) if isinstance(value, str) else None
        print("%s: %s, %s is not valid: %s" % (
            name, status, "(hidden)" if "W" in flags else repr(value),
            why or "expects " + _expects(name, t, limits)))
    return status


@_safe("open")
def open(data=None, board=None):
    # Opens the station's settings. Boards: nothing to give (the flash root).
    # Unix port: data = the station's data directory, board = its board directory.
    _open(data, board)


@_safe("show")
def show():
    c = _cfg()
    stored = _store.load("config", {}) or {}
    known, _ = c.items(None, False)  # every key, the 2.0.1 variables' too
    w = max(len(kv["key"]) for kv in known)
    print("%-*s %s" % (w, "key", "    value  (* stored, R read-only for the CSMS, ! needs a restart)"))
    for kv in known:
        name = kv["key"]
        flags = _meta(name)[2]
        mark = ("*" if name in stored else " ") + ("R" if "R" in flags else " ") + ("!" if "!" in flags else " ")
        print("%-*s %s %s" % (w, name, mark, _shown(name, flags, c.get(name))))


@_safe("get")
def get(key):
    c = _cfg()
    m = _meta(key)
    if m is None:
        print("%s: NotSupported, there is no such key (cfg.show() lists them)" % key)
        return
    print("%s = %s" % (m[0], _shown(m[0], m[2], c.get(m[0]))))


@_safe("set")
def set(key, value):
    _set(key, value)


@_safe("csms")
def csms(url, charge_point_id=None):
    # The central system's URL and this charge point's identity (the last part
    # of the WebSocket URL, <url>/<id>).
    _set("CsmsUrl", url)
    if charge_point_id is not None:
        _set("ChargePointId", charge_point_id)


@_safe("wifi")
def wifi(ssid, password=""):
    _set("WifiSsid", ssid)
    _set("WifiPassword", password)


@_safe("key")
def key(authorization_key):
    # The Basic auth password for security profiles 1 and 2.
    if _set("AuthorizationKey", authorization_key) == "Accepted":
        print("(used with SecurityProfile 1 or 2; SecurityProfile is %s)" % _cfg().get("SecurityProfile"))


def _certs():
    from certs import Store as Certs

    return Certs(_store.root, _cfg().get("CertificateStoreMaxLength"))


def _file(path):
    with io.open(path, "rb") as f:
        return f.read()


@_safe("profile")
def profile(n):
    # The security profile (0-3), set locally: lowering it is done this way,
    # never over OCPP (whitepaper A00.FR.005).
    _set("SecurityProfile", str(n))


@_safe("cpo")
def cpo(name):
    # CpoName: the organization (O) of the client certificate requests.
    _set("CpoName", name)


@_safe("ca")
def ca(path):
    # Installs the CA certificate(s) of a file on the flash (PEM, one or more,
    # or DER) as CentralSystemRootCertificate: what the station trusts for
    # wss:// (profiles 2 and 3) and https:// downloads.
    _cfg()
    import certs
    import certstore

    raw = _file(path)
    ders = [d for label, d in certstore.pem_blocks(raw) if label == "CERTIFICATE"] if raw[:5] == b"-----" \
        else [bytes(x) for x in certs.tlvs(raw)]
    if not ders:
        raise _Stop("no certificate in %s" % path)
    store = _certs()
    for der in ders:
        print("CentralSystemRootCertificate: %s" % store.install(certs.CS, der))


@_safe("client_cert")
def client_cert(cert_path, key_path):
    # The client certificate (PEM or DER, leaf first) and its private key (PEM
    # or DER, unencrypted) for security profile 3. The key stays in the flash
    # store: no command shows it again.
    _cfg()
    import certstore

    certstore.provision_client(_certs(), _file(cert_path), _file(key_path))
    print("client certificate stored (used with SecurityProfile 3; SecurityProfile is %s)" %
          _cfg().get("SecurityProfile"))


@_safe("certs")
def certs():
    # The installed certificates: kind, file and, where the X.509 parser is
    # installed, the subject and the end of validity.
    import certs as _c

    store = _certs()
    n = 0
    for kind in (_c.CS, _c.MF):
        for name in store.names(_c.PREFIX[kind]):
            n += 1
            line = "%s %s" % (kind, name[3:-4])
            try:
                import x509
                import clock

                c = x509.Cert(store.read(name))
                line += " CN=%s until %s" % (c.cn, clock.iso(c.not_after))
            except Exception:
                pass
            print(line)
    print("%d of CertificateStoreMaxLength %d; client certificate: %s" % (
        n, store.limit, "installed" if store.has_client() else "none"))


@_safe("reset_defaults")
def reset_defaults(confirm=None):
    _cfg()
    stored = _store.load("config", {}) or {}
    if not stored:
        print("Nothing is stored: the defaults apply already.")
        return
    if confirm != "yes":
        print("This erases the %d stored settings: %s." % (len(stored), ", ".join(sorted(stored))))
        print("The station then needs its CSMS URL, id and Wi-Fi again. To go ahead: cfg.reset_defaults('yes')")
        return
    global _c
    _store.remove("config")
    _c = Config(_store, _defaults)
    print("Stored settings erased: the defaults apply after a restart (cfg.restart())")


@_safe("clear_security_log")
def clear_security_log(confirm=None):
    # Empties the security log (e.g. before the station changes hands). Its
    # first line is then the event SecurityLogWasCleared, which also goes to
    # the CSMS after the next boot (whitepaper §8).
    c = _cfg()
    if confirm != "yes":
        print("This empties the security log (what GetLog SecurityLog uploads). To go ahead: "
              "cfg.clear_security_log('yes')")
        return
    import security
    from ocpp.outbox import Outbox
    from ocpp.v16 import secext

    security.start(_store.root, Outbox(_store.root.rstrip("/"), c.get("TransactionQueueBytes")))
    secext.clear_log()
    print("Security log emptied; the CSMS hears of it after the next boot.")


@_safe("restart")
def restart():
    # A commanded restart: a transaction still running is then ended with
    # reason Reboot, not PowerLoss.
    _cfg()
    tasks.clean_stop("installer", _store)
    if _on_board():
        import machine

        print("restarting...")
        machine.reset()
    else:
        print("unix port: stop and start the firmware process to apply the settings "
              "(its next start counts as a commanded restart)")


@_safe("help")
def help():
    print("""Configuration commands (values are text, as a CSMS would send them):
  cfg.show()                      every key and its value (secrets hidden)
  cfg.get("HeartbeatInterval")    one key
  cfg.set("HeartbeatInterval", "300")
                                  validated like ChangeConfiguration; prints
                                  Accepted / RebootRequired / Rejected / NotSupported
  cfg.csms("wss://csms.example.com/ocpp", "CP001")
                                  the CSMS URL and this charge point's id
  cfg.wifi("ssid", "password")    the Wi-Fi network (ESP32, Pico W)
  cfg.key("AuthorizationKey")     the password for security profiles 1 and 2
  cfg.ca("ca.pem")                install the CSMS root certificate(s) of a file
  cfg.client_cert("cp.pem", "cp.key")
                                  the client certificate and key for profile 3
  cfg.cpo("Example CPO")          CpoName, the O of certificate requests
  cfg.profile(2)                  the SecurityProfile (0-3; lowering only here)
  cfg.certs()                     the installed certificates
  cfg.reset_defaults()            erase the stored settings (asks to confirm)
  cfg.clear_security_log()        empty the security log (asks to confirm)
  cfg.restart()                   restart the board to apply RebootRequired settings
  cfg.open(data, board)           unix port only: the station's data directory
                                  and board directory, e.g. ("data/CP001", "boards/unix")""")
