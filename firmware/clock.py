# Wall clock in Unix-epoch seconds on every port.
# Ports count from their own epoch (1970 on unix, 2000 on ESP32 and others):
# it is detected with time.gmtime(0), never hard-coded. The calendar maths is
# done here in integers (proleptic Gregorian, UTC) because time.mktime on the
# unix port uses the local time zone.
import time
import log

_TAG = "clock"
# A set that moves the clock more than a minute is the security event
# SettingSystemTime (whitepaper §8): the first set of a board that boots in
# 2000, a CSMS (or someone in between) turning it; not the Heartbeat's
# corrections of a running clock, nor the first set of one that kept its time.


def _days(y, m, d):
    # Days from 1970-01-01 to y-m-d. Years start on March 1st here, so the
    # leap day is the last day of the year.
    if m < 3:
        y -= 1
        m += 12
    return 365 * y + y // 4 - y // 100 + y // 400 + (153 * m - 457) // 5 + d - 719469


def _civil(z):
    # Days from 1970-01-01 -> (year, month, day); the inverse of _days.
    z += 719468  # days from 0000-03-01
    era = z // 146097  # 400-year cycles
    z -= era * 146097  # day of the era, 0..146096
    ye = (z - z // 1460 + z // 36524 - z // 146096) // 365  # year of the era
    z -= 365 * ye + ye // 4 - ye // 100  # day of the March-based year
    mp = (5 * z + 2) // 153  # month, March = 0
    d = z - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return ye + era * 400 + (m < 3), m, d


# Unix seconds at the port's time 0, e.g. 946684800 for a 2000 epoch.
_off = _days(time.gmtime(0)[0], 1, 1) * 86400
_synced = False


def now(t=None):
    # Unix time by our clock (set from the CSMS); t: the port's time.time() to convert
    return int(time.time() if t is None else t) + _off


def synced():
    return _synced


def offset():
    # our clock minus the port's: each set() moves it by the step it applies
    return _off


def set(t):
    global _off, _synced
    t = int(t)
    d = now() - t
    try:  # keep a board's RTC in step (it may keep time across resets)
        from machine import RTC

        day, s = divmod(t, 86400)
        y, m, dd = _civil(day)
        # weekday 0 = Monday; 1970-01-01 was a Thursday
        RTC().datetime((y, m, dd, (day + 3) % 7, s // 3600, s // 60 % 60, s % 60, 0))
    except Exception:
        pass  # no RTC (unix port) or it refused: the offset alone does it
    _off = t - int(time.time())
    if not _synced or d > 2 or d < -2:
        log.info(_TAG, "set to %s (was %d s %s)" % (iso(t), abs(d), "ahead" if d > 0 else "behind"))
    _synced = True
    if d > 60 or d < -60:  # more than a minute
        import security  # (not at the top: security imports clock)
        security.event("SettingSystemTime", "from %s to %s" % (iso(t + d), iso(t)))


def iso(t=None):
    if t is None:
        t = now()
    day, s = divmod(int(t), 86400)
    y, m, d = _civil(day)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, s // 3600, s // 60 % 60, s % 60)


def _num(s, i, n):
    # The unsigned decimal of exactly n digits at s[i:], -1 if not all digits.
    v = 0
    for k in range(i, i + n):
        c = ord(s[k]) - 48
        if c < 0 or c > 9:
            return -1
        v = v * 10 + c
    return v


def parse(s):
    # RFC 3339 date-time -> Unix seconds, None if malformed or out of range.
    # Accepts "Z", "+hh:mm", "-hh:mm" (also "+hhmm"), a fraction (dropped, so
    # the result is the floor), "T", "t" or " " between date and time, and
    # treats a missing offset as UTC (seen from some CSMSs).
    try:
        n = len(s)
        if n < 19 or s[4] != "-" or s[7] != "-" or s[10] not in "Tt " or s[13] != ":" or s[16] != ":":
            return None
        y = _num(s, 0, 4)
        mo = _num(s, 5, 2)
        d = _num(s, 8, 2)
        h = _num(s, 11, 2)
        mi = _num(s, 14, 2)
        se = _num(s, 17, 2)
        # se 60: a leap second (RFC 3339), counted as the next minute's first
        if y < 1 or mo < 1 or mo > 12 or d < 1 or h < 0 or h > 23 or mi < 0 or mi > 59 or se < 0 or se > 60:
            return None
        if d > 28 and d > _days(y + (mo == 12), mo % 12 + 1, 1) - _days(y, mo, 1):
            return None
        i = 19
        if i < n and s[i] == ".":
            i += 1
            while i < n and "0" <= s[i] <= "9":
                i += 1
            if i == 20:
                return None
        off = 0
        if i < n:
            c = s[i]
            if c == "Z" or c == "z":
                if i + 1 != n:
                    return None
            elif c == "+" or c == "-":
                r = n - i
                if r == 6 and s[i + 3] == ":":
                    oh, om = _num(s, i + 1, 2), _num(s, i + 4, 2)
                elif r == 5:
                    oh, om = _num(s, i + 1, 2), _num(s, i + 3, 2)
                else:
                    return None
                if oh < 0 or oh > 23 or om < 0 or om > 59:
                    return None
                off = (oh * 60 + om) * 60
                if c == "+":
                    off = -off
            else:
                return None
        return _days(y, mo, d) * 86400 + h * 3600 + mi * 60 + se + off
    except Exception:  # not a str, or other garbage
        return None
