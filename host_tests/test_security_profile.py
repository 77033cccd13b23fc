"""Security profiles 0-3 (OCPP 1.6 security whitepaper §2, A01, A05) against real peers: the dev
CSMS checks Basic auth and serves wss:// with the test PKI (conftest `pki`, made with
`cryptography`), on one port per profile (A00.FR.006).

Profile 0: ws://, nothing. 1: Basic auth over ws://. 2: Basic auth over wss://, the server
certificate checked against the CentralSystemRootCertificates and the host name. 3: wss:// with
the store's client certificate, no Basic auth. The CSMS can only raise the profile, when its
prerequisites are there; a raised profile that never connects falls back after
link.FALLBACK_AFTER (3) attempts; a new key or profile reconnects within seconds."""
import base64
import re
import ssl
import time

import pytest
from ocpp.v16 import call

from conftest import ROOT, run_mp, server_tls
from dev_csms import DevCSMS
from test_csms_errors import board_with
from test_flashlog import flash_files
from test_security_events import security_log

KEY = "0123456789abcdef0123"
KEY2 = "Another key: 16+ chars, any printable"[:32]  # used as it is set: no hex decoding
FALLBACK_AFTER = 3


def basic(key, cp="CP001"):
    return "Basic " + base64.b64encode(("%s:%s" % (cp, key)).encode()).decode()


def get(csms, key, cp="CP001"):
    return csms.run_call(cp, call.GetConfiguration(key=[key])).configuration_key[0].get("value")


def change(csms, key, value, cp="CP001"):
    return csms.run_call(cp, call.ChangeConfiguration(key=key, value=value)).status


def reconnected(csms, n, within=6):
    """Waits until the CSMS has seen connection number n (1-based) -> seconds it took."""
    t = time.time()
    csms.wait_for(lambda: csms.connections >= n and "CP001" in csms.handlers, within, "connection %d" % n)
    return time.time() - t


@pytest.fixture
def site(pki):
    """One CSMS, three ports: ws:// (profiles 0, 1), wss:// (2), wss:// requiring client certificates of
    the test CA (3). The Basic auth check is off until a test sets csms.passwords."""
    c = DevCSMS()
    c.start_in_thread()
    c.ws_url = "ws://127.0.0.1:%d" % c.port
    c.wss_url = "wss://localhost:%d" % c.add_listener(ssl=server_tls(pki))
    c.mtls_url = "wss://localhost:%d" % c.add_listener(ssl=server_tls(pki, client_ca="ca.pem"))
    yield c
    c.stop_thread()


def port_of(url):
    return int(url.rsplit(":", 1)[1])


def restart_with(fw, url):
    """The next start's --csms (the simulator sets CsmsUrl from it at every start)."""
    fw.cmd[fw.cmd.index("--csms") + 1] = url


PROVISION = """
import cfg
cfg.open(%r, "boards/unix")
cfg.client_cert(%r, %r)
"""


def provision_client(fw, pki, tmp_path, name="client"):
    """The installer's path for profile 3 (README): with the firmware stopped, cfg.client_cert()."""
    script = tmp_path / "provision.py"
    script.write_text(PROVISION % (str(fw.data_dir), str(pki / (name + ".pem")), str(pki / (name + ".key"))))
    out = run_mp(script)
    assert "client certificate stored" in out, out


def test_profile_0_refuses_every_raise_without_its_prerequisites(csms, firmware_factory):
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"SecurityProfile 0, from the configuration")
    fw.wait_line(r"accepted this charge point")
    assert get(csms, "SecurityProfile") == "0" and csms.auth == [None]
    assert change(csms, "SecurityProfile", "0") == "Rejected"  # A05.FR.01: lower or equal
    fw.wait_line(r"SecurityProfile 0 refused: the profile can only be raised, it is 0")
    for p in ("1", "2"):  # A05.FR.02: no AuthorizationKey
        assert change(csms, "SecurityProfile", p) == "Rejected"
        fw.wait_line(r"SecurityProfile %s refused: no AuthorizationKey is set" % p)
    assert change(csms, "SecurityProfile", "3") == "Rejected"  # A05.FR.03: no root (and a ws:// URL)
    fw.wait_line(r"SecurityProfile 3 refused: the CsmsUrl is not a wss:// URL")
    assert change(csms, "SecurityProfile", "4") == "Rejected"
    assert get(csms, "SecurityProfile") == "0"
    time.sleep(1)
    assert csms.connections == 1 and csms.violations == []  # nothing changed, no reconnect


