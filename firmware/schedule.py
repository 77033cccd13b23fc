# Charging limits from charging profiles (OCPP 1.6 §3.13, §5.16, §7.8-7.14 and
# the errata v4; OCPP 2.0.1 profiles differ in names, not in the maths, so
# nothing here is version specific but from_ocpp16): the limit in force on a
# connector as a step function, computed from the profiles' breakpoints, never
# second by second. Times are Unix seconds; inside a computation they are
# counted from the window start and clamped to +-2**28 s (8.5 years) so that
# they stay small ints on 32-bit ports.
#
# Rules (§3.13.2, §3.13.3, errata 3.43, 3.44, 3.78): per purpose, of the
# profiles valid at a second (validFrom <= t < validTo) whose schedule is
# active then, the highest stackLevel wins; when its schedule or validity
# ends, the next lower one that is active takes over. An active TxProfile
# overrides the TxDefaultProfiles; the result is the minimum of the
# ChargePointMaxProfile's limit, that one and the connector's rating.
#
# Choices where the spec leaves one (what an operator expects):
# - A connector's own TxDefaultProfile replaces the connector-0 one of the
#   same stackLevel for that connector whenever it is installed, also while
#   it is not (yet, or any more) valid or active: a replacement, as installing
#   one with the same stackLevel is (§3.13.2 note: "revert to default behavior
#   until validFrom"). Other stack levels of connector 0 still count.
# - Two profiles of one purpose and stackLevel that both apply (installing
#   one replaces the other, so only a fallback): the lower limit wins, then
#   the one with fewer phases.
# - The common unit for the minimum is A per phase, what the control pilot
#   enforces: a limit in W counts as W / (230 V x numberPhases). numberPhases
#   absent: the connector's phases (3 unless told, as OCPP says). Equal
#   currents: the one with fewer phases wins. The result carries the phases of
#   the winning limit (the rating: the connector's phases); in W it is
#   A x 230 V x those phases.
# - Relative schedules (and an Absolute or Recurring one without a start, which
#   from_ocpp16 never makes) start at the transaction's start when one runs,
#   else at the window start: composite() shows what a session starting then
#   would get. limit_now() without a transaction restarts them at every
#   evaluation: their first period holds and their own steps are no changes.
# - TxProfiles count only on their own connector, only from tx_start on and,
#   when they carry a transactionId, only for that transaction.
# - Recurring: Daily/Weekly = every 86400/604800 s from startSchedule (errata
#   3.78: the same time of day/week), not active before startSchedule itself;
#   a period list or duration longer than the recurrence is cut there.
# - The ChargePointMaxProfile's limit applies in full to each connector;
#   sharing it among connectors is the caller's business. Profiles that
#   cannot apply (ChargePointMax on a connector > 0, Tx on connector 0) are
#   ignored here and refused by from_ocpp16.
# - Limits are rounded DOWN to 0.1 (never above what a profile allows: 6000 W
#   on 3 phases is 8.6 A), after adding a millionth of it so that float noise
#   (10999.9999 W, single-precision floats on the boards) does not cost a tenth.
# - minChargingRate is kept but does not change the limit.
# - from_ocpp16 ignores recurrencyKind unless Recurring (errata 3.56),
#   transactionId unless TxProfile, startSchedule of a Relative schedule; it
#   refuses validTo <= validFrom, numberPhases outside 1..3, negative limits.
# - composite() with duration <= 0 gives the one period in force at start.
#   limit_now()'s next change is the next second where the rounded current or
#   the phases differ (None: never, or more than 8.5 years away).
try:
    from micropython import const
except ImportError:  # CPython, for the fast tests

    def const(x):
        return x


import clock

MAX = 0
TX_DEFAULT = 1
TX = 2
ABSOLUTE = 0
RECURRING = 1
RELATIVE = 2
DAILY = 86400
WEEKLY = 604800
VOLTS = 230

_INF = const(0x10000000)  # 2**28 s: "open" in window-relative time
_NEVER = const(0x20000000)  # later than any breakpoint


class Profile:
    # periods: ((start_offset_s, limit, number_phases or None), ...), ascending
    # (what follows a period that does not ascend is not executed), in `unit`
    # ("A" per phase or "W" in all). recur: DAILY, WEEKLY or None.
    def __init__(self, id, connector, purpose, stack, kind, unit, periods, recur=None, valid_from=None,
                 valid_to=None, start=None, duration=None, min_rate=None, tx_id=None):
        self.id = id
        self.connector = connector
        self.purpose = purpose
        self.stack = stack
        self.kind = kind
        self.unit = unit
        self.periods = tuple(periods)
        self.recur = recur
        self.valid_from = valid_from
        self.valid_to = valid_to
        self.start = start
        self.duration = duration
        self.min_rate = min_rate
        self.tx_id = tx_id


