"""The charge point's own key pair and client certificate (security whitepaper A02, A03):
ExtendedTriggerMessage(SignChargePointCertificate) makes the station generate a new EC P-256
key pair and send SignCertificate with a PKCS#10 CSR, which `cryptography` parses and verifies
here; the test CA signs it and CertificateSigned installs it (Accepted), or refuses a
certificate for another key, from an unknown root or expired (Rejected, the security event,
the current certificate kept); a certificate that expires within a month is renewed by the
station itself. At the next connection to a profile-3 CSMS (TLS requiring a client
certificate) the station presents the certificate it was given."""
import datetime
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.v16 import call

import pki as testca
from conftest import ROOT
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
    # RFC 2986, PEM; signed by the new key; CN = the BootNotification's chargePointSerialNumber, O = CpoName
    assert csms.csrs[0][1].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert csr.is_signature_valid
    serial = csms.calls("BootNotification")[-1][2]["chargePointSerialNumber"]
    assert serial == "SIM-CP-0001"  # boards/unix/board.json
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == serial
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == CPO
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey) and csr.public_key().curve.name == "secp256r1"
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)

    # refused: another key, an unknown root, expired; each a security event, nothing changes
    other = testca.new_key()
    unknown = testca.root("Unknown CA")
    for chain, why in ((issue(csr, ca, public_key=other.public_key()), "certifies another key"),
                       (issue(csr, unknown), "no trusted issuer"),
                       (issue(csr, ca, days=1, not_before=testca.now() - datetime.timedelta(days=3)), "has expired"),
                       ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "DER")):
        assert signed(csms, chain) == "Rejected", why
        fw.wait_line(r"CertificateSigned rejected: .*%s.*; the current certificate stays" % why)
        fw.wait_line(r"security: InvalidChargePointCertificate: .*%s" % why)
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


def test_cn_is_the_charge_point_id_without_a_serial_number(csms, firmware_factory, tmp_path):
    board = json.loads((ROOT / "boards" / "unix" / "board.json").read_text())
    del board["config"]["ChargePointSerialNumber"]
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "board.json").write_text(json.dumps(board))
    fw = firmware_factory(csms, board=str(tmp_path / "board"))
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert "chargePointSerialNumber" not in csms.calls("BootNotification")[-1][2]
    csms.run_call("CP001", call.ChangeConfiguration(key="CpoName", value=CPO))
    assert trigger(csms) == "Accepted"
    csr = next_csr(csms, 1)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP001"


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



@pytest.fixture
def mtls(pki, monkeypatch):
    """One CSMS, two ports: ws:// and wss:// requiring a client certificate of the test CA (profile 3,
    the server certificate for localhost). csms.peer_certs: the DER of the client certificate of
    every upgrade (None without one), as the TLS server received it."""
    import dev_csms
    from conftest import server_tls
    c = dev_csms.DevCSMS()
    c.peer_certs = []
    cn = dev_csms._client_cn

    def seen(conn):  # the peer's certificate, taken where the CSMS reads its CN
        tls = conn.transport.get_extra_info("ssl_object") if conn.transport else None
        c.peer_certs.append(tls.getpeercert(binary_form=True) if tls else None)
        return cn(conn)
    monkeypatch.setattr(dev_csms, "_client_cn", seen)
    c.start_in_thread()
    c.ws_url = "ws://127.0.0.1:%d" % c.port
    c.mtls_url = "wss://localhost:%d" % c.add_listener(ssl=server_tls(pki, client_ca="ca.pem"))
    yield c
    c.stop_thread()


def der(chain_pem):
    return x509.load_pem_x509_certificate(chain_pem.encode()).public_bytes(serialization.Encoding.DER)


