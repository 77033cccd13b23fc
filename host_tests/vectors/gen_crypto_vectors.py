"""Generate host_tests/vectors/p256_edge.json and rsa_sig.json with the `cryptography` package.

    .venv/bin/python host_tests/vectors/gen_crypto_vectors.py

Run once; the JSON files are committed and the tests only read them (and check every
expected verdict against `cryptography` again, so a wrong entry cannot pass silently).
The signatures are random (cryptography's ECDSA k, PSS salts): a new run gives other
bytes with the same meaning.

P-256: ECDSA-SHA256 cases in the Wycheproof style: valid, high-s, wrong r or s, r or s of
0, n, >= n, bad public points, changed message, and constructed edge cases (the point
x(kG) >= n, u1*G + u2*Q = infinity, a doubling inside the Shamir ladder). The constructed
ones need point arithmetic, done here in plain affine form (slow and simple: a generator).
RSA: PKCS#1 v1.5 and PSS (salts 0, 20, 32, 64, max) for 2048, 3072, 4096-bit keys, a 2049-bit
key (emBits = 2048: the encoded message is one byte shorter than the modulus), e = 3, and bad
signatures of every kind.
"""
import hashlib
import json
import random
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

HERE = Path(__file__).resolve().parent
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
     0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)
SHA256 = hashes.SHA256()


# ---- affine P-256 arithmetic (None is the point at infinity) ----

def add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        lam = (3 * a[0] * a[0] - 3) * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def mul(k, pt):
    out = None
    while k:
        if k & 1:
            out = add(out, pt)
        pt = add(pt, pt)
        k >>= 1
    return out


def neg(pt):
    return pt[0], (-pt[1]) % P


def point_near_x(x, step):
    # the first point with x-coordinate x, x + step, x + 2 step... (Wycheproof builds its edge cases so)
    while True:
        y2 = (x * x * x - 3 * x + B) % P
        y = pow(y2, (P + 1) // 4, P)
        if y * y % P == y2:
            return x, y
        x += step


def enc(pt):
    return "04%064x%064x" % pt


def crypto_sign(d, digest):
    key = ec.derive_private_key(d, ec.SECP256R1())
    return utils.decode_dss_signature(key.sign(digest, ec.ECDSA(utils.Prehashed(SHA256))))


def crypto_verify(pub_hex, digest, r, s):
    try:
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(pub_hex))
        pub.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(SHA256)))
        return True
    except (InvalidSignature, ValueError):
        return False


def forge(R, r, s, e):
    """The public key for which (r, s) signs digest value e, given the point R = kG: Q = r^-1 (s R - e G)."""
    return mul(pow(r, -1, N), add(mul(s, R), neg(mul(e % N, G)) if e % N else None))


def sign_for_key(Q, rnd):
    """A valid (e, r, s) for a public key whose private key is unknown: R = u1 G + u2 Q, r = x(R),
    s = r / u2, e = u1 s (the digest value comes out of the construction)."""
    u1, u2 = rnd.randrange(1, N), rnd.randrange(1, N)
    r = add(mul(u1, G), mul(u2, Q))[0] % N
    s = r * pow(u2, -1, N) % N
    return u1 * s % N, r, s