def test_raised_0_1_2_3_each_reconnecting_at_once_and_never_lowered(site, firmware_factory, pki, tmp_path):
    csms = site
    fw = firmware_factory(site.ws_url, extra=["--ca", str(pki / "ca.pem")])
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert get(csms, "SecurityProfile") == "0" and csms.auth == [None]
    # A key at profile 0 is only a prerequisite: no reconnect.
    assert change(csms, "AuthorizationKey", KEY) == "Accepted"
    time.sleep(1.5)
    assert csms.connections == 1
    # 0 -> 1: Basic auth over ws://
    csms.passwords = {"CP001": KEY}
    assert change(csms, "SecurityProfile", "1") == "Accepted"
    assert reconnected(csms, 2) < 5
    assert csms.auth[-1] == basic(KEY) and csms.ports[-1] == port_of(site.ws_url)
    assert get(csms, "SecurityProfile") == "1"
    # 1 -> 2 needs a wss:// URL: refused with the ws:// one, nothing changes
    assert change(csms, "SecurityProfile", "2") == "Rejected"
    fw.wait_line(r"SecurityProfile 2 refused: the CsmsUrl is not a wss:// URL")
    assert change(csms, "CsmsUrl", site.wss_url) == "RebootRequired"
    assert change(csms, "SecurityProfile", "2") == "Accepted"
    assert reconnected(csms, 3) < 5
    assert csms.auth[-1] == basic(KEY) and csms.ports[-1] == port_of(site.wss_url)
    fw.wait_line(r"security profile 2 works: kept")
    for p in ("0", "1", "2"):  # A05.FR.01
        assert change(csms, "SecurityProfile", p) == "Rejected"
    assert change(csms, "CsmsUrl", site.ws_url) == "Rejected"  # no way back to plain ws:// either
    # 2 -> 3 needs a client certificate (A05.FR.04)
    assert change(csms, "SecurityProfile", "3") == "Rejected"
    fw.wait_line(r"SecurityProfile 3 refused: no valid client certificate is installed")
    assert csms.connections == 3
    fw.stop()
    provision_client(fw, pki, tmp_path)
    restart_with(fw, site.wss_url)
    fw.start()
    assert reconnected(csms, 4, 15)
    assert csms.ports[-1] == port_of(site.wss_url) and csms.auth[-1] == basic(KEY)  # still 2
    assert change(csms, "CsmsUrl", site.mtls_url) == "RebootRequired"
    assert change(csms, "SecurityProfile", "3") == "Accepted"
    assert reconnected(csms, 5) < 5
    # profile 3: the client certificate instead of Basic auth
    assert csms.ports[-1] == port_of(site.mtls_url) and csms.client_cns[-1] == "CP001" and csms.auth[-1] is None
    assert get(csms, "SecurityProfile") == "3"
    # M04.FR.05: the client certificate is not for DeleteCertificate
    import testpki
    mine = testpki.cert_id(pki.certs["client"], pki.certs["ca"])
    assert csms.run_call("CP001", call.DeleteCertificate(certificate_hash_data=mine)).status == "NotFound"
    # all of it kept across a power cut
    fw.kill()
    restart_with(fw, site.mtls_url)
    fw.start()
    assert reconnected(csms, 6, 15)
    assert csms.client_cns[-1] == "CP001" and csms.auth[-1] is None and get(csms, "SecurityProfile") == "3"
    assert csms.refused == [] and csms.violations == []
    # the private key never shows: not on the console, not in the flash log (GetDiagnostics, GetLog)
    fw.stop()
    flash = "".join(flash_files(fw.data_dir).values())
    body = "".join((pki / "client.key").read_text().splitlines()[1:-1])
    for chunk in (body[:20], body[20:40], body[-20:], KEY):
        assert chunk not in flash and not [line for line in fw.lines if chunk in line]


