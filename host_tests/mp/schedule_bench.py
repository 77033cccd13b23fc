# Times schedule.composite() over a two-day window with 4 Recurring Daily
# profiles of 24 periods each (the GetCompositeSchedule budget: < 50 ms on the
# unix port) and limit_now(); prints one JSON line: the best and median of
# `runs` calls in ms, the breakpoints found, and the heap allocated by one
# composite() call (gc.mem_alloc delta, collection disabled).
import gc
import json
import sys
import time
import schedule as S

T0 = 1767225600  # 2026-01-01T00:00:00Z
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20


def profiles():
    ps = []
    # a ChargePointMaxProfile, two TxDefaultProfiles (connector 0 and 1) and a TxProfile,
    # each Daily with 24 hourly periods, starting at different times of day
    spec = ((S.MAX, 0, 0, "W", 0), (S.TX_DEFAULT, 0, 0, "A", 900), (S.TX_DEFAULT, 1, 1, "A", 1800),
            (S.TX, 1, 2, "A", 2700))
    for i, (pu, conn, stack, unit, shift) in enumerate(spec):
        per = []
        for h in range(24):
            lim = (6 + (h * 7 + i * 5) % 26) * (230 * 3 if unit == "W" else 1)
            per.append((h * 3600, float(lim), 3 if h % 3 else 1))
        ps.append(S.Profile(i + 1, conn, pu, stack, S.RECURRING, unit, per, recur=S.DAILY,
                            start=T0 - 30 * 86400 + shift))
    return ps


ps = profiles()
args = (ps, 1, T0 + 12345, 2 * 86400)
kw = {"tx_start": T0 + 1000, "tx_id": 7}
res = S.composite(*args, **kw)
gc.collect()
gc.disable()
m0 = gc.mem_alloc()
S.composite(*args, **kw)
mem = gc.mem_alloc() - m0
gc.enable()
ts = []
for _ in range(runs):
    gc.collect()
    t = time.ticks_us()
    S.composite(*args, **kw)
    ts.append(time.ticks_diff(time.ticks_us(), t))
ts.sort()
ln = []
for _ in range(runs):
    t = time.ticks_us()
    S.limit_now(ps, 1, T0 + 12345, **kw)
    ln.append(time.ticks_diff(time.ticks_us(), t))
ln.sort()
print(json.dumps({"composite_ms_best": ts[0] / 1000, "composite_ms_median": ts[len(ts) // 2] / 1000,
                  "periods": len(res), "composite_alloc_bytes": mem,
                  "limit_now_ms_median": ln[len(ln) // 2] / 1000}))
