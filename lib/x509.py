# X.509 v3 certificates (RFC 5280): parsing, signature and chain checks, the
# OCPP CertificateHashDataType, PKCS#10 requests (RFC 2986) and SEC1 private
# keys (RFC 5915) for an EC P-256 key. Imported only while a certificate
# operation runs; p256 and rsa only when a signature is made or checked.
#
#   c = Cert(der)              raises ValueError on anything malformed
#   chain(certs, roots, now)   -> the root Cert, or ValueError(why)
#   verify(cert, issuer)       -> bool
#   hash_data(cert, issuer)    -> CertificateHashDataType dict
#   csr(d, pub, cn, o=None)    -> PEM text
#   ec_key_der(d, pub)         -> DER for SSLContext.load_cert_chain
import hashlib
import binascii
import der
from der import tlv, expect, items, as_oid, SEQ, INT, BITS, OCTETS, BOOL, OID

# Signature algorithms (RFC 5758, RFC 4055) and the names Cert.sig_alg uses.
_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
_RSA_SHA256 = "1.2.840.113549.1.1.11"
_PSS = "1.2.840.113549.1.1.10"
ECDSA_SHA256 = "ecdsa-with-SHA256"
RSA_SHA256 = "sha256WithRSAEncryption"
RSA_PSS = "RSASSA-PSS"  # with SHA-256 and MGF1-SHA-256: the only parameters accepted
_SHA256 = "2.16.840.1.101.3.4.2.1"
_MGF1 = "1.2.840.113549.1.1.8"
_EC_KEY = "1.2.840.10045.2.1"
_P256 = "1.2.840.10045.3.1.7"
_RSA_KEY = "1.2.840.113549.1.1.1"
_CN = "2.5.4.3"
_O = "2.5.4.10"
KEY_CERT_SIGN = 1 << 5  # keyUsage bit 5 (RFC 5280 §4.2.1.3), in Cert.key_usage


