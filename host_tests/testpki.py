"""The test PKI, made with the `cryptography` package (no openssl CLI).

make(d) writes into directory d, as PEM (<name>.pem certificate, <name>.key PKCS#8 key):
  ca          "Test CSMS CA", EC P-256, the root that signs server, otherhost, ipsan, client
  ca2         "Some Other CA", a root that signs nothing of ours (the wrong CA)
  rsaca       an RSA-2048 root (hash data over an RSA key)
  server      CN=localhost, SAN DNS:localhost + IP:127.0.0.1, signed by ca
  otherhost   CN=otherhost, SAN DNS:otherhost, signed by ca (a wrong host name)
  ipsan       CN=csms.example (not an address), SAN IP:127.0.0.1 only, signed by ca
  server2     like server, signed by ca2 (a CSMS whose certificate chains to the other root)
  client      CN=CP001, O=Test CPO, clientAuth, signed by ca (security profile 3)
  expiredca   a CA whose validity ended yesterday
  bundle.pem  ca2 then ca, one PEM file
Every certificate is valid from an hour ago for two days (but expiredca).
"""
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn, o=None):
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    return x509.Name(attrs)


def issue(subject, key, issuer=None, issuer_key=None, ca=False, dns=(), ips=(), eku=None, days=2,
          not_before=None, serial=None):
    """A certificate for key (a private key object); self-signed unless issuer (cert) is given."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start = not_before or now - datetime.timedelta(hours=1)
    b = (x509.CertificateBuilder()
         .subject_name(subject if isinstance(subject, x509.Name) else _name(subject))
         .issuer_name(issuer.subject if issuer else (subject if isinstance(subject, x509.Name) else _name(subject)))
         .public_key(key.public_key())
         .serial_number(serial or x509.random_serial_number())
         .not_valid_before(start)
         .not_valid_after(start + datetime.timedelta(days=days)))
    b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    sans = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def write(d, name, cert, key=None):
    d = Path(d)
    (d / (name + ".pem")).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / (name + ".der")).write_bytes(cert.public_bytes(serialization.Encoding.DER))
    if key is not None:
        (d / (name + ".key")).write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))


class PKI:
    """The directory (a Path: pki / "ca.pem" works) plus the objects, for cross-checks."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.certs = {}
        self.keys = {}

    def __truediv__(self, name):
        return self.dir / name

    def __fspath__(self):
        return str(self.dir)

    def __str__(self):
        return str(self.dir)

    def add(self, name, cert, key=None):
        self.certs[name] = cert
        self.keys[name] = key
        write(self.dir, name, cert, key)
        return cert

    def pem(self, name):
        return (self.dir / (name + ".pem")).read_text()


def make(d):
    p = PKI(d)
    ca_key, ca2_key = ec_key(), ec_key()
    ca = p.add("ca", issue(_name("Test CSMS CA", "Test CPO"), ca_key, ca=True), ca_key)
    ca2 = p.add("ca2", issue(_name("Some Other CA", "Elsewhere"), ca2_key, ca=True), ca2_key)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p.add("rsaca", issue(_name("Test RSA Root", "Test CPO"), rsa_key, ca=True), rsa_key)
    server_eku = [ExtendedKeyUsageOID.SERVER_AUTH]
    for name, cn, dns, ips, by, by_key in (
            ("server", "localhost", ["localhost"], ["127.0.0.1"], ca, ca_key),
            ("otherhost", "otherhost", ["otherhost"], [], ca, ca_key),
            ("ipsan", "csms.example", [], ["127.0.0.1"], ca, ca_key),
            ("server2", "localhost", ["localhost"], ["127.0.0.1"], ca2, ca2_key)):
        k = ec_key()
        p.add(name, issue(_name(cn, "Test CPO"), k, by, by_key, dns=dns, ips=ips, eku=server_eku), k)
    k = ec_key()
    p.add("client", issue(_name("CP001", "Test CPO"), k, ca, ca_key, eku=[ExtendedKeyUsageOID.CLIENT_AUTH]), k)
    k = ec_key()
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)
    p.add("expiredca", issue(_name("Expired CA"), k, ca=True, not_before=past, days=2), k)
    (p.dir / "bundle.pem").write_text(p.pem("ca2") + p.pem("ca"))
    return p


def cert_id(cert, issuer=None):
    """The whitepaper's certificateHashData of cert, from cryptography's OCSP CertID (RFC 6960 §4.1.1)."""
    from cryptography.x509 import ocsp
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer or cert, hashes.SHA256()).build()
    return {"hashAlgorithm": "SHA256", "issuerNameHash": req.issuer_name_hash.hex(),
            "issuerKeyHash": req.issuer_key_hash.hex(), "serialNumber": "%x" % req.serial_number}