_PURPOSES = {"ChargePointMaxProfile": MAX, "TxDefaultProfile": TX_DEFAULT, "TxProfile": TX}
_KINDS = {"Absolute": ABSOLUTE, "Recurring": RECURRING, "Relative": RELATIVE}
_RECUR = {"Daily": DAILY, "Weekly": WEEKLY}


def _int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x):
    return (isinstance(x, int) or isinstance(x, float)) and not isinstance(x, bool)


def _time(d, name):
    v = d.get(name)
    if v is None:
        return None
    t = clock.parse(v)
    if t is None:
        raise ValueError("%s is not a date-time" % name)
    return t


def from_ocpp16(p, connector, now):
    # An OCPP 1.6 chargingProfile (as in SetChargingProfile.req's
    # csChargingProfiles) installed on `connector` at Unix second `now` ->
    # Profile; ValueError(reason) for what cannot be evaluated.
    if not isinstance(p, dict) or not isinstance(p.get("chargingSchedule"), dict):
        raise ValueError("no chargingSchedule")
    s = p["chargingSchedule"]
    pid = p.get("chargingProfileId")
    if not _int(pid):
        raise ValueError("no chargingProfileId")
    stack = p.get("stackLevel")
    if not _int(stack) or stack < 0:
        raise ValueError("stackLevel must be an integer >= 0")
    purpose = _PURPOSES.get(p.get("chargingProfilePurpose"))
    if purpose is None:
        raise ValueError("unknown chargingProfilePurpose")
    if purpose == MAX and connector != 0:
        raise ValueError("ChargePointMaxProfile only on connector 0")
    if purpose == TX and connector == 0:
        raise ValueError("TxProfile not on connector 0")
    kind = _KINDS.get(p.get("chargingProfileKind"))
    if kind is None:
        raise ValueError("unknown chargingProfileKind")
    recur = None
    if kind == RECURRING:  # errata 3.56: recurrencyKind only with Recurring, ignored elsewhere
        recur = _RECUR.get(p.get("recurrencyKind"))
        if recur is None:
            raise ValueError("Recurring without a valid recurrencyKind")
    tx_id = p.get("transactionId") if purpose == TX else None
    if tx_id is not None and not _int(tx_id):
        raise ValueError("transactionId is not an integer")
    valid_from = _time(p, "validFrom")
    valid_to = _time(p, "validTo")
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise ValueError("validTo not after validFrom")
    unit = s.get("chargingRateUnit")
    if unit != "A" and unit != "W":
        raise ValueError("chargingRateUnit must be A or W")
    duration = s.get("duration")
    if duration is not None and (not _int(duration) or duration < 0):
        raise ValueError("duration must be an integer >= 0")
    start = None
    if kind != RELATIVE:  # a Relative schedule starts with the session whatever startSchedule says
        start = _time(s, "startSchedule")
        if start is None:
            start = now
    min_rate = s.get("minChargingRate")
    if min_rate is not None:
        if not _num(min_rate) or min_rate < 0:
            raise ValueError("minChargingRate must be a number >= 0")
        min_rate = float(min_rate)
    src = s.get("chargingSchedulePeriod")
    if not isinstance(src, list) or not src:
        raise ValueError("no chargingSchedulePeriod")
    periods = []
    last = -1
    for q in src:
        if not isinstance(q, dict):
            raise ValueError("chargingSchedulePeriod is not an object")
        o = q.get("startPeriod")
        lim = q.get("limit")
        n = q.get("numberPhases")
        if not _int(o) or o < 0:
            raise ValueError("startPeriod must be an integer >= 0")
        if last < 0 and o != 0:  # errata 3.45
            raise ValueError("first startPeriod is not 0")
        if o <= last:
            raise ValueError("startPeriod not ascending")
        if not _num(lim) or lim < 0:
            raise ValueError("limit must be a number >= 0")
        if n is not None and (not _int(n) or n < 1 or n > 3):
            raise ValueError("numberPhases must be 1, 2 or 3")
        periods.append((o, float(lim), n))
        last = o
    return Profile(pid, connector, purpose, stack, kind, unit, periods, recur, valid_from, valid_to, start,
                   duration, min_rate, tx_id)


