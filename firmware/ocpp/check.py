# OCPP-J payload checks against the official JSON schemas: 1.6 (core + security extension)
# and 2.0.1.
#
#   fn = make(tables, v201=False)   tables: ocpp.v16.tables or ocpp.v201.tables (imported by
#                                   the caller: a 2.0.1 session never loads the 1.6 ones)
#   fn(action, payload, response=False) -> None when valid, else (error_code, description)
#
# The schemas are compiled by tools/gen_tables.py into those modules (the encoding is
# described in that tool). This module walks those strings in place: on the success path it
# allocates nothing except the floats that number fields need. It only walks what the schema
# describes, so the recursion depth is bounded by the schemas (objects nested 4 deep in 1.6,
# 8 in 2.0.1's SetChargingProfile with a customData at the bottom), whatever the payload holds.
#
# Error codes (OCPP-J 1.6 section 4.2.3 / 2.0.1 part 4 section 4.3, spelled as each spec does):
#   FormationViolation            payload is not a JSON object; property not in the PDU
#     (2.0.1: FormatViolation)
#   OccurenceConstraintViolation  required property missing; array shorter than minItems
#     (2.0.1: OccurrenceConstraintViolation; also an array longer than maxItems)
#   TypeConstraintViolation       wrong JSON type. "integer" takes an int only: not a bool and
#                                 not an integral float (1.0), as in JSON schema draft 4 (which
#                                 the ocpp reference implementation applies to every schema,
#                                 2.0.1's draft-06 ones too)
#   PropertyConstraintViolation   value not in the enum, string longer than maxLength, number
#                                 below minimum, above maximum or not a multipleOf (relative
#                                 tolerance 1e-9, 1e-6 on single-precision ports: 21.4 passes
#                                 for 0.1, 4.11 fails), non-finite number, date-time not RFC 3339
#   NotImplemented                unknown action
# The first problem found is reported; properties are checked in payload order, then the
# required ones. Descriptions name the field path, e.g. "idTag: longer than 20 characters",
# "chargingProfile.chargingSchedule.chargingSchedulePeriod[0].limit: must be a number".
# 2.0.1's customData (an open object {vendorId} in nearly every object) is checked like any
# other property: vendorId required, at most 255 characters, anything else beside it.
#
# date-time: RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)", T/Z in either case,
# real calendar dates (leap years), second 60 allowed (leap second), at most 40 characters.
# A time without offset (ISO 8601 local time) is accepted as UTC, as clock.parse takes it,
# and logged once. format "uri" is not checked.
# maxLength counts code points as the port's json delivers them; MicroPython's json turns an
# escaped surrogate pair ("\ud83d\ude00") into two code points (raw UTF-8 gives one).
try:
    import log
except ImportError:  # the table tests load this module on its own
    log = None

# The inner functions give an index into the code names of the session's protocol.
_FORMAT = 0
_OCCUR = 1
_TYPE = 2
_PROP = 3
V16_CODES = ("FormationViolation", "OccurenceConstraintViolation", "TypeConstraintViolation",
             "PropertyConstraintViolation", "NotImplemented")
V201_CODES = ("FormatViolation", "OccurrenceConstraintViolation", "TypeConstraintViolation",
              "PropertyConstraintViolation", "NotImplemented")

# relative tolerance for multipleOf, by the port's float precision (single on most boards)
_TOL = 1e-9 if 1.0 + 1e-12 != 1.0 else 1e-6
_DIM = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_PAGE = 256  # the tables' PAGE (checked by make)
_CUSTOM = "o!!"  # the spec that "~" in a node stands for: customData, the node at position 0

# A table set as the functions below take it: c = (S, P, U, codes, A, len(A))
#   S pages, P parameters, U the unit of a reference (1 in 1.6, 2 in 2.0.1), codes above,
#   A the action index and its length (len() of a str walks it on MicroPython: once).


