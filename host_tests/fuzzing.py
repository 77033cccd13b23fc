"""Hostile frames from the CSMS, fuzzed with hypothesis, over one live session of either
OCPP version: the machinery of host_tests/test_fuzz.py and of `make fuzz`.

One shard = one firmware on the unix port, one dev CSMS, one protocol ("1.6" with the
security extension, or "2.0.1"), one hypothesis seed. Frames are built from the official
schemas of that protocol (the ocpp library's ocpp/v16/schemas, ocpp/v201/schemas): valid
payloads of every action, then mutated at any depth (wrong type, missing or extra property,
too long, not in the enum, bad date-time, deep nesting, huge or fractional numbers), inside
CALLs whose envelope is mutated too (message type ids, id length and type, action name and
type, element count), and also CALLRESULTs and CALLERRORs for calls never made, repeated
ids, JSON that is not OCPP, text that is not JSON, and binary frames.

The oracle (jsonschema on the same official schemas, plus the date-time and multipleOf rules
ocpp/check.py documents, "integer" as JSON schema draft 4 has it for both versions) says
what the answer must be:
- OCPP-J 1.6 (§4.1.3, §4.2.3): the CALLERROR code one of those the payload's problems map
  to (FormationViolation, OccurenceConstraintViolation, ...: the 1.6 spellings), a
  CALLRESULT valid against the action's response schema, or nothing at all for a frame
  without a usable message id (not JSON, not a list, an answer to a call never made, an
  unknown message type);
- OCPP-J 2.0.1 (part 4 §4.1.3-§4.4): the 2.0.1 codes (FormatViolation,
  OccurrenceConstraintViolation, also for an array over maxItems, ...); an unknown message
  type is answered MessageTypeNotSupported; a frame that is not a valid RPC message (not
  JSON, not a list, a message type that is not an integer, a CALL without 4 elements, a
  message id that is not a string or is over 36 characters) RpcFrameworkError, under the
  message id "-1" when none can be read (§4.2.3: also for an id over 36 characters, which
  an answer may not carry either); answers of the CSMS are never answered.
The firmware must never crash (process alive, no Traceback), keep the session (no
reconnect), and keep its heap bounded: console `mem` (after gc.collect()) at the start,
every 500 examples and at the end, where it is measured again until it stops falling
(a report or the security events the last frames started end within seconds); the
settled figure at the end minus the one at the start is held to FUZZ_MEM_BOUND, the peak
is reported.

Cheaper frames, judged exactly: the frames of an example batch (FUZZ_BATCH, default 16) go
out back to back, each followed by a marker CALL [2, "~mk<n>", "Heartbeat", {}] (answered
NotSupported, no security event, nothing stored), then one sync CALL (1.6 GetConfiguration
HeartbeatInterval, 2.0.1 GetVariables OCPPCommCtrlr.HeartbeatInterval) whose answer proves
all were dealt with (frames are handled in order). What the firmware sent between the
answers to marker n-1 and marker n is exactly its answer to frame n, "-1" ids included.

The guard (Guard.refuse), in the one place every frame goes through (Session._write):
valid CALLs of actions that would reboot the station, download or upload files, or move its
link elsewhere (Reset, UpdateFirmware, SetVariables of OCPPCommCtrlr/SecurityCtrlr/ClockCtrlr
variables, ChangeConfiguration of keys outside SAFE_KEYS...) are not sent. "Valid" is
judged on the frame as CPython reads it and as MicroPython's own json.loads reads it (a
MicroPython process parses every frame: its json is lenient, it reads
[2,"","Reset",{"type" "Soft"}] or "Re\\set" as a valid Reset). Whatever the path: fuzzed,
repeated id, burst, lenient, envelope-mutated, fixed. A lost link fails the shard with the
frame that preceded it (the frame after the last answered marker).

Text that is not JSON but that MicroPython's json.loads takes (missing or trailing commas,
"\\q" escapes...) must get what the spec says of broken JSON (1.6: nothing; 2.0.1:
RpcFrameworkError under "-1") or exactly what the oracle says of MicroPython's reading of
it; the latter are counted as "lenient".

After the hypothesis examples: fixed hostile frames (10000-level nesting, a 60 KB legal
message, a number that overflows to infinity, binary frames, duplicate ids, fragments), a
burst of the last fuzzed frames back to back without markers (each CALL answered once, in
order), then invalid UTF-8 and an oversized message must each close the connection cleanly
(1007 and 1009, RFC 6455 §7.4.1) and the firmware reconnects.

Environment: FUZZ_MEM_BOUND (bytes of heap growth allowed, default 48 KiB), FUZZ_BATCH, and
FW_HEAPSIZE (e.g. 512K: frames the heap cannot hold must be dropped "too complex" or close
the link with 1009, counted; the batch is then 1).

Run as a program: `python host_tests/fuzzing.py --seeds 10 --examples 5000 --jobs 2` (what
`make fuzz` runs) runs every seed over both protocols, JOBS shards at a time, each in its
own process, and prints one combined report; `--shard PROTO SEED` runs one shard.
"""
import argparse
import asyncio
import json
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jsonschema
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conftest import MICROPYTHON, ROOT, Firmware  # noqa: E402
from dev_csms import SCHEMAS, SCHEMAS201, DevCSMS, schema_errors  # noqa: E402

CP = "CP001"
MEM_BOUND = int(os.environ.get("FUZZ_MEM_BOUND", 48 * 1024))
MAX_MESSAGE = 65536  # the firmware's WebSocket message limit (lib/ws.py connect(max_size))
MARK = "~mk"  # marker ids: "~mk<n>"
CRASH = "Traceback (most recent call last)"
# the firmware's log line of a restart (a whole line: fuzzed frames, which it logs, may hold the words)
RESTART = re.compile(r"\d\d:\d\d:\d\d INFO  boot: restarting now\Z")

DATES = ["2026-11-23T19:28:21Z", "2026-11-23T19:28:21.123Z", "2026-02-28T00:00:00+01:00",
         "2024-02-29T23:59:59-05:30", "2026-06-30T23:59:60Z", "2026-11-23t19:28:21z", "2026-11-23T19:28:21"]
BAD_DATES = ["2026-02-30T00:00:00Z", "2026-11-23T19:28", "2026-11-23 19:28:21Z", "yesterday",
             "2026-13-01T00:00:00Z", "2026-11-23T24:00:00Z", "2026-11-23T19:28:21.Z", "",
             "2026-11-23T19:28:21+0100", "2025-02-29T00:00:00Z", "2026-11-23T19:28:21Z ", "2026-11-23T19:61:00Z",
             "\uff12026-11-23T19:28:21Z", "2026-11-23T19:28:21.1234567890123456789012Z"]
ALPHABET = st.characters(blacklist_categories=("Cs",))  # no lone surrogates: they cannot be sent as UTF-8


def texts(max_size):
    # hypothesis also tries the string constants of the test modules; the firmware logs frames,
    # and the crash check looks for "Traceback" in its log: keep that word out of what we send.
    # (nor the ids of the markers and the syncs)
    return st.text(ALPHABET, max_size=max_size).filter(
        lambda t: "Traceback" not in t and not t.startswith(MARK) and not t.startswith("sync-"))


JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                        st.floats(allow_nan=False, allow_infinity=False), texts(30))
JSON_ANY = st.recursive(JSON_SCALAR, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                            st.dictionaries(texts(12), kids, max_size=4)),
                        max_leaves=12)

RESULT = "CALLRESULT"
NOTHING = "nothing"


