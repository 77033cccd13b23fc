# MicroPython side of host_tests/test_schedule.py: reads a JSON list of
# operations from standard input and prints one JSON list with the answers.
#   ["composite", profiles, connector, start, duration, unit, tx_start, tx_id, rating, phases]
#       -> [[offset, limit, phases], ...]
#   ["now", profiles, connector, now, tx_start, tx_id, rating, phases] -> [amps, phases, seconds or None]
#   ["ocpp", chargingProfile, connector, now] -> the Profile's fields as a dict, or {"error": reason}
# A profile is a dict of schedule.Profile's keyword arguments. An operation
# that raises answers ["raised", "<exception>"].
import sys
import json
import schedule

_FIELDS = ("id", "connector", "purpose", "stack", "kind", "unit", "periods", "recur", "valid_from", "valid_to",
           "start", "duration", "min_rate", "tx_id")


def profile(d):
    d = dict(d)
    d["periods"] = [(o, float(lim), n) for o, lim, n in d["periods"]]
    return schedule.Profile(**d)


def run(op):
    kind = op[0]
    if kind == "composite":
        ps = [profile(d) for d in op[1]]
        return schedule.composite(ps, op[2], op[3], op[4], op[5], op[6], op[7], op[8], op[9])
    if kind == "now":
        ps = [profile(d) for d in op[1]]
        return schedule.limit_now(ps, op[2], op[3], op[4], op[5], op[6], op[7])
    try:
        p = schedule.from_ocpp16(op[1], op[2], op[3])
    except ValueError as e:
        return {"error": str(e)}
    return dict((k, getattr(p, k)) for k in _FIELDS)


out = []
for op in json.loads(sys.stdin.read()):
    try:
        out.append(run(op))
    except Exception as e:
        out.append(["raised", repr(e)])
print(json.dumps(out))