def _clamp(x):
    return -_INF if x < -_INF else _INF if x > _INF else x


# An entry (one list per profile that can limit the connector, built per call):
_PU = const(0)  # purpose
_ST = const(1)  # stack level
_S = const(2)  # schedule start (recurring: the start of some cycle, <= 0)
_R = const(3)  # recurrence or 0
_END = const(4)  # end of the schedule, offset from a (cycle) start; _NEVER: none
_LO = const(5)  # valid from (and tx_start for Tx)
_HI = const(6)  # valid to
_P = const(7)  # the profile's periods
_K = const(8)  # how many of them are executed (start before _END)
_AMP = const(9)  # their limits in A per phase if the profile's are in W, else None
_PH = const(10)  # the phases of a period without numberPhases
_A = const(11)  # state: limit now in A per phase (None: not active)
_N = const(12)  # state: phases now
_U = const(13)  # state: the next time (> the state's time) it may change


def _round(x):
    # down to 0.1, float noise aside
    return int(x * 10.00001) / 10


def _entries(profiles, connector, base, tx_start, tx_id, phases, follow):
    # The entries for `connector`, times from `base`.
    own = []  # stack levels of the connector's own TxDefaultProfiles
    if connector:
        for p in profiles:
            if p.purpose == TX_DEFAULT and p.connector == connector:
                own.append(p.stack)
    es = []
    for p in profiles:
        pu = p.purpose
        if pu == MAX:
            if p.connector != 0:
                continue
        elif pu == TX_DEFAULT:
            if p.connector != connector and (p.connector != 0 or p.stack in own):
                continue
        elif pu == TX:
            if p.connector != connector or tx_start is None or (p.tx_id is not None and p.tx_id != tx_id):
                continue
        else:
            continue
        periods = p.periods
        if not periods:
            continue
        r = p.recur if p.kind == RECURRING else 0
        end = p.duration
        end = _NEVER if end is None else _clamp(end)
        if r and r < end:
            end = r
        k = 0  # the periods executed: those before the end (§5.16.4 note, errata 3.44), ascending
        last = -_NEVER
        for q in periods:
            if q[0] >= end or q[0] <= last:
                break
            last = q[0]
            k += 1
        s = None if p.kind == RELATIVE else p.start
        if s is None:
            s = tx_start
        if s is None:
            if follow:
                # restarts at every evaluation: the first period, constantly
                if periods[0][0] != 0 or not k:
                    continue
                k = 1
                s, r, end = -_INF, 0, _NEVER
            else:
                s = base
        if not k:
            continue
        s -= base
        if r and s < 0:
            s = -((-s) % r)  # the start of a cycle at or before 0: small whatever the start
        else:
            s = _clamp(s)
        lo = -_INF if p.valid_from is None else _clamp(p.valid_from - base)
        hi = _INF if p.valid_to is None else _clamp(p.valid_to - base)
        if pu == TX:
            x = _clamp(tx_start - base)
            if x > lo:
                lo = x
        if lo >= hi:
            continue
        amps = None
        if p.unit == "W":
            amps = [0] * k
            for i in range(k):
                q = periods[i]
                amps[i] = q[1] / (VOLTS * (q[2] or phases))
        es.append([pu, p.stack, s, r, end, lo, hi, periods, k, amps, phases, None, 0, 0])
    return es


def _state(e, t):
    # Sets e's limit at t and the next time it may change.
    lo = e[_LO]
    hi = e[_HI]
    e[_A] = None
    if t < lo:
        e[_U] = lo
        return
    if t >= hi:
        e[_U] = _NEVER
        return
    s = e[_S]
    r = e[_R]
    ps = e[_P]
    if r:
        if t < s:
            e[_U] = s if s < hi else _NEVER
            return
        c = s + (t - s) // r * r
        over = c + r  # the next cycle
    else:
        c = s
        over = _NEVER  # once over, for good
    off = t - c
    end = e[_END]
    if off >= end:
        u = over
    elif off < ps[0][0]:
        u = c + ps[0][0]
    else:
        k = e[_K]
        i = 0
        j = k
        while j - i > 1:
            m = (i + j) >> 1
            if ps[m][0] <= off:
                i = m
            else:
                j = m
        q = ps[i]
        a = e[_AMP]
        e[_A] = q[1] if a is None else a[i]
        e[_N] = q[2] or e[_PH]
        i += 1
        if i < k:
            u = c + ps[i][0]
        elif end < _NEVER:
            u = c + end
        else:
            u = over
    e[_U] = u if u < hi else (hi if e[_A] is not None else _NEVER)


