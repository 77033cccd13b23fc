# OCPP 2.0.1 reports of the device model (devmodel.py): GetBaseReport (B07)
# and GetReport (B08) are answered at once; then the report goes out as
# NotifyReport messages, seqNo from 0, tbc on all but the last, each at most
# ItemsPerMessage[GetReport] entries and BytesPerMessage[GetReport] bytes
# (DeviceDataCtrlr: the limits of a GetReportRequest, ours for NotifyReport
# too), and never more than _MOST entries. A message's entries are made as JSON text one at a time and sent as
# pieces (the whole report never is in RAM, one message's text at most).
# This module is imported at the first report and let go when it is sent.
import json
import sys
from micropython import const
import clock
import log
import config as _cf
from ocpp.rpc import CallError
from ocpp.v201 import devmodel as dm

_TAG = "report"
# Entries per NotifyReport at most, whatever ItemsPerMessage[GetReport] allows:
# one message's entry texts and its TLS records must fit beside a session in a
# 96K heap with mbedTLS in it, and leave the flash log a 1,148-byte block for
# its next file open (with 16 or 8 entries they did not; with 4, 1 run in 10
# still failed so; with 2, 10 of 10 passed).
_MOST = const(2)
# [2,"<message id, at most 36 characters>","NotifyReport",<payload>]
_FRAME = len('[2,"","NotifyReport",]') + 36
_COMPACT = (",", ":")  # json separators: no spaces


def _entry(cp, f, evse):
    # one reportData element of the variable with fields f, as JSON text
    comp = {"name": f[0]}
    if evse:
        comp["evse"] = {"id": evse, "connectorId": 1} if "c" in f[2] else {"id": evse}
    k = f[1].find(":")
    var = {"name": f[1]} if k < 0 else {"name": f[1][:k], "instance": f[1][k + 1:]}
    m = f[2][0]
    t = f[2][1]
    src = f[4]
    attr = {"type": "Actual", "mutability": dm.MUTABILITY[m],
            "persistent": src[0] != "@" or src == "@alias", "constant": src[0] == "="}
    if m != "O":  # a WriteOnly value is never reported
        attr["value"] = dm.value(cp, f, evse)
    ch = {"dataType": dm.TYPES[t], "supportsMonitoring": False}
    if f[3] != "-":
        ch["unit"] = f[3]
    vl = dm.values_list(cp, f)
    if vl is not None:
        ch["valuesList"] = vl
        if t != "o":  # for a list: the longest CSV text, each member once
            ch["maxLimit"] = len(vl)
    elif src == "@power":  # the connector's rating, at nominal volts
        c = cp.station.connectors[evse]
        ch["maxLimit"] = round(c.rating * c.phases * dm._VOLTS)
    elif src == "@certs":
        ch["maxLimit"] = cp.config.get("CertificateStoreMaxLength")
    elif src[0] != "=" and src[0] != "@":
        lim = _cf.limits(src)
        if lim[0][0] == "i" and m == "W":  # what SetVariables takes
            k = lim[1].find("-")
            ch["minLimit"] = int(lim[1][:k])
            ch["maxLimit"] = int(lim[1][k + 1:])
        elif lim[0][0] == "s":
            ch["maxLimit"] = int(lim[1])
    return json.dumps({"component": comp, "variable": var, "variableAttribute": [attr],
                       "variableCharacteristics": ch}, separators=_COMPACT)


def _entries(cp, pick):
    for pos, evse in dm.cells(dm.evses(cp)):
        f = dm.fields(pos)
        if pick is None or pick(f, evse):
            yield _entry(cp, f, evse)


async def _send(cp, rid, pick, what):
    # the NotifyReport messages of report rid: the entries pick(fields, evse) chooses
    cfg = cp.config
    most = min(cfg.get("ItemsPerMessageGetReport"), _MOST)
    room = cfg.get("BytesPerMessageGetReport")
    seq = n = 0
    try:
        gen = _entries(cp, pick)
        nxt = next(gen, None)
        while nxt is not None:
            at = clock.iso()
            # the longest head this message can have (tbc false), the frame around it
            free = room - _FRAME - 2 - len('{"requestId":%d,"generatedAt":"%s","seqNo":%d,"tbc":false,"reportData":['
                                           % (rid, at, seq))
            texts = [nxt]  # this message's entries: a snapshot, the same text each time parts() runs
            size = len(nxt)
            if size > free:
                log.warn(_TAG, "report %d: an entry of %d bytes goes alone over BytesPerMessage" % (rid, size))
            nxt = None
            for t in gen:
                if len(texts) >= most or size + 1 + len(t) > free:
                    nxt = t
                    break
                texts.append(t)
                size += 1 + len(t)
            head = '{"requestId":%d,"generatedAt":"%s","seqNo":%d,"tbc":%s,"reportData":[' % (
                rid, at, seq, "false" if nxt is None else "true")

            def parts():
                yield head
                sep = ""
                for t in texts:
                    if sep:
                        yield sep
                    yield t
                    sep = ","
                yield "]}"
            await cp.rpc.call("NotifyReport", parts, cfg.get("MessageTimeout"))
            n += len(texts)
            seq += 1
            texts = None
        log.info(_TAG, "report %d (%s): %d variables in %d NotifyReport" % (rid, what, n, seq))
    except Exception as e:  # the link went or the CSMS refused: the rest is not sent
        log.exc(_TAG, "report %d (%s) ended after %d messages" % (rid, what, seq), e)
    finally:
        dm.busy = False
        _unload()