def loads(text):
    """CPython's json.loads, deep enough for the 10000-level frames; ValueError when not JSON
    (NaN and Infinity included: MicroPython's json refuses them)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 40000))
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("too deep for CPython")
    finally:
        sys.setrecursionlimit(old)


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


# ---- the oracle ------------------------------------------------------------------------------

def _deref(s, root):
    while "$ref" in s:
        s = root["definitions"][s["$ref"].rsplit("/", 1)[1]]
    return s


def _multiple_of(validator, m, instance, schema):
    # check.py's rule: relative tolerance 1e-9 (double precision), non-finite never.
    if not validator.is_type(instance, "number"):
        return
    q = instance / m
    if not math.isfinite(q):
        yield jsonschema.ValidationError("not a multiple")
        return
    f = q % 1.0
    f = min(f, 1.0 - f)
    if f > 1e-9 * max(abs(q), 1):
        yield jsonschema.ValidationError("%r is not a multiple of %r" % (instance, m))


# draft 4 for both versions, as the ocpp library and check.py take "integer": 1.0 is none
Validator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"multipleOf": _multiple_of})
_DT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-]([0-9]{2}):([0-9]{2}))?\Z")
_DIM = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def date_time_ok(s):
    # RFC 3339 as check.py takes it: T/Z in either case, leap second, real dates, <= 40 characters,
    # no offset taken as UTC.
    m = _DT.match(s)
    if not m or not 19 <= len(s) <= 40:
        return False
    y, mo, d = int(s[:4]), int(s[5:7]), int(s[8:10])
    if not 1 <= mo <= 12 or d < 1:
        return False
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if d > _DIM[mo - 1] + (mo == 2 and leap):
        return False
    h, mi, se = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if h > 23 or mi > 59 or se > 60:
        return False
    if m.group(6) is not None and (int(m.group(6)) > 23 or int(m.group(7)) > 59):
        return False
    return True


# 1.6: ChangeConfiguration of these keys is harmless; of any other key of config.py it is not
SAFE_KEYS = ["MeterValueSampleInterval", "ClockAlignedDataInterval", "ConnectionTimeOut", "LocalAuthorizeOffline",
             "StopTxnAlignedData", "MinimumStatusDuration", "StopTxnSampledData", "MeterValuesSampledData",
             "LocalPreAuthorize", "AllowOfflineTxForUnknownId", "NoSuchKey", "heartbeatinterval"]
CONFIG_KEYS = {m.group(1).lower() for m in re.finditer(r'^\s*"(\w+) \w', (ROOT / "firmware" / "config.py").read_text(),
                                                        re.M)}
# 2.0.1: SetVariables of a writable variable of these components (the link, its security,
# the clock source) is not sent when valid; the device model's variables from devmodel.py
DANGEROUS_COMPONENTS = {"ocppcommctrlr", "securityctrlr", "clockctrlr"}
WRITABLE201 = {(m.group(1).lower(), m.group(2).lower()) for m in re.finditer(
    r'^\s*"(\w+) ([\w:]+) [WO]', (ROOT / "firmware" / "ocpp" / "v201" / "devmodel.py").read_text(), re.M)}


class Proto:
    """What differs between the versions: schemas, error codes, the RPC rules, the sync."""

    def __init__(self, name):
        self.name = name
        self.v201 = v201 = name == "2.0.1"
        d, suffix = (SCHEMAS201, "Request.json") if v201 else (SCHEMAS, ".json")
        self.actions = sorted(p.name[:-len(suffix)] for p in d.glob("*" + suffix) if not p.name.endswith("Response.json"))
        self.schema = {a: json.loads((d / (a + suffix)).read_text(encoding="utf-8-sig")) for a in self.actions}
        self.validators = {a: Validator(self.schema[a]) for a in self.actions}
        if v201:
            self.FORMAT, self.OCCUR = "FormatViolation", "OccurrenceConstraintViolation"
            self.dangerous_actions = {"Reset", "UpdateFirmware", "GetLog", "SetNetworkProfile", "PublishFirmware",
                                      "CertificateSigned", "InstallCertificate", "DeleteCertificate"}
            self.sync_call = ("GetVariables", {"getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
            self.protocols = ("ocpp2.0.1",)
            self.accepted = r"accepted this charging station"
        else:
            self.FORMAT, self.OCCUR = "FormationViolation", "OccurenceConstraintViolation"
            self.dangerous_actions = {"Reset", "UpdateFirmware", "SignedUpdateFirmware", "GetDiagnostics", "GetLog"}
            self.sync_call = ("GetConfiguration", {"key": ["HeartbeatInterval"]})
            self.protocols = ("ocpp1.6",)
            self.accepted = r"accepted this charge point"
        self.TYPE, self.PROP = "TypeConstraintViolation", "PropertyConstraintViolation"

    def sync_ok(self, answer):
        try:
            if self.v201:
                r = answer[2]["getVariableResult"][0]
                return answer[0] == 3 and r["attributeStatus"] == "Accepted" and r["variable"]["name"] == \
                    "HeartbeatInterval"
            return answer[0] == 3 and answer[2]["configurationKey"][0]["key"] == "HeartbeatInterval"
        except (KeyError, IndexError, TypeError):
            return False

    # -- payloads --
    def _custom(self, schema, root, v, codes):
        # What jsonschema does not check: date-time formats and non-finite numbers.
        schema = _deref(schema, root)
        t = schema.get("type")
        if schema.get("format") == "date-time" and isinstance(v, str) and not date_time_ok(v):
            codes.add(self.PROP)
        if t == "number" and isinstance(v, float) and not math.isfinite(v):
            codes.add(self.PROP)
        if t == "object" and isinstance(v, dict):
            for k, sub in schema.get("properties", {}).items():
                if k in v:
                    self._custom(sub, root, v[k], codes)
        if t == "array" and isinstance(v, list) and "items" in schema:
            for x in v:
                self._custom(schema["items"], root, x, codes)

    def payload_codes(self, action, payload):
        """The CALLERROR codes the payload's problems map to; empty when it is valid."""
        if not isinstance(payload, dict):
            return {self.FORMAT}
        codes = set()
        for e in self.validators[action].iter_errors(payload):
            v = e.validator
            if v == "type":
                codes.add(self.TYPE)
            elif v == "additionalProperties":
                codes.add(self.FORMAT)
            elif v in ("required", "minItems", "maxItems"):
                codes.add(self.OCCUR)
            else:  # enum, maxLength, multipleOf, minimum, maximum
                codes.add(self.PROP)
        self._custom(self.schema[action], self.schema[action], payload, codes)
        return codes

    # -- the RPC rules --
    def expect(self, msg, supported):
        """What the firmware must answer to the JSON value msg: NOTHING, or (message id of the
        answer, RESULT or a set of CALLERROR codes)."""
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, 40000))  # (jsonschema's messages repr the 10000-level values)
        try:
            return self._expect201(msg, supported) if self.v201 else self._expect16(msg, supported)
        finally:
            sys.setrecursionlimit(old)

    def _expect16(self, msg, supported):
        if not (isinstance(msg, list) and len(msg) >= 3 and type(msg[0]) is int and isinstance(msg[1], str)):
            return NOTHING  # no usable message id (OCPP-J 1.6 §4.1.3)
        if msg[0] != 2:
            return NOTHING  # answers to calls never made, unknown message types
        if len(msg[1]) > 36:
            return msg[1], {"ProtocolError"}
        if len(msg) != 4 or not isinstance(msg[2], str):
            return msg[1], {self.FORMAT}
        return msg[1], self._call(msg, supported)

    def _expect201(self, msg, supported):
        # part 4 §4.1.3, §4.2.3, §4.4
        if not isinstance(msg, list) or not msg or type(msg[0]) is not int:
            return "-1", {"RpcFrameworkError"}
        mid = msg[1] if len(msg) > 1 and isinstance(msg[1], str) and len(msg[1]) <= 36 else "-1"
        if msg[0] in (3, 4):
            return NOTHING
        if msg[0] != 2:
            return mid, {"MessageTypeNotSupported"}
        if mid == "-1" and not (len(msg) > 1 and msg[1] == "-1"):
            return "-1", {"RpcFrameworkError"}
        if len(msg) != 4 or not isinstance(msg[2], str):
            return mid, {"RpcFrameworkError"}
        return mid, self._call(msg, supported)

    def _call(self, msg, supported):
        action, payload = msg[2], msg[3]
        if action not in self.schema:
            return {"NotImplemented"}
        if action not in supported:
            return {"NotSupported"}
        return self.payload_codes(action, payload) or RESULT

    def not_json(self):
        """The answer to text that is not JSON (or that no parser of this heap can read)."""
        return ("-1", {"RpcFrameworkError"}) if self.v201 else NOTHING

    def dangerous(self, msg):
        """A valid CALL msg (the oracle said so) that must not be sent."""
        action, payload = msg[2], msg[3]
        if action in self.dangerous_actions:
            return True
        if action == "ChangeConfiguration" and not self.v201:
            key = payload.get("key", "")
            return isinstance(key, str) and key.lower() in CONFIG_KEYS and key not in SAFE_KEYS
        if action == "SetVariables" and self.v201:
            for e in payload.get("setVariableData", ()):
                comp = e["component"]["name"].lower()
                var = e["variable"]["name"] + (":" + e["variable"]["instance"] if "instance" in e["variable"] else "")
                if comp in DANGEROUS_COMPONENTS and (comp, var.lower()) in WRITABLE201:
                    return True
        return False