def _pick(es, rating, phases):
    # The entry whose limit is in force now, None: the rating's.
    b0 = b1 = b2 = None  # per purpose the highest stack level active (ties: the lower limit)
    for e in es:
        a = e[_A]
        if a is None:
            continue
        pu = e[_PU]
        b = b0 if pu == MAX else b1 if pu == TX_DEFAULT else b2
        if b is not None:
            if e[_ST] < b[_ST]:
                continue
            if e[_ST] == b[_ST] and (a > b[_A] or (a == b[_A] and e[_N] >= b[_N])):
                continue
        if pu == MAX:
            b0 = e
        elif pu == TX_DEFAULT:
            b1 = e
        else:
            b2 = e
    w = None
    a = rating
    n = phases
    if b2 is None:  # no TxProfile active: the TxDefaultProfile
        b2 = b1
    if b2 is not None and (b2[_A] < a or (b2[_A] == a and b2[_N] < n)):
        w = b2
        a = b2[_A]
        n = b2[_N]
    if b0 is not None and (b0[_A] < a or (b0[_A] == a and b0[_N] < n)):
        w = b0
    return w


def _next(es):
    u = _NEVER
    for e in es:
        if e[_U] < u:
            u = e[_U]
    return u


def composite(profiles, connector, start, duration, unit="A", tx_start=None, tx_id=None, rating=32.0, phases=3):
    # The limit in force on `connector` from Unix second `start` for `duration`
    # seconds: [(offset from start, limit in unit, phases), ...], first offset
    # 0, ascending, no two adjacent alike.
    w = unit == "W"
    es = _entries(profiles, connector, start, tx_start, tx_id, phases, False)
    end = _clamp(duration)
    out = []
    t = 0
    for e in es:
        _state(e, 0)
    la = ln = lv = None
    while True:
        b = _pick(es, rating, phases)
        if b is None:
            a = rating
            n = phases
        else:
            a = b[_A]
            n = b[_N]
        if a != la or n != ln:
            la = a
            v = _round(a * VOLTS * n if w else a)
            if v != lv or n != ln:
                out.append((t, v, n))
                lv = v
            ln = n
        t = _next(es)
        if t >= end:
            return out
        for e in es:
            if e[_U] <= t:
                _state(e, t)


def _fixed(es, t):
    # The next breakpoint after t that is not a recurring cycle's own (valid
    # from/to, a recurring schedule's first start, any other profile's step).
    u = _NEVER
    for e in es:
        if e[_R]:
            for i in (_LO, _HI, _S):
                x = e[i]
                if t < x < u:
                    u = x
        elif e[_U] < u:
            u = e[_U]
    return u


def limit_now(profiles, connector, now, tx_start=None, tx_id=None, rating=32.0, phases=3):
    # -> (A per phase, phases, seconds until either changes or None), the
    # current rounded as in composite().
    es = _entries(profiles, connector, now, tx_start, tx_id, phases, True)
    per = 0  # the period of all recurring entries together (their lcm)
    for e in es:
        r = e[_R]
        if r:
            if not per:
                per = r
            elif per % r:
                x, y = per, r
                while y:
                    x, y = y, x % y
                per = _clamp(per // x * r)
    for e in es:
        _state(e, 0)
    b = _pick(es, rating, phases)
    a, n = (rating, phases) if b is None else (b[_A], b[_N])
    v = _round(a)
    t = 0
    quiet = 0  # no breakpoint since but the recurring cycles' own
    while True:
        u = _next(es)
        fixed = False
        for e in es:
            if e[_U] == u and (not e[_R] or u == e[_LO] or u == e[_HI] or u == e[_S]):
                fixed = True
        if per and not fixed and u - quiet >= per:
            # A whole common period without a change: the same until the next fixed breakpoint.
            u = _fixed(es, t)
            fixed = True
        if u >= _INF:
            return v, n, None
        t = u
        if fixed:
            quiet = t
        for e in es:
            if fixed or e[_U] <= t:
                _state(e, t)
        b = _pick(es, rating, phases)
        if b is None:
            x, m = rating, phases
        else:
            x, m = b[_A], b[_N]
        if m != n or (x != a and _round(x) != v):
            return v, n, t
