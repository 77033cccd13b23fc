# MicroPython side of host_tests/test_x509.py: reads a JSON list of cases from
# standard input, [op, args...], bytes as hex, and prints one JSON list with
# an answer per case; a case that raised answers {"error": class, "why": text}.
import sys
import json
import binascii
import der
import x509

_h = binascii.unhexlify


def _hx(b):
    return binascii.hexlify(b).decode()


def _key(k):
    if k is None:
        return None
    if k[0] == "ec":
        return ["ec", _hx(k[1])]
    return ["rsa", "%x" % k[1], k[2]]


def _unkey(k):
    return ("ec", _h(k[1])) if k[0] == "ec" else ("rsa", int(k[1], 16), k[2])


def fields(c):
    return {"version": c.version, "serial": "%x" % c.serial, "issuer": _hx(c.issuer),
            "subject": _hx(c.subject), "cn": c.cn, "o": c.o, "not_before": c.not_before,
            "not_after": c.not_after, "key": _key(c.key), "key_bits": _hx(c.key_bits),
            "is_ca": c.is_ca, "path_len": c.path_len, "key_usage": c.key_usage, "eku": c.eku,
            "san_dns": c.san_dns, "san_ip": c.san_ip, "sig_alg": c.sig_alg, "sig": _hx(c.sig),
            "tbs": _hx(c.tbs), "unknown_critical": c.unknown_critical}


def certs(hexes):
    return [x509.Cert(_h(x)) for x in hexes]


def run(op, a):
    if op == "parse":
        return fields(x509.Cert(_h(a[0])))
    if op == "cert":  # only whether it parses
        x509.Cert(_h(a[0]))
        return "ok"
    if op == "chain":
        roots = certs(a[1])
        return roots.index(x509.chain(certs(a[0]), roots, a[2]))
    if op == "verify":
        return x509.verify(x509.Cert(_h(a[0])), x509.Cert(_h(a[1])))
    if op == "verify_digest":
        return x509.verify_digest(_unkey(a[0]), _h(a[1]), _h(a[2]))
    if op == "hash":
        return x509.hash_data(x509.Cert(_h(a[0])), x509.Cert(_h(a[1])))
    if op == "pem":
        return [[label, _hx(d)] for label, d in der.pem_decode(a[0])]
    if op == "pem_bytes":
        return [[label, _hx(d)] for label, d in der.pem_decode(_h(a[0]))]
    if op == "pem_encode":
        return der.pem_encode(a[0], _h(a[1]))
    if op == "sig_decode":
        return ["%x" % n for n in der.ecdsa_sig_decode(_h(a[0]))]
    if op == "sig_encode":
        return _hx(der.ecdsa_sig_encode(int(a[0], 16), int(a[1], 16)))
    if op == "int":
        b = _h(a[0])
        t, s, e = der.tlv(b, 0, len(b))
        return "%d" % der.as_int(b, s, e)
    if op == "int_encode":
        return _hx(der.integer(int(a[0])))
    if op == "oid":
        b = _h(a[0])
        s, e = der.expect(b, 0, len(b), der.OID)
        return der.as_oid(b, s, e)
    if op == "oid_encode":
        return _hx(der.oid(a[0]))
    if op == "csr":
        return x509.csr(int(a[0], 16), _h(a[1]), a[2], a[3])
    if op == "key_der":
        return _hx(x509.ec_key_der(int(a[0], 16), _h(a[1])))
    raise KeyError(op)


out = []
for case in json.loads(sys.stdin.read()):
    try:
        out.append(run(case[0], case[1:]))
    except Exception as e:
        out.append({"error": type(e).__name__, "why": str(e)})
print(json.dumps(out))