class Cert:
    # Attributes: der, version (0..2), serial, issuer and subject (Name DER),
    # cn and o (the subject's first commonName and organizationName or None),
    # not_before, not_after (Unix seconds), key (("ec", pub65), ("rsa", n, e)
    # or None: a key type not supported), is_ca, path_len (None: no limit),
    # key_usage (bit i = RFC 5280 bit i; None: no extension), eku (list of
    # OIDs or None), san_dns, san_ip, sig_alg (a name above, else the OID),
    # unknown_critical (OIDs of the critical extensions not understood).
    # tbs, sig and key_bits are memoryviews into der: a certificate is held once.
    def __init__(self, data):
        self.der = data if isinstance(data, bytes) else bytes(data)
        b = memoryview(self.der)
        n = len(b)
        s, e = expect(b, 0, n, SEQ)
        if e != n:
            raise ValueError("x509: bytes after the certificate")
        p, te = expect(b, s, e, SEQ)  # tbsCertificate
        self._tbs = (s, te)
        a, ae = expect(b, te, e, SEQ)  # signatureAlgorithm
        alg = b[te:ae]
        self.sig_alg = _sig_alg(b, a, ae)
        self._sig = _bits(b, ae, e)
        if self._sig[1] != e:
            raise ValueError("x509: bytes after the signature")

        t, s, x = tlv(b, p, te)
        self.version = 0
        if t == 0xA0:  # [0] EXPLICIT version
            vs, ve = expect(b, s, x, INT)
            self.version = der.as_int(b, vs, ve)
            if ve != x or not 0 <= self.version <= 2:
                raise ValueError("x509: bad version")
            p = x
            t, s, x = tlv(b, p, te)
        if t != INT:
            raise ValueError("x509: no serial number")
        self.serial = der.as_int(b, s, x)
        p = x
        s, x = expect(b, p, te, SEQ)
        if b[p:x] != alg:  # RFC 5280 §4.1.1.2
            raise ValueError("x509: the two signature algorithms differ")
        p = x
        s, x = expect(b, p, te, SEQ)
        _names(b, s, x)  # checks the Name's structure
        self.issuer = bytes(b[p:x])
        p = x
        s, x = expect(b, p, te, SEQ)  # validity
        t, vs, ve = tlv(b, s, x)
        self.not_before = der.as_time(t, b, vs, ve)
        t, vs, ve = tlv(b, ve, x)
        self.not_after = der.as_time(t, b, vs, ve)
        if ve != x:
            raise ValueError("x509: bad validity")
        p = x
        s, x = expect(b, p, te, SEQ)
        self.cn, self.o = _names(b, s, x)
        self.subject = bytes(b[p:x])
        p = x
        s, x = expect(b, p, te, SEQ)
        self._key(b, s, x)
        p = x

        self.is_ca = False
        self.path_len = None
        self.key_usage = None
        self.eku = None
        self.san_dns = []
        self.san_ip = []
        self.unknown_critical = []
        last = 0
        while p < te:  # [1] issuerUniqueID, [2] subjectUniqueID (v2+), [3] extensions (v3)
            t, s, x = tlv(b, p, te)
            if t <= last or t not in (0x81, 0x82, 0xA3) or self.version < (2 if t == 0xA3 else 1):
                raise ValueError("x509: unexpected field in tbsCertificate")
            if t == 0xA3:
                es, ee = expect(b, s, x, SEQ)
                if ee != x or es == ee:
                    raise ValueError("x509: bad extensions")
                self._extensions(b, es, ee)
            last = t
            p = x

    @property
    def tbs(self):
        return memoryview(self.der)[self._tbs[0]:self._tbs[1]]

    @property
    def sig(self):
        return memoryview(self.der)[self._sig[0]:self._sig[1]]

    @property
    def key_bits(self):
        return memoryview(self.der)[self._kb[0]:self._kb[1]]

    def _key(self, b, s, e):
        # SubjectPublicKeyInfo (RFC 5280 §4.1.2.7; RFC 3279, RFC 5480)
        a, ae = expect(b, s, e, SEQ)
        os, oe = expect(b, a, ae, OID)
        alg = as_oid(b, os, oe)
        self._kb = ks, ke = _bits(b, ae, e)
        if ke != e:
            raise ValueError("x509: bad public key")
        self.key = None
        if alg == _EC_KEY:
            t, ps, pe = tlv(b, oe, ae)
            if t == OID and pe == ae and as_oid(b, ps, pe) == _P256:
                self.key = ("ec", bytes(b[ks:ke]))
        elif alg == _RSA_KEY or alg == _PSS:
            ns, ne = expect(b, ks, ke, SEQ)  # RSAPublicKey (RFC 8017 A.1.1)
            a, x = expect(b, ns, ne, INT)
            c, y = expect(b, x, ne, INT)
            if y != ne:
                raise ValueError("x509: bad RSA key")
            self.key = ("rsa", der.as_uint(b, a, x), der.as_uint(b, c, y))

    def _extensions(self, b, s, e):
        seen = []
        for t, s, x in items(b, s, e):
            if t != SEQ:
                raise ValueError("x509: bad extension")
            os, oe = expect(b, s, x, OID)
            oid = as_oid(b, os, oe)
            if oid in seen:  # RFC 5280 §4.2
                raise ValueError("x509: extension %s twice" % oid)
            seen.append(oid)
            t, vs, ve = tlv(b, oe, x)
            critical = False
            if t == BOOL:
                critical = der.as_bool(b, vs, ve)
                t, vs, ve = tlv(b, ve, x)
            if t != OCTETS or ve != x:
                raise ValueError("x509: bad extension")
            if not self._extension(oid, b, vs, ve) and critical:
                self.unknown_critical.append(oid)

    def _extension(self, oid, b, s, e):
        # Parses the extensions this module understands; False for the others.
        if oid == "2.5.29.19":  # basicConstraints
            s, x = _whole(b, s, e, SEQ)
            if s < x and b[s] == BOOL:  # cA, DEFAULT FALSE
                t, vs, s = tlv(b, s, x)
                self.is_ca = der.as_bool(b, vs, s)
            if s < x:  # pathLenConstraint
                vs, s = expect(b, s, x, INT)
                self.path_len = der.as_uint(b, vs, s)
            if s != x:
                raise ValueError("x509: bad basicConstraints")
        elif oid == "2.5.29.15":  # keyUsage
            s, x = _whole(b, s, e, BITS)
            u, s, x = der.as_bits(b, s, x)
            ku = 0
            for i in range(s, x):
                for k in range(8):
                    if b[i] & (0x80 >> k):
                        ku |= 1 << (8 * (i - s) + k)
            self.key_usage = ku
        elif oid == "2.5.29.17":  # subjectAltName
            s, x = _whole(b, s, e, SEQ)
            for t, vs, ve in items(b, s, x):
                if t == 0x82:  # dNSName
                    self.san_dns.append(der.utf8_text(b, vs, ve))
                elif t == 0x87:  # iPAddress
                    self.san_ip.append(_ip(b, vs, ve))
        elif oid == "2.5.29.37":  # extKeyUsage
            s, x = _whole(b, s, e, SEQ)
            self.eku = []
            for t, vs, ve in items(b, s, x):
                if t != OID:
                    raise ValueError("x509: bad extKeyUsage")
                self.eku.append(as_oid(b, vs, ve))
        elif oid not in ("2.5.29.14", "2.5.29.35"):  # key identifiers: path hints only
            return False
        return True