def _unload():
    # the module goes when its report is sent (the running code keeps what it uses)
    sys.modules.pop("ocpp.v201.reports", None)
    try:
        delattr(sys.modules["ocpp.v201"], "reports")
    except (AttributeError, KeyError):
        pass


def _start(cp, rid, pick, what):
    if dm.busy:
        log.warn(_TAG, "%s %d refused: another report is being sent" % (what, rid))
        _unload()  # (the one being sent keeps what it uses)
        return {"status": "Rejected", "statusInfo": {"reasonCode": "Unspecified",
                                                     "additionalInfo": "another report is being sent"}}
    dm.busy = True

    async def after():
        await _send(cp, rid, pick, what)
    return {"status": "Accepted"}, after


def base(cp, p):
    # B07: ConfigurationInventory = every variable the CSMS can set (ReadWrite,
    # WriteOnly), FullInventory = all, SummaryInventory = availability and
    # problems of the station, its EVSEs and connectors
    rb = p["reportBase"]
    if rb == "ConfigurationInventory":
        pick = _writable
    elif rb == "FullInventory":
        pick = None
    else:
        pick = _summary
    return _start(cp, p["requestId"], pick, rb)


def _writable(f, evse):
    return f[2][0] != "R"


def _summary(f, evse):
    return "y" in f[2]


def custom(cp, p):
    # B08: the variables of componentVariable, of the components meeting a
    # componentCriteria, or both (then those meeting both); EmptyResultSet when
    # none is, and then no NotifyReport.
    cvs = p.get("componentVariable") or ()
    crit = p.get("componentCriteria") or ()
    n = cp.config.get("ItemsPerMessageGetReport")
    if len(cvs) > n:  # B08.FR.17
        _unload()
        raise CallError("OccurrenceConstraintViolation", "%d componentVariable, at most %d" % (len(cvs), n))
    n = cp.config.get("BytesPerMessageGetReport")
    if len('[2,"","GetReport",]') + len(json.dumps(p, separators=_COMPACT)) > n:  # B08.FR.18 (as we would write it)
        _unload()
        raise CallError("FormatViolation", "GetReport longer than %d bytes" % n)

    def pick(f, evse):
        if crit and not _meets(cp, f[0], evse, crit):
            return False
        if not cvs:
            return True
        for cv in cvs:
            if _listed(f, evse, cv):
                return True
        return False
    for pos, evse in dm.cells(dm.evses(cp)):
        if pick(dm.fields(pos), evse):
            return _start(cp, p["requestId"], pick, "GetReport")
    log.info(_TAG, "GetReport %d: no variable matches" % p["requestId"])
    _unload()
    return {"status": "EmptyResultSet"}


def _meets(cp, comp, evse, crit):
    # B08.FR.07-10: a component meets Active, Available or Enabled when that
    # variable of it is true or it has none; Problem when its Problem is true.
    # A component meeting one of the criteria is reported.
    for c in crit:
        pos = dm._find(comp, c)[0]
        if pos < 0:
            if c != "Problem":
                return True
        elif dm.value(cp, dm.fields(pos), evse) == "true":
            return True
    return False


def _listed(f, evse, cv):
    # Is the variable of fields f, at evse, one that componentVariable cv names?
    # Without evse: every EVSE's and the station-wide one; without
    # connectorId: every connector; without variable: all of the component's;
    # without variable instance: every instance (errata B08.FR.20-25).
    c = cv["component"]
    if c["name"].lower() != f[0].lower() or c.get("instance") is not None:
        return False
    ev = c.get("evse")
    if ev is not None:
        k = ev.get("connectorId")
        if ev["id"] != evse or k is not None and ("c" not in f[2] or k != 1):
            return False
    v = cv.get("variable")
    if v is None:
        return True
    k = f[1].find(":")
    name, inst = (f[1], None) if k < 0 else (f[1][:k], f[1][k + 1:])
    if v["name"].lower() != name.lower():
        return False
    vi = v.get("instance")
    return vi is None or inst is not None and vi.lower() == inst.lower()