def test_a_new_key_reconnects_within_seconds_and_never_shows(csms, firmware_factory, tmp_path):
    csms.passwords = {"CP001": KEY}
    fw = firmware_factory(csms, board=board_with(tmp_path, AuthorizationKey=KEY))
    fw.start()
    fw.wait_line(r"SecurityProfile 1, from the configuration")
    fw.wait_line(r"accepted this charge point")
    assert csms.auth == [basic(KEY)]
    for bad in ("x" * 15, "y" * 41, "tab\tinside_0123456789", "non-ASCII \u00e9 0123456789"):
        assert change(csms, "AuthorizationKey", bad) == "Rejected"
    time.sleep(1)
    assert csms.connections == 1  # nothing changed
    for n, key in ((2, "z" * 16), (3, KEY2)):  # 16 characters are enough
        csms.passwords = {"CP001": key}  # A01.FR.03: the CSMS takes the new key at once
        t = time.time()
        assert change(csms, "AuthorizationKey", key) == "Accepted"
        assert reconnected(csms, n) < 5
        assert csms.auth[-1] == basic(key)
        print("reconnect after a new AuthorizationKey: %.1f s" % (time.time() - t))
    assert csms.refused == []
    # never in an answer, a frame log line or the flash log
    answer = csms.run_call("CP001", call.GetConfiguration(key=["AuthorizationKey"])).configuration_key
    assert answer == [{"key": "AuthorizationKey", "readonly": False}]
    everything = csms.run_call("CP001", call.GetConfiguration()).configuration_key
    assert [k for k in everything if k["key"] == "AuthorizationKey"] == [{"key": "AuthorizationKey", "readonly": False}]
    fw.wait_line(r'<< \[2,.*"ChangeConfiguration" \.\.\.\] \(it sets a password: the rest is not logged\)')
    fw.stop()
    flash = "".join(flash_files(fw.data_dir).values())
    assert "(it sets a password: the rest is not logged)" in flash
    for key in (KEY, KEY2, "z" * 16, base64.b64encode(("CP001:" + KEY).encode()).decode()):
        assert key not in flash and not [line for line in fw.lines if key in line]
    for _, d, _, m in csms.frames:  # no frame of the station's carries it either
        assert d == ">>" or KEY not in str(m)
    assert csms.violations == []


def test_401_is_retried_with_backoff_until_the_key_matches(csms, firmware_factory, tmp_path):
    csms.passwords = {"CP001": KEY2}  # the CSMS expects another key
    fw = firmware_factory(csms, board=board_with(tmp_path, AuthorizationKey=KEY))
    fw.start()
    delays = []
    for _ in range(3):
        assert "server answered HTTP 401" in fw.wait_line(r"cannot connect", 30)
        delays.append(int(fw.wait_line(r"reconnecting in \d+ s").split()[-2]))
    assert delays[0] <= 2 and delays[1] >= 2 and delays[2] >= 4, delays  # exponential, with jitter
    csms.passwords = {"CP001": KEY}
    fw.wait_line(r"accepted this charge point", 30)
    assert [w for _, _, w in csms.refused] == ["wrong Basic auth credentials"] * 3
    fw.stop()
    assert [k for _, _, k, _ in security_log(fw.data_dir)].count("FailedToAuthenticateAtCentralSystem") == 3
    assert csms.violations == []


def test_a_raised_profile_that_never_connects_falls_back(site, firmware_factory, pki, tmp_path):
    # The station trusts ca2 only; the CSMS's wss:// certificate is from ca: profile 2 cannot work.
    csms = site
    csms.passwords = {"CP001": KEY}
    fw = firmware_factory(site.ws_url, board=board_with(tmp_path, AuthorizationKey=KEY),
                          extra=["--ca", str(pki / "ca2.pem")])
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert change(csms, "CsmsUrl", site.wss_url) == "RebootRequired"
    assert change(csms, "SecurityProfile", "2") == "Accepted"
    for _ in range(FALLBACK_AFTER):
        line = fw.wait_line(r"cannot connect", 30)
        assert "TLS handshake failed: The certificate is not correctly signed by the trusted CA" in line
    fw.wait_line(r"no connection at security profile 2 in 3 attempts: back to profile 1 and CsmsUrl %s"
                 % re.escape(site.ws_url))
    assert reconnected(csms, 2, 15)
    assert csms.ports[-1] == port_of(site.ws_url) and csms.auth[-1] == basic(KEY)
    assert get(csms, "SecurityProfile") == "1" and get(csms, "CsmsUrl") == site.ws_url
    # and it stays so across a restart
    fw.stop()
    fw.start()
    assert reconnected(csms, 3, 15) and get(csms, "SecurityProfile") == "1"
    fw.stop()
    log = [(k, i) for _, _, k, i in security_log(fw.data_dir)]
    assert log.count(("InvalidCentralSystemCertificate", None)) == 0
    assert [i for k, i in log if k == "ReconfigurationOfSecurityParameters"] == [
        "SecurityProfile set to 2", "SecurityProfile set to 1"]  # the raise, then the fallback
    # (deriving it at the first start is no reconfiguration)
    assert len([k for k, _ in log if k == "InvalidCentralSystemCertificate"]) == FALLBACK_AFTER
    assert csms.violations == []


