# Configuration keys: OCPP 1.6 chapter 9 (Core, Local Auth List Management,
# Reservation, Smart Charging; the MessageTimeout and StopTransactionMaxMeterValues keys from
# the errata sheet v4), the security whitepaper's (§7), and our own station
# settings. Only the values that differ from the defaults are stored, in the
# "config" file of a storage.Store.
#
# The table is one string (one object in RAM, nothing when frozen): a line per
# key, "<name> <type><access> <limits> [<default>]":
#   type    b boolean, i integer, s string, l comma separated list (CSL)
#   access  nothing: read-write; R: read-only for the CSMS (we may set it
#           locally); W: write-only (never shown); !: takes effect after a reboot;
#           2: an OCPP 2.0.1 variable only (devmodel.py): no 1.6 configuration key
#   limits  i: min-max; s: max length; b: -; l: the allowed members, or
#           "measurand" (optionally with a phase: Voltage.L1) or "rotation"
#           (optionally per connector: 0.RST). A list holds at most
#           <name>MaxLength items if that key exists, else as many as it has
#           members.
from array import array
import json
import log

_TAG = "config"

_T = (
    "\n"
    # Core profile
    "AllowOfflineTxForUnknownId b - false\n"
    "AuthorizationCacheEnabled b - true\n"
    "AuthorizeRemoteTxRequests b - false\n"
    "ClockAlignedDataInterval i 0-86400 900\n"
    "ConnectionTimeOut i 0-3600 60\n"
    "ConnectorPhaseRotation l rotation Unknown\n"
    "ConnectorPhaseRotationMaxLength iR 0-100 4\n"
    "GetConfigurationMaxKeys iR 1-1000 100\n"
    "HeartbeatInterval i 0-86400 300\n"
    "LocalAuthorizeOffline b - true\n"
    "LocalPreAuthorize b - false\n"
    "MaxEnergyOnInvalidId i 0-1000000000 0\n"
    "MessageTimeout i 1-3600 30\n"
    "MeterValuesAlignedData l measurand Energy.Active.Import.Register\n"
    "MeterValuesAlignedDataMaxLength iR 0-100 8\n"
    "MeterValuesSampledData l measurand Energy.Active.Import.Register,Power.Active.Import\n"
    "MeterValuesSampledDataMaxLength iR 0-100 8\n"
    "MeterValueSampleInterval i 0-86400 60\n"
    "MinimumStatusDuration i 0-3600 0\n"
    "NumberOfConnectors iR 1-100 1\n"
    "ResetRetries iR 0-0 0\n"
    "StopTransactionMaxMeterValues iR 2-10000 20\n"
    "StopTransactionOnEVSideDisconnect b - true\n"
    "StopTransactionOnInvalidId b - true\n"
    "StopTxnAlignedData l measurand\n"
    "StopTxnAlignedDataMaxLength iR 0-100 8\n"
    "StopTxnSampledData l measurand\n"
    "StopTxnSampledDataMaxLength iR 0-100 8\n"
    # only the profiles whose operations all act
    "SupportedFeatureProfiles lR Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,"
    "RemoteTrigger Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger\n"
    "SupportedFeatureProfilesMaxLength iR 6-6 6\n"
    "TransactionMessageAttempts i 0-100 3\n"
    "TransactionMessageRetryInterval i 0-86400 60\n"
    "UnlockConnectorOnEVSideDisconnect b - true\n"
    "WebSocketPingInterval i 0-86400 60\n"
    # Local Auth List Management profile
    "LocalAuthListEnabled b - true\n"
    "LocalAuthListMaxLength iR 0-10000 100\n"
    "SendLocalListMaxLength iR 0-10000 20\n"
    # Reservation profile
    "ReserveConnectorZeroSupported bR - false\n"
    # Smart Charging profile: limits read at each SetChargingProfile (a board
    # file or the console may change them; the CSMS only reads them)
    "ChargeProfileMaxStackLevel iR 0-100 8\n"
    "ChargingScheduleAllowedChargingRateUnit lR Current,Power Current,Power\n"
    "ChargingScheduleMaxPeriods iR 1-100 24\n"
    "ConnectorSwitch3to1PhaseSupported bR - false\n"
    "MaxChargingProfilesInstalled iR 1-100 16\n"
    # Security whitepaper (§7): the profile and its Basic auth password
    # (ocpp/link.py), the certificate store (certs.py), the O of our CSRs
    "AdditionalRootCertificateCheck bR - false\n"
    "AuthorizationKey sW 40\n"
    "CertificateStoreMaxLength iR 1-100 10\n"
    "CpoName s 64\n"
    "SecurityProfile i 0-3 0\n"
    # Station settings (vendor keys)
    "CsmsUrl s! 256\n"
    "ChargePointId sR! 48\n"
    "ChargePointVendor sR 20 Generic\n"
    "ChargePointModel sR 20 Generic\n"
    "ChargePointSerialNumber sR 25\n"
    "ChargeBoxSerialNumber sR 25\n"
    "LogFrames b - false\n"
    # the flash log (log.py): its size in KB (0 = none) and the lowest level kept
    "LogFileSizeKB i 0-512 64\n"
    "LogFileLevel s 5 INFO\n"
    "BootRetryInterval i 1-3600 60\n"
    # the OCPP versions offered in the WebSocket handshake, preferred first; the
    # CSMS's choice runs (ocpp/link.py). The first one's package is loaded at boot.
    "OcppVersion l! ocpp1.6,ocpp2.0.1 ocpp1.6\n"
    # Hardware behaviour (vendor keys)
    "TransactionQueueBytes i! 4096-1048576 65536\n"
    "MeterPollInterval i 100-60000 1000\n"
    "MeterFailuresBeforeFault i 1-100 3\n"
    "ChargingCurrentThreshold i 0-80000 500\n"
    "ChargingDetectSeconds i 0-600 3\n"
    "AutoStopIdleSeconds i 0-86400 0\n"
    "FreeVendEnabled b - false\n"
    "FreeVendIdTag s 20 FreeVend\n"
    # Network (boards with Wi-Fi)
    "WifiSsid s! 32\n"
    "WifiPassword sW! 64\n"
    "NtpServer s 64 pool.ntp.org\n"
    # OCPP 2.0.1 device model (ocpp/v201/devmodel.py): what 2.0.1 has and 1.6
    # lacks; the variables 1.6 shares live in the 1.6 keys above.
    "OfflineThreshold i2 0-86400 300\n"
    "TimeSource l Heartbeat,NTP NTP,Heartbeat\n"
    # one network connection profile (CsmsUrl, SecurityProfile): nothing to switch to
    "NetworkConfigurationPriority l2 1 1\n"
    "NetworkProfileConnectionAttempts i2 1-100 3\n"
    # the limits of a CSMS request, and of our NotifyReport messages
    "ItemsPerMessageGetVariables iR2 1-100 20\n"
    "ItemsPerMessageSetVariables iR2 1-100 20\n"
    "ItemsPerMessageGetReport iR2 1-100 16\n"
    "BytesPerMessageGetVariables iR2 512-65536 4096\n"
    "BytesPerMessageSetVariables iR2 512-65536 4096\n"
    "BytesPerMessageGetReport iR2 512-65536 4096\n"
    # the station starts a transaction when authorized and plugged, and ends it
    # when the authorization ends or the vehicle leaves (station.py)
    "TxStartPoint lR2 PowerPathClosed PowerPathClosed\n"
    "TxStopPoint lR2 EVConnected,Authorized EVConnected,Authorized\n"
    "TxStartedMeasurands l2 measurand Energy.Active.Import.Register\n"
    "SampledDataTxEndedInterval i2 0-86400 60\n"
    "AlignedDataTxEndedInterval i2 0-86400 900\n"
    # ConnectorEnumType of every connector (sType2: a Type 2 socket), for the board file
    "ConnectorType sR 20 Unknown\n"
)

