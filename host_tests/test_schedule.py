"""Charging limits from charging profiles (firmware/schedule.py), on the MicroPython unix port.

The property tests hold the module against a reference model written here from the rules (OCPP 1.6
§3.13 with the errata, and the choices listed at the top of schedule.py): a plain evaluation of one
second at a time, in exact fractions. The module runs on the unix port through host_tests/mp/
schedule_cases.py (many cases per process); the same cases also run on CPython, which is faster.
"""
import importlib
import json
import os
import subprocess
import sys
from fractions import Fraction
from math import floor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
MP = str(Path(sys.executable).parent / "micropython")
ENV = dict(os.environ, MICROPYPATH=":".join(str(ROOT / d) for d in ("firmware", "lib", ".frozen")))

MAX, TX_DEFAULT, TX = 0, 1, 2
ABSOLUTE, RECURRING, RELATIVE = 0, 1, 2
DAILY, WEEKLY = 86400, 604800
T0 = 1767225600 + 3 * DAILY + 4321  # 2026-01-04T01:12:01Z
# hypothesis examples: batches of 25 cases on the unix port, 40x as many single cases on CPython
EXAMPLES = int(os.environ.get("SCHEDULE_EXAMPLES", "10"))


def _cpython_schedule():
    # firmware/schedule.py on CPython; it imports clock and log, which are kept out of sys.modules
    saved = {k: sys.modules.pop(k) for k in ("schedule", "clock", "log") if k in sys.modules}
    sys.path.insert(0, str(ROOT / "firmware"))
    try:
        return importlib.import_module("schedule")
    finally:
        sys.path.remove(str(ROOT / "firmware"))
        for k in ("schedule", "clock", "log"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)


SCHED = _cpython_schedule()


def run_mp(ops):
    r = subprocess.run([MP, "host_tests/mp/schedule_cases.py"], input=json.dumps(ops), capture_output=True,
                       text=True, env=ENV, cwd=ROOT, timeout=60)
    assert r.returncode == 0, "micropython failed:\n" + r.stdout + r.stderr
    return json.loads(r.stdout)


def run_cpython(ops):
    out = []
    for op in ops:
        if op[0] == "composite":
            ps = [SCHED.Profile(**d) for d in op[1]]
            out.append([list(x) for x in SCHED.composite(ps, *op[2:])])
        elif op[0] == "now":
            ps = [SCHED.Profile(**d) for d in op[1]]
            out.append(list(SCHED.limit_now(ps, *op[2:])))
    return out


def prof(id, connector, purpose, stack, kind, unit, periods, **kw):
    d = dict(id=id, connector=connector, purpose=purpose, stack=stack, kind=kind, unit=unit,
             periods=[list(p) if len(p) == 3 else [p[0], p[1], None] for p in periods])
    d.update(kw)
    return d


def composite(profiles, connector, start, duration, unit="A", tx_start=None, tx_id=None, rating=32.0, phases=3):
    r = run_mp([["composite", profiles, connector, start, duration, unit, tx_start, tx_id, rating, phases]])[0]
    return [tuple(x) for x in r]


def limit_now(profiles, connector, now, tx_start=None, tx_id=None, rating=32.0, phases=3):
    return tuple(run_mp([["now", profiles, connector, now, tx_start, tx_id, rating, phases]])[0])


# ---- the reference model -------------------------------------------------------------------------