def test_no_fallback_once_the_raised_profile_has_connected(site, firmware_factory, pki, tmp_path):
    csms = site
    csms.passwords = {"CP001": KEY}
    fw = firmware_factory(site.ws_url, board=board_with(tmp_path, AuthorizationKey=KEY),
                          extra=["--ca", str(pki / "ca.pem")])
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert change(csms, "CsmsUrl", site.wss_url) == "RebootRequired"
    assert change(csms, "SecurityProfile", "2") == "Accepted"
    assert reconnected(csms, 2)
    fw.wait_line(r"security profile 2 works: kept")
    fw.kill()  # power cut: the fact that profile 2 worked is in flash
    restart_with(fw, site.wss_url)
    port = csms.port
    csms.stop_thread()
    fw.start()
    for _ in range(FALLBACK_AFTER + 1):
        fw.wait_line(r"cannot connect", 40)
    assert not [line for line in fw.lines if "back to profile" in line]
    csms.start_in_thread(port=port)
    csms.add_listener(ssl=server_tls(pki), port=port_of(site.wss_url))
    fw.wait_line(r"accepted this charge point|connected$", 90)
    csms.wait_for(lambda: "CP001" in csms.handlers, 60, "the reconnect")
    assert csms.ports[-1] == port_of(site.wss_url) and get(csms, "SecurityProfile") == "2"
    assert csms.violations == []


def test_refused_without_a_root_and_lowered_only_locally(site, firmware_factory, tmp_path):
    csms = site
    fw = firmware_factory(site.ws_url, board=board_with(tmp_path, AuthorizationKey=KEY))
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert change(csms, "CsmsUrl", site.wss_url) == "RebootRequired"
    assert change(csms, "SecurityProfile", "2") == "Rejected"  # A05.FR.03
    fw.wait_line(r"SecurityProfile 2 refused: no valid CentralSystemRootCertificate is installed")
    assert change(csms, "CsmsUrl", site.ws_url) == "RebootRequired"
    assert change(csms, "SecurityProfile", "1") == "Rejected" and get(csms, "SecurityProfile") == "1"
    fw.stop()
    # The installer lowers it at the console (A00.FR.005: not over OCPP)
    script = tmp_path / "lower.py"
    script.write_text("import cfg\ncfg.open(%r, %r)\ncfg.profile(0)\n" % (str(fw.data_dir), str(tmp_path / "board")))
    assert "SecurityProfile = 0: Accepted" in run_mp(script)
    fw.start()
    fw.wait_line(r"connecting to .* \(security profile 0\)")
    csms.wait_for(lambda: csms.connections == 2 and "CP001" in csms.handlers, 15, "reconnect")
    assert csms.auth[-1] is None and get(csms, "SecurityProfile") == "0"  # the key is set, but unused at 0
    assert csms.violations == []


# ---- TLS: the server certificate, the host name, the version -------------------------

@pytest.mark.parametrize("cert, ca, host, why", [
    ("server", "ca.pem", "localhost", None),
    ("server", "bundle.pem", "localhost", None),  # two roots, ours second
    ("ipsan", "ca.pem", "127.0.0.1", None),  # the address in an IP SAN (its CN is a name)
    ("server", "ca2.pem", "localhost", "The certificate is not correctly signed by the trusted CA"),
    ("otherhost", "ca.pem", "localhost", "The certificate Common Name (CN) does not match"),
    ("ipsan", "ca.pem", "localhost", "The certificate Common Name (CN) does not match"),
    ("tls1.1", "ca.pem", "localhost", "MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION"),  # A00.FR.312/315
])
def test_profile_2_verifies_the_server(pki, firmware_factory, tmp_path, cert, ca, host, why):
    tls = server_tls(pki, max_version=ssl.TLSVersion.TLSv1_1) if cert == "tls1.1" else server_tls(pki, cert)
    csms = DevCSMS(passwords={"CP001": KEY})
    csms.start_in_thread(ssl=tls)
    try:
        fw = firmware_factory("wss://%s:%d/ocpp" % (host, csms.port), board=board_with(tmp_path, AuthorizationKey=KEY),
                              extra=["--ca", str(pki / ca)])
        fw.start()
        fw.wait_line(r"SecurityProfile 2, from the configuration")
        if why is None:
            fw.wait_line(r"accepted this charge point")
            assert csms.auth == [basic(KEY)] and csms.violations == []
        else:
            line = fw.wait_line(r"cannot connect", 20)
            assert "TLS handshake failed: " + why in line, line
            assert csms.connections == 0
            fw.stop()  # A00.FR.309/413, A00.FR.315: in the security log
            kind = "InvalidTLSVersion" if cert == "tls1.1" else "InvalidCentralSystemCertificate"
            assert [k for _, _, k, i in security_log(fw.data_dir) if k == kind and why in i], kind
    finally:
        csms.stop_thread()