def _whole(b, s, e, tag):
    # An extension value: one element that fills it.
    vs, ve = expect(b, s, e, tag)
    if ve != e:
        raise ValueError("x509: bytes after an extension value")
    return vs, ve


def _bits(b, pos, end):
    # A BIT STRING of whole bytes (keys, signatures): its contents' bounds.
    s, e = expect(b, pos, end, BITS)
    u, s, x = der.as_bits(b, s, e)
    if u:
        raise ValueError("x509: BIT STRING of partial bytes")
    return s, x


def _sig_alg(b, s, e):
    # The AlgorithmIdentifier's name, or its OID when not supported.
    os, oe = expect(b, s, e, OID)
    alg = as_oid(b, os, oe)
    if alg == _ECDSA_SHA256:
        return ECDSA_SHA256 if oe == e else alg  # parameters absent (RFC 5758 §3.2)
    if alg == _RSA_SHA256:
        return RSA_SHA256
    if alg == _PSS:
        return RSA_PSS if _pss_sha256(b, oe, e) else "RSASSA-PSS with other than SHA-256/MGF1-SHA-256"
    return alg


def _pss_sha256(b, s, e):
    # RSASSA-PSS-params (RFC 4055 §3.1): hash and MGF1 hash both SHA-256,
    # trailerField 1. The salt length is whatever the signature holds.
    if s == e:  # no parameters: the SHA-1 defaults
        return False
    ps, pe = _whole(b, s, e, SEQ)
    h = m = None
    for t, vs, ve in items(b, ps, pe):
        if t == 0xA0:
            h = _hash_alg(b, *_whole(b, vs, ve, SEQ))
        elif t == 0xA1:
            a, x = _whole(b, vs, ve, SEQ)
            os, oe = expect(b, a, x, OID)
            if as_oid(b, os, oe) == _MGF1:
                m = _hash_alg(b, *_whole(b, oe, x, SEQ))
        elif t == 0xA3:
            n, x = _whole(b, vs, ve, INT)
            if der.as_int(b, n, x) != 1:
                return False
        elif t != 0xA2:
            raise ValueError("x509: bad RSASSA-PSS parameters")
    return h == m == _SHA256


def _hash_alg(b, s, e):
    os, oe = expect(b, s, e, OID)
    if oe != e and b[oe:e] != der.NULL:
        raise ValueError("x509: bad hash algorithm parameters")
    return as_oid(b, os, oe)