_MEAS = (
    ",Current.Export,Current.Import,Current.Offered,Energy.Active.Export.Register"
    ",Energy.Active.Import.Register,Energy.Reactive.Export.Register"
    ",Energy.Reactive.Import.Register,Energy.Active.Export.Interval"
    ",Energy.Active.Import.Interval,Energy.Reactive.Export.Interval"
    ",Energy.Reactive.Import.Interval,Frequency,Power.Active.Export"
    ",Power.Active.Import,Power.Factor,Power.Offered,Power.Reactive.Export"
    ",Power.Reactive.Import,RPM,SoC,Temperature,Voltage,"
)
_PHASES = ",L1,L2,L3,N,L1-N,L2-N,L3-N,L1-L2,L2-L3,L3-L1,"
_ROT = ",NotApplicable,Unknown,RST,RTS,SRT,STR,TRS,TSR,"


def _at(s, w, a, b):
    # -> index of the word w in s, between the separators a and b; -1 if absent
    if not isinstance(w, str) or not w or a in w or b in w:
        return -1
    n = len(w)
    i = s.find(w)
    while i > 0:
        if s.startswith(a, i - 1) and s.startswith(b, i + n):
            return i
        i = s.find(w, i + 1)
    return -1


# Index, built once: where each key's line starts, and an open-addressing hash
# table (hash(name) & 127 -> key number + 1), so get() costs about a dict lookup.
_POS = array("H")
_IDX = bytearray(128)


