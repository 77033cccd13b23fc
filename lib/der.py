# DER (ASN.1 X.690) reading and writing, PEM, ECDSA-Sig-Value. Imported only
# while a certificate operation runs.
#
# Reading works on offsets into bytes or a memoryview, so nothing is copied:
#   tag, s, e = tlv(buf, pos, end)   the element at buf[pos:end]: its tag and
#                                    value buf[s:e]; the next element is at e
#   s, e = expect(buf, pos, end, tag)   the same, the tag must be `tag`
#   for tag, s, e in items(buf, s, e)   the elements of a constructed value
#   as_int / as_oid / as_time / as_text / as_bool / as_bits (buf, s, e)
# Anything malformed raises ValueError: BER-only forms (indefinite or
# non-minimal lengths, multi-byte tags), a length past its container.
# Writing returns bytes: seq(a, b), set_of(...), integer(n), oid("2.5.4.3"),
# utf8(s), printable(s), bit_string(b), octet_string(b), ctx(n, body), NULL.
import binascii

SEQ = 0x30
SET = 0x31
INT = 0x02
BITS = 0x03
OCTETS = 0x04
OID = 0x06
BOOL = 0x01
UTC_TIME = 0x17
GEN_TIME = 0x18
NULL = b"\x05\x00"


# ---- reading ----

