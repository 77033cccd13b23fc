# RSA signature verification with SHA-256 (RFC 8017), for certificates and signed
# firmware. Imported only while a certificate operation runs.
#
#   verify_pkcs1(n, e, digest, sig) -> bool    RSASSA-PKCS1-v1_5 (§8.2.2), DigestInfo for SHA-256
#   verify_pss(n, e, digest, sig) -> bool      RSASSA-PSS (§8.1.2), MGF1-SHA-256, any salt length
#
# n, e: ints; digest: the 32-byte SHA-256 of the message; sig: the signature bytes.
# Both return False on any bad input (wrong length, s >= n, malformed encoding), and
# for keys the whitepaper does not allow: a modulus under 2048 bits (A00.FR.502), an
# even or 1 exponent.
# pow(s, e, n) is the C 3-argument pow (MICROPY_PY_BUILTINS_POW3: on in every port
# at the EXTRA_FEATURES ROM level, which esp32 and rp2 use).
import hashlib
from micropython import const

_MIN_BITS = const(2048)  # OCPP 1.6 security whitepaper A00.FR.502

# DER of DigestInfo { AlgorithmIdentifier { sha256, NULL }, OCTET STRING (32) } (§9.2 note 1)
_SHA256_INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"


def _bits(n):
    # the bit length of n > 0 (MicroPython's int has no bit_length)
    h = "%x" % n
    return 4 * len(h) - 6 + len(bin(int(h[0], 16)))


def _open(n, e, sig, em_len):
    # RSAVP1: the message representative s^e mod n as em_len bytes, or None
    if not (isinstance(n, int) and isinstance(e, int) and n & 1 and e & 1 and e > 1 and n > e):
        return None
    if _bits(n) < _MIN_BITS or len(sig) != (_bits(n) + 7) // 8:  # §8.x.2 step 1: k bytes long
        return None
    s = int.from_bytes(sig, "big")
    if s >= n:
        return None
    m = pow(s, e, n)
    if m >> (8 * em_len):  # does not fit in em_len bytes
        return None
    return m.to_bytes(em_len, "big")


def verify_pkcs1(n, e, digest, sig):
    try:
        k = (_bits(n) + 7) // 8
        em = _open(n, e, sig, k)
        t = _SHA256_INFO + bytes(digest)
        if em is None or len(digest) != 32 or k < len(t) + 11:
            return False
        # EMSA-PKCS1-v1_5 (§9.2): 00 01 FF..FF 00 T, compared as a whole
        return em == b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    except (TypeError, ValueError):
        return False


def _mgf1(seed, length):
    # MGF1 with SHA-256 (appendix B.2.1)
    out = b""
    c = 0
    while len(out) < length:
        out += hashlib.sha256(seed + c.to_bytes(4, "big")).digest()
        c += 1
    return out[:length]


def verify_pss(n, e, digest, sig):
    try:
        em_bits = _bits(n) - 1
        em_len = (em_bits + 7) // 8
        em = _open(n, e, sig, em_len)
        if em is None or len(digest) != 32 or em_len < 32 + 2:
            return False
        # EMSA-PSS-VERIFY (§9.1.2) with hLen = 32
        if em[-1] != 0xBC:
            return False
        db_len = em_len - 33
        h = em[db_len:-1]
        top = 8 * em_len - em_bits  # the leftmost bits that must be zero
        if em[0] >> (8 - top):
            return False
        # DB = maskedDB xor MGF1(H): xor as big ints, one C operation
        db = int.from_bytes(em[:db_len], "big") ^ int.from_bytes(_mgf1(h, db_len), "big")
        db &= (1 << (8 * db_len - top)) - 1
        db = db.to_bytes(db_len, "big")
        # DB = PS (zeros) || 01 || salt: the salt length is whatever follows the 01
        i = 0
        while i < db_len and db[i] == 0:
            i += 1
        if i == db_len or db[i] != 1:
            return False
        salt = db[i + 1:]
        return hashlib.sha256(bytes(8) + bytes(digest) + salt).digest() == h
    except (TypeError, ValueError):
        return False
