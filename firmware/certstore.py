# The certificate store's operations (certs.py holds the files): install,
# seed, list, find, delete (whitepaper M03-M05), the validity checks of A05
# and the client certificate's installation (A02/A03, or by the installer).
# Imported only while one of them runs, with lib/x509.py where it parses.
import binascii
import hashlib
import log
from certs import CS, MF, PREFIX, CLIENT, tlvs

_TAG = "certs"


def pem_blocks(text):
    # -> [(label, der), ...]: every "-----BEGIN <label>-----" block of a PEM text.
    if not isinstance(text, str):
        text = str(text, "utf-8")
    out = []
    for part in text.split("-----BEGIN ")[1:]:
        e = part.find("-----")
        end = part.find("-----END")
        if e < 0 or end < e:
            raise ValueError("broken PEM block")
        out.append((part[:e], binascii.a2b_base64(part[e + 5 : end])))
    return out


def _is_pem(data):
    return isinstance(data, str) or data[:5] == b"-----"


def _now():
    # Unix seconds, None while the clock is not set.
    import clock
    return clock.now() if clock.synced() else None


def _der(data):
    # PEM text with one CERTIFICATE block, or DER bytes -> DER bytes; None if neither.
    if _is_pem(data):
        try:
            blocks = pem_blocks(data)
        except (ValueError, UnicodeError):
            return None
        if len(blocks) != 1 or blocks[0][0] != "CERTIFICATE":
            return None
        return blocks[0][1]
    return bytes(data)


def _unfit(der):
    # -> why a certificate cannot be a root of the store, or None
    import x509
    try:
        c = x509.Cert(der)
    except (ValueError, TypeError, IndexError) as e:
        return "it does not parse (%s)" % e
    if not c.is_ca:
        return "it is not a CA certificate"
    now = _now()
    if now is not None and c.not_after < now:
        return "it expired"
    return None


def install(s, kind, data, check=True):
    # InstallCertificate (M05): "Accepted" (also for a certificate that is
    # installed already: no second copy), "Rejected" (not one PEM or DER
    # certificate, not a CA, expired, or the store is full), "Failed"
    # (the flash did not take it). check=False (an installer's --ca file, at
    # boot): stored as it is, no X.509 parsing and no trial TLS context (on a
    # board whose mbedTLS allocates from the heap that would split the room
    # the first TLS session needs).
    if kind not in PREFIX:
        return "Rejected"
    der = _der(data)
    if not der:
        log.warn(_TAG, "%s rejected: not one PEM or DER certificate" % kind)
        return "Rejected"
    if check:
        why = _unfit(der)
        if why:
            log.warn(_TAG, "%s rejected: %s" % (kind, why))
            return "Rejected"
        try:  # the TLS stack must take it as a trust anchor too
            import ssl
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=der)
        except (ValueError, OSError) as e:
            log.warn(_TAG, "%s rejected: the TLS stack cannot load it (%s)" % (kind, e))
            return "Rejected"
    name = PREFIX[kind] + binascii.hexlify(hashlib.sha256(der).digest()[:8]).decode() + ".der"
    if s.read(name) == der:
        log.info(_TAG, "%s %s is installed already" % (kind, name[3:-4]))
        return "Accepted"
    _sweep(s)
    n = s.count()
    if n >= s.limit:  # M05.FR.03
        log.warn(_TAG, "%s rejected: the store is full (%d of CertificateStoreMaxLength %d)" % (kind, n, s.limit))
        return "Rejected"
    try:
        s.write(name, der)
    except OSError as e:
        log.exc(_TAG, "cannot store the %s" % kind, e)
        s.remove(name + ".tmp")
        return "Failed"
    log.info(_TAG, "%s %s installed (%d of %d)" % (kind, name[3:-4], n + 1, s.limit))
    return "Accepted"


def _sweep(s):
    # The .tmp of a write a power cut interrupted: of no use, and it takes room.
    import os
    try:
        names = os.listdir(s.dir[:-1])
    except OSError:
        return
    for n in names:
        if n.endswith(".tmp"):
            s.remove(n)


def seed(s, data):
    # The installer's CA file (make sim CA=, --ca): every certificate in it
    # becomes a CentralSystemRootCertificate, once per data directory; later
    # the store is what counts (a deleted root is not put back).
    # -> the number installed, None when the store was seeded before.
    if s.read("seeded") is not None:
        return None
    ders = [d for label, d in pem_blocks(data) if label == "CERTIFICATE"] if _is_pem(data) else list(tlvs(data))
    n = 0
    for der in ders:
        if install(s, CS, bytes(der), False) == "Accepted":
            n += 1
    s.write("seeded", b"")
    return n


