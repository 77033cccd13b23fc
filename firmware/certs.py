# The certificate store in flash (OCPP 1.6 security whitepaper M03-M05, A02,
# security profiles 2 and 3). Everything lives in the directory "certs" under
# the flash root, one file per certificate, so RAM never holds them all and
# the directory listing is the index:
#   cs-<h>.der   a CentralSystemRootCertificate, DER (<h>: 16 hex digits of
#   mf-<h>.der   a ManufacturerRootCertificate    the SHA-256 of the DER)
#   client       the profile 3 client certificate: its private key, then the
#                certificate chain (leaf first), as consecutive DER elements
#   pending      the key pair of a CSR not signed yet: d (32 bytes) + public point (65)
#   seeded       written once `--ca` (or cfg.ca) seeded the store
# Each file is written as <name>.tmp and then renamed into place (LittleFS
# renames atomically), so a power cut leaves the old file or the new one,
# never half of one; a stray .tmp is ignored and removed later.
# The private keys (client, pending) are read only to build the TLS context
# and to sign a CSR: no command lists, uploads or prints them.
# Parsing (lib/x509.py, lib/der.py) is imported only by the certificate
# operations; a TLS context needs nothing but the DER files.
import os
import hashlib
import binascii
import log

_TAG = "certs"
CS = "CentralSystemRootCertificate"
MF = "ManufacturerRootCertificate"
_PREFIX = {CS: "cs-", MF: "mf-"}
_CLIENT = "client"
_PENDING = "pending"


def tlvs(b):
    # The consecutive DER elements of b (tag, length, contents) as memoryviews.
    m = memoryview(b)
    i = 0
    while i + 2 <= len(m):
        n = m[i + 1]
        h = 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(bytes(m[i + 2 : i + 2 + k]), "big")
            h += k
        if i + h + n > len(m):
            raise ValueError("truncated DER")
        yield m[i : i + h + n]
        i += h + n


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


def _now():
    # Seconds since the Unix epoch, None while the clock is not set.
    import clock
    return clock.now() if clock.synced() else None


