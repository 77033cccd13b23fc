# MicroPython side of host_tests/test_storage.py (clock): reads a JSON list of
# cases from standard input, ["p", string] (parse) or ["i", seconds] (iso),
# and prints one JSON list with the answers: for "p" [parse(s), iso(parse(s))]
# (iso only when parse succeeded), for "i" iso(t).
import sys
import json
import clock

out = []
for kind, arg in json.loads(sys.stdin.read()):
    if kind == "p":
        t = clock.parse(arg)
        out.append([t, None if t is None else clock.iso(t)])
    else:
        out.append(clock.iso(arg))
print(json.dumps(out))