def _index():
    i = 1
    while i < len(_T):
        e = _T.find(" ", i)
        h = hash(_T[i:e]) & 127
        while _IDX[h]:
            h = (h + 1) & 127
        _POS.append(i)
        _IDX[h] = len(_POS)
        i = _T.find("\n", e) + 1


_index()
_NK = len(_POS)  # number of keys


def _key(key):
    # -> number of the key (exact name), -1 if unknown
    if not isinstance(key, str) or not key or " " in key or "\n" in key:
        return -1
    h = hash(key) & 127
    while _IDX[h]:
        i = _POS[_IDX[h] - 1]
        if _T.startswith(key, i) and _T.startswith(" ", i + len(key)):
            return _IDX[h] - 1
        h = (h + 1) & 127
    return -1


def _row(key):
    # -> number of the key, -1 if unknown. Keys are CiString50, so a key in
    # another case is found too (slowly: only for unusual requests).
    j = _key(key)
    if j < 0 and isinstance(key, str):
        key = key.lower()
        for k in range(_NK):
            i = _POS[k]
            if _T[i : _T.find(" ", i)].lower() == key:
                return k
    return j


def _fields(j):
    # key number -> [name, type+access, limits, default]
    i = _POS[j]
    f = _T[i : _T.find("\n", i)].split(" ")
    if len(f) < 4:
        f.append("")
    return f


def limits(key):
    # -> [type+access, limits] of a key ("i", "0-86400"), None if unknown: the
    # OCPP 2.0.1 device model reports them as its variables' characteristics.
    j = _row(key)
    return _fields(j)[1:3] if j >= 0 else None


def _split(s):
    return [x.strip() for x in s.split(",")] if s.strip() else []


def _digits(s):
    for c in s:
        if c < "0" or c > "9":
            return False
    return len(s) > 0


def _printable(s, bad):
    for c in s:
        if c < " " or c > "~" or c in bad:
            return False
    return True


def _parse(t, v):
    # v, a string as the CSMS sends it or a typed value -> typed value for
    # type t, or None
    if t == "b":
        if isinstance(v, str):
            v = v.lower()
            return True if v == "true" else False if v == "false" else None
        return v if v is True or v is False else None
    if t == "i":
        if isinstance(v, str):
            if len(v) > 11 or not _digits(v[1:] if v[:1] in ("-", "+") else v):
                return None
            return int(v)
        return None if v is True or v is False or not isinstance(v, int) else v
    if t == "s":
        return v if isinstance(v, str) else None
    if isinstance(v, str):
        return _split(v)
    return list(v) if isinstance(v, (list, tuple)) else None


def _text(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, list):
        return ",".join(v)
    return str(v)