def tlv(buf, pos, end):
    if pos + 2 > end:
        raise ValueError("DER: truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("DER: multi-byte tag")
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 3:  # 0: indefinite length (BER only); > 16 MB: nonsense here
            raise ValueError("DER: bad length")
        if pos + k > end:
            raise ValueError("DER: truncated")
        n = 0
        for i in range(k):
            n = n << 8 | buf[pos + i]
        if n < 0x80 or buf[pos] == 0:
            raise ValueError("DER: length not minimal")
        pos += k
    if n > end - pos:
        raise ValueError("DER: length past the end")
    return tag, pos, pos + n


def expect(buf, pos, end, tag):
    t, s, e = tlv(buf, pos, end)
    if t != tag:
        raise ValueError("DER: tag %02x where %02x was expected" % (t, tag))
    return s, e


def items(buf, s, e):
    while s < e:
        t, vs, ve = tlv(buf, s, e)
        yield t, vs, ve
        s = ve


def as_int(buf, s, e):
    # Two's complement, minimal (X.690 8.3.2).
    if s >= e:
        raise ValueError("DER: empty INTEGER")
    if e - s > 1 and (buf[s] == 0 and buf[s + 1] < 0x80 or buf[s] == 0xFF and buf[s + 1] >= 0x80):
        raise ValueError("DER: INTEGER not minimal")
    n = int.from_bytes(buf[s:e], "big")
    if buf[s] & 0x80:
        n -= 1 << (8 * (e - s))
    return n


def as_uint(buf, s, e):
    n = as_int(buf, s, e)
    if n < 0:
        raise ValueError("DER: negative INTEGER")
    return n


def as_bool(buf, s, e):
    if e - s != 1 or buf[s] not in (0, 0xFF):
        raise ValueError("DER: bad BOOLEAN")
    return buf[s] == 0xFF


def as_oid(buf, s, e):
    # The dotted text of an OBJECT IDENTIFIER value ("1.2.840.10045.2.1").
    if s >= e or buf[e - 1] & 0x80:
        raise ValueError("DER: bad OID")
    out = []
    n = 0
    first = True
    for i in range(s, e):
        b = buf[i]
        if n == 0 and b == 0x80:
            raise ValueError("DER: OID not minimal")
        n = n << 7 | (b & 0x7F)
        if b & 0x80:
            continue
        if first:  # the first subidentifier holds two arcs (X.690 8.19.4)
            a = 0 if n < 40 else 1 if n < 80 else 2
            out.append(str(a))
            n -= 40 * a
            first = False
        out.append(str(n))
        n = 0
    return ".".join(out)


def as_bits(buf, s, e):
    # A BIT STRING value: (unused bit count, contents start, contents end).
    if s >= e or buf[s] > 7 or (buf[s] and s + 1 == e):
        raise ValueError("DER: bad BIT STRING")
    if buf[s] and buf[e - 1] & ((1 << buf[s]) - 1):
        raise ValueError("DER: BIT STRING padding not zero")
    return buf[s], s + 1, e


def as_text(tag, buf, s, e):
    # The directory string types a certificate uses, as str.
    if tag == 0x1E:  # BMPString: UCS-2, big-endian
        if (e - s) & 1:
            raise ValueError("DER: bad BMPString")
        return "".join(chr(buf[i] << 8 | buf[i + 1]) for i in range(s, e, 2))
    if tag not in (0x0C, 0x13, 0x16, 0x14, 0x12, 0x1A):  # UTF8, Printable, IA5, Teletex, Numeric, Visible
        raise ValueError("DER: string type %02x not supported" % tag)
    return utf8_text(buf, s, e)


def utf8_text(buf, s, e):
    try:
        return str(bytes(buf[s:e]), "utf-8")
    except UnicodeError:
        raise ValueError("DER: bad UTF-8")


def _digits(buf, i, n):
    v = 0
    for j in range(i, i + n):
        d = buf[j] - 48
        if d < 0 or d > 9:
            raise ValueError("DER: bad time")
        v = v * 10 + d
    return v


def days(y, m, d):
    # Days from 1970-01-01 to y-m-d (proleptic Gregorian; March-based years
    # put the leap day last).
    if m < 3:
        y -= 1
        m += 12
    return 365 * y + y // 4 - y // 100 + y // 400 + (153 * m - 457) // 5 + d - 719469


def as_time(tag, buf, s, e):
    # UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ (the forms RFC
    # 5280 §4.1.2.5 allows) as Unix seconds.
    if tag == UTC_TIME and e - s == 13:
        y = _digits(buf, s, 2)
        y += 1900 if y >= 50 else 2000
        s += 2
    elif tag == GEN_TIME and e - s == 15:
        y = _digits(buf, s, 4)
        s += 4
    else:
        raise ValueError("DER: bad time")
    if buf[e - 1] != 0x5A:  # "Z"
        raise ValueError("DER: time not in UTC")
    mo, d, h, mi, sec = (_digits(buf, s + i, 2) for i in range(0, 10, 2))
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and sec < 60):
        raise ValueError("DER: bad time")
    if d > days(y + mo // 12, mo % 12 + 1, 1) - days(y, mo, 1):  # the month's length
        raise ValueError("DER: bad date")
    return days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec


# ---- writing ----

def wrap(tag, body):
    n = len(body)
    if n < 0x80:
        head = bytes((tag, n))
    elif n < 0x100:
        head = bytes((tag, 0x81, n))
    else:
        head = bytes((tag, 0x82, n >> 8, n & 0xFF))
    return head + body


def seq(*parts):
    return wrap(SEQ, b"".join(parts))


def set_of(*parts):
    # DER orders SET OF elements by their encodings (X.690 11.6)
    return wrap(SET, b"".join(sorted(parts)))


def integer(n):
    if n < 0:
        raise ValueError("DER: negative INTEGER not written")
    h = "%x" % n
    b = binascii.unhexlify(("0" if len(h) & 1 else "") + h)
    return wrap(INT, b"\x00" + b if b[0] & 0x80 else b)


def oid(text):
    arcs = [int(a) for a in text.split(".")]
    out = bytearray()
    for i, n in enumerate([40 * arcs[0] + arcs[1]] + arcs[2:]):
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out.extend(bytes(reversed(chunk)))
    return wrap(OID, bytes(out))


def utf8(s):
    return wrap(0x0C, s.encode())


def printable(s):
    return wrap(0x13, s.encode())


def bit_string(b, unused=0):
    return wrap(BITS, bytes((unused,)) + b)


def octet_string(b):
    return wrap(OCTETS, b)


def ctx(n, body, constructed=True):
    # A context-specific tag [n] around body (EXPLICIT when constructed).
    return wrap((0xA0 if constructed else 0x80) | n, body)


# ---- PEM (RFC 7468) ----

def pem_decode(text):
    # Every "-----BEGIN X-----" block, in order, as [(label, der), ...]. The
    # base64 must be canonical: a2b_base64 alone skips stray characters.
    if not isinstance(text, str):
        text = utf8_text(text, 0, len(text))
    out = []
    label = None
    for line in text.split("\n"):
        line = line.strip()
        if label is None:
            if line.startswith("-----BEGIN ") and line.endswith("-----"):
                label = line[11:-5]
                body = []
        elif line.startswith("-----END "):
            if line != "-----END " + label + "-----":
                raise ValueError("PEM: END does not match BEGIN")
            b64 = "".join(body)
            der = binascii.a2b_base64(b64)
            if binascii.b2a_base64(der, newline=False) != b64.encode():
                raise ValueError("PEM: bad base64")
            out.append((label, der))
            label = None
        else:
            body.append(line)
    if label is not None:
        raise ValueError("PEM: no END line")
    return out


def pem_encode(label, der):
    b64 = binascii.b2a_base64(der, newline=False).decode()
    lines = ["-----BEGIN " + label + "-----"]
    lines.extend(b64[i:i + 64] for i in range(0, len(b64), 64))
    lines.append("-----END " + label + "-----\n")
    return "\n".join(lines)


# ---- ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 3279 §2.2.3) ----

def ecdsa_sig_decode(sig):
    s, e = expect(sig, 0, len(sig), SEQ)
    if e != len(sig):
        raise ValueError("DER: bytes after the signature")
    a, b = expect(sig, s, e, INT)
    c, d = expect(sig, b, e, INT)
    if d != e:
        raise ValueError("DER: bytes after the signature")
    return as_uint(sig, a, b), as_uint(sig, c, d)


def ecdsa_sig_encode(r, s):
    return seq(integer(r), integer(s))