def make(tables, v201=False):
    # One checker per session. The closure holds one cell (c): calling it allocates
    # nothing on MicroPython (a closure call with at most 5 cells + arguments).
    if tables.PAGE != _PAGE:
        raise ValueError("tables with PAGE %d, check.py reads %d" % (tables.PAGE, _PAGE))
    a = tables.A
    c = (tables.S, tables.P, getattr(tables, "U", 1), V201_CODES if v201 else V16_CODES, a, len(a))

    def check(action, payload, response=False):
        return _check(c, action, payload, response)
    return check


def _ix(ch):
    # code character -> 0..91 (chr(33 + i) with ":" and "|" skipped)
    o = ord(ch) - 33
    if o > 25:
        o -= 1
    if o > 89:
        o -= 1
    return o


def _pos(s, p):
    # the reference in the two code characters at s[p], in units (c[2]) of characters
    return _ix(s[p]) * 92 + _ix(s[p + 1])


def _find(s, a, b, k):
    # position of the spec after " k:" within s[a:b], or -1
    n = len(k)
    if n == 0 or ":" in k:
        return -1
    i = s.find(k, a, b)
    while i > a:
        j = i + n
        if j < b and s[i - 1] == " " and s[j] == ":":
            return j + 1
        i = s.find(k, i + 1, b)
    return -1


def _enum(c, pos, v):
    n = len(v)
    if n == 0 or " " in v:
        return False
    pg = c[0][pos // _PAGE]
    a = pos % _PAGE
    b = pg.find("|", a)
    i = pg.find(v, a, b)
    while i > a:
        if pg[i - 1] == " " and pg[i + n] == " ":
            return True
        i = pg.find(v, i + 1, b)
    return False


def _num(s, i, w):
    n = 0
    for j in range(i, i + w):
        c = s[j]
        if c < "0" or c > "9":
            return -1
        n = n * 10 + ord(c) - 48
    return n


_naive_seen = False  # a date-time without offset was logged once


def _dt(s):
    n = len(s)
    if n < 19 or n > 40:
        return False
    if s[4] != "-" or s[7] != "-" or s[10] not in "Tt" or s[13] != ":" or s[16] != ":":
        return False
    y = _num(s, 0, 4)
    mo = _num(s, 5, 2)
    d = _num(s, 8, 2)
    if y < 0 or mo < 1 or mo > 12 or d < 1:
        return False
    if d > _DIM[mo - 1]:
        if not (mo == 2 and d == 29 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)):
            return False
    h = _num(s, 11, 2)
    mi = _num(s, 14, 2)
    se = _num(s, 17, 2)
    if h < 0 or h > 23 or mi < 0 or mi > 59 or se < 0 or se > 60:
        return False
    i = 19
    if i < n and s[i] == ".":
        i += 1
        while i < n and "0" <= s[i] <= "9":
            i += 1
        if i == 20:
            return False
    if i == n:
        # No offset: not RFC 3339, but some CSMSs send it; taken as UTC, as
        # clock.parse does (we always send "Z").
        global _naive_seen
        if not _naive_seen and log:
            _naive_seen = True
            log.warn("ocpp", "the CSMS sends date-times without a time zone (%s): taken as UTC" % s)
        return True
    c = s[i]
    if c in "Zz":
        return i == n - 1
    if c in "+-" and i + 6 == n and s[i + 3] == ":":
        oh = _num(s, i + 1, 2)
        om = _num(s, i + 4, 2)
        return 0 <= oh <= 23 and 0 <= om <= 59
    return False