class Reference:
    """The limit on one connector at one second, from the rules, knowing nothing of breakpoints."""

    def __init__(self, profiles, connector, tx_start, tx_id, rating, phases, unit):
        self.ps = profiles
        self.conn = connector
        self.tx_start = tx_start
        self.tx_id = tx_id
        self.rating = Fraction(rating)
        self.phases = phases
        self.unit = unit
        # per profile and period: the limit in A per phase (exact) and the phases
        self.lims = [[self.amps(p, q) for q in p["periods"]] for p in profiles]
        self.applies = [self.counts(p) for p in profiles]

    def amps(self, p, q):
        n = q[2] or self.phases
        lim = Fraction(q[1])
        return (lim if p["unit"] == "A" else lim / (230 * n)), n

    def counts(self, p):
        if p["purpose"] == MAX:
            return p["connector"] == 0
        if p["purpose"] == TX:
            return (p["connector"] == self.conn and self.tx_start is not None
                    and (p.get("tx_id") is None or p["tx_id"] == self.tx_id))
        if p["connector"] == self.conn:
            return True
        if p["connector"] != 0:
            return False
        # the connector's own TxDefaultProfile at this stack level replaces this one
        return not any(q["purpose"] == TX_DEFAULT and q["connector"] == self.conn and q["stack"] == p["stack"]
                       for q in self.ps if self.conn != 0)

    def limit(self, i, t, anchor):
        """Profile i's (A, phases) at second t, None if it does not limit then."""
        p = self.ps[i]
        if p.get("valid_from") is not None and t < p["valid_from"]:
            return None
        if p.get("valid_to") is not None and t >= p["valid_to"]:
            return None
        if p["purpose"] == TX and t < self.tx_start:
            return None
        start = None if p["kind"] == RELATIVE else p.get("start")
        if start is None:
            start = self.tx_start if self.tx_start is not None else (t if anchor is None else anchor)
        if t < start:
            return None
        off = t - start
        if p["kind"] == RECURRING:
            off %= p["recur"]
        if p.get("duration") is not None and off >= p["duration"]:
            return None
        found = None
        for k, q in enumerate(p["periods"]):
            if q[0] <= off:
                found = self.lims[i][k]
        return found

    def at(self, t, anchor):
        """(exact limit in the unit, phases) at t; anchor None: Relative schedules restart at t."""
        best = {}
        for i, p in enumerate(self.ps):
            if not self.applies[i]:
                continue
            v = self.limit(i, t, anchor)
            if v is None:
                continue
            key = (-p["stack"], v[0], v[1])
            pu = p["purpose"]
            if pu not in best or key < best[pu]:
                best[pu] = key
        cands = [(self.rating, self.phases)]
        tx = best.get(TX) or best.get(TX_DEFAULT)
        for b in (tx, best.get(MAX)):
            if b:
                cands.append((b[1], b[2]))
        a, n = min(cands)
        return (a * 230 * n if self.unit == "W" else a), n

    def candidates(self, lo, hi, anchors):
        """Every second in [lo, hi) where the limit may step, by brute enumeration."""
        ts = {lo}
        for p in self.ps:
            ts.update(x for x in (p.get("valid_from"), p.get("valid_to"), self.tx_start) if x is not None)
            starts = {x for x in (p.get("start"), self.tx_start) + tuple(anchors) if x is not None}
            for s in starts:
                r = p.get("recur") if p["kind"] == RECURRING else None
                ks = range(max(0, (lo - s) // r - 1), max(0, (hi - s) // r + 2)) if r else (0,)
                for k in ks:
                    c = s + k * (r or 0)
                    ts.update(c + q[0] for q in p["periods"])
                    ts.update(c + x for x in (p.get("duration"), r) if x is not None)
                    ts.add(c)
        return sorted(x for x in ts if lo <= x < hi)


def rounded(x):
    # down to 0.1 after adding a millionth (float noise)
    return Fraction(floor(x * 10 * (1 + Fraction(1, 10 ** 6))), 10)


def same_limit(got, exact):
    want = rounded(exact)
    if abs(got - float(want)) < 1e-6:
        return True
    # float noise right at a rounding boundary may move the module's result by a tenth
    x = exact * 10 * (1 + Fraction(1, 10 ** 6))
    return abs(x - round(x)) < Fraction(1, 10 ** 6) and abs(got - float(want)) < 0.1 + 1e-6


def check_composite(case, got, rng):
    profiles, conn, start, duration, unit, tx_start, tx_id, rating, phases = case[1:]
    ref = Reference(profiles, conn, tx_start, tx_id, rating, phases, unit)
    why = "case %s\ngot %s" % (json.dumps(case), got)
    assert got and got[0][0] == 0, why
    for a, b in zip(got, got[1:]):
        assert a[0] < b[0] < max(duration, 1), why
        assert (a[1], a[2]) != (b[1], b[2]), "adjacent periods not merged\n" + why
    end = start + max(duration, 1)
    if duration <= 1800:
        points = range(start, end)
    else:
        pts = set(ref.candidates(start, end, (start,)))
        pts.update(start + x for g in got for x in (g[0] - 1, g[0]) if x >= 0)
        pts.update(rng.randrange(start, end) for _ in range(200))
        points = sorted(pts)
    j = 0
    seen = set()
    for t in points:
        while j + 1 < len(got) and got[j + 1][0] <= t - start:
            j += 1
        want, n = ref.at(t, start)
        if (j, want, n) in seen:
            continue
        seen.add((j, want, n))
        assert got[j][2] == n and same_limit(got[j][1], want), "at %d (+%d): got %s, want %s A/W %s phases\n%s" % (
            t, t - start, got[j], float(rounded(want)), n, why)


def check_now(case, got):
    profiles, conn, now, tx_start, tx_id, rating, phases = case[1:]
    ref = Reference(profiles, conn, tx_start, tx_id, rating, phases, "A")
    why = "case %s\ngot %s" % (json.dumps(case), got)
    want, n = ref.at(now, None)
    assert got[1] == n and same_limit(got[0], want), why
    # the next change: the first candidate second whose limit differs; none after every fixed time
    # plus two whole weeks (all recurrences are then repeating)
    fixed = [now] + [x for p in profiles for x in (p.get("valid_from"), p.get("valid_to"), p.get("start"))
                     if x is not None] + ([tx_start] if tx_start is not None else [])
    horizon = max(fixed) + 10 * DAILY + 2 * WEEKLY
    v0 = (rounded(want), n)
    change = None
    for t in ref.candidates(now + 1, horizon, ()):
        v, m = ref.at(t, None)
        if (rounded(v), m) != v0:
            change = t - now
            break
    assert got[2] == change, "next change: got %s, want %s\n%s" % (got[2], change, why)


# ---- random cases ---------------------------------------------------------------------------------

# Each choice lists its most telling value first: hypothesis starts from first choices.
# The limits meet often: 16 A = 3680 W on 1 phase = 7360 W on 2 = 11040 W on 3, 6 A = 1380 W on 1 phase.
LIMITS = {"A": [10.0, 16.0, 0.0, 6.0, 13.5, 16.0, 32.0, 40.0],
          "W": [4140.0, 3680.0, 11040.0, 7360.0, 0.0, 1380.0, 11000.0, 22080.0, 30000.0]}


def one_in(draw, k):
    return draw(st.integers(1, k)) == k


@st.composite
def a_profile(draw, pid, u, conn):
    purpose = draw(st.sampled_from([TX_DEFAULT, MAX, TX]))
    if not one_in(draw, 10):
        connector = 0 if purpose == MAX else draw(st.sampled_from([conn or 1, conn or 1, conn or 1, 1, 2])) \
            if purpose == TX else draw(st.sampled_from([0, 0, conn, 1, 2]))
    else:  # one that cannot apply (ChargePointMax on a connector, Tx on 0), or another connector
        connector = draw(st.integers(0, 2))
    kind = draw(st.sampled_from([ABSOLUTE, RECURRING, RELATIVE]))
    unit = draw(st.sampled_from("AW"))
    n = draw(st.integers(1, 5))
    offs = [draw(st.integers(1, 10)) * u if one_in(draw, 8) else 0]
    for _ in range(n - 1):
        offs.append(offs[-1] + draw(st.integers(1, 24)) * u + draw(st.sampled_from([0, 0, 1, 17])))
    periods = [[o, draw(st.sampled_from(LIMITS[unit])), draw(st.sampled_from([None, None, 1, 2, 3]))] for o in offs]
    d = prof(pid, connector, purpose, draw(st.sampled_from([1, 0, 1, 2, 3])), kind, unit, periods)
    if kind == RECURRING:
        d["recur"] = r = draw(st.sampled_from([DAILY, DAILY, WEEKLY]))
        start = T0 + draw(st.integers(-30, 30)) * u - draw(st.sampled_from([1, 0, 2, 5])) * r
    else:
        start = T0 + draw(st.integers(-40, 30)) * u
    d["start"] = None if one_in(draw, 8) else start
    d["duration"] = draw(st.one_of(st.none(), st.integers(0, 48).map(lambda k: k * u),
                                   st.just(d.get("recur") or 3 * u)))
    if one_in(draw, 3):
        d["valid_from"] = T0 + draw(st.integers(-20, 30)) * u + draw(st.integers(0, 3))
    if one_in(draw, 3):
        d["valid_to"] = (d.get("valid_from") or T0) + draw(st.integers(-2, 40)) * u
    d["tx_id"] = draw(st.sampled_from([None, None, 7, 8]))
    d["min_rate"] = draw(st.sampled_from([None, 6.0]))
    return d


@st.composite
def a_case(draw):
    u = draw(st.sampled_from([60, 60, 3600]))  # the time scale: minutes (short windows) or hours
    conn = draw(st.sampled_from([1, 0, 1, 2]))
    profiles = [draw(a_profile(i + 1, u, conn)) for i in range(draw(st.sampled_from([3, 0, 1, 2, 4, 5, 6])))]
    tx_start = None if one_in(draw, 4) else T0 + draw(st.integers(-40, 10)) * u
    tx_id = draw(st.sampled_from([7, 8]))
    rating = draw(st.sampled_from([32.0, 32.0, 32.0, 16.0, 6.0]))
    phases = draw(st.sampled_from([3, 1, 2, 3]))
    unit = draw(st.sampled_from("AW"))
    start = T0 + draw(st.integers(-10, 10)) * u + draw(st.integers(0, 59))
    if u == 60:
        duration = draw(st.one_of(st.integers(600, 1800), st.integers(1800, 6 * 3600), st.integers(1, 600)))
    else:
        duration = draw(st.integers(1, 2 * DAILY))
    if one_in(draw, 30):
        duration = 0
    nows = [start, start + draw(st.integers(0, max(duration, 1)))]
    return ([["composite", profiles, conn, start, duration, unit, tx_start, tx_id, rating, phases]]
            + [["now", profiles, conn, t, tx_start, tx_id, rating, phases] for t in nows])


def check(ops, results, seed):
    import random

    rng = random.Random(seed)
    assert len(results) == len(ops)
    for op, got in zip(ops, results):
        assert not (isinstance(got, list) and got and got[0] == "raised"), "raised %s on %s" % (got, json.dumps(op))
        if op[0] == "composite":
            check_composite(op, [tuple(x) for x in got], rng)
        else:
            check_now(op, got)


# No shrinking: every step would cost a micropython run; the assertion names the case.
@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(st.lists(a_case(), min_size=25, max_size=25), st.integers(0, 2 ** 32))
def test_module_on_unix_port_matches_reference(cases, seed):
    ops = [op for c in cases for op in c]
    check(ops, run_mp(ops), seed)


@settings(max_examples=EXAMPLES * 40, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(a_case(), st.integers(0, 2 ** 32))
def test_module_on_cpython_matches_reference(ops, seed):
    check(ops, run_cpython(ops), seed)


# ---- explicit cases (on the unix port) ------------------------------------------------------------

H = 3600


def txd(id, connector, stack, periods, **kw):
    kw.setdefault("start", T0)
    return prof(id, connector, TX_DEFAULT, stack, kw.pop("kind", ABSOLUTE), kw.pop("unit", "A"), periods, **kw)


def test_higher_stack_level_wins_and_falls_back_when_its_duration_ends():
    base = txd(1, 0, 0, [(0, 16.0)])
    top = txd(2, 0, 1, [(0, 10.0), (600, 8.0)], start=T0 + 600, duration=1200)
    assert composite([base, top], 1, T0, H) == [(0, 16.0, 3), (600, 10.0, 3), (1200, 8.0, 3), (1800, 16.0, 3)]
    # without a duration the top level never gives way (errata 3.7)
    top.pop("duration")
    assert composite([base, top], 1, T0, H) == [(0, 16.0, 3), (600, 10.0, 3), (1200, 8.0, 3)]


def test_valid_from_and_valid_to_bound_a_profile_mid_window():
    base = txd(1, 0, 0, [(0, 16.0)])
    top = txd(2, 0, 1, [(0, 10.0), (600, 8.0)], start=T0 + 600, valid_to=T0 + 900)
    later = txd(3, 0, 2, [(0, 6.0)], valid_from=T0 + 1500, valid_to=T0 + 2000)
    assert composite([base, top, later], 1, T0, H) == [
        (0, 16.0, 3), (600, 10.0, 3), (900, 16.0, 3), (1500, 6.0, 3), (2000, 16.0, 3)]


def test_connector_tx_default_replaces_connector_zero_one_of_the_same_stack_level_only():
    c0_low = txd(1, 0, 0, [(0, 6.0)])
    c0 = txd(2, 0, 1, [(0, 10.0)])
    c1 = txd(3, 1, 1, [(0, 20.0)], valid_from=T0 + 600)
    # connector 1: the connector-0 profile at stack level 1 is replaced even before c1 is valid
    assert composite([c0_low, c0, c1], 1, T0, H) == [(0, 6.0, 3), (600, 20.0, 3)]
    # connector 2 keeps the connector-0 profiles
    assert composite([c0_low, c0, c1], 2, T0, H) == [(0, 10.0, 3)]
    # at another stack level the connector-0 profile still counts
    c1["stack"] = 2
    assert composite([c0_low, c0, c1], 1, T0, H) == [(0, 10.0, 3), (600, 20.0, 3)]


def test_same_stack_level_the_lower_limit_then_fewer_phases():
    a = txd(1, 1, 1, [(0, 16.0)])
    w = txd(2, 1, 1, [(0, 3680.0, 1)], unit="W")  # 16 A on one phase
    assert composite([a, w], 1, T0, H) == [(0, 16.0, 1)]
    a["periods"] = [[0, 10.0, None]]
    assert composite([a, w], 1, T0, H) == [(0, 10.0, 3)]


def test_tx_profile_overrides_tx_default_while_active_then_falls_back():
    default = txd(1, 0, 3, [(0, 10.0)])
    tx = prof(2, 1, TX, 0, RELATIVE, "A", [(0, 20.0)], duration=1200)
    # higher than the default, yet it rules while its schedule lasts (from the transaction start)
    assert composite([default, tx], 1, T0 + 600, H, tx_start=T0, tx_id=5) == [(0, 20.0, 3), (600, 10.0, 3)]
    # no transaction: no TxProfile
    assert composite([default, tx], 1, T0 + 600, H) == [(0, 10.0, 3)]
    # another connector's transaction
    assert composite([default, tx], 2, T0 + 600, H, tx_start=T0, tx_id=5) == [(0, 10.0, 3)]


def test_tx_profile_counts_from_the_transaction_start():
    tx = prof(2, 1, TX, 0, ABSOLUTE, "A", [(0, 10.0)], start=T0)
    assert composite([tx], 1, T0, 1200, tx_start=T0 + 600, tx_id=5) == [(0, 32.0, 3), (600, 10.0, 3)]


def test_tx_profile_for_another_transaction_is_ignored():
    default = txd(1, 0, 0, [(0, 10.0)])
    tx = prof(2, 1, TX, 0, ABSOLUTE, "A", [(0, 6.0)], start=T0, tx_id=5)
    assert composite([default, tx], 1, T0, H, tx_start=T0, tx_id=6) == [(0, 10.0, 3)]
    assert composite([default, tx], 1, T0, H, tx_start=T0, tx_id=5) == [(0, 6.0, 3)]
    assert limit_now([default, tx], 1, T0, tx_start=T0, tx_id=6) == (10.0, 3, None)


def test_relative_schedule_counts_from_the_transaction_start_else_the_window_start():
    rel = txd(1, 0, 0, [(0, 6.0), (1800, 16.0)], kind=RELATIVE, start=None)
    assert composite([rel], 1, T0, H, tx_start=T0 - 600, tx_id=1) == [(0, 6.0, 3), (1200, 16.0, 3)]
    assert composite([rel], 1, T0, H) == [(0, 6.0, 3), (1800, 16.0, 3)]
    assert limit_now([rel], 1, T0, tx_start=T0 - 600, tx_id=1) == (6.0, 3, 1200)
    # without a transaction it restarts at every evaluation: the first period holds
    assert limit_now([rel], 1, T0) == (6.0, 3, None)


SPEC_EXAMPLE = {  # OCPP 1.6 §3.13.7: 6 kW from 08:00 to 20:00, else 11 kW, every day
    "chargingProfileId": 100, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Recurring", "recurrencyKind": "Daily",
    "chargingSchedule": {"duration": 86400, "startSchedule": "2013-01-01T00:00:00Z", "chargingRateUnit": "W",
                         "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000, "numberPhases": 3},
                                                    {"startPeriod": 28800, "limit": 6000, "numberPhases": 3},
                                                    {"startPeriod": 72000, "limit": 11000, "numberPhases": 3}]}}
MIDNIGHT = 1767225600  # 2026-01-01T00:00:00Z


def test_daily_recurrence_of_the_spec_example():
    p = run_mp([["ocpp", SPEC_EXAMPLE, 0, MIDNIGHT]])[0]
    assert p["recur"] == DAILY and p["start"] == 1356998400 and p["unit"] == "W"
    start = MIDNIGHT + 6 * H
    assert composite([p], 1, start, 2 * DAILY, "W") == [
        (0, 11000.0, 3), (2 * H, 6000.0, 3), (14 * H, 11000.0, 3), (26 * H, 6000.0, 3), (38 * H, 11000.0, 3)]
    # in A per phase, rounded down: 11000 W / 690 V = 15.94 A, 6000 W -> 8.69 A
    assert composite([p], 1, start, 2 * DAILY) == [
        (0, 15.9, 3), (2 * H, 8.6, 3), (14 * H, 15.9, 3), (26 * H, 8.6, 3), (38 * H, 15.9, 3)]
    assert limit_now([p], 1, start) == (15.9, 3, 2 * H)
    assert limit_now([p], 1, MIDNIGHT + 20 * H) == (15.9, 3, 12 * H)


def test_weekly_recurrence():
    p = txd(1, 0, 0, [(0, 10.0), (DAILY, 16.0)], kind=RECURRING, recur=WEEKLY, start=T0 - 2 * WEEKLY)
    assert composite([p], 1, T0 + 6 * DAILY, 2 * DAILY) == [(0, 16.0, 3), (DAILY, 10.0, 3)]
    assert limit_now([p], 1, T0 + 3 * DAILY) == (16.0, 3, 4 * DAILY)


def test_recurring_schedule_cut_at_the_recurrence_and_falls_back_after_its_duration():
    base = txd(1, 0, 0, [(0, 16.0)])
    long = txd(2, 0, 1, [(0, 10.0), (90000, 6.0)], kind=RECURRING, recur=DAILY)  # 90000 s: never reached
    assert composite([base, long], 1, T0, 2 * DAILY) == [(0, 10.0, 3)]
    short = txd(2, 0, 1, [(0, 10.0)], kind=RECURRING, recur=DAILY, duration=3 * H)  # errata 3.43
    assert composite([base, short], 1, T0, 2 * DAILY) == [
        (0, 10.0, 3), (3 * H, 16.0, 3), (DAILY, 10.0, 3), (DAILY + 3 * H, 16.0, 3)]
    over = txd(2, 0, 1, [(0, 10.0), (50000, 6.0)], kind=RECURRING, recur=DAILY, duration=100000)  # errata 3.44
    assert composite([base, over], 1, T0, 2 * DAILY) == [
        (0, 10.0, 3), (50000, 6.0, 3), (DAILY, 10.0, 3), (DAILY + 50000, 6.0, 3)]
    # not active before its first start
    later = txd(2, 0, 1, [(0, 10.0)], kind=RECURRING, recur=DAILY, start=T0 + 600)
    assert composite([base, later], 1, T0, H) == [(0, 16.0, 3), (600, 10.0, 3)]


def test_watts_and_amps_with_number_phases():
    one_phase = txd(1, 1, 0, [(0, 3680.0, 1)], unit="W")  # 16 A on one phase
    assert composite([one_phase], 1, T0, H) == [(0, 16.0, 1)]
    assert composite([one_phase], 1, T0, H, "W") == [(0, 3680.0, 1)]
    two = txd(1, 1, 0, [(0, 10.0, 2)])
    assert composite([two], 1, T0, H, "W") == [(0, 4600.0, 2)]
    # no numberPhases: the connector's phases (3 by default)
    w = txd(1, 1, 0, [(0, 3680.0)], unit="W")
    assert composite([w], 1, T0, H) == [(0, 5.3, 3)]
    assert composite([w], 1, T0, H, phases=1) == [(0, 16.0, 1)]
    # the minimum is taken in A per phase: 11 kW on 3 phases (15.9 A) is below 16 A on one phase
    mx = prof(9, 0, MAX, 0, ABSOLUTE, "W", [(0, 11000.0, 3)], start=T0)
    assert composite([mx, one_phase], 1, T0, H) == [(0, 15.9, 3)]
    assert composite([mx, one_phase], 1, T0, H, "W") == [(0, 11000.0, 3)]
    assert limit_now([mx, one_phase], 1, T0) == (15.9, 3, None)


def test_rating_caps_the_limit():
    high = txd(1, 0, 0, [(0, 40.0), (600, 10.0)])
    assert composite([high], 1, T0, H) == [(0, 32.0, 3), (600, 10.0, 3)]
    assert composite([high], 1, T0, H, rating=16.0, phases=1) == [(0, 16.0, 1), (600, 10.0, 1)]
    assert composite([], 1, T0, H, "W") == [(0, 22080.0, 3)]
    assert limit_now([], 1, T0) == (32.0, 3, None)


def test_charge_point_max_profile_limits_every_connector():
    mx = prof(1, 0, MAX, 0, ABSOLUTE, "A", [(0, 10.0)], start=T0)
    misplaced = prof(2, 1, MAX, 1, ABSOLUTE, "A", [(0, 6.0)], start=T0)  # not on connector 0: ignored
    default = txd(3, 0, 0, [(0, 16.0)])
    for c in (1, 2):
        assert composite([mx, misplaced, default], c, T0, H) == [(0, 10.0, 3)]


def test_first_period_later_than_the_start_leaves_the_schedule_inactive_until_then():
    p = txd(1, 0, 0, [(300, 10.0)])
    assert composite([p], 1, T0, H) == [(0, 32.0, 3), (300, 10.0, 3)]


def test_limit_now_times_the_next_change():
    p = txd(1, 0, 0, [(0, 16.0), (600, 10.0)], duration=1200)
    assert limit_now([p], 1, T0) == (16.0, 3, 600)
    assert limit_now([p], 1, T0 + 700) == (10.0, 3, 500)
    assert limit_now([p], 1, T0 + 1200) == (32.0, 3, None)
    # 24 equal hourly periods every day: no change until validTo, 300 days on
    flat = txd(2, 0, 0, [(h * H, 16.0, 3 if h % 2 else None) for h in range(24)], kind=RECURRING, recur=DAILY,
               start=T0 - 10 * DAILY, valid_to=T0 + 300 * DAILY + 123)
    assert limit_now([flat], 1, T0) == (16.0, 3, 300 * DAILY + 123)
    flat.pop("valid_to")
    assert limit_now([flat], 1, T0) == (16.0, 3, None)


def test_composite_of_no_duration_is_the_period_in_force():
    assert composite([txd(1, 0, 0, [(0, 10.0)])], 1, T0, 0) == [(0, 10.0, 3)]


def ocpp(profile=None, connector=1, **sched):
    p = {"chargingProfileId": 7, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
         "chargingProfileKind": "Absolute",
         "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}}
    p.update(profile or {})
    p["chargingSchedule"] = dict(p["chargingSchedule"], **sched)
    return ["ocpp", p, connector, T0]


def test_from_ocpp16_reads_a_profile():
    r = run_mp([
        ocpp(),
        ocpp({"chargingProfilePurpose": "TxProfile", "transactionId": 42, "validFrom": "2026-01-04T00:00:00Z",
              "validTo": "2026-01-05T00:00:00+01:00"}, duration=3600, minChargingRate=6,
             chargingSchedulePeriod=[{"startPeriod": 0, "limit": 10.5, "numberPhases": 1},
                                     {"startPeriod": 60, "limit": 0}]),
        ocpp({"chargingProfileKind": "Relative", "recurrencyKind": "Daily", "transactionId": 42},
             startSchedule="2026-01-01T00:00:00Z"),
        ocpp({"chargingProfilePurpose": "ChargePointMaxProfile", "chargingProfileKind": "Recurring",
              "recurrencyKind": "Weekly"}, 0, chargingRateUnit="W", startSchedule="2026-01-01T00:00:00Z"),
    ])
    assert r[0] == {"id": 7, "connector": 1, "purpose": TX_DEFAULT, "stack": 1, "kind": ABSOLUTE, "unit": "A",
                    "periods": [[0, 16.0, None]], "recur": None, "valid_from": None, "valid_to": None,
                    "start": T0, "duration": None, "min_rate": None, "tx_id": None}  # no startSchedule: installed now
    assert r[1]["purpose"] == TX and r[1]["tx_id"] == 42 and r[1]["duration"] == 3600 and r[1]["min_rate"] == 6.0
    assert r[1]["valid_from"] == MIDNIGHT + 3 * DAILY and r[1]["valid_to"] == MIDNIGHT + 4 * DAILY - H
    assert r[1]["periods"] == [[0, 10.5, 1], [60, 0.0, None]]
    # Relative: startSchedule and recurrencyKind do not apply; transactionId only for a TxProfile
    assert r[2]["kind"] == RELATIVE and r[2]["start"] is None and r[2]["recur"] is None and r[2]["tx_id"] is None
    assert r[3]["purpose"] == MAX and r[3]["recur"] == WEEKLY and r[3]["start"] == MIDNIGHT and r[3]["unit"] == "W"


REFUSALS = [
    (ocpp({"chargingProfileKind": "Recurring"}), "recurrencyKind"),
    (ocpp({"chargingProfileKind": "Recurring", "recurrencyKind": "Monthly"}), "recurrencyKind"),
    (ocpp(chargingSchedulePeriod=[{"startPeriod": 60, "limit": 16}]), "first startPeriod"),
    (ocpp(chargingSchedulePeriod=[{"startPeriod": 0, "limit": 16}, {"startPeriod": 600, "limit": 8},
                                  {"startPeriod": 300, "limit": 6}]), "ascending"),
    (ocpp(chargingSchedulePeriod=[{"startPeriod": 0, "limit": 16}, {"startPeriod": 0, "limit": 8}]), "ascending"),
    (ocpp(chargingSchedulePeriod=[]), "chargingSchedulePeriod"),
    (ocpp(chargingSchedulePeriod=[{"startPeriod": 0, "limit": -1}]), "limit"),
    (ocpp(chargingSchedulePeriod=[{"startPeriod": 0, "limit": 16, "numberPhases": 4}]), "numberPhases"),
    (ocpp(chargingRateUnit="kW"), "chargingRateUnit"),
    (ocpp(duration=-5), "duration"),
    (ocpp(startSchedule="yesterday"), "startSchedule"),
    (ocpp({"validFrom": "2026-01-05T00:00:00Z", "validTo": "2026-01-04T00:00:00Z"}), "validTo"),
    (ocpp({"chargingProfilePurpose": "ChargePointMaxProfile"}, 1), "connector 0"),
    (ocpp({"chargingProfilePurpose": "TxProfile"}, 0), "connector 0"),
    (ocpp({"chargingProfilePurpose": "TxProfile", "transactionId": "abc"}), "transactionId"),
    (ocpp({"chargingProfilePurpose": "Other"}), "chargingProfilePurpose"),
    (ocpp({"chargingProfileKind": "Sometimes"}), "chargingProfileKind"),
    (ocpp({"stackLevel": -1}), "stackLevel"),
    (ocpp({"stackLevel": True}), "stackLevel"),
    (ocpp(minChargingRate="fast"), "minChargingRate"),
    (["ocpp", {"chargingProfileId": 1}, 1, T0], "chargingSchedule"),
    (["ocpp", "not a profile", 1, T0], "chargingSchedule"),
]


def test_from_ocpp16_refuses_what_cannot_be_evaluated():
    got = run_mp([op for op, _ in REFUSALS])
    for (op, word), r in zip(REFUSALS, got):
        assert "error" in r and word in r["error"], "%s -> %s" % (json.dumps(op), r)


def test_two_day_composite_of_four_daily_profiles_is_fast():
    # Not a unit test of speed (the machine is shared): it prints the figure and only catches a blunder.
    r = subprocess.run([MP, "host_tests/mp/schedule_bench.py", "20"], capture_output=True, text=True, env=ENV,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    fig = json.loads(r.stdout)
    print("two-day composite of 4 Daily profiles x 24 periods on the unix port:", fig)
    assert fig["periods"] > 48 and fig["composite_ms_median"] < 500


def test_periods_out_of_order_end_the_schedule_there():
    # from_ocpp16 refuses such; a Profile built otherwise must not hang the loop
    p = txd(1, 0, 0, [(0, 10.0), (600, 8.0), (300, 6.0), (900, 16.0)])
    assert composite([p], 1, T0, H) == [(0, 10.0, 3), (600, 8.0, 3)]
    assert limit_now([p], 1, T0 + 700) == (8.0, 3, None)