PROTOS = {"1.6": Proto("1.6"), "2.0.1": Proto("2.0.1")}


# ---- what MicroPython's json reads --------------------------------------------------------

_MP_PARSER = r"""
import sys, json
i = sys.stdin.buffer
o = sys.stdout
while True:
    n = i.readline()
    if not n:
        break
    n = int(n)
    b = b""
    while len(b) < n:
        b += i.read(n - len(b))
    try:
        r = "V" + json.dumps(json.loads(b.decode()))
    except Exception as e:
        r = "E" + type(e).__name__
    o.write(r + "\n")
"""
UNREADABLE = "unreadable"  # MicroPython read it, but into something CPython cannot take back (inf)


class MpJson:
    """A MicroPython process that parses text with the firmware's own json.loads."""

    def __init__(self):
        self.proc = subprocess.Popen([MICROPYTHON, "-X", "heapsize=32M", "-c", _MP_PARSER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=dict(os.environ, MICROPYPATH=".frozen"))

    def loads(self, text):
        """-> the value (as CPython reads MicroPython's json.dumps of it), UNREADABLE, or an
        exception name (str starting with "E") when MicroPython's json.loads refuses it."""
        b = text.encode() if isinstance(text, str) else text
        self.proc.stdin.write(b"%d\n" % len(b) + b)
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().decode()
        if not line:
            raise RuntimeError("the MicroPython json process died")
        if line[0] == "E":
            return line.strip()
        try:
            return loads(line[1:])
        except ValueError:
            return UNREADABLE

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(5)


class Guard:
    """Refuses the frames that MicroPython's json or CPython's would read as a valid CALL
    of a dangerous action (Proto.dangerous)."""

    def __init__(self, proto, supported=None, mp=None):
        self.proto = proto
        self.supported = supported if supported is not None else set(proto.actions)
        self.mp = mp or MpJson()

    def refuse(self, data, binary=False):
        """-> why the frame must not be sent, or None."""
        if binary:
            return None  # the firmware ignores binary frames
        if isinstance(data, list):  # fragments of one message
            data = data[0][:0].join(data)
        if isinstance(data, bytes):
            try:
                data = data.decode()
            except UnicodeDecodeError:
                return None  # invalid UTF-8: the link closes (1007), nothing is parsed
        readings = []
        try:
            readings.append(loads(data))
        except ValueError:
            pass
        mp = self.mp.loads(data)
        if mp is UNREADABLE:
            names = self.proto.dangerous_actions | {"ChangeConfiguration", "SetVariables"}
            plain = data.replace("\\", "")
            if any(a in plain for a in names):
                return "MicroPython reads it into something CPython cannot judge, and it names a dangerous action"
        elif not (isinstance(mp, str) and mp.startswith("E")):
            readings.append(mp)
        for v in readings:
            try:
                want = self.proto.expect(v, self.supported)
                if want is not NOTHING and want[1] is RESULT and self.proto.dangerous(v):
                    return "a valid %s" % v[2]
            except Exception as e:  # a reading the oracle cannot take apart: refuse
                return "the oracle failed on it (%s: %s)" % (type(e).__name__, e)
        return None


# ---- frames ------------------------------------------------------------------------------------

def valid(schema, root, depth=0):
    """Strategy: values valid against the schema node."""
    schema = _deref(schema, root)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    t = schema.get("type")
    if t == "string":
        if schema.get("format") == "date-time":
            return st.sampled_from(DATES)
        return texts(min(schema.get("maxLength", 40), 40))
    if t == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None or hi is not None:
            lo = int(lo if lo is not None else -(2 ** 40))
            return st.integers(lo, int(hi if hi is not None else 2 ** 40)) | st.just(lo)
        return st.integers(-(2 ** 40), 2 ** 40) | st.integers(0, 3)
    if t == "number":
        if "multipleOf" in schema:
            return st.integers(-1000, 100000).map(lambda i: round(i / 10, 1))
        lo = schema.get("minimum")
        return st.floats(min_value=lo, max_value=schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if t == "boolean":
        return st.booleans()
    if t == "array":
        return st.lists(valid(schema["items"], root, depth + 1), min_size=schema.get("minItems", 0),
                        max_size=min(3 if depth < 3 else 1, schema.get("maxItems", 3)))
    if t == "object":
        props = schema.get("properties", {})
        req = set(schema.get("required", []))
        return st.fixed_dictionaries({k: valid(props[k], root, depth + 1) for k in props if k in req},
                                     optional={k: valid(props[k], root, depth + 1) for k in props if k not in req})
    return JSON_ANY


def _paths(v, prefix=()):
    yield prefix
    if isinstance(v, dict):
        for k in v:
            yield from _paths(v[k], prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, prefix + (i,))


def _node(schema, root, path):
    s = _deref(schema, root)
    for p in path:
        if isinstance(p, int):
            s = s.get("items")
        else:
            s = s.get("properties", {}).get(p)
        if s is None:
            return {}
        s = _deref(s, root)
    return s


def _set(v, path, new):
    if not path:
        return new
    parent = v
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = new
    return v


def deep(n):
    v = 1
    for _ in range(n):
        v = [v]
    return v


@st.composite
def mutated(draw, proto, action):
    """A payload of action: valid, then (mostly) broken at one point at any depth."""
    root = proto.schema[action]
    v = draw(valid(root, root))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        paths = list(_paths(v))
        path = draw(st.sampled_from(paths))
        node = _node(root, root, path)
        cur = v
        for p in path:
            cur = cur[p]
        kind = draw(st.sampled_from(["any", "type", "delete", "extra", "long", "enum", "date", "deep", "number"]))
        if kind == "any":
            v = _set(v, path, draw(JSON_ANY))
        elif kind == "type":
            v = _set(v, path, draw(st.sampled_from([None, True, False, 0, -1, 7, 1.5, 1.0, "", "1", [], {}, [1],
                                                    {"a": 1}, 2 ** 64, "Accepted"])))
        elif kind == "delete" and path:
            parent = v
            for p in path[:-1]:
                parent = parent[p]
            del parent[path[-1]]
        elif kind == "extra" and isinstance(cur, dict):
            names = list(node.get("properties", {})) or ["x"]
            name = draw(st.sampled_from(names))
            key = draw(st.sampled_from([name + "x", name.lower(), name.upper(), " " + name, name + ":", "",
                                        "a" * 60, "\u00e9t\u00e9"]) | texts(8))
            cur[key] = draw(JSON_SCALAR)
        elif kind == "long":
            n = node.get("maxLength", 20)
            v = _set(v, path, draw(st.sampled_from(["x", "\u20ac", "\U0001f600"])) * (n + draw(st.integers(0, 3))))
        elif kind == "enum":
            enum = node.get("enum") or ["Accepted"]
            e = draw(st.sampled_from(enum))
            v = _set(v, path, draw(st.sampled_from([e.lower(), e + " ", " " + e, e + "x", e[:-1], e, enum[-1],
                                                    "|", " ", e + " " + e])))
        elif kind == "date":
            v = _set(v, path, draw(st.sampled_from(BAD_DATES + DATES)))
        elif kind == "deep":
            v = _set(v, path, deep(draw(st.integers(1, 300))))
        elif kind == "number":
            v = _set(v, path, draw(st.sampled_from([2 ** 31, -(2 ** 31) - 1, 2 ** 100, 0.1, 21.4, 4.11, 1e300,
                                                    -0.0, 1e-300, 3.0000000001, -1, 0])))
    return v


LENIENT = "lenient"  # text that is not JSON (RFC 8259)


@st.composite
def frames(draw, proto, supported):
    """-> (text or bytes, binary?, the JSON value, None, or LENIENT); mostly actions the firmware offers."""
    kind = draw(st.sampled_from(["call"] * 10 + ["envelope"] * 3 + ["answer", "junkjson", "notjson", "binary"]))
    action = draw(st.sampled_from(sorted(supported)) if supported and draw(st.integers(0, 3)) else
                  st.sampled_from(proto.actions))
    msg_id = draw(st.sampled_from(["fz-%d" % draw(st.integers(0, 10 ** 6))] * 6 + ["", "-1", "x" * 36, "x" * 37]) |
                  texts(40))
    msg = [2, msg_id, action, draw(mutated(proto, action))]
    if kind == "envelope":
        which = draw(st.integers(0, 5))
        if which == 0:
            msg[0] = draw(st.sampled_from([0, 1, 3, 4, 5, 7, -1, 99, 2.0, "2", True, None, [2]]))
        elif which == 1:
            msg[1] = draw(JSON_ANY)
        elif which == 2:
            msg[2] = draw(JSON_ANY | texts(30) | st.sampled_from(
                [a + "Response" for a in proto.actions[:5]] + [a + "Request" for a in proto.actions[:3]] +
                [a.lower() for a in proto.actions[:5]] + ["Heartbeat:", " Reset"]))
        elif which == 3:
            msg = msg[:draw(st.integers(0, 3))]
        elif which == 4:
            msg = msg + draw(st.lists(JSON_ANY, min_size=1, max_size=2))
        else:
            msg = draw(JSON_ANY)
    elif kind == "answer":
        msg = draw(st.sampled_from([[3, msg_id, draw(JSON_ANY)], [4, msg_id, "GenericError", "x", {}],
                                    [4, msg_id], [3, msg_id], [4, msg_id, 5, None, []]]))
    elif kind == "junkjson":
        msg = draw(JSON_ANY)
    if kind == "notjson":
        text = json.dumps(msg, ensure_ascii=False)
        cut = draw(st.integers(0, max(0, len(text) - 1)))
        text = draw(st.sampled_from([
            text[:cut], text + ",", text.replace('"', "'"), "NaN", "[2,\"a\",\"Heartbeat\",{}",
            "[2, \"a\", \"Heartbeat\", {}]]",
            # not JSON, yet MicroPython's json.loads takes them (see LENIENT):
            text.replace(", ", " "), text[:-1] + ",]", text.replace(": ", " "), text.replace('"', '"\\q', 1),
            text.replace("[2, ", "[02, ", 1), text.replace('"%s"' % action, '"%s\\%s"' % (action[:2], action[2:]))]
        )) if draw(st.booleans()) else draw(texts(60))
        try:
            value = loads(text)
        except ValueError:
            return text, False, LENIENT
        return text, False, value
    text = json.dumps(msg, ensure_ascii=False)
    if kind == "binary":
        return text.encode(), True, None
    return text, False, msg


# ---- the session -------------------------------------------------------------------------------

class Fatal(BaseException):
    """The shard cannot go on (firmware dead, link lost): not an Exception, so that
    hypothesis stops at once instead of shrinking on a dead session."""


def _shown(data):
    return data[:300] if isinstance(data, (str, bytes)) else data


class Session:
    def __init__(self, proto, csms, fw, batch=16):
        self.proto = proto
        self.csms = csms
        self.fw = fw
        self.batch = batch
        self.mp = MpJson()
        self.supported = set()
        self.guard = Guard(proto, self.supported, self.mp)
        self.sent = 0  # frames written (markers and syncs not counted)
        self.fuzzed = 0  # of those, fuzzed by hypothesis
        self.fuzzing = False
        self.refused = []  # (frame, why) the guard kept back
        self.problems = []
        self.codes = {}
        self.results = 0
        self.mem = []
        self.seen_lines = 0
        self.too_complex = 0
        self.memory_closes = 0  # 1009: a frame too big for the heap (FW_HEAPSIZE runs only)
        self.lenient = []  # (not-JSON text the firmware acted on, its answers)
        self.played = []  # (data, binary, value) of every fuzzed frame sent
        self.pending = []  # (data, binary, outcomes) not yet sent
        self.nsync = 0
        self.nmark = 0
        self.history = []  # the last frames written, for the report of a lost link

    # -- health --
    def alive(self):
        lines = self.fw.lines
        n = len(lines)
        for i in range(self.seen_lines, n):
            if RESTART.match(lines[i]):
                # the frame that did it: the last one the firmware logged receiving before
                culprit = next((ln for ln in reversed(lines[:i]) if re.search(r"FRAME ocpp: << \[\s*2\s*,", ln)
                                and '"' + MARK not in ln and '"sync-' not in ln), None)
                raise Fatal("the firmware restarted after the frame %s; the frames sent before: %s; its lines:\n%s" % (
                    culprit and culprit.split("<< ", 1)[1][:300], [_shown(h)[:120] for h in self.history[-5:]],
                    "\n".join(lines[max(0, i - 8):i + 3])))
        tb = [ln for ln in lines[self.seen_lines:n] if ln.startswith(CRASH)]
        if self.fw.proc.poll() is not None:
            raise Fatal("the firmware died after the frame %r; last lines:\n%s" % (
                _shown(self.history[-1]) if self.history else None, "\n".join(self.fw.lines[-40:])))
        if tb:
            raise Fatal("the firmware printed a traceback:\n" + "\n".join(self.fw.lines[-60:]))
        self.seen_lines = max(0, n - 5)

    def why_lost(self):
        """The link is gone: a restart of the firmware names the frame (alive() raises)."""
        end = time.time() + 4
        while time.time() < end and not any(RESTART.match(ln) for ln in self.fw.lines[self.seen_lines:]):
            time.sleep(0.1)
        self.alive()

    def memory(self, label):
        self.fw.send("mem")
        line = self.fw.wait_line(r"memory: \d+ bytes in use")
        n = int(re.search(r"memory: (\d+) bytes in use, (\d+) free", line).group(1))
        self.mem.append((label, n))
        return n

    def sync(self):
        self.nsync += 1
        action, payload = self.proto.sync_call
        answer = self.csms.call_raw(CP, action, payload, timeout=15, msg_id="sync-%d" % self.nsync)
        if not self.proto.sync_ok(answer):
            raise AssertionError("the sync %s was answered %r" % (action, answer))

    # -- writing: every frame goes through here --
    def _write(self, items):
        """Send [(data, binary)] back to back; each passes the guard (refused ones are not
        sent, and None is put in their place in the result)."""
        csms = self.csms
        handler = csms.handlers.get(CP)
        if handler is None:
            self.why_lost()
            raise Fatal("the link was down before the frame %r (%d connections); the frames before it: %s; "
                        "last lines:\n%s" % (_shown(items[0][0]) if items else None, csms.connections,
                                             [_shown(h) for h in self.history[-3:]], "\n".join(self.fw.lines[-40:])))
        rec = handler._connection
        out = []
        ok = []
        for data, binary in items:
            why = None if isinstance(data, str) and data.startswith('[2,"' + MARK) else self.guard.refuse(data, binary)
            if why:
                self.refused.append((_shown(data), why))
                ok.append(False)
                continue
            out.append((data, binary))
            ok.append(True)

        async def go():
            for data, binary in out:
                if isinstance(data, list):  # fragments
                    csms.record(">>", CP, data[0][:0].join(data), rec)
                    await rec.conn.send(data)
                elif binary or isinstance(data, bytes):  # (bytes sent as text: invalid UTF-8)
                    csms.record(">>", CP, data, rec)
                    await rec.conn.send(data if isinstance(data, bytes) else data.encode(), text=not binary)
                else:
                    await rec.send(data)
        for data, _ in out:
            if not (isinstance(data, str) and data.startswith('[2,"' + MARK)):
                self.history.append(data)
                self.sent += 1
                self.fuzzed += self.fuzzing
        del self.history[:-20]
        try:
            asyncio.run_coroutine_threadsafe(go(), csms.loop).result(30)
        except Exception as e:  # the link went while we wrote: say after what
            self.why_lost()
            raise Fatal("the link was lost (%s: %s) while sending the frame %r; the frames sent before: %s; last "
                        "lines:\n%s" % (type(e).__name__, e, _shown(out[0][0]) if out else None,
                                         [_shown(h)[:120] for h in self.history[-6:-len(out) or None]],
                                         "\n".join(self.fw.lines[-30:])))
        return ok

    def _answers(self, n0, skip_sync=True):
        return [m for _, d, _, m in self.csms.frames[n0:] if d == "<<" and isinstance(m, list) and len(m) > 1
                and m[0] in (3, 4) and not (skip_sync and isinstance(m[1], str) and m[1].startswith("sync-"))]

    def _lost(self, batch, answers, e):
        # the frame after the last marker answered is the one the link was lost on
        marks = {m[1] for m in answers if isinstance(m[1], str) and m[1].startswith(MARK)}
        culprit = None
        for data, _, _, mark in batch:
            if mark not in marks:
                culprit = data
                break
        return Fatal("no answer to the sync after the frame %r (%s: %s); %d connections (%d before); the frame "
                     "before it: %r; last lines:\n%s" % (
                         _shown(culprit), type(e).__name__, e, self.csms.connections, self.conns,
                         _shown(self.history[-2]) if len(self.history) > 1 else None,
                         "\n".join(self.fw.lines[-30:])))

    # -- the fuzzed frames: batched, each followed by a marker --
    def push(self, data, binary, outcomes, value=None):
        self.pending.append((data, binary, outcomes, value))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self):
        batch, self.pending = self.pending, []
        if not batch:
            return
        csms = self.csms
        n0 = len(csms.frames)
        mark_line = len(self.fw.lines)
        self.conns = csms.connections
        items = []
        marks = []
        for data, binary, _, _ in batch:
            self.nmark += 1
            m = "%s%d" % (MARK, self.nmark)
            marks.append(m)
            items += [(data, binary), ('[2,"%s","Heartbeat",{}]' % m, False)]
        sent = self._write(items)[::2]
        batch = [(d, b, o, m) for (d, b, o, _), m in zip(batch, marks)]
        try:
            self.sync()
        except Exception as e:
            if csms.connections != self.conns or CP not in csms.handlers:
                self.why_lost()
            self.alive()
            conn_closed = csms.connections != self.conns or CP not in csms.handlers
            if len(batch) == 1 and conn_closed and csms.wait_for(
                    lambda: any("no memory for a frame" in ln or "too big for the free memory" in ln
                                for ln in self.fw.lines[mark_line:]), 5, "1009 reason"):
                self.memory_closes += 1  # (FW_HEAPSIZE runs) the reconnect backoff grows with each
                csms.wait_for(lambda: csms.connections > self.conns and CP in csms.handlers, 90, "a reconnect")
                self.sync()
                return
            raise self._lost(batch, self._answers(n0), e)
        if csms.connections != self.conns:
            raise self._lost(batch, self._answers(n0), RuntimeError("the firmware reconnected"))
        answers = self._answers(n0)
        # split by the markers' answers
        buckets = []
        cur = []
        it = iter(marks)
        want_mark = next(it)
        for a in answers:
            if a[1] == want_mark:
                if not (a[0] == 4 and a[2] == "NotSupported"):
                    self.problems.append("the marker %s was answered %s" % (want_mark, a))
                buckets.append(cur)
                cur = []
                want_mark = next(it, None)
            else:
                cur.append(a)
        if want_mark is not None or cur:
            self.problems.append("markers unanswered from %s on (answers %s)" % (want_mark, answers[-10:]))
            buckets += [[]] * (len(batch) - len(buckets))
        for (data, binary, outcomes, _), ok, got in zip(batch, sent, buckets):
            if not ok:
                if got:
                    self.problems.append("answers %s to a frame that was not sent" % got)
                continue
            self.judge(data, got, outcomes, mark_line)
        self.alive()

    def judge(self, data, answers, outcomes, mark_line=0):
        """answers: all the firmware sent for this frame; outcomes: what it may be, the first
        the strict one, the others the lenient readings of it."""
        why = []
        for i, want in enumerate(outcomes):
            p = self._match(answers, want)
            if p is None:
                if i and want != outcomes[0]:
                    self.lenient.append((_shown(data), answers))
                self._count(answers, want)
                return
            why.append(p)
        if any("frame too complex to parse" in ln for ln in self.fw.lines[mark_line:]):
            strict = self.proto.not_json()  # more than this heap can parse: dropped (1.6), "-1" (2.0.1)
            if self._match(answers, strict if strict is NOTHING else strict + (None,)) is None:
                self.too_complex += 1
                return
        self.problems.append("%r: %s" % (_shown(data), " / ".join(why)))

    def _count(self, answers, want):
        if want is NOTHING:
            return
        a = answers[0]
        if want[1] is RESULT:
            self.results += 1
        else:
            self.codes[a[2]] = self.codes.get(a[2], 0) + 1

    def _match(self, answers, want):
        # None when the answers are what `want` says, else why not
        if want is NOTHING:
            return "answered %s, expected nothing" % answers if answers else None
        mid, codes, action = want
        if len(answers) != 1 or answers[0][1] != mid:
            return "%d answers (%s), expected one under id %r (%s)" % (
                len(answers), answers, mid, codes if codes is RESULT else " or ".join(sorted(codes)))
        a = answers[0]
        if codes is RESULT:
            if a[0] != 3 or len(a) != 3:
                return "valid %s answered with %s" % (action, a)
            errs = schema_errors(action, a[2], response=True, proto="ocpp2.0.1" if self.proto.v201 else "ocpp1.6")
            if errs:
                return "the answer %s breaks the %sResponse schema: %s" % (a, action, errs)
            return None
        if a[0] != 4 or len(a) != 5 or a[2] not in codes or not isinstance(a[3], str) or a[4] != {} or (
                self.proto.v201 and len(a[3]) > 255):
            return "answered %s, expected CALLERROR %s" % (a[:4], " or ".join(sorted(codes)))
        return None

    def outcome(self, value):
        """The outcome (for judge) of a JSON value: NOTHING or (id, RESULT or codes, action)."""
        want = self.proto.expect(value, self.supported)
        if want is NOTHING:
            return NOTHING
        return want[0], want[1], value[2] if want[1] is RESULT else None

    def outcomes_of_text(self, data):
        """All the firmware may answer to this text: what the spec says of it, then (for text
        that is not JSON) what the oracle says of MicroPython's reading of it."""
        try:
            return [self.outcome(loads(data))]
        except ValueError:
            pass
        strict = self.proto.not_json()
        strict = strict if strict is NOTHING else strict + (None,)
        mp = self.mp.loads(data)
        if isinstance(mp, str) and mp.startswith("E") or mp is UNREADABLE:
            return [strict]
        return [strict, self.outcome(mp)]

    def close(self):
        self.mp.close()


# ---- one shard ----------------------------------------------------------------------------------

def fixed_frames(proto):
    n = 10000
    nested = "[" * n + "]" * n
    start = ('[2,"nf-2","RequestStartTransaction",{"idToken":{"idToken":"A","type":"Central"},"remoteStartId":1,'
             '"chargingProfile":{"id":1,"stackLevel":0,"chargingProfilePurpose":"TxProfile","chargingProfileKind":'
             '"Absolute","chargingSchedule":[{"id":1,"chargingRateUnit":"A","chargingSchedulePeriod":'
             '[{"startPeriod":0,"limit":1e400}]}]}}]' if proto.v201 else
             '[2,"nf-2","RemoteStartTransaction",{"idTag":"A","chargingProfile":{"chargingProfileId":1,"stackLevel":0,'
             '"chargingProfilePurpose":"TxProfile","chargingProfileKind":"Absolute","chargingSchedule":'
             '{"chargingRateUnit":"A","chargingSchedulePeriod":[{"startPeriod":0,"limit":1e400}]}}}]')
    get = json.dumps([2, "dup-1", proto.sync_call[0], proto.sync_call[1]])
    return [
        nested,
        '[2,"deep-1","DataTransfer",%s]' % nested,
        '[2,"deep-2","DataTransfer",{"vendorId":%s}]' % nested,
        '[2,"deep-3","DataTransfer",{"vendorId":"mpocpp","data":%s}]' % nested,
        '[2,%s,"Heartbeat",{}]' % nested,
        '[2,"deep-4","DataTransfer",%s1%s]' % ('{"a":' * 3000, "}" * 3000),
        '[2,"deep-5","DataTransfer",{"vendorId":"mpocpp","x":%s1%s}]' % ('{"a":' * 3000, "}" * 3000),
        '[2,"nf-1","DataTransfer",{"vendorId":1e400}]',
        start,
        '[2,"big-1","DataTransfer",{"vendorId":"mpocpp","messageId":"Echo","data":"%s"}]' % ("y" * 60000),
        '[2,"big-2","DataTransfer",{"vendorId":"mpocpp","data":"%s"}]' % ("\u20ac" * 21000),
        '[3,"never-asked",{}]',
        '[4,"never-asked","GenericError","",{}]',
        '[5,"new-type",{}]',
        get, get,
        '[2,"dup-1","NoSuchAction",{}]',
        # lenient: MicroPython reads a valid Reset, the guard keeps it back
        '[2,"Re\\set","Re\\set",{"type":"%s"}]' % ("Immediate" if proto.v201 else "Hard"),
    ]


def start_session(proto, csms, fw, batch):
    fw.start()
    fw.wait_line(proto.accepted, 30)
    csms.wait_for(lambda: CP in csms.handlers, 5, "connection")
    for key, value in (("ClockAlignedDataInterval", 0), ("MeterValueSampleInterval", 1)):
        fw.send("set %s %s" % (key, value))
        fw.wait_line(r"set %s: Accepted" % key)
    # A transaction runs during the fuzzing: the firmware's own CALLs cross ours.
    for cmd in ("load 1 16", "plug 1", "card 1 FUZZ-TAG"):
        fw.send(cmd)
    fw.wait_line(r"transaction started")
    s = Session(proto, csms, fw, batch)
    # Which actions does the firmware offer? An empty payload for each: NotSupported or not.
    everything = Guard(proto, mp=s.mp)
    assert everything.refuse(json.dumps([2, "sync-0"] + list(proto.sync_call))) is None
    for i, action in enumerate(proto.actions):
        assert everything.refuse(json.dumps([2, "probe-%d" % i, action, {}])) is None, action
        answer = csms.call_raw(CP, action, {}, msg_id="probe-%d" % i)
        if not (answer[0] == 4 and answer[2] == "NotSupported"):
            s.supported.add(action)
    assert "Heartbeat" not in s.supported, "the markers need a Heartbeat CALL answered NotSupported"
    return s


def run_shard(proto_name, fuzz_seed, examples, work, batch=None, heapsize=None):
    """One shard; -> its report (a dict). report["failure"] is None when it passed."""
    proto = PROTOS[proto_name]
    heapsize = heapsize or os.environ.get("FW_HEAPSIZE")
    batch = batch or (1 if heapsize else int(os.environ.get("FUZZ_BATCH", 16)))
    work = Path(work)
    t_start = time.time()
    csms = DevCSMS(heartbeat_interval=300, protocols=proto.protocols)
    csms.start_in_thread()
    fw = Firmware(work / CP, "ws://127.0.0.1:%d" % csms.port, CP, heapsize=heapsize,
                  ocpp="2.0.1" if proto.v201 else None)
    rep = {"proto": proto_name, "seed": fuzz_seed, "examples": examples, "batch": batch, "failure": None,
           "problems": [], "replay": replay_command(proto_name, fuzz_seed, examples)}
    s = None
    try:
        s = start_session(proto, csms, fw, batch)
        rep["supported"] = sorted(s.supported)
        _fuzz(s, fuzz_seed, examples, rep)
        _fixed_and_burst(s, rep)
        _closes(s, rep)
    except Fatal as e:
        rep["failure"] = str(e)
    except Exception as e:  # anything else is a failure of the shard too, with its frame
        if os.environ.get("FUZZ_DEBUG"):
            import traceback
            traceback.print_exc()
        rep["failure"] = "%s: %s (after the frame %r)" % (type(e).__name__, e,
                                                           _shown(s.history[-1]) if s and s.history else None)
    finally:
        try:
            fw.stop()
        finally:
            csms.stop_thread()
            if s:
                s.close()
    if s:
        mem = [m for _, m in s.mem] or [0]
        settled = [m for label, m in s.mem if label == "settled"] or mem
        rep.update(frames=s.sent, fuzzed=s.fuzzed, results=s.results, codes=dict(sorted(s.codes.items())),
                   lenient=len(s.lenient), lenient_example=s.lenient[0] if s.lenient else None,
                   refused=len(s.refused), refused_example=s.refused[0] if s.refused else None,
                   too_complex=s.too_complex, memory_closes=s.memory_closes, mem=mem,
                   # bounded: the settled heap at the end against the start; reported: the peak,
                   # and the growth from the first check after warm-up (what the first frames import
                   # on demand: the 2.0.1 device model, the certificate store)
                   growth=settled[-1] - mem[0], peak=max(mem) - mem[0], bound=MEM_BOUND,
                   growth_warm=settled[-1] - (mem[1] if len(mem) > 2 else mem[0]), problems=s.problems[:40], nproblems=len(s.problems))
        if rep["failure"] is None and s.problems:
            rep["failure"] = "%d problems" % len(s.problems)
        if rep["failure"] is None and rep["growth"] > MEM_BOUND:
            rep["failure"] = "heap grew by %d bytes, bound %d" % (rep["growth"], MEM_BOUND)
        if rep["failure"] is None:
            bad = [v for v in csms.violations if not (isinstance(v[0], list) and v[0][:1] == [3])]
            if bad:  # (the CSMS's own bookkeeping cannot follow the ids the fuzz reuses: its answers were judged)
                rep["failure"] = "the firmware sent invalid frames: %s" % bad[:5]
        if rep["failure"] is None and csms.connections != 3 + s.memory_closes:
            rep["failure"] = "reconnects besides the two expected: %d connections" % csms.connections
    crashed = [ln for ln in fw.lines if "Traceback" in ln]
    if crashed and rep["failure"] is None:
        rep["failure"] = "the firmware printed a traceback:\n" + "\n".join(fw.lines[-60:])
    rep["wall"] = time.time() - t_start
    return rep


def _fuzz(s, fuzz_seed, examples, rep):
    proto = s.proto
    t0 = time.time()
    logging.getLogger("csms").setLevel(logging.CRITICAL)  # its checks of answers to ids the fuzz reuses
    s.memory("start")
    last = {"id": None}
    n = [0]  # examples pushed
    every = 500

    @seed(fuzz_seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(frame=frames(proto, frozenset(s.supported)), repeat=st.booleans())
    def one(frame, repeat):
        try:
            _one(frame, repeat)
        except Fatal:
            raise
        except Exception as e:  # not a hypothesis failure to shrink: the session is what failed
            raise Fatal("%s: %s (after the frame %r)" % (type(e).__name__, e, _shown(s.history[-1]) if s.history
                                                           else None))

    def _one(frame, repeat):
        data, binary, value = frame
        if binary:
            outcomes = [NOTHING]
        elif value is LENIENT:
            outcomes = s.outcomes_of_text(data)
        else:
            if repeat and last["id"] is not None and isinstance(value, list) and len(value) == 4 and value[0] == 2:
                value[1] = last["id"]  # a message id used before
                data = json.dumps(value, ensure_ascii=False)
            outcomes = [s.outcome(value)]
        if len(data.encode() if isinstance(data, str) else data) > MAX_MESSAGE - 100:
            return
        s.push(data, binary, outcomes)
        if not binary and value is not LENIENT:
            s.played.append((data, binary, value))
        if isinstance(value, list) and len(value) > 1 and isinstance(value[1], str):
            last["id"] = value[1]
        n[0] += 1
        if n[0] % every == 0:
            s.flush()
            s.memory("after %d frames" % s.sent)

    s.fuzzing = True
    with warnings.catch_warnings():
        # the dev CSMS's websockets pings (random payloads) from its own thread while hypothesis draws
        warnings.filterwarnings("ignore", "Do not use the `random` module inside strategies")
        one()
    s.flush()
    s.fuzzing = False
    rep["fuzz_time"] = time.time() - t0
    rep["frames_per_s"] = s.sent / rep["fuzz_time"] if rep["fuzz_time"] else 0


def _fixed_and_burst(s, rep):
    csms = s.csms
    fixed = fixed_frames(s.proto)
    for text in fixed:
        s.push(text, False, s.outcomes_of_text(text))
        s.flush()  # one at a time: a "too complex" line in the log is then this frame's
    for data in (b'[2,"bin-1","GetConfiguration",{}]', b"\x00\xff\xfe binary garbage"):
        s.push(data, True, [NOTHING])
    s.flush()
    # One message in fragments (RFC 6455 §5.4), and garbage in fragments.
    n0 = len(csms.frames)
    s._write([(['[2,"frag-1",', '"%s",' % s.proto.sync_call[0], json.dumps(s.proto.sync_call[1]), "]"], False),
              (["[2,", '"frag-2"', "]]]"], False)])
    s.sync()
    answers = [m for m in s._answers(n0) if m[1] in ("frag-1", "frag-2", "-1")]
    want = [[3, "frag-1"]] + ([[4, "-1"]] if s.proto.v201 else [])
    if [a[:2] for a in answers] != want:
        s.problems.append("fragmented messages answered %s, expected %s" % (answers, want))
    rep["fixed"] = len(fixed) + 4
    s.alive()

    # A burst: the last fuzzed frames again, back to back without markers, every CALL with a fresh id.
    burst = []
    for i, (data, binary, value) in enumerate(s.played[-400:]):
        if isinstance(value, list) and len(value) > 1 and isinstance(value[1], str) and value[1] != "-1":
            value = list(value)
            value[1] = ("b%d-" % i).ljust(40 if len(value[1]) > 36 else 0, "x")
            data = json.dumps(value, ensure_ascii=False)
        burst.append((data, binary, s.outcome(value)))
    n0 = len(csms.frames)
    t_burst = time.time()
    ok = s._write([(d, b) for d, b, _ in burst])
    s.sync()
    rep["burst"] = sum(ok)
    rep["burst_time"] = time.time() - t_burst
    got = [m[1] for m in s._answers(n0)]
    wanted = [w[0] for (_, _, w), sent in zip(burst, ok) if sent and w is not NOTHING]
    if got != wanted:
        s.problems.append("burst of %d frames: %d answers for %d expected (missing %s, extra %s)" % (
            len(burst), len(got), len(wanted), [x for x in wanted if x not in got][:10],
            [x for x in got if x not in wanted][:10]))
    s.alive()
    s.memory("end of fuzzing")
    # What the last frames left running (a report, security events) ends within seconds:
    # the heap is measured again until it stops falling, and that figure is bounded.
    prev = s.mem[-1][1]
    for i in range(6):
        time.sleep(2)
        n = s.memory("settled")
        if n >= prev:
            break
        prev = n
    s.sync()


def _closes(s, rep):
    # ---- frames that must end the connection (RFC 6455 §7.4.1) ----
    csms = s.csms
    closes = []
    for label, data, code in (("invalid UTF-8", b'[2,"u-1","Heartbeat",{"x":"\xc3\x28\xff"}]', 1007),
                              ("oversized", ('[2,"o-1","DataTransfer",{"vendorId":"mpocpp","data":"%s"}]'
                                             % ("z" * (MAX_MESSAGE + 4000))).encode(), 1009)):
        conn = csms.handlers[CP]._connection.conn
        conns = csms.connections
        s._write([(data, False)])
        csms.wait_for(lambda: conn.state.name == "CLOSED", 10, "the firmware closing after the %s frame" % label)
        closes.append((label, conn.close_code))
        csms.wait_for(lambda: csms.connections > conns and CP in csms.handlers, 30, "a reconnect after " + label)
        s.sync()
        s.alive()
        if conn.close_code != code:
            s.problems.append("%s frame: connection closed with %s, expected %d" % (label, conn.close_code, code))
    rep["closes"] = closes
    s.sync()
    s.alive()


# ---- reports and the parallel run ----------------------------------------------------------------

def replay_command(proto, fuzz_seed, examples):
    return "make fuzz OCPP=%s SEEDS=1 SEED=%d EXAMPLES=%d" % (proto, fuzz_seed, examples)


def describe(r):
    """One shard's report as text."""
    lines = ["fuzz %s seed %d: %s" % (r["proto"], r["seed"], "PASSED" if r["failure"] is None else "FAILED")]
    if "frames" in r:
        lines.append(
            "  %d frames sent (%d fuzzed from %d hypothesis examples in %.0f s, %.1f frames/s, batch %d; %d fixed; "
            "a burst of %d in %.1f s; 2 closing %s)" % (
                r["frames"], r["fuzzed"], r["examples"], r.get("fuzz_time", 0), r.get("frames_per_s", 0), r["batch"],
                r.get("fixed", 0), r.get("burst", 0), r.get("burst_time", 0), r.get("closes")))
        lines.append("  answers: %d CALLRESULTs, CALLERRORs %s" % (r["results"], r["codes"]))
        lines.append("  lenient (not-JSON frames MicroPython's json read and the firmware acted on): %d%s" % (
            r["lenient"], " (e.g. %r -> %s)" % (r["lenient_example"][0][:120], r["lenient_example"][1][0][:3])
            if r["lenient_example"] else ""))
        lines.append("  kept back by the guard: %d%s; dropped as too complex for the heap: %d; closed (1009) as too "
                     "big for the heap: %d" % (r["refused"], " (e.g. %r: %s)" % (r["refused_example"][0][:100],
                                                                                   r["refused_example"][1])
                                               if r["refused_example"] else "", r["too_complex"], r["memory_closes"]))
        lines.append("  heap in use: %s bytes (growth at the end, settled: %d, bound %d; %d since the check after the "
                     "first 500 examples; peak %d)" % (" -> ".join("%d" % m for m in r["mem"]), r["growth"], r["bound"],
                                                        r["growth_warm"], r["peak"]))
    lines.append("  wall %.0f s; replay: %s" % (r.get("wall", 0), r["replay"]))
    if r["failure"]:
        lines.append("  FAILURE: " + r["failure"])
        for p in r.get("problems", [])[:20]:
            lines.append("  - " + p[:600])
    return "\n".join(lines)


def combined(reports, wall):
    lines = ["", "==== make fuzz: %d shards, wall time %.0f s ====" % (len(reports), wall)]
    for r in reports:
        lines.append(describe(r))
    total = {}
    for proto in ("1.6", "2.0.1"):
        rs = [r for r in reports if r["proto"] == proto]
        if not rs:
            continue
        codes = {}
        for r in rs:
            for k, v in r.get("codes", {}).items():
                codes[k] = codes.get(k, 0) + v
        fz = sum(r.get("fuzz_time", 0) for r in rs)
        total[proto] = sum(r.get("frames", 0) for r in rs)
        lines.append("OCPP %s: %d frames over %d seeds (%s); %d CALLRESULTs; CALLERRORs %s; lenient %d; kept back %d; "
                     "heap growth per shard (settled at the end, from start / after warm-up) %s (bound %d); %.1f frames/s per shard" % (
                         proto, total[proto], len(rs), ", ".join(str(r["seed"]) for r in rs),
                         sum(r.get("results", 0) for r in rs), dict(sorted(codes.items())),
                         sum(r.get("lenient", 0) for r in rs), sum(r.get("refused", 0) for r in rs),
                         ["%s/%s" % (r.get("growth"), r.get("growth_warm")) for r in rs], MEM_BOUND,
                         sum(r.get("frames", 0) for r in rs) / fz if fz else 0))
    failed = [r for r in reports if r["failure"] is not None]
    lines.append("TOTAL: %d frames (%s); %d of %d shards failed%s" % (
        sum(total.values()), ", ".join("%s %d" % kv for kv in total.items()), len(failed), len(reports),
        "".join("\n  replay: " + r["replay"] for r in failed)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="the fuzz at scale: every seed over both protocols, in parallel")
    ap.add_argument("--seeds", type=int, default=10, help="how many seeds (SEED, SEED+1, ...)")
    ap.add_argument("--seed", type=int, default=20261123, help="the first seed")
    ap.add_argument("--examples", type=int, default=5000, help="hypothesis examples per shard")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--proto", "--ocpp", default="1.6,2.0.1", help="1.6, 2.0.1 or both (1.6,2.0.1)")
    ap.add_argument("--shard", nargs=2, metavar=("PROTO", "SEED"), help="run one shard in this process")
    ap.add_argument("--out", help="(--shard) write its report here as JSON")
    a = ap.parse_args()
    if a.shard:
        with tempfile.TemporaryDirectory(prefix="fuzz-") as work:
            r = run_shard(a.shard[0], int(a.shard[1]), a.examples, work)
        if a.out:
            Path(a.out).write_text(json.dumps(r))
        print(describe(r), flush=True)
        return 0 if r["failure"] is None else 1
    shards = [(p, a.seed + i) for i in range(a.seeds) for p in a.proto.split(",")]
    t0 = time.time()
    running, reports = [], []
    outdir = Path(tempfile.mkdtemp(prefix="fuzz-reports-"))
    while shards or running:
        while shards and len(running) < a.jobs:
            p, sd = shards.pop(0)
            out = outdir / ("%s-%d.json" % (p, sd))
            with open(out.with_suffix(".log"), "w") as log:  # (its own report is in the combined one)
                proc = subprocess.Popen([sys.executable, __file__, "--shard", p, str(sd), "--examples",
                                         str(a.examples), "--out", str(out)], cwd=ROOT, stdout=log, stderr=log)
            print("shard %s seed %d started (log: %s)" % (p, sd, out.with_suffix(".log")), flush=True)
            running.append((proc, p, sd, out))
        time.sleep(0.5)
        for item in list(running):
            proc, p, sd, out = item
            if proc.poll() is not None:
                running.remove(item)
                try:
                    reports.append(json.loads(out.read_text()))
                    print("shard %s seed %d: %s" % (p, sd, "passed" if reports[-1]["failure"] is None else "FAILED"),
                          flush=True)
                except (OSError, ValueError):
                    reports.append({"proto": p, "seed": sd, "examples": a.examples, "failure":
                                    "the shard process ended (%d) without a report" % proc.returncode,
                                    "replay": replay_command(p, sd, a.examples)})
    reports.sort(key=lambda r: (r["proto"], r["seed"]))
    text = combined(reports, time.time() - t0)
    print(text)
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "fuzz.json").write_text(json.dumps(reports, indent=1))
    (ROOT / "build" / "fuzz.txt").write_text(text + "\n")
    return 0 if all(r["failure"] is None for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
