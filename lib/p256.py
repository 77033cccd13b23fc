# NIST P-256 (secp256r1, FIPS 186-5 / SEC 2) and ECDSA with SHA-256, in plain
# MicroPython big-int arithmetic. Imported only while a certificate operation runs.
#
#   d, pub = keygen()              d: int in [1, n-1]; pub: b"\x04" + X + Y (65 bytes)
#   pub = public(d)
#   r, s = sign(d, digest)         digest: 32 bytes (SHA-256); k per RFC 6979 (deterministic)
#   ok = verify(pub, digest, r, s) pub: 65 bytes (or 33 compressed); False on any bad input
#
# Speed: Jacobian coordinates (no inversion per step), the a = -3 doubling,
# additions of affine table points ("mixed", cheaper), one inversion at the end
# (extended Euclid: measured 5x faster than pow(z, p-2, p) on the unix port,
# mpz's divmod dominates every multiplication here). k*G uses a 4-tooth comb
# (15 points of G, built on first use, 2.6 KB on the 64-bit port); verify runs u1*G
# (the comb) and u2*Q (a sliding window over 8 odd multiples of Q) in one chain of
# 256 doublings.
# Not constant time: MicroPython's big ints take time that depends on the values.
import hashlib
import os
from micropython import const

_P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
_N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
_B = const(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
_GX = const(0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296)
_GY = const(0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)

_comb = None  # [None, (x, y) of 1..15]: entry j = sum of bit i of j times 2^(64 i) G


def _inv(x, m):
    # x^-1 mod m (m prime, x not a multiple of m), extended Euclid
    a, b, u, v = x % m, m, 1, 0
    while a:
        q = b // a
        a, b, u, v = b - q * a, a, v - q * u, u
    return v % m


def _dbl(X, Y, Z):
    # 2P in Jacobian coordinates, a = -3 (dbl-2001-b); Z = 0 (infinity) stays 0
    d = Z * Z % _P
    g = Y * Y % _P
    b = X * g % _P
    a = 3 * (X - d) * (X + d) % _P
    X3 = (a * a - 8 * b) % _P
    return X3, (a * (4 * b - X3) - 8 * g * g) % _P, 2 * Y * Z % _P


def _add(X, Y, Z, x, y):
    # P (Jacobian) + (x, y) (affine), madd-2007-bl style; handles P = infinity, P = +-(x, y)
    if not Z:
        return x, y, 1
    zz = Z * Z % _P
    h = (x * zz - X) % _P
    r = (y * Z * zz - Y) % _P
    if not h:
        return _dbl(x, y, 1) if not r else (1, 1, 0)
    hh = h * h % _P
    hhh = h * hh % _P
    v = X * hh % _P
    X3 = (r * r - hhh - 2 * v) % _P
    return X3, (r * (v - X3) - Y * hhh) % _P, Z * h % _P


def _affine(pts):
    # Jacobian points (none at infinity) to affine, in place, with one inversion (Montgomery's trick)
    acc = [1]
    for X, Y, Z in pts:
        acc.append(acc[-1] * Z % _P)
    t = _inv(acc[-1], _P)
    for i in range(len(pts) - 1, -1, -1):
        X, Y, Z = pts[i]
        zi = t * acc[i] % _P  # 1/Z
        t = t * Z % _P
        zi2 = zi * zi % _P
        pts[i] = (_compact(X * zi2 % _P), _compact(Y * zi2 * zi % _P))
    return pts


def _compact(v):
    # the same int in half the memory: a remainder keeps the room of its 512-bit dividend
    return int.from_bytes(v.to_bytes(32, "big"), "big")


def _g_comb():
    # built on first use: entry j (1..15) = the sum over the bits i of j of 2^(64 i) G
    global _comb
    if _comb is None:
        teeth = [(_GX, _GY)]  # 2^(64 i) G, affine
        for _ in range(3):
            X, Y, Z = teeth[-1] + (1,)
            for _ in range(64):
                X, Y, Z = _dbl(X, Y, Z)
            teeth += _affine([(X, Y, Z)])
        pts = []  # pts[j - 1] is entry j
        for j in range(1, 16):
            lo = j & -j  # j's lowest tooth; entry j - lo is built already
            x, y = teeth[(lo > 1) + (lo > 2) + (lo > 4)]
            pts.append((x, y, 1) if j == lo else _add(*pts[j - lo - 1], x, y))
        _comb = [None] + _affine(pts)
    return _comb


def _bits(k):
    # the scalar as 32 big-endian bytes: bit b is (kb[31 - (b >> 3)] >> (b & 7)) & 1
    return k.to_bytes(32, "big")


def _col(kb, c):
    # comb column c: bits c, c + 64, c + 128, c + 192 of the scalar
    sh = c & 7
    i = 31 - (c >> 3)
    return ((kb[i] >> sh) & 1) | (((kb[i - 8] >> sh) & 1) << 1) | \
        (((kb[i - 16] >> sh) & 1) << 2) | (((kb[i - 24] >> sh) & 1) << 3)


def _mul_g(k):
    # k*G as affine (x, y), 0 < k < n (so never infinity)
    T = _g_comb()
    kb = _bits(k)
    X, Y, Z = 1, 1, 0
    for c in range(63, -1, -1):
        if Z:
            X, Y, Z = _dbl(X, Y, Z)
        j = _col(kb, c)
        if j:
            X, Y, Z = _add(X, Y, Z, *T[j])
    return _affine([(X, Y, Z)])[0]


def _enc(x, y):
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def _on_curve(x, y):
    return 0 <= x < _P and 0 <= y < _P and (y * y - (x * x - 3) * x - _B) % _P == 0


def _decode(pub):
    # (x, y) of a valid point, or None: uncompressed (04) or compressed (02/03)
    n = len(pub)
    if n == 65 and pub[0] == 4:
        x = int.from_bytes(pub[1:33], "big")
        y = int.from_bytes(pub[33:], "big")
    elif n == 33 and pub[0] in (2, 3):
        x = int.from_bytes(pub[1:], "big")
        if x >= _P:
            return None
        # p = 3 mod 4: a square root of a is a^((p+1)/4); (p+1)/4 has few set bits
        a = ((x * x - 3) * x + _B) % _P
        y, e, t = 1, (_P + 1) >> 2, a
        while e:
            if e & 1:
                y = y * t % _P
            e >>= 1
            t = t * t % _P
        if (y & 1) != (pub[0] & 1):
            y = _P - y
    else:
        return None
    return (x, y) if _on_curve(x, y) else None


def keygen():
    while True:
        d = int.from_bytes(os.urandom(32), "big")
        if 0 < d < _N:  # rejection sampling: uniform in [1, n-1]
            return d, public(d)


def public(d):
    if not 0 < d < _N:
        raise ValueError("bad key")
    return _enc(*_mul_g(d))


def _hmac(key, msg):
    # HMAC-SHA256 (RFC 2104), key <= 64 bytes
    key = key + bytes(64 - len(key))
    h = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    h.update(hashlib.sha256(bytes(b ^ 0x36 for b in key) + msg).digest())
    return h.digest()


def _e(digest):
    # bits2int: the leftmost 256 bits of the hash
    return int.from_bytes(digest[:32], "big")


def sign(d, digest):
    if not 0 < d < _N:
        raise ValueError("bad key")
    e = _e(digest)
    # RFC 6979 §3.2 with HMAC-SHA256; qlen = hlen = 256, so bits2octets(h) = (h mod n) as 32 bytes
    x = d.to_bytes(32, "big") + (e % _N).to_bytes(32, "big")
    V = b"\x01" * 32
    K = _hmac(bytes(32), V + b"\x00" + x)
    V = _hmac(K, V)
    K = _hmac(K, V + b"\x01" + x)
    V = _hmac(K, V)
    while True:
        V = _hmac(K, V)
        k = int.from_bytes(V, "big")
        if 0 < k < _N:
            r = _mul_g(k)[0] % _N
            s = _inv(k, _N) * (e + r * d) % _N
            if r and s:
                return r, s
        K = _hmac(K, V + b"\x00")  # §3.2 step h.3: next candidate
        V = _hmac(K, V)


def verify(pub, digest, r, s):
    try:
        if not (isinstance(r, int) and isinstance(s, int) and 0 < r < _N and 0 < s < _N):
            return False
        q = _decode(pub)
        if q is None:
            return False
        e = _e(digest)
    except (TypeError, ValueError, IndexError):
        return False
    w = _inv(s, _N)
    TG = _g_comb()  # first, so that its one-time build does not overlap the table of Q
    g = _bits(e * w % _N)  # u1, by the comb
    # u2*Q by a sliding window: u2 = sum of dig[b] * 2^b, each dig[b] odd and < 16, so the
    # table holds 1Q, 3Q, .., 15Q (8 points) and about one bit in five needs an addition
    k = _bits(r * w % _N)  # u2
    dig = bytearray(256)
    b = 0
    while b < 256:
        i = 31 - (b >> 3)
        v = ((k[i] | (k[i - 1] << 8 if i else 0)) >> (b & 7)) & 15
        if v & 1:
            dig[b] = v
            b += 4
        else:
            b += 1
    x, y = q
    x2, y2 = _affine([_dbl(x, y, 1)])[0]
    pts = [(x, y, 1)]
    for _ in range(7):
        pts.append(_add(*pts[-1], x2, y2))
    if not all(p[2] for p in pts):  # cannot happen for a point of order n; be safe
        return False
    TQ = _affine(pts)
    X, Y, Z = 1, 1, 0
    for b in range(255, -1, -1):
        if Z:
            X, Y, Z = _dbl(X, Y, Z)
        if b < 64:
            j = _col(g, b)
            if j:
                X, Y, Z = _add(X, Y, Z, *TG[j])
        j = dig[b]
        if j:
            X, Y, Z = _add(X, Y, Z, *TQ[j >> 1])
    if not Z:
        return False
    # x(R) mod n == r without an inversion: X == r' * Z^2 for r' = r or r + n (< p)
    zz = Z * Z % _P
    if (r * zz - X) % _P == 0:
        return True
    return r + _N < _P and ((r + _N) * zz - X) % _P == 0