def test_the_signed_certificate_is_presented_at_the_next_profile_3_connection(mtls, firmware_factory, pki):
    csms, ca = mtls, load_ca(pki)
    fw = firmware_factory(csms.ws_url, extra=["--ca", str(pki / "ca.pem")])  # the CSMS root, seeded
    fw.start()
    fw.wait_line(r"accepted this charge point")
    csms.run_call("CP001", call.ChangeConfiguration(key="CpoName", value=CPO))
    assert trigger(csms) == "Accepted"
    first = issue(next_csr(csms, 1), ca)
    assert signed(csms, first) == "Accepted"
    assert csms.connections == 1  # no reconnect for it (A02: used from the next connection)
    # profile 3 (A05: the client certificate is there now)
    assert csms.run_call("CP001", call.ChangeConfiguration(key="CsmsUrl", value=csms.mtls_url)).status == \
        "RebootRequired"
    assert csms.run_call("CP001", call.ChangeConfiguration(key="SecurityProfile", value="3")).status == "Accepted"
    csms.wait_for(lambda: csms.connections == 2 and "CP001" in csms.handlers, 15, "the profile 3 connection")
    assert csms.peer_certs[-1] == der(first) and csms.auth[-1] is None
    # a new key pair at profile 3; certificates for it that are refused leave the first one in use
    assert trigger(csms) == "Accepted"
    csr2 = next_csr(csms, 2)
    assert signed(csms, issue(csr2, testca.root("Unknown CA"))) == "Rejected"
    assert signed(csms, issue(csr2, ca, days=1, not_before=testca.now() - datetime.timedelta(days=2))) == "Rejected"
    csms.drop("CP001")
    csms.wait_for(lambda: csms.connections == 3 and "CP001" in csms.handlers, 30, "a reconnect")
    assert csms.peer_certs[-1] == der(first)
    # the good one: the next connection presents it, for the new key
    second = issue(csr2, ca)
    assert signed(csms, second) == "Accepted"
    csms.drop("CP001")
    csms.wait_for(lambda: csms.connections == 4 and "CP001" in csms.handlers, 30, "a reconnect")
    assert csms.peer_certs[-1] == der(second)
    keys = [x509.load_der_x509_certificate(d).public_key() for d in csms.peer_certs[-3:-1] + csms.peer_certs[-1:]]
    assert point(keys[0]) == point(keys[1]) != point(keys[2])
    assert csms.violations == []



PROVISION = """
import cfg
cfg.open(%r, "boards/unix")
cfg.client_cert(%r, %r)
"""


def test_a_provisioned_certificate_near_its_end_is_renewed_at_profile_3(mtls, firmware_factory, pki, tmp_path):
    # A client certificate put on the station by the installer (cfg.client_cert), not by CertificateSigned:
    # its expiry is read from it once, and within a month of it the station asks for a new one (A03).
    from conftest import run_mp
    csms, ca = mtls, load_ca(pki)
    key = testca.new_key()
    cert = testca.certificate(testca.name("SIM-CP-0001", CPO), key, ca, not_after=testca.now() + 10 * testca.DAY,
                              usage="client")
    testca.write(tmp_path, "installer", testca.Issued(cert, key))
    fw = firmware_factory(csms.ws_url, extra=["--ca", str(pki / "ca.pem")])
    fw.start()
    fw.wait_line(r"accepted this charge point")
    fw.stop()
    script = tmp_path / "provision.py"
    script.write_text(PROVISION % (str(fw.data_dir), str(tmp_path / "installer.pem"), str(tmp_path / "installer.key")))
    assert "client certificate stored" in run_mp(script)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    csms.run_call("CP001", call.ChangeConfiguration(key="CpoName", value=CPO))
    assert csms.csrs == []  # profile 0: the installer's certificate is not in use yet
    csms.run_call("CP001", call.ChangeConfiguration(key="CsmsUrl", value=csms.mtls_url))
    assert csms.run_call("CP001", call.ChangeConfiguration(key="SecurityProfile", value="3")).status == "Accepted"
    csms.wait_for(lambda: csms.connections == 3 and "CP001" in csms.handlers, 15, "the profile 3 connection")
    assert csms.peer_certs[-1] == cert.public_bytes(serialization.Encoding.DER)
    renewal = next_csr(csms, 1, timeout=15)
    assert point(renewal.public_key()) != point(key.public_key())
    fw.wait_line(r"the client certificate expires at .*: asking for a new one \(A03\)")
    assert signed(csms, issue(renewal, ca)) == "Accepted"
    csms.drop("CP001")
    csms.wait_for(lambda: csms.connections == 4 and "CP001" in csms.handlers, 30, "a reconnect")
    assert x509.load_der_x509_certificate(csms.peer_certs[-1]).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint) == point(renewal.public_key())
    assert len(csms.csrs) == 1 and csms.violations == []