def p256_cases():
    rnd = random.Random(6979)
    cases = []

    def case(name, pub, digest, r, s, valid):
        # r, s may be out of range or negative on purpose: they are written as signed hex
        if isinstance(digest, int):
            digest = digest.to_bytes(32, "big")
        assert crypto_verify(pub, digest, r, s) == valid if 0 <= r < 2 ** 256 and 0 <= s < 2 ** 256 else not valid, name
        cases.append({"name": name, "pub": pub, "digest": digest.hex(), "r": "%x" % r, "s": "%x" % s, "valid": valid})

    d = rnd.randrange(1, N)
    Q = mul(d, G)
    pub = enc(Q)
    digest = hashlib.sha256(b"ecmath edge cases").digest()
    r, s = crypto_sign(d, digest)
    case("valid", pub, digest, r, s, True)
    case("high s (n - s) is valid ECDSA", pub, digest, r, N - s, True)
    case("wrong r (r + 1)", pub, digest, r + 1, s, False)
    case("wrong s (s + 1)", pub, digest, r, s + 1, False)
    case("r and s swapped", pub, digest, s, r, False)
    case("r = 0", pub, digest, 0, s, False)
    case("s = 0", pub, digest, r, 0, False)
    case("r = s = 0", pub, digest, 0, 0, False)
    case("r = n", pub, digest, N, s, False)
    case("s = n", pub, digest, r, N, False)
    case("r = r + n (same value mod n)", pub, digest, r + N, s, False)
    case("s = s + n (same value mod n)", pub, digest, r, s + N, False)
    case("r = p", pub, digest, P, s, False)
    case("r = 2^256 - 1", pub, digest, 2 ** 256 - 1, s, False)
    case("r = -r", pub, digest, -r, s, False)
    case("s = -s (n - s is valid, -s is not)", pub, digest, r, -s, False)
    case("r = 1, s = 1", pub, digest, 1, 1, False)
    case("message changed (one bit of the digest)", pub, bytes([digest[0] ^ 1]) + digest[1:], r, s, False)
    case("message changed (last bit of the digest)", pub, digest[:-1] + bytes([digest[-1] ^ 1]), r, s, False)
    other = enc(mul(d + 1, G))
    case("another public key", other, digest, r, s, False)
    # digests at the edges of bits2int: 0, n (= 0 mod n), all ones (> n)
    for label, dg in (("digest 0 (u1 = 0)", 0), ("digest = n (e = 0 mod n)", N),
                      ("digest all ones (e > n)", 2 ** 256 - 1)):
        rr, ss = crypto_sign(d, dg.to_bytes(32, "big"))
        case("valid, " + label, pub, dg, rr, ss, True)

    # public keys that are not points of the curve, or not encoded as one
    x, y = Q
    case("Q not on the curve (y + 1)", enc((x, (y + 1) % P)), digest, r, s, False)
    case("Q not on the curve (x + 1)", enc(((x + 1) % P, y)), digest, r, s, False)
    Qs = point_near_x(1, 1)  # a key with a small x, so that x + p still fits in 32 bytes
    es, rs, ss = sign_for_key(Qs, rnd)
    case("valid, a key with a small x", enc(Qs), es, rs, ss, True)
    case("that key with x + p (not reduced)", "04%064x%064x" % (Qs[0] + P, Qs[1]), es, rs, ss, False)
    case("Q = (0, 0)", "04" + "00" * 64, digest, r, s, False)
    case("the point at infinity encoded as 00", "00", digest, r, s, False)
    case("64 bytes (no 04 prefix)", pub[2:], digest, r, s, False)
    case("66 bytes (a byte appended)", pub + "00", digest, r, s, False)
    case("65 bytes, prefix 05", "05" + pub[2:], digest, r, s, False)
    case("65 bytes, prefix 02", "02" + pub[2:], digest, r, s, False)
    case("empty public key", "", digest, r, s, False)
    case("hybrid encoding 06/07", ("07" if y & 1 else "06") + pub[2:], digest, r, s, False)
    comp = ("03" if y & 1 else "02") + "%064x" % x
    case("compressed public key", comp, digest, r, s, True)
    case("compressed, wrong parity (the point -Q)", ("02" if y & 1 else "03") + "%064x" % x, digest, r, s, False)
    case("compressed, 34 bytes", comp + "00", digest, r, s, False)
    xbad = x
    while pow((xbad ** 3 - 3 * xbad + B) % P, (P - 1) // 2, P) == 1:
        xbad += 1
    case("compressed, x of no point", "02%064x" % xbad, digest, r, s, False)
    case("compressed, x = p", "02%064x" % P, digest, r, s, False)

    # x(kG) >= n: r = x - n, the verifier must try x = r + n (Wycheproof "k*G has a large x-coordinate")
    R = point_near_x(P - 1, -1)
    assert R[0] >= N
    e = int.from_bytes(digest, "big")
    for s2 in (N - 3, rnd.randrange(1, N)):
        Qf = forge(R, R[0] - N, s2, e)
        case("x(kG) >= n, r = x(kG) - n", enc(Qf), digest, R[0] - N, s2, True)
        case("x(kG) >= n, r = x(kG) (too large)", enc(Qf), digest, R[0], s2, False)
    R5 = point_near_x(1, 1)
    Qf = forge(R5, R5[0], 7, e)
    case("small r and s (r = x(kG), s = 7)", enc(Qf), digest, R5[0], 7, True)
    case("small r and s, r + n is not x(kG)", enc(Qf), digest, R5[0] + 1, 7, False)

    # Q = G and e = r = s: u1 = u2 = 1, the ladder adds G to G (a doubling inside the addition)
    r2 = mul(2, G)[0] % N
    case("Q = G, u1 = u2 = 1: R = G + G", enc(G), r2, r2, r2, True)
    # Q = -G and e = r = s: u1 = u2 = 1, R = G - G = infinity
    case("Q = -G, u1 = u2 = 1: R = infinity", enc(neg(G)), r2, r2, r2, False)
    # u1*G + u2*Q = infinity for a random key: e = -r d (mod n)
    rr = rnd.randrange(1, N)
    case("R = u1 G + u2 Q = infinity", pub, (-rr * d) % N, rr, rnd.randrange(1, N), False)
    # small public keys (the window table then holds multiples of G, as the comb does)
    for k in (1, 2, 3, 15, 16, N - 1, N - 2):
        for msg in (b"a", b"b"):
            dg = hashlib.sha256(msg).digest()
            rr, ss = crypto_sign(k, dg)
            case("private key %s" % ("n - %d" % (N - k) if k > N // 2 else k), enc(mul(k, G)), dg, rr, ss, True)
    # random valid and invalid signatures
    for i in range(20):
        dk = rnd.randrange(1, N)
        dg = hashlib.sha256(b"random %d" % i).digest()
        rr, ss = crypto_sign(dk, dg)
        case("random valid %d" % i, enc(mul(dk, G)), dg, rr, ss, True)
        case("random, s of another digest %d" % i, enc(mul(dk, G)), dg, rr, crypto_sign(dk, dg[::-1])[1], False)
    return cases


# ---- RSA ----

def is_prime(n, rnd):
    if n < 2 or n % 2 == 0:
        return n == 2
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(40):
        x = pow(rnd.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def prime(bits, rnd):
    while True:
        c = rnd.getrandbits(bits) | (3 << (bits - 2)) | 1
        if is_prime(c, rnd):
            return c


def key_of_bits(bits, e, rnd):
    # a key whose modulus has exactly `bits` bits (cryptography only makes whole-byte sizes)
    while True:
        p, q = prime((bits + 1) // 2, rnd), prime(bits // 2, rnd)
        n = p * q
        if n.bit_length() == bits and p != q and (p - 1) % e and (q - 1) % e:
            break
    d = pow(e, -1, (p - 1) * (q - 1))
    nums = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, n))
    return nums.private_key()


def pss(salt, mgf_hash=None):
    return padding.PSS(mgf=padding.MGF1(mgf_hash or SHA256), salt_length=salt)


def crypto_rsa_verify(pub, scheme, digest, sig):
    pad = padding.PKCS1v15() if scheme == "pkcs1" else pss(padding.PSS.AUTO)
    try:
        pub.verify(sig, digest, pad, utils.Prehashed(SHA256))
        return True
    except InvalidSignature:
        return False


def rsa_cases():
    rnd = random.Random(8017)
    keys = [("rsa2048", rsa.generate_private_key(65537, 2048)),
            ("rsa3072", rsa.generate_private_key(65537, 3072)),
            ("rsa4096", rsa.generate_private_key(65537, 4096)),
            ("rsa2049 (emLen = k - 1)", key_of_bits(2049, 65537, rnd)),
            ("rsa2048 e=3", rsa.generate_private_key(3, 2048))]
    out = []
    for kname, key in keys:
        pn = key.public_key().public_numbers()
        n, e = pn.n, pn.e
        k = (n.bit_length() + 7) // 8
        h_len = 32
        em_len = (n.bit_length() - 1 + 7) // 8
        digest = hashlib.sha256(kname.encode()).digest()
        other = hashlib.sha256(b"other " + kname.encode()).digest()
        cases = []

        def case(name, scheme, sig, dg=digest, valid=None):
            assert crypto_rsa_verify(key.public_key(), scheme, dg, sig) == valid, (kname, name)
            cases.append({"name": name, "scheme": scheme, "digest": dg.hex(), "sig": sig.hex(), "valid": valid})

        pk1 = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(SHA256))
        case("valid", "pkcs1", pk1, valid=True)
        case("valid PKCS#1 v1.5 checked as PSS", "pss", pk1, valid=False)
        for salt in (0, 20, 32, 64, em_len - h_len - 2):
            sig = key.sign(digest, pss(salt), utils.Prehashed(SHA256))
            label = "salt %d%s" % (salt, " (max)" if salt == em_len - h_len - 2 else "")
            case("valid, " + label, "pss", sig, valid=True)
            case("PSS %s checked as PKCS#1 v1.5" % label, "pkcs1", sig, valid=False)
            if salt in (32, em_len - h_len - 2):
                flipped = bytearray(sig)
                flipped[rnd.randrange(k)] ^= 1 << rnd.randrange(8)
                case("PSS %s, a flipped bit" % label, "pss", bytes(flipped), valid=False)
                case("PSS %s, wrong digest" % label, "pss", sig, dg=other, valid=False)
        flipped = bytearray(pk1)
        flipped[rnd.randrange(k)] ^= 1 << rnd.randrange(8)
        case("PKCS#1, a flipped bit", "pkcs1", bytes(flipped), valid=False)
        case("PKCS#1, wrong digest", "pkcs1", pk1, dg=other, valid=False)
        case("PKCS#1 over SHA-384 (another DigestInfo)", "pkcs1",
             key.sign(hashlib.sha384(b"x").digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA384())),
             dg=hashlib.sha384(b"x").digest()[:32], valid=False)
        case("PSS with MGF1-SHA-1", "pss", key.sign(digest, pss(32, hashes.SHA1()), utils.Prehashed(SHA256)),
             valid=False)
        for scheme in ("pkcs1", "pss"):
            case("%s, s = n" % scheme, scheme, n.to_bytes(k, "big"), valid=False)
            case("%s, s = n + 1" % scheme, scheme, (n + 1).to_bytes(k, "big"), valid=False)
            case("%s, s = 256^k - 1" % scheme, scheme, b"\xff" * k, valid=False)
            case("%s, s = 0" % scheme, scheme, bytes(k), valid=False)
            case("%s, s = 1" % scheme, scheme, (1).to_bytes(k, "big"), valid=False)
            case("%s, s = n - 1" % scheme, scheme, (n - 1).to_bytes(k, "big"), valid=False)
            good = pk1 if scheme == "pkcs1" else key.sign(digest, pss(32), utils.Prehashed(SHA256))
            case("%s, a zero byte prepended (k + 1 bytes)" % scheme, scheme, b"\x00" + good, valid=False)
            case("%s, a zero byte appended" % scheme, scheme, good + b"\x00", valid=False)
            case("%s, last byte cut (k - 1 bytes)" % scheme, scheme, good[:-1], valid=False)
            case("%s, empty" % scheme, scheme, b"", valid=False)
            case("%s, s + n (not reduced, k bytes if it fits)" % scheme, scheme,
                 (int.from_bytes(good, "big") + n).to_bytes(k + 1, "big")[-k:]
                 if int.from_bytes(good, "big") + n < 256 ** k else b"\xff" * k, valid=False)
        out.append({"key": kname, "n": "%x" % n, "e": e, "cases": cases})
    return out


def main():
    (HERE / "p256_edge.json").write_text(json.dumps(
        {"source": "generated by gen_crypto_vectors.py (cryptography %s)" % __import__("cryptography").__version__,
         "cases": p256_cases()}, indent=1) + "\n")
    (HERE / "rsa_sig.json").write_text(json.dumps(
        {"source": "generated by gen_crypto_vectors.py (cryptography %s)" % __import__("cryptography").__version__,
         "keys": rsa_cases()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