def problem(key, v):
    # -> why v cannot be the CsmsUrl or ChargePointId, in words for the
    # installer, or None when it can (other keys: None).
    if key == "ChargePointId":
        # OCPP-J §3.1.1: percent-encoded into the URL's path (ocpp/link.py);
        # ':' would end the Basic auth user name, '/' would start a new segment.
        if not v:
            return "it is empty"
        if not _printable(v, ""):
            return "it must be plain ASCII letters, digits and punctuation"
        if ":" in v or "/" in v:
            return "':' and '/' are not allowed in it"
        return None
    if key != "CsmsUrl":
        return None
    k = 5 if v.startswith("ws://") else 6 if v.startswith("wss://") else 0
    if not k:
        return "it must start with ws:// or wss://"
    if not _printable(v, " "):
        return "it must be plain ASCII without spaces"
    if "#" in v:
        return "a #fragment has no place in it"
    rest = v[k:]
    end = len(rest)
    for ch in "/?":
        i = rest.find(ch)
        if 0 <= i < end:
            end = i
    hp = rest[:end]
    if "@" in hp:
        return "user:password@ is not taken in it: set the AuthorizationKey instead"
    if hp.startswith("["):  # an IPv6 literal
        j = hp.find("]")
        if j < 0 or j + 1 < len(hp) and hp[j + 1] != ":":
            return "its [IPv6 address] is malformed"
        host, port = hp[1:j], hp[j + 1:]
    else:
        j = hp.find(":")
        host, port = (hp, "") if j < 0 else (hp[:j], hp[j:])
    if not host:
        return "it has no host name"
    if port and not (_digits(port[1:]) and 0 < int(port[1:]) < 65536):
        return "its port must be a number from 1 to 65535"
    return None


