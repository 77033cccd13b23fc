# MicroPython side of host_tests/test_crypto_math.py: reads a JSON list of
# operations from standard input and prints one JSON list with the answers.
# Integers travel as hex strings (big ints), byte strings as hex.
#   ["verify", pub, digest, r, s] -> bool          p256.verify
#   ["verify_raw", pub, digest, r, s] -> bool      the same with the JSON values as they are
#                                                  ({"hex": h} is bytes), for inputs of the wrong type
#   ["sign", d, digest] -> [r, s]                  p256.sign
#   ["public", d] -> pub                           p256.public
#   ["keygen", count] -> [[d, pub], ...]           p256.keygen
#   ["pkcs1" | "pss", n, e, digest, sig] -> bool   rsa.verify_pkcs1 / rsa.verify_pss
#   ["pkcs1_raw" | "pss_raw", n, e, digest, sig]   the JSON values as they are, as verify_raw
# An operation that raises answers ["raised", "<exception>"].
import sys
import json
from binascii import hexlify, unhexlify
import p256
import rsa


def b(h):
    return unhexlify(h)


def i(h):
    return int(h, 16)


def h(v):
    return hexlify(v).decode()


def raw(v):
    return b(v["hex"]) if isinstance(v, dict) else v


def run(op):
    k = op[0]
    if k == "verify":
        return p256.verify(b(op[1]), b(op[2]), i(op[3]), i(op[4]))
    if k == "verify_raw":
        return p256.verify(*[raw(v) for v in op[1:]])
    if k == "sign":
        r, s = p256.sign(i(op[1]), b(op[2]))
        return ["%x" % r, "%x" % s]
    if k == "public":
        return h(p256.public(i(op[1])))
    if k == "keygen":
        out = []
        for _ in range(op[1]):
            d, pub = p256.keygen()
            out.append(["%x" % d, h(pub)])
        return out
    if k in ("pkcs1", "pss"):
        f = rsa.verify_pkcs1 if k == "pkcs1" else rsa.verify_pss
        return f(i(op[1]), op[2], b(op[3]), b(op[4]))
    if k in ("pkcs1_raw", "pss_raw"):
        f = rsa.verify_pkcs1 if k == "pkcs1_raw" else rsa.verify_pss
        return f(*[raw(v) for v in op[1:]])
    raise ValueError("unknown operation " + k)


out = []
for op in json.loads(sys.stdin.read()):
    try:
        out.append(run(op))
    except Exception as e:
        out.append(["raised", repr(e)])
print(json.dumps(out))