def _certs(s, prefix):
    # (file name, x509.Cert) of every certificate of a kind, one at a time
    import x509
    for n in s.names(prefix):
        try:
            yield n, x509.Cert(s.read(n))
        except (ValueError, TypeError):
            log.warn(_TAG, "stored certificate %s does not parse: skipped" % n)


def _hash_data(s, cert, prefix):
    # certificateHashData (RFC 6960 CertID): for a root the issuer is the
    # certificate itself; a sub-CA's issuer is looked for in the store (else
    # its own key stands in: the CSMS cannot have meant another one of ours).
    import x509
    issuer = cert
    if cert.issuer != cert.subject:
        for _, c in _certs(s, prefix):
            if c.subject == cert.issuer:
                issuer = c
                break
    return x509.hash_data(cert, issuer)


def ids(s, kind):
    p = PREFIX[kind]
    return [_hash_data(s, c, p) for _, c in _certs(s, p)]


def _key(h):
    # certificateHashData -> a comparable tuple: hex in any case, serial without leading zeros
    return (h.get("issuerNameHash", "").lower(), h.get("issuerKeyHash", "").lower(),
            h.get("serialNumber", "").lower().lstrip("0"))


def find(s, hash_data):
    # -> (kind, file name) of the certificate hash_data names, or None.
    if hash_data.get("hashAlgorithm") != "SHA256":  # the only one we compute (M04.FR.07)
        return None
    want = _key(hash_data)
    for kind in (CS, MF):
        p = PREFIX[kind]
        for n, c in _certs(s, p):
            if _key(_hash_data(s, c, p)) == want:
                return kind, n
    return None


def delete(s, hash_data, name=None):
    # DeleteCertificate (M04): "Accepted", "NotFound" or "Failed" (the flash
    # would not let go). Whether a root is in use is the caller's question.
    if name is None:
        found = find(s, hash_data)
        if not found:
            return "NotFound"
        name = found[1]
    if not s.remove(name):
        return "Failed"
    log.info(_TAG, "%s %s deleted" % (CS if name[:3] == "cs-" else MF, name[3:-4]))
    return "Accepted"


def valid(s, kind, now=None):
    # -> whether a certificate of this kind is installed and, when the clock
    # is set, within its validity period (A05.FR.03).
    if not s.count(kind):
        return False
    now = _now() if now is None else now
    if now is None:
        return True
    for _, c in _certs(s, PREFIX[kind]):
        if c.not_before <= now <= c.not_after:
            return True
    return False


def client_valid(s, now=None):
    # A05.FR.04: a client certificate is installed and (clock set) valid now.
    c = s.client()
    if c is None:
        return False
    now = _now() if now is None else now
    if now is None:
        return True
    import x509
    try:
        leaf = x509.Cert(c[0][0])
    except ValueError:
        return False
    return leaf.not_before <= now <= leaf.not_after


def install_client(s, chain_ders):
    # CertificateSigned (A02/A03): the pending key becomes the client key,
    # with this chain (leaf first); used from the next connection.
    k = s.pending_key()
    if k is None:
        raise ValueError("no pending key")
    import x509
    s.write(CLIENT, x509.ec_key_der(k[0], k[1]), *[bytes(c) for c in chain_ders])
    s.drop_pending_key()
    log.info(_TAG, "client certificate installed")


def provision_client(s, chain, key):
    # An installer's (or manufacturer's) client certificate and private key,
    # PEM text or DER each (A00.FR.801): stored as CertificateSigned would.
    ders = [d for label, d in pem_blocks(chain) if label == "CERTIFICATE"] if _is_pem(chain) else \
        [bytes(x) for x in tlvs(chain)]
    if _is_pem(key):
        blocks = pem_blocks(key)
        keys = [d for label, d in blocks if label.endswith("PRIVATE KEY") and "ENCRYPTED" not in label]
        if len(keys) != 1:
            raise ValueError("the key file must hold one unencrypted private key")
        key = keys[0]
    if not ders:
        raise ValueError("no certificate in the certificate file")
    import ssl
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(ders[0], key)
    except (ValueError, OSError) as e:
        raise ValueError("the TLS stack does not take this certificate and key: %s" % e)
    s.write(CLIENT, bytes(key), *ders)
    log.info(_TAG, "client certificate provisioned")
