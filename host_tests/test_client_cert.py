"""The charge point's own key pair and client certificate (security whitepaper A02, A03):
ExtendedTriggerMessage(SignChargePointCertificate) makes the station generate a new EC P-256
key pair and send SignCertificate with a PKCS#10 CSR, which `cryptography` parses and verifies
here; the test CA signs it and CertificateSigned installs it (Accepted), or refuses a
certificate for another key, from an unknown root or expired (Rejected, the security event,
the current certificate kept); a certificate that expires within a month is renewed by the
station itself. At the next connection to a profile-3 CSMS (TLS requiring a client
certificate) the station presents the certificate it was given."""
import datetime
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.v16 import call

import pki as testca
from test_maintenance import wait

CPO = "Test CPO"


def load_ca(d, stem="ca"):
    cert = x509.load_pem_x509_certificate((d / (stem + ".pem")).read_bytes())
    key = serialization.load_pem_private_key((d / (stem + ".key")).read_bytes(), None)
    return testca.Issued(cert, key)


def issue(csr, ca, days=365, not_before=None, public_key=None, chain=()):
    """What the CPO's CA does with a CSR -> PEM chain (leaf first, then `chain`)."""
    start = not_before or testca.now() - datetime.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.cert.subject)
            .public_key(public_key or csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca.key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode() + "".join(c.pem for c in chain)


def csrs(csms):
    return [x509.load_pem_x509_csr(text.encode()) for _, text in csms.csrs]


def point(public_key):
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def trigger(csms):
    return csms.run_call("CP001", call.ExtendedTriggerMessage(requested_message="SignChargePointCertificate")).status


def signed(csms, chain):
    return csms.run_call("CP001", call.CertificateSigned(certificate_chain=chain)).status


def prepare(fw, csms, pki):
    fw.start()
    fw.wait_line(r"accepted this charge point")
    answer = csms.run_call("CP001", call.InstallCertificate(certificate_type="CentralSystemRootCertificate",
                                                            certificate=(pki / "ca.pem").read_text()))
    assert answer.status == "Accepted"


def next_csr(csms, n, timeout=60):
    wait(lambda: len(csms.csrs) >= n, timeout, "SignCertificate %d" % n)
    return csrs(csms)[n - 1]


def test_trigger_needs_cpo_name(csms, firmware_factory, pki):
    fw = firmware_factory(csms)
    prepare(fw, csms, pki)
    assert trigger(csms) == "Rejected"  # A02 prerequisite: CpoName
    fw.wait_line(r"CpoName is not set")
    assert csms.csrs == []


def test_csr_on_trigger_then_certificate_signed_accepted_or_rejected(csms, firmware_factory, pki):
    ca = load_ca(pki)
    fw = firmware_factory(csms)
    prepare(fw, csms, pki)
    assert csms.run_call("CP001", call.ChangeConfiguration(key="CpoName", value=CPO)).status == "Accepted"
    assert trigger(csms) == "Accepted"
    csr = next_csr(csms, 1)
    # RFC 2986, PEM; signed by the new key; CN = the charge point id (no serial number is set), O = CpoName
    assert csms.csrs[0][1].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP001"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == CPO
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey) and csr.public_key().curve.name == "secp256r1"
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)

    # refused: another key, an unknown root, expired; each a security event, nothing changes
    other = testca.new_key()
    unknown = testca.root("Unknown CA")
    for chain, why in ((issue(csr, ca, public_key=other.public_key()), "another key"),
                       (issue(csr, unknown), "issuer"),
                       (issue(csr, ca, days=1, not_before=testca.now() - datetime.timedelta(days=3)), "expired"),
                       ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "garbage")):
        assert signed(csms, chain) == "Rejected", why
    assert sum("InvalidChargePointCertificate" in line for line in fw.lines) >= 4
    # the good one, with an intermediate CA between it and the root
    sub = testca.Issued(*_intermediate(ca))
    assert signed(csms, issue(csr, sub, chain=(sub,))) == "Accepted"
    fw.wait_line(r"new client certificate .* installed; it is used from the next connection")

    # a second request: a new key pair
    assert trigger(csms) == "Accepted"
    csr2 = next_csr(csms, 2)
    assert csr2.is_signature_valid and point(csr2.public_key()) != point(csr.public_key())
    # the first key's certificate is no use for it now
    assert signed(csms, issue(csr, ca)) == "Rejected"
    assert signed(csms, issue(csr2, ca)) == "Accepted"
    assert csms.violations == []


def _intermediate(ca):
    key = testca.new_key()
    return testca.certificate(testca.name("Test Sub CA", "Test"), key, ca, ca=True), key


def test_cn_is_the_serial_number_when_set(csms, firmware_factory, pki):
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    fw.send("set ChargePointSerialNumber SN-4711")
    fw.wait_line(r"set ChargePointSerialNumber: Accepted")
    csms.run_call("CP001", call.ChangeConfiguration(key="CpoName", value=CPO))
    assert trigger(csms) == "Accepted"
    csr = next_csr(csms, 1)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SN-4711"


def test_a_certificate_that_expires_within_a_month_is_renewed_by_the_station(csms, firmware_factory, pki):
    ca = load_ca(pki)
    fw = firmware_factory(csms)
    prepare(fw, csms, pki)
    csms.run_call("CP001", call.ChangeConfiguration(key="CpoName", value=CPO))
    assert trigger(csms) == "Accepted"
    csr = next_csr(csms, 1)
    assert signed(csms, issue(csr, ca, days=20)) == "Accepted"  # valid 20 days: within A03's month
    csr2 = next_csr(csms, 2, timeout=20)  # the station asks by itself (A03.FR.02), a new key
    assert point(csr2.public_key()) != point(csr.public_key())
    fw.wait_line(r"asking for a new one \(A03\)")
    assert signed(csms, issue(csr2, ca, days=365)) == "Accepted"
    # a year ahead: no more requests, also not after a reconnect
    csms.drop("CP001")
    fw.wait_line(r"connected", timeout=30)
    time.sleep(3)
    assert len(csms.csrs) == 2
    assert csms.violations == []
