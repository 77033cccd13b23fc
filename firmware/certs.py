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
# never half of one; a stray .tmp is ignored (and swept by the next install).
# The private keys (client, pending) are read only to build the TLS context
# and to sign a CSR: no command lists, uploads or prints them.
# This module is what a TLS context needs (the DER files as they are); the
# operations that parse certificates are in certstore.py, imported for them
# only, and lib/x509.py with them.
import os

CS = "CentralSystemRootCertificate"
MF = "ManufacturerRootCertificate"
PREFIX = {CS: "cs-", MF: "mf-"}
CLIENT = "client"
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


def _ops():
    import certstore
    return certstore


def unload(own=None):
    # The operations and the parsers they pulled in are tens of KB of RAM
    # when loaded from .mpy: not kept between the rare certificate operations
    # (a caller that imported one itself keeps its reference, of course).
    # own: the caller's module too ("ocpp.v16.certsign"), also off its package.
    import sys
    for m in ("certstore", "x509", "der", "p256", "rsa", own):
        sys.modules.pop(m, None)
    if own:
        i = own.rfind(".")
        try:
            delattr(sys.modules[own[:i]], own[i + 1:])
        except (AttributeError, KeyError):  # not there (MicroPython: KeyError)
            pass


class Store:
    def __init__(self, root, limit=10):
        if root and root[-1] != "/":
            root += "/"
        self.dir = root + "certs/"
        self.limit = limit  # CertificateStoreMaxLength: root/CA certificates of both kinds together

    # ---- files ----------------------------------------------------------
    def names(self, prefix):
        # the certificate file names of one kind ("cs-", "mf-"; "" for both)
        try:
            names = os.listdir(self.dir[:-1])
        except OSError:
            return []
        return [n for n in names if n.endswith(".der") and n.startswith(prefix) and n[:3] in ("cs-", "mf-")]

    def read(self, name):
        try:
            with open(self.dir + name, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, *parts):
        # All of it under `name`, or nothing (raises OSError).
        try:
            os.mkdir(self.dir[:-1])
        except OSError:
            pass  # there already
        t = self.dir + name + ".tmp"
        with open(t, "wb") as f:
            for p in parts:
                f.write(p)
        os.rename(t, self.dir + name)

    def remove(self, name):
        try:
            os.remove(self.dir + name)
            return True
        except OSError:
            return False

    # ---- what a TLS context needs ----------------------------------------
    def each(self, kind):
        # The DER of every certificate of a kind, one at a time (a TLS context loads them so).
        for n in self.names(PREFIX[kind]):
            der = self.read(n)
            if der:
                yield der

    def roots(self, kind):
        return list(self.each(kind))

    def count(self, kind=None):
        return len(self.names(PREFIX[kind] if kind else ""))

    def has_client(self):
        try:
            os.stat(self.dir + CLIENT)
            return True
        except OSError:
            return False

    def client(self):
        # -> ([certificate DER, ...] leaf first, private key DER), or None.
        b = self.read(CLIENT)
        try:
            parts = [bytes(x) for x in tlvs(b)] if b else ()
        except ValueError:
            parts = ()  # damaged: as if there were none
        return (parts[1:], parts[0]) if len(parts) > 1 else None

    def context(self, client=False):
        # A verifying TLS client context with every CentralSystemRootCertificate
        # (made anew for each connection: a root installed now counts from the
        # next one) and, for security profile 3, the client certificate. mbedTLS
        # sends the leaf only: the CSMS must know an intermediate CA itself.
        import gc
        import ws
        c = self.client() if client else None
        if client and c is None:
            raise ws.WSError("SecurityProfile 3 but no client certificate is installed")
        roots = self.roots(CS)
        # The files' buffers go before mbedTLS (in the heap on some ports) allocates its
        # many small pieces: among them they would split the room the TLS session needs.
        gc.collect()
        return ws.tls_context(roots, c[0][0], c[1]) if c else ws.tls_context(roots)

    def pending_key(self):
        b = self.read(_PENDING)
        if not b or len(b) != 97:
            return None
        return int.from_bytes(b[:32], "big"), b[32:]

    def set_pending_key(self, d, pub):
        self.write(_PENDING, d.to_bytes(32, "big"), bytes(pub))

    def drop_pending_key(self):
        self.remove(_PENDING)

    # ---- the operations of the contract (certstore.py has them all) ---------
    def install(self, kind, data, check=True):
        return _ops().install(self, kind, data, check)

    def ids(self, kind):
        return _ops().ids(self, kind)

    def delete(self, hash_data, name=None):
        return _ops().delete(self, hash_data, name)

    def install_client(self, chain_ders):
        return _ops().install_client(self, chain_ders)
