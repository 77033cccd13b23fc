# OCPP 2.0.1 device model (part 2, appendices 3 and 4): the components and
# variables this station has, and GetVariables (B06) / SetVariables (B05).
# The reports (GetBaseReport B07, GetReport B08) are in reports.py, imported
# only when the CSMS asks for one.
#
# The model is one static string, as config.py's table is (one object in RAM,
# none when frozen; nothing per variable): a line per variable,
#   "<component> <variable>[:<instance>] <m><t>[<flags>] <unit> <source> [<valuesList>]"
#   m       R ReadOnly, W ReadWrite, O WriteOnly (never shown)
#   t       s string, d decimal, i integer, t dateTime, b boolean,
#           o OptionList, q SequenceList, m MemberList
#   flags   e one per EVSE (component.evse.id n = station connector n), c one
#           per connector (its EVSE's only one, connectorId 1), y in the
#           SummaryInventory
#   unit    "-" for none
#   source  a configuration key (the value lives there: 1.6 shares most of
#           them, config.py's "OCPP 2.0.1 device model" section has the rest),
#           "=<text>" a constant, "@<name>" a live value from the station (_live)
#   valuesList  of OptionList / SequenceList / MemberList; "*" the measurands
#           every meter delivers
# Only the Actual attribute exists: no variable here has a Target, MinSet or
# MaxSet the firmware keeps. Each variable is what the firmware has or does.
import json
import clock
import log
import config as _cf
from ocpp.rpc import CallError

_TAG = "devmodel"

_T = (
    "\n"
    "AlignedDataCtrlr Interval Wi s ClockAlignedDataInterval\n"
    "AlignedDataCtrlr Measurands Wm - MeterValuesAlignedData *\n"
    "AlignedDataCtrlr TxEndedInterval Wi s AlignedDataTxEndedInterval\n"
    "AlignedDataCtrlr TxEndedMeasurands Wm - StopTxnAlignedData *\n"
    "AuthCacheCtrlr Enabled Wb - AuthorizationCacheEnabled\n"
    "AuthCtrlr AuthorizeRemoteStart Wb - AuthorizeRemoteTxRequests\n"
    "AuthCtrlr LocalAuthorizeOffline Wb - LocalAuthorizeOffline\n"
    "AuthCtrlr LocalPreAuthorize Wb - LocalPreAuthorize\n"
    "AuthCtrlr OfflineTxForUnknownIdEnabled Wb - AllowOfflineTxForUnknownId\n"
    "ChargingStation AvailabilityState Roy - @state Available,Occupied,Reserved,Unavailable,Faulted\n"
    "ChargingStation Available Rb - =true\n"
    "ChargingStation Enabled Rby - @enabled\n"
    "ChargingStation Problem Rby - @problem\n"
    "ChargingStation SupplyPhases Ri - @phases\n"
    "ClockCtrlr DateTime Rt - @now\n"
    "ClockCtrlr TimeSource Wq - TimeSource Heartbeat,NTP\n"
    "DeviceDataCtrlr BytesPerMessage:GetReport Ri - BytesPerMessageGetReport\n"
    "DeviceDataCtrlr BytesPerMessage:GetVariables Ri - BytesPerMessageGetVariables\n"
    "DeviceDataCtrlr BytesPerMessage:SetVariables Ri - BytesPerMessageSetVariables\n"
    "DeviceDataCtrlr ItemsPerMessage:GetReport Ri - ItemsPerMessageGetReport\n"
    "DeviceDataCtrlr ItemsPerMessage:GetVariables Ri - ItemsPerMessageGetVariables\n"
    "DeviceDataCtrlr ItemsPerMessage:SetVariables Ri - ItemsPerMessageSetVariables\n"
    # lib/ftp.py, lib/http.py (maintenance.py: firmware and log transfers)
    "OCPPCommCtrlr FileTransferProtocols Rm - =FTP,HTTP,HTTPS FTP,HTTP,HTTPS\n"
    "OCPPCommCtrlr HeartbeatInterval Wi s HeartbeatInterval\n"
    "OCPPCommCtrlr MessageAttemptInterval:TransactionEvent Wi s TransactionMessageRetryInterval\n"
    "OCPPCommCtrlr MessageAttempts:TransactionEvent Wi - TransactionMessageAttempts\n"
    "OCPPCommCtrlr MessageTimeout:Default Ri s MessageTimeout\n"
    "OCPPCommCtrlr NetworkConfigurationPriority Wq - NetworkConfigurationPriority 1\n"
    "OCPPCommCtrlr NetworkProfileConnectionAttempts Wi - NetworkProfileConnectionAttempts\n"
    "OCPPCommCtrlr OfflineThreshold Wi s OfflineThreshold\n"
    "OCPPCommCtrlr ResetRetries Wi - ResetRetries\n"
    "OCPPCommCtrlr UnlockOnEVSideDisconnect Wb - UnlockConnectorOnEVSideDisconnect\n"
    "OCPPCommCtrlr WebSocketPingInterval Wi s WebSocketPingInterval\n"
    "SampledDataCtrlr TxEndedInterval Wi s SampledDataTxEndedInterval\n"
    "SampledDataCtrlr TxEndedMeasurands Wm - StopTxnSampledData *\n"
    "SampledDataCtrlr TxStartedMeasurands Wm - TxStartedMeasurands *\n"
    "SampledDataCtrlr TxUpdatedInterval Wi s MeterValueSampleInterval\n"
    "SampledDataCtrlr TxUpdatedMeasurands Wm - MeterValuesSampledData *\n"
    "SecurityCtrlr BasicAuthPassword Os - AuthorizationKey\n"
    "SecurityCtrlr CertificateEntries Ri - @certs\n"
    "SecurityCtrlr Identity Rs - ChargePointId\n"
    "SecurityCtrlr OrganizationName Ws - CpoName\n"
    "SecurityCtrlr SecurityProfile Ri - SecurityProfile\n"
    "TxCtrlr EVConnectionTimeOut Wi s ConnectionTimeOut\n"
    "TxCtrlr MaxEnergyOnInvalidId Wi Wh MaxEnergyOnInvalidId\n"
    "TxCtrlr StopTxOnEVSideDisconnect Wb - StopTransactionOnEVSideDisconnect\n"
    "TxCtrlr StopTxOnInvalidId Wb - StopTransactionOnInvalidId\n"
    "TxCtrlr TxStartPoint Rm - TxStartPoint PowerPathClosed\n"
    "TxCtrlr TxStopPoint Rm - TxStopPoint EVConnected,Authorized\n"
    # per EVSE, then its connector (the rows of one EVSE are reported together)
    "EVSE AvailabilityState Roey - @state Available,Occupied,Reserved,Unavailable,Faulted\n"
    # the REON station's vendor variable: ChangeAvailability of the EVSE, stored
    "EVSE AvailabilityStatus Woe - @alias Available,Unavailable\n"
    "EVSE Available Rbe - =true\n"
    "EVSE Enabled Rbey - @enabled\n"
    "EVSE Power Rde W @power\n"
    "EVSE Problem Rbey - @problem\n"
    "EVSE SupplyPhases Rie - @phases\n"
    "Connector AvailabilityState Rocy - @state Available,Occupied,Reserved,Unavailable,Faulted\n"
    "Connector Available Rbc - =true\n"
    "Connector ConnectorType Rsc - ConnectorType\n"
    "Connector Enabled Rbcy - @enabled\n"
    "Connector Problem Rbcy - @problem\n"
    "Connector SupplyPhases Ric - @phases\n"
)