class Config:
    def __init__(self, store, defaults=None):
        self._store = store
        self._ls = []  # listeners fn(key, value)
        self._cs = []  # checks fn(key, value) -> False rejects
        self._d = {}  # board defaults: key number -> typed value
        v = self._v = [None] * _NK  # exactly _NK slots: a list grown by appending doubles past 64
        for j in range(_NK):
            f = _fields(j)
            v[j] = _parse(f[1][0], f[3])
        if defaults:
            self._apply(defaults, "board default")
            for k in defaults:
                j = _row(k)
                if j >= 0:
                    self._d[j] = self._v[j]
        self._apply(store.load("config", {}), "stored value")

    def _apply(self, src, what):
        if not isinstance(src, dict):
            log.warn(_TAG, "ignored %s: not a dict" % what)
            return
        for lists in (False, True):  # lists last: they check against *MaxLength
            for k in src:
                j = _row(k)
                if j < 0:
                    if lists:
                        log.warn(_TAG, "ignored %s for unknown key %s" % (what, k))
                    continue
                f = _fields(j)
                if (f[1][0] == "l") != lists:
                    continue
                v = self._val(f, src[k])
                if v is None:
                    log.warn(_TAG, "ignored invalid %s %s=%s" % (what, k, src[k]))
                else:
                    self._v[j] = v

    def get(self, key):
        # -> typed value; a list for list keys (shared: do not modify it)
        j = _key(key)
        if j < 0:
            raise KeyError(key)
        return self._v[j]

    def listen(self, fn):
        # fn(key, typed value) after each accepted change
        self._ls.append(fn)

    def unlisten(self, fn):
        # the listener fn (the same object given to listen) is told no more
        if fn in self._ls:
            self._ls.remove(fn)

    def check(self, fn):
        # fn(key, typed value) returning False rejects a change, e.g. measurands
        # the meter cannot deliver (errata 3.14.4) or a SecurityProfile other
        # than the link's (ocpp/link.py).
        self._cs.append(fn)

    def _val(self, f, v):
        # -> typed value if v is valid for the key of fields f, else None
        t = f[1][0]
        a = f[2]
        v = _parse(t, v)
        if v is None or t == "b":
            return v
        if t == "i":
            k = a.find("-")
            return v if int(a[:k]) <= v <= int(a[k + 1 :]) else None
        n = f[0]
        if t == "s":
            if len(v) > int(a):
                return None
            if n == "CsmsUrl" or n == "ChargePointId":
                ok = problem(n, v) is None
            elif n == "AuthorizationKey":
                # whitepaper §7.2: at least 16 bytes; used exactly as set (no hex
                # decoding, as the OCPP 2.0.1 errata say for BasicAuthPassword),
                # printable ASCII (space included: RFC 7617 allows it; no ':' rule
                # for the password, only the user id must not hold one)
                ok = len(v) >= 16 and _printable(v, "")
            else:
                ok = _printable(v, "")
            return v if ok else None
        ms = _MEAS if a == "measurand" else _ROT if a == "rotation" else "," + a + ","
        k = _key(n + "MaxLength")
        if len(v) > (self._v[k] if k >= 0 else ms.count(",") - 1):
            return None
        for x in v:
            if not isinstance(x, str):
                return None
            if _at(ms, x, ",", ",") > 0:
                continue
            k = x.rfind(".")
            if k < 1:
                return None
            if a == "measurand":
                if _at(ms, x[:k], ",", ",") < 0 or _at(_PHASES, x[k + 1 :], ",", ",") < 0:
                    return None
            elif a != "rotation" or _at(ms, x[k + 1 :], ",", ",") < 0 or not _digits(x[:k]) or int(x[:k]) > self.get("NumberOfConnectors"):
                return None
        return v

    def set(self, key, value, from_csms=True):
        # -> "Accepted" | "Rejected" | "RebootRequired" | "NotSupported"
        j = _row(key)
        if j < 0:
            return "NotSupported"
        f = _fields(j)
        key = f[0]
        fl = f[1]
        if from_csms and "R" in fl:
            log.warn(_TAG, "CSMS tried to change read-only %s" % key)
            return "Rejected"
        v = self._val(f, value)
        if v is not None:
            for fn in self._cs:
                try:
                    if fn(key, v) is False:
                        v = None
                        break
                except Exception as e:
                    log.exc(_TAG, "check of %s failed" % key, e)
                    v = None
                    break
        if v is None:
            log.warn(_TAG, "rejected %s=%s" % (key, "(hidden)" if "W" in fl else value))
            return "Rejected"
        old = self._v[j]
        if v == old:
            return "Accepted"
        self._v[j] = v
        try:
            self._save()
        except Exception as e:
            log.exc(_TAG, "cannot store %s" % key, e)
            self._v[j] = old
            return "Rejected"
        log.info(_TAG, "%s = %s" % (key, "(hidden)" if "W" in fl else _text(v)))
        for fn in self._ls:
            try:
                fn(key, v)
            except Exception as e:
                log.exc(_TAG, "listener for %s failed" % key, e)
        return "RebootRequired" if "!" in fl else "Accepted"

    def _save(self):
        # Only what differs from the (board) defaults goes to flash.
        d = {}
        v = self._v
        for j in range(_NK):
            f = _fields(j)
            if v[j] != (self._d[j] if j in self._d else _parse(f[1][0], f[3])):
                d[f[0]] = v[j]
        self._store.save("config", d)

    def only201(self, key):
        # a 2.0.1 device model variable that OCPP 1.6 does not show or set
        j = _row(key)
        return j >= 0 and "2" in _fields(j)[1]

    def item(self, j):
        # One configurationKey entry of GetConfiguration, for row j.
        f = _fields(j)
        kv = {"key": f[0], "readonly": "R" in f[1]}
        if "W" not in f[1]:
            kv["value"] = _text(self._v[j])
        return kv

    def items(self, keys=None, ocpp16=True):
        # GetConfiguration: -> (known, unknown); all keys when keys is empty.
        # ocpp16: without the 2.0.1 device model's own variables (no 1.6 keys).
        known = []
        unknown = []
        for k in keys or range(_NK):
            j = _row(k) if keys else k
            if j < 0 or ocpp16 and "2" in _fields(j)[1]:
                if keys:
                    unknown.append(k)
            else:
                known.append(self.item(j))
        return known, unknown

    def all_items_json(self):
        # GetConfiguration of every key as JSON text in pieces, one key at a
        # time: the whole answer (5 KB of text, 14 KB as objects) never is.
        yield '{"configurationKey":['
        sep = ""
        for j in range(_NK):
            if "2" not in _fields(j)[1]:  # (a 2.0.1 variable is no 1.6 key)
                yield sep + json.dumps(self.item(j))
                sep = ","
        yield "]}"