class Store:
    def __init__(self, root, limit=10):
        if root and root[-1] != "/":
            root += "/"
        self.dir = root + "certs/"
        self.limit = limit  # CertificateStoreMaxLength: root/CA certificates of both kinds together
        try:
            os.mkdir(self.dir[:-1])
        except OSError:
            pass  # it exists (or the flash is read-only: every write says so later)

    # ---- files ----------------------------------------------------------
    def _names(self, prefix):
        # the certificate file names of one kind ("cs-", "mf-", "" for both)
        try:
            names = os.listdir(self.dir[:-1])
        except OSError:
            return []
        return [n for n in names if n.endswith(".der") and n.startswith(prefix) and n[:3] in ("cs-", "mf-")]

    def _read(self, name):
        try:
            with open(self.dir + name, "rb") as f:
                return f.read()
        except OSError:
            return None

    def _write(self, name, *parts):
        # All of it under `name`, or nothing (raises OSError).
        t = self.dir + name + ".tmp"
        with open(t, "wb") as f:
            for p in parts:
                f.write(p)
        os.rename(t, self.dir + name)

    def _rm(self, name):
        try:
            os.remove(self.dir + name)
            return True
        except OSError:
            return False

    def each(self, kind):
        # The DER of every certificate of a kind, one at a time (a TLS context loads them so).
        for n in self._names(_PREFIX[kind]):
            der = self._read(n)
            if der:
                yield der

    def roots(self, kind):
        return list(self.each(kind))

    def count(self, kind=None):
        return len(self._names(_PREFIX[kind] if kind else ""))

    # ---- installing -----------------------------------------------------
    def _der(self, data):
        # PEM text with one CERTIFICATE block, or DER bytes -> DER bytes; None if neither.
        if isinstance(data, str) or data[:5] == b"-----":
            try:
                blocks = pem_blocks(data)
            except (ValueError, UnicodeError):
                return None
            if len(blocks) != 1 or blocks[0][0] != "CERTIFICATE":
                return None
            return blocks[0][1]
        return bytes(data)

    def _name(self, kind, der):
        return _PREFIX[kind] + binascii.hexlify(hashlib.sha256(der).digest()[:8]).decode() + ".der"

    def install(self, kind, data, check=True):
        # InstallCertificate (M05): "Accepted" (also for a certificate that is
        # installed already: no second copy), "Rejected" (not one PEM or DER
        # certificate, not a CA, expired, or the store is full), "Failed"
        # (the flash did not take it). check=False (an installer's --ca file):
        # only what mbedTLS itself needs, no X.509 parsing.
        if kind not in _PREFIX:
            return "Rejected"
        der = self._der(data)
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
        name = self._name(kind, der)
        if self._read(name) == der:
            log.info(_TAG, "%s %s is installed already" % (kind, name[3:-4]))
            return "Accepted"
        n = self.count()
        if n >= self.limit:  # M05.FR.03
            log.warn(_TAG, "%s rejected: the store is full (%d of CertificateStoreMaxLength %d)" % (kind, n, self.limit))
            return "Rejected"
        try:
            self._write(name, der)
        except OSError as e:
            log.exc(_TAG, "cannot store the %s" % kind, e)
            self._rm(name + ".tmp")
            return "Failed"
        log.info(_TAG, "%s %s installed (%d of %d)" % (kind, name[3:-4], n + 1, self.limit))
        return "Accepted"

    def seed(self, data):
        # The installer's CA file (make sim CA=, --ca): every certificate in it
        # becomes a CentralSystemRootCertificate, once per data directory; later
        # the store is what counts (a deleted root is not put back).
        # -> the number installed, None when the store was seeded before.
        if self._read("seeded") is not None:
            return None
        if isinstance(data, str) or data[:5] == b"-----":
            ders = [d for label, d in pem_blocks(data) if label == "CERTIFICATE"]
        else:
            ders = list(tlvs(data))
        n = 0
        for der in ders:
            if self.install(CS, bytes(der), False) == "Accepted":
                n += 1
        self._write("seeded", b"")
        return n

    # ---- listing and deleting (M03, M04) -------------------------------
    def _certs(self, prefix):
        # (file name, x509.Cert) of every certificate of a kind, one at a time
        import x509
        for n in self._names(prefix):
            der = self._read(n)
            try:
                yield n, x509.Cert(der)
            except (ValueError, TypeError):
                log.warn(_TAG, "stored certificate %s does not parse: skipped" % n)

    def _hash_data(self, cert, prefix):
        # certificateHashData (RFC 6960 CertID): for a root the issuer is the
        # certificate itself; a sub-CA's issuer is looked for in the store.
        import x509
        issuer = cert
        if cert.issuer != cert.subject:
            for _, c in self._certs(prefix):
                if c.subject == cert.issuer:
                    issuer = c
                    break
        return x509.hash_data(cert, issuer)

    def ids(self, kind):
        p = _PREFIX[kind]
        return [self._hash_data(c, p) for _, c in self._certs(p)]

    def find(self, hash_data):
        # -> (kind, file name) of the certificate hash_data names, or None.
        if hash_data.get("hashAlgorithm") != "SHA256":  # the only one we compute (M04.FR.07)
            return None
        want = _key(hash_data)
        for kind in (CS, MF):
            p = _PREFIX[kind]
            for n, c in self._certs(p):
                if _key(self._hash_data(c, p)) == want:
                    return kind, n
        return None

    def delete(self, hash_data, name=None):
        # DeleteCertificate (M04): "Accepted", "NotFound" or "Failed" (the flash
        # would not let go). Whether a root is in use is the caller's question.
        if name is None:
            found = self.find(hash_data)
            if not found:
                return "NotFound"
            name = found[1]
        if not self._rm(name):
            return "Failed"
        log.info(_TAG, "%s certificate %s deleted" % ("CentralSystemRoot" if name[:3] == "cs-" else "ManufacturerRoot",
                                                     name[3:-4]))
        return "Accepted"

    def valid(self, kind, now=None):
        # -> whether a certificate of this kind is installed and, when the
        # clock is set, within its validity period (A05.FR.03).
        if not self.count(kind):
            return False
        now = _now() if now is None else now
        if now is None:
            return True
        try:
            for _, c in self._certs(_PREFIX[kind]):
                if c.not_before <= now <= c.not_after:
                    return True
        except ImportError:  # no X.509 parser on this build: presence is all we can tell
            return True
        return False

    # ---- the client certificate (profile 3) and the key of a CSR ----------
    def has_client(self):
        try:
            os.stat(self.dir + _CLIENT)
            return True
        except OSError:
            return False

    def client(self):
        # -> ([certificate DER, ...] leaf first, private key DER), or None.
        b = self._read(_CLIENT)
        if not b:
            return None
        try:
            parts = [bytes(x) for x in tlvs(b)]
        except ValueError:
            log.warn(_TAG, "the stored client certificate is damaged")
            return None
        return (parts[1:], parts[0]) if len(parts) > 1 else None

    def client_valid(self, now=None):
        # A05.FR.04: a client certificate is installed and (clock set) valid now.
        c = self.client()
        if c is None:
            return False
        now = _now() if now is None else now
        if now is None:
            return True
        try:
            import x509
            leaf = x509.Cert(c[0][0])
        except ImportError:
            return True
        except ValueError:
            return False
        return leaf.not_before <= now <= leaf.not_after

    def pending_key(self):
        b = self._read(_PENDING)
        if not b or len(b) != 97:
            return None
        return int.from_bytes(b[:32], "big"), b[32:]

    def set_pending_key(self, d, pub):
        self._write(_PENDING, d.to_bytes(32, "big"), bytes(pub))

    def install_client(self, chain_ders):
        # CertificateSigned (A02/A03): the pending key becomes the client key,
        # with this chain (leaf first); used from the next connection.
        k = self.pending_key()
        if k is None:
            raise ValueError("no pending key")
        import x509
        self._write(_CLIENT, x509.ec_key_der(k[0], k[1]), *[bytes(c) for c in chain_ders])
        self._rm(_PENDING)
        log.info(_TAG, "client certificate installed")

    def provision_client(self, chain, key):
        # An installer's (or manufacturer's) client certificate and private key,
        # PEM text or DER each (A00.FR.801): stored as CertificateSigned would.
        ders = [d for label, d in pem_blocks(chain) if label == "CERTIFICATE"] if _is_pem(chain) else \
            [bytes(x) for x in tlvs(chain)]
        if _is_pem(key):
            keys = [d for label, d in pem_blocks(key) if label.endswith("PRIVATE KEY")]
            if len(keys) != 1 or "ENCRYPTED" in pem_blocks(key)[0][0]:
                raise ValueError("the key file must hold one unencrypted private key")
            key = keys[0]
        if not ders:
            raise ValueError("no certificate in the certificate file")
        import ssl
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(ders[0], key)
        except (ValueError, OSError) as e:
            raise ValueError("the TLS stack does not take this certificate and key: %s" % e)
        self._write(_CLIENT, bytes(key), *ders)
        log.info(_TAG, "client certificate provisioned")


def _is_pem(data):
    return isinstance(data, str) or data[:5] == b"-----"


def _key(h):
    # certificateHashData -> a comparable tuple: hex in any case, serial without leading zeros
    return (h.get("issuerNameHash", "").lower(), h.get("issuerKeyHash", "").lower(),
            h.get("serialNumber", "").lower().lstrip("0"))


def _unfit(der):
    # -> why a certificate cannot be a root of the store, or None
    try:
        import x509
    except ImportError:
        return "no X.509 parser on this build"
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