TYPES = {"s": "string", "d": "decimal", "i": "integer", "t": "dateTime", "b": "boolean",
         "o": "OptionList", "q": "SequenceList", "m": "MemberList"}
MUTABILITY = {"R": "ReadOnly", "W": "ReadWrite", "O": "WriteOnly"}
_VOLTS = 230  # nominal volts per phase, as charging.py assumes for W limits


def status(s):
    # station (1.6) connector status -> 2.0.1 ConnectorStatusEnumType (the contract's mapping)
    if s == "Available" or s == "Reserved" or s == "Unavailable" or s == "Faulted":
        return s
    return "Occupied"  # Preparing, Charging, SuspendedEV, SuspendedEVSE, Finishing


def fields(pos):
    # table line at pos -> [component, variable[:instance], flags, unit, source(, valuesList)]
    return _T[pos:_T.find("\n", pos)].split(" ")


def rows():
    # the position of every line, in table order
    i = 1
    while i < len(_T):
        yield i
        i = _T.find("\n", i) + 1


def cells(n):
    # (pos, evse) of every variable instance of a station with n EVSEs: the
    # station-wide ones (evse 0), then EVSE 1's and its connector's, EVSE 2's ...
    first = _T.find("\nEVSE ") + 1
    for pos in rows():
        if pos >= first:
            break
        yield pos, 0
    for evse in range(1, n + 1):
        for pos in rows():
            if pos >= first:
                yield pos, evse


def evses(cp):
    return len(cp.station.connectors) - 1


def _plain(s):
    return isinstance(s, str) and s and " " not in s and "\n" not in s and ":" not in s