def _names(b, s, e):
    # Walks a Name (SEQUENCE OF SET OF {type, value}): its first CN and O.
    cn = o = None
    for t, rs, re in items(b, s, e):
        if t != der.SET or rs == re:
            raise ValueError("x509: bad Name")
        for t, a, x in items(b, rs, re):
            if t != SEQ:
                raise ValueError("x509: bad Name")
            os, oe = expect(b, a, x, OID)
            t, vs, ve = tlv(b, oe, x)
            if ve != x:
                raise ValueError("x509: bad Name")
            oid = as_oid(b, os, oe)
            if cn is None and oid == _CN:
                cn = der.as_text(t, b, vs, ve)
            elif o is None and oid == _O:
                o = der.as_text(t, b, vs, ve)
    return cn, o


def _ip(b, s, e):
    # An iPAddress as text: dotted IPv4, or IPv6 in the RFC 5952 form
    # (lower case, the longest run of two or more zero groups as "::").
    if e - s == 4:
        return "%d.%d.%d.%d" % (b[s], b[s + 1], b[s + 2], b[s + 3])
    if e - s != 16:
        raise ValueError("x509: bad iPAddress")
    g = ["%x" % (b[i] << 8 | b[i + 1]) for i in range(s, e, 2)]
    at, run, i = -1, 1, 0
    while i < 8:
        j = i
        while j < 8 and g[j] == "0":
            j += 1
        if j - i > run:
            at, run = i, j - i
        i = j + 1
    if at < 0:
        return ":".join(g)
    return ":".join(g[:at]) + "::" + ":".join(g[at + run:])


# ---- signatures ----

def _sig_problem(cert, key):
    # None when `key` made cert's signature, else why not, in words.
    alg = cert.sig_alg
    if key is None:
        return "the issuer's key type is not supported"
    if alg == ECDSA_SHA256:
        kind = "ec"
    elif alg == RSA_SHA256 or alg == RSA_PSS:
        kind = "rsa"
    else:
        return "signature algorithm not supported: " + alg
    if key[0] != kind:
        return "the issuer's key does not match the signature algorithm"
    digest = hashlib.sha256(cert.tbs).digest()
    if kind == "ec":
        try:
            r, s = der.ecdsa_sig_decode(cert.sig)
        except ValueError:
            return "bad signature encoding"
        import p256

        ok = p256.verify(key[1], digest, r, s)
    else:
        import rsa

        sig = bytes(cert.sig)
        if alg == RSA_PSS:
            ok = rsa.verify_pss(key[1], key[2], digest, sig)
        else:
            ok = rsa.verify_pkcs1(key[1], key[2], digest, sig)
    return None if ok else "bad signature"


def verify(cert, issuer):
    return _sig_problem(cert, issuer.key) is None


def verify_digest(key, digest, sig):
    # A signature over a SHA-256 digest (e.g. a signed firmware): EC takes a
    # DER ECDSA-Sig-Value (or the 64-byte r|s some signers write); RSA is
    # tried as PSS, then as PKCS#1 v1.5.
    if key is None:
        return False
    if key[0] == "ec":
        try:
            r, s = der.ecdsa_sig_decode(sig)
        except ValueError:
            if len(sig) != 64:
                return False
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        import p256

        return p256.verify(key[1], digest, r, s)
    import rsa

    sig = bytes(sig)
    return rsa.verify_pss(key[1], key[2], digest, sig) or rsa.verify_pkcs1(key[1], key[2], digest, sig)


# ---- chains (RFC 5280 §6, the parts a charging station needs) ----

def _who(c):
    return '"%s"' % c.cn if c.cn else "serial %x" % c.serial


def _dates(c, now):
    if now is not None:
        if now < c.not_before:
            return _who(c) + " is not yet valid"
        if now > c.not_after:
            return _who(c) + " has expired"
    return None


def _own_problem(c, now):
    # What makes c unusable on its own: its dates at `now`, or a critical
    # extension not understood (RFC 5280 §4.2: such a certificate is refused).
    why = _dates(c, now)
    if why:
        return why
    if c.unknown_critical:
        return _who(c) + " has an unknown critical extension " + c.unknown_critical[0]
    return None


