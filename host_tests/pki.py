"""A test PKI made with the `cryptography` package: roots, certificates under them,
signatures over files, as a manufacturer and a CPO's certificate authority make them
(security whitepaper §2.6: Manufacturer and Charge Point Operator hierarchies)."""
import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def name(cn, o=None):
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    return x509.Name(attrs)


def new_key(kind="ec"):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:] or 2048))  # "rsa2048"


class Issued:
    """A certificate and its private key."""

    def __init__(self, cert, key):
        self.cert = cert
        self.key = key

    @property
    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def certificate(subject, public_key, issuer=None, ca=False, not_before=None, not_after=None, usage=None):
    """subject: a Name; issuer: an Issued (None: self-signed, then public_key's private key is given
    as `public_key`). -> x509.Certificate, signed with SHA-256 (ECDSA or RSA PKCS#1 v1.5)."""
    signer = issuer.key if issuer else public_key
    pub = public_key.public_key() if hasattr(public_key, "public_key") else public_key
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer.cert.subject if issuer else subject)
         .public_key(pub).serial_number(x509.random_serial_number())
         .not_valid_before(not_before or now() - DAY).not_valid_after(not_after or now() + 365 * DAY)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    elif usage == "client":
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    elif usage == "code":
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return b.sign(signer, hashes.SHA256())


def root(cn, kind="ec", o="Test"):
    key = new_key(kind)
    return Issued(certificate(name(cn, o), key, ca=True), key)


def leaf(cn, issuer, kind="ec", usage=None, **kw):
    key = new_key(kind)
    return Issued(certificate(name(cn, "Test"), key, issuer, usage=usage, **kw), key)


def sign_file(key, data, salt=32):
    """The firmware signature (L01.FR.04) over data: RSA-PSS SHA-256 with MGF1-SHA-256 and the
    salt length given (padding.PSS.MAX_LENGTH for the most), or ECDSA P-256 SHA-256 (DER)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt), hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def write(d, stem, issued):
    """d/stem.pem and d/stem.key (PEM), for the openssl CLI and ssl contexts."""
    os.makedirs(d, exist_ok=True)
    (d / (stem + ".pem")).write_text(issued.pem)
    (d / (stem + ".key")).write_text(key_pem(issued.key))
    return d / (stem + ".pem"), d / (stem + ".key")