def _find(comp, var):
    # -> (line of comp/var, first line of comp): -1 where there is none. Names
    # are case-insensitive (schemas); the exact spelling is found at once.
    i = _T.find("\n%s %s " % (comp, var))
    if i >= 0:
        return i + 1, i + 1
    comp = comp.lower()
    var = var.lower()
    first = -1
    for pos in rows():
        a = _T.find(" ", pos)
        if _T[pos:a].lower() == comp:
            if first < 0:
                first = pos
            b = _T.find(" ", a + 1)
            if _T[a + 1:b].lower() == var:
                return pos, first
        elif first >= 0:  # a component's lines are together
            break
    return -1, first


def find(cp, component, variable):
    # -> (None, pos, evse) for a known variable of a known component instance,
    # else (attributeStatus, -1, 0): UnknownComponent / UnknownVariable.
    name = component.get("name")
    vname = variable.get("name")
    vinst = variable.get("instance")
    if not _plain(name):
        return "UnknownComponent", -1, 0
    if not _plain(vname) or vinst is not None and not _plain(vinst):
        pos, first = -1, _find(name, "")[1]
    else:
        pos, first = _find(name, vname if vinst is None else vname + ":" + vinst)
    if first < 0 or component.get("instance") is not None:  # no component has instances
        return "UnknownComponent", -1, 0
    f = _T[_T.find(" ", first) + 1:_T.find("\n", first)].split(" ")[1]  # the component's flags
    ev = component.get("evse")
    evse = 0
    if "e" in f or "c" in f:
        if ev is None or not 0 < ev.get("id", 0) <= evses(cp):
            return "UnknownComponent", -1, 0
        k = ev.get("connectorId")
        if k is not None and ("e" in f or k != 1):  # an EVSE's only connector is connector 1
            return "UnknownComponent", -1, 0
        evse = ev["id"]
    elif ev is not None:
        return "UnknownComponent", -1, 0
    if pos < 0:
        return "UnknownVariable", -1, 0
    return None, pos, evse


_text = _cf._text  # a configuration value as text, as 1.6's GetConfiguration gives it


def _wanted(c):
    # the availability the CSMS set, also while it waits for a transaction's end
    return c.operative if c.scheduled is None else c.scheduled


def _live(cp, name, evse):
    st = cp.station
    c = st.connectors[evse]  # 0: the station as a whole
    if name == "state":
        return status(c.status)
    if name == "enabled":
        return c.operative
    if name == "problem":  # a fault, or an error reported without one (safe mode)
        if evse:
            return bool(c.fault or c.warning)
        for c in st.connectors:
            if c.fault or c.warning:
                return True
        return False
    if name == "phases":
        return c.phases if evse else max([k.phases for k in st.connectors[1:]] or [0])
    if name == "power":  # W, by the last meter reading
        r = c.reading or {}
        p = r.get("Power.Active.Import")
        if p is None:
            i, u = r.get("Current.Import"), r.get("Voltage")
            if type(i) is tuple and type(u) is tuple:
                p = sum([a * b for a, b in zip(i, u)])
            else:
                p = i * u if i is not None and u is not None and type(i) is not tuple else 0
        return "%.1f" % p
    if name == "now":
        return clock.iso()
    if name == "certs":
        return _store(cp).count()
    if name == "alias":
        return "Available" if _wanted(c) else "Unavailable"
    raise ValueError(name)


def _store(cp):
    link = getattr(cp, "link", None)
    if link is not None:
        return link.certs()
    import certs
    return certs.Store(cp.station.store.root if cp.station.store else "")


def value(cp, f, evse):
    # the Actual value of the variable with fields f, as text
    src = f[4]
    if src[0] == "=":
        return src[1:]
    if src[0] == "@":
        return _text(_live(cp, src[1:], evse))
    return _text(cp.config.get(src))


def measurands(cp):
    # "*": the 2.0.1 measurands every meter delivers (station.measurable), and
    # Current.Offered, the station's own figure. 1.6's RPM and Temperature are
    # no 2.0.1 measurands; 2.0.1's Net and Apparent ones are no 1.6 keys' values.
    out = []
    for m in _cf._MEAS[1:-1].split(","):
        if m == "RPM" or m == "Temperature":
            continue
        ok = True
        if m != "Current.Offered":
            for c in cp.station.connectors[1:]:
                have = getattr(c.meter, "measurands", None)
                if have is not None and m not in have:
                    ok = False
                    break
        if ok:
            out.append(m)
    return ",".join(out)


def values_list(cp, f):
    if len(f) < 6:
        return None
    return measurands(cp) if f[5] == "*" else f[5]