# ---- the station's clock moved on by the CSMS (Heartbeat's currentTime) --------------------

@pytest.fixture
def timecsms(monkeypatch):
    """A dev CSMS whose Heartbeat answers give the time `csms.ahead` seconds from now: the
    station's clock follows it (clock.set), the way weeks pass for the renewal."""
    import dev_csms
    from ocpp.routing import on
    from ocpp.v16 import call_result

    class Handler(dev_csms.ChargePointHandler):
        @on("Heartbeat")
        def on_heartbeat(self):
            t = testca.now() + datetime.timedelta(seconds=self.csms.ahead)
            return call_result.Heartbeat(current_time=t.strftime("%Y-%m-%dT%H:%M:%SZ"))

    monkeypatch.setattr(dev_csms, "ChargePointHandler", Handler)
    c = dev_csms.DevCSMS()
    c.ahead = 0
    c.start_in_thread()
    yield c
    c.stop_thread()


def travel(fw, csms, days):
    csms.ahead = days * 86400
    assert csms.run_call("CP001", call.TriggerMessage(requested_message="Heartbeat")).status == "Accepted"
    fw.wait_line(r"clock: set to ")


def test_renewal_a_month_ahead_then_weekly_and_a_certificate_valid_from_later(timecsms, firmware_factory):
    csms = timecsms
    ca = testca.root("CPO Root", o="Test CPO")
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    csms.run_call("CP001", call.InstallCertificate(certificate_type="CentralSystemRootCertificate", certificate=ca.pem))
    csms.run_call("CP001", call.ChangeConfiguration(key="CpoName", value=CPO))
    assert trigger(csms) == "Accepted"
    first = next_csr(csms, 1)
    assert signed(csms, issue(first, ca, days=60)) == "Accepted"
    time.sleep(2.5)
    assert len(csms.csrs) == 1  # 60 days left: nothing to do
    travel(fw, csms, 29)
    time.sleep(2.5)
    assert len(csms.csrs) == 1  # 31 days left
    travel(fw, csms, 31)  # 29 days left: within the month (A03.FR.02)
    renewal = next_csr(csms, 2, timeout=10)
    assert point(renewal.public_key()) != point(first.public_key())
    # not answered: asked again a week later, not before
    travel(fw, csms, 37)
    time.sleep(2.5)
    assert len(csms.csrs) == 2
    travel(fw, csms, 38.1)
    again = next_csr(csms, 3, timeout=10)
    # a certificate valid from two hours ahead (station time): taken then (A02.FR.08), not now
    start = testca.now() + datetime.timedelta(days=38.1, hours=2)
    assert signed(csms, issue(again, ca, days=365, not_before=start)) == "Accepted"
    fw.wait_line(r"accepted; it is used from ")
    time.sleep(2)
    assert not [line for line in fw.lines if "installed; it is used from the next connection" in line][1:]
    travel(fw, csms, 38.1 + 3 / 24)
    fw.wait_line(r"new client certificate .* installed; it is used from the next connection", timeout=10)
    travel(fw, csms, 38.1 + 340)  # and so it goes on: 25 days before its end, the next renewal
    assert point(next_csr(csms, 4, timeout=10).public_key()) != point(again.public_key())
    assert csms.violations == []