def _val(c, s, p, v):
    # check value v against the spec at s[p]; None or (code index, path suffix, message)
    t = s[p]
    j = p + 1
    if t in "sS":
        if not isinstance(v, str):
            return (_TYPE, "", "must be a string")
        while True:
            e = s[j]
            if e == "<":
                m = c[1][_ix(s[j + 1])]
                if len(v) > m:
                    return (_PROP, "", "longer than %d characters" % m)
                j += 2
            elif e == "=":
                if not _enum(c, _pos(s, j + 1) * c[2], v):
                    return (_PROP, "", "not an allowed value")
                j += 3
            elif e == "@":
                if not _dt(v):
                    return (_PROP, "", "not an RFC 3339 date-time")
                j += 1
            else:
                return None
    if t in "iInN":
        if type(v) is not int:
            if t in "iI":
                return (_TYPE, "", "must be an integer")
            if type(v) is not float:
                return (_TYPE, "", "must be a number")
            if v - v != 0:
                return (_PROP, "", "not a finite number")
        while True:
            e = s[j]
            if e == ">":
                m = c[1][_ix(s[j + 1])]
                if v < m:
                    return (_PROP, "", "below %s" % m)
            elif e == "<":
                m = c[1][_ix(s[j + 1])]
                if v > m:
                    return (_PROP, "", "above %s" % m)
            elif e == "%":
                m = c[1][_ix(s[j + 1])]
                try:
                    q = v / m
                except (OverflowError, ZeroDivisionError):
                    q = None
                if q is None or q - q != 0:
                    return (_PROP, "", "not a multiple of %s" % m)
                f = q % 1.0
                if f > 0.5:
                    f = 1.0 - f
                if q < 0:
                    q = -q
                if f > _TOL * (q if q > 1 else 1):
                    return (_PROP, "", "not a multiple of %s" % m)
            else:
                return None
            j += 2
    if t in "bB":
        if v is True or v is False:
            return None
        return (_TYPE, "", "must be a boolean")
    if t in "oO":
        if not isinstance(v, dict):
            return (_TYPE, "", "must be an object")
        r = _obj(c, _pos(s, j) * c[2], v)
        if r:
            return (r[0], "." + r[1], r[2])
        return None
    if t in "aA":
        if not isinstance(v, list):
            return (_TYPE, "", "must be an array")
        if s[j] == "#":
            m = c[1][_ix(s[j + 1])]
            if len(v) < m:
                return (_OCCUR, "", "fewer than %d items" % m)
            j += 2
        if s[j] == "<":
            m = c[1][_ix(s[j + 1])]
            if len(v) > m:
                return (_OCCUR, "", "more than %d items" % m)
            j += 2
        i = 0
        for x in v:
            r = _val(c, s, j, x)
            if r:
                return (r[0], "[%d]%s" % (i, r[1]), r[2])
            i += 1
        return None
    return None  # "x": any JSON value


def _name(k):
    k = k if isinstance(k, str) else repr(k)
    return k if len(k) <= 40 else k[:40] + "..."


def _obj(c, pos, obj):
    # check dict obj against the object node at pos; None or (code index, path, message)
    pg = c[0][pos // _PAGE]
    a = pos % _PAGE
    b = pg.find("|", a)
    h = _ix(pg[a])
    got = 0
    for k in obj:
        p = _find(pg, a, b, k) if isinstance(k, str) else -1
        if p >= 0:
            if "A" <= pg[p] <= "Z":
                got += 1
            r = _val(c, pg, p, obj[k])
        elif pg[a + 1] == "~" and k == "customData":
            r = _val(c, _CUSTOM, 0, obj[k])
        elif h & 1:
            continue
        else:
            return (_FORMAT, _name(k), "not in the PDU")
        if r:
            return (r[0], k + r[1], r[2])
    if got < h >> 1:
        for e in pg[a + 1:b].split(" "):
            i = e.find(":")
            if i > 0 and "A" <= e[i + 1] <= "Z" and e[:i] not in obj:
                return (_OCCUR, e[:i], "required")
    return None


def _check(c, action, payload, response):
    codes = c[3]
    a = c[4]
    p = _find(a, 0, c[5], action) if isinstance(action, str) else -1
    if p < 0:
        return (codes[4], "unknown action %s" % _name(action))
    if not isinstance(payload, dict):
        return (codes[_FORMAT], "payload is not a JSON object")
    r = _obj(c, _pos(a, p + 2 if response else p) * c[2], payload)
    if r:
        return (codes[r[0]], r[1] + ": " + r[2])
    return None