def _ca_problem(c, below):
    # Whether intermediate c may sign a certificate with `below`
    # intermediates under it (RFC 5280 §6.1.4 (k), (l), (n)).
    if not c.is_ca:
        return _who(c) + " is not a CA"
    if c.key_usage is not None and not c.key_usage & KEY_CERT_SIGN:
        return _who(c) + " may not sign certificates (keyUsage)"
    if c.path_len is not None and below > c.path_len:
        return _who(c) + " allows a shorter chain (pathLenConstraint)"
    return None


def _signed(c, issuer):
    why = _sig_problem(c, issuer.key)
    return why and "%s: %s" % (_who(c), why)


def chain(certs, roots, now):
    # certs: leaf first, then intermediates in any order; roots: trusted Certs.
    # Returns the root the leaf chains to. A root is a trust anchor: only its
    # dates and its signature on the next certificate are checked (not cA,
    # keyUsage, pathLen or its extensions).
    if not certs:
        raise ValueError("no certificate")
    cur = certs[0]
    pool = list(certs[1:])
    below = 0  # intermediates between the leaf and cur's signer
    while True:
        for r in roots:
            if r.der == cur.der:  # sent along, or a root checked on its own
                why = _dates(r, now)
                if why:
                    raise ValueError(why)
                return r
        why = _own_problem(cur, now)
        if why:
            raise ValueError(why)
        for r in roots:
            if r.subject == cur.issuer:
                why = _dates(r, now) or _signed(cur, r)
                if why is None:
                    return r
        for c in pool:
            if c.subject == cur.issuer:
                why = _own_problem(c, now) or _ca_problem(c, below) or _signed(cur, c)
                if why is None:
                    break
        else:
            raise ValueError(why or "no trusted issuer for " + _who(cur))
        pool.remove(c)  # each certificate signs at most once: no loops
        cur = c
        below += 1


# ---- OCPP CertificateHashDataType (whitepaper §6.1, RFC 6960 §4.1.1 CertID) ----

def _hex(b):
    return binascii.hexlify(b).decode()


def hash_data(cert, issuer):
    # issuer: the Cert that signed cert (cert itself for a root). Lower-case
    # hex; the serial without leading zeros (OCPP 2.0.1 says so explicitly,
    # the 1.6 whitepaper is silent; identifierString is case-insensitive).
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": _hex(hashlib.sha256(cert.issuer).digest()),
        "issuerKeyHash": _hex(hashlib.sha256(issuer.key_bits).digest()),
        "serialNumber": "%x" % cert.serial,
    }


# ---- our own EC P-256 key: PKCS#10 request, SEC1 private key ----

def _ec_spki(pub):
    return der.seq(der.seq(der.oid(_EC_KEY), der.oid(_P256)), der.bit_string(pub))


def csr(d, pub, cn, o=None):
    # RFC 2986 CertificationRequest, signed with ecdsa-with-SHA256 by the key
    # itself. Subject: O (the CpoName, A03.FR.13) then CN, as UTF8String.
    import p256

    rdns = [der.set_of(der.seq(der.oid(_CN), der.utf8(cn)))]
    if o is not None:
        rdns.insert(0, der.set_of(der.seq(der.oid(_O), der.utf8(o))))
    info = der.seq(der.integer(0), der.seq(*rdns), _ec_spki(pub), der.ctx(0, b""))
    r, s = p256.sign(d, hashlib.sha256(info).digest())
    req = der.seq(info, der.seq(der.oid(_ECDSA_SHA256)), der.bit_string(der.ecdsa_sig_encode(r, s)))
    return der.pem_encode("CERTIFICATE REQUEST", req)


def ec_key_der(d, pub):
    # RFC 5915 ECPrivateKey with the namedCurve and the public key.
    return der.seq(der.integer(1), der.octet_string(d.to_bytes(32, "big")),
                   der.ctx(0, der.oid(_P256)), der.ctx(1, der.bit_string(pub)))