def _valid(cp, f, v):
    # is text v a value of the variable's data type and list? (B05.FR.07/08;
    # numbers and lengths are checked by the configuration store)
    t = f[2][1]
    if t == "b":
        return v == "true" or v == "false"
    if t == "o" or t == "q" or t == "m":
        allowed = "," + values_list(cp, f) + ","
        if t == "o":
            return "," + v + "," in allowed and "," not in v
        if v == "":
            return t == "m"  # an empty MemberList: none; a sequence needs one
        seen = []
        for x in v.split(","):
            if not x or "," + x + "," not in allowed or x in seen:
                return False
            seen.append(x)
    return True


def _set(cp, f, evse, v):
    # -> (attributeStatus, reasonCode or None) for Actual value text v
    if f[2][0] == "R":
        return "Rejected", "ReadOnly"
    if not _valid(cp, f, v):
        return "Rejected", "InvalidValue"
    src = f[4]
    if src == "@alias":
        # as ChangeAvailability of the EVSE (G03): stored, Scheduled during a transaction
        s = cp.station.change_availability(evse, v == "Available")
        if s == "Scheduled":
            return "Accepted", "TxInProgress"
        return s, None  # Rejected: not operative while the station is not
    # The model's own mutability is checked above (ResetRetries is ReadWrite
    # here, its 1.6 key read-only): the store checks the value only.
    s = cp.config.set(src, v, False)
    return s, None if s != "Rejected" else "InvalidValue"


def _limit(cp, items, action):
    # B05/B06 (FR.16, FR.17 of B06): more items than ItemsPerMessage<action>
    # -> CALLERROR OccurrenceConstraintViolation; more bytes than
    # BytesPerMessage<action> -> FormatViolation. The bytes are those of the
    # request as we would write it (compact JSON, without the message id).
    n = cp.config.get("ItemsPerMessage" + action)
    if len(items) > n:
        raise CallError("OccurrenceConstraintViolation", "%d items, at most %d in one %s" % (len(items), n, action))
    n = cp.config.get("BytesPerMessage" + action)
    size = len('[2,"","%s",{"%sData":[]}]' % (action, action[:3].lower() + "Variable"))
    for x in items:
        size += len(json.dumps(x, separators=(",", ":"))) + 1
        if size > n:
            raise CallError("FormatViolation", "%s longer than %d bytes" % (action, n))


def _result(cp, d):
    # The result of one Get/SetVariables item so far, and where its variable
    # is: -> (result, table position or -1 when the status is already said, evse)
    r = {"attributeStatus": "Accepted", "component": d["component"], "variable": d["variable"]}
    at = d.get("attributeType")
    if at is not None:
        r["attributeType"] = at
    why, pos, evse = find(cp, d["component"], d["variable"])
    if why:
        r["attributeStatus"] = why
        pos = -1
    elif at is not None and at != "Actual":
        r["attributeStatus"] = "NotSupportedAttributeType"
        pos = -1
    return r, pos, evse


def get_variables(cp, p):
    # B06: one result per item, in order, component and variable as asked
    items = p["getVariableData"]
    _limit(cp, items, "GetVariables")
    out = []
    for d in items:
        r, pos, evse = _result(cp, d)
        if pos >= 0:
            f = fields(pos)
            if f[2][0] == "O":  # B06.FR.09
                r["attributeStatus"] = "Rejected"
                r["attributeStatusInfo"] = {"reasonCode": "WriteOnly"}
            else:
                r["attributeValue"] = value(cp, f, evse)
        out.append(r)
    return {"getVariableResult": out}


def set_variables(cp, p):
    # B05: one result per item, in order; values persist (config.py's store,
    # the station's stored availability)
    items = p["setVariableData"]
    _limit(cp, items, "SetVariables")
    out = []
    for d in items:
        r, pos, evse = _result(cp, d)
        reason = None
        if pos >= 0:
            f = fields(pos)
            r["attributeStatus"], reason = _set(cp, f, evse, d["attributeValue"])
            log.info(_TAG, "set %s.%s%s: %s" % (f[0], f[1], "[%d]" % evse if evse else "", r["attributeStatus"]))
        if reason:
            r["attributeStatusInfo"] = {"reasonCode": reason}
        out.append(r)
    return {"setVariableResult": out}


# Reports: the code is imported at the first one (ocpp/v201/reports.py) and
# let go when it is done. One report at a time: `busy` while one is sent.
busy = False


def get_base_report(cp, p):
    from ocpp.v201 import reports
    return reports.base(cp, p)


def get_report(cp, p):
    from ocpp.v201 import reports
    return reports.custom(cp, p)
