"""The certificate store (firmware/certs.py) and its OCPP operations (whitepaper M03-M05):
InstallCertificate, GetInstalledCertificateIds, DeleteCertificate against the dev CSMS, with the
hash data cross-checked against the OCSP CertID that `cryptography` computes; the store's
limit, garbage, persistence, power cuts in the middle of an install, the root in use, `--ca`."""
import json
import re
import time

import pytest
from ocpp.v16 import call

import testpki
from conftest import run_mp, server_tls
from test_csms_errors import board_with
from test_security_events import security_log
from test_security_profile import KEY, basic, change, get, port_of, reconnected, restart_with, site  # noqa: F401

CS = "CentralSystemRootCertificate"
MF = "ManufacturerRootCertificate"


def install(csms, kind, pem, cp="CP001"):
    return csms.run_call(cp, call.InstallCertificate(certificate_type=kind, certificate=pem)).status


def ids(csms, kind, cp="CP001"):
    r = csms.run_call(cp, call.GetInstalledCertificateIds(certificate_type=kind))
    return r.status, r.certificate_hash_data


def delete(csms, hash_data, cp="CP001"):
    return csms.run_call(cp, call.DeleteCertificate(certificate_hash_data=hash_data)).status


def cert_id(pki, name):
    return testpki.cert_id(pki.certs[name])


def _camel(k):
    head, *rest = k.split("_")
    return head + "".join(w.title() for w in rest)


def same(got, want):
    """Hash data lists equal, hex case aside (the ocpp library gives snake_case keys)."""
    norm = lambda h: {_camel(k): v.lower() for k, v in h.items()}  # noqa: E731
    return sorted(json.dumps(norm(h), sort_keys=True) for h in got or []) == \
        sorted(json.dumps(norm(h), sort_keys=True) for h in want)


def test_install_list_and_delete(csms, firmware_factory, pki):
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert ids(csms, CS) == ("NotFound", None) and ids(csms, MF) == ("NotFound", None)  # M03.FR.02
    assert install(csms, CS, pki.pem("ca")) == "Accepted"
    fw.wait_line(r"CentralSystemRootCertificate [0-9a-f]{16} installed \(1 of 10\)")
    assert install(csms, CS, pki.pem("ca")) == "Accepted"  # a duplicate: no second copy
    fw.wait_line(r"is installed already")
    assert install(csms, MF, pki.pem("rsaca")) == "Accepted"
    status, got = ids(csms, CS)
    assert status == "Accepted" and same(got, [cert_id(pki, "ca")])  # M03.FR.03/04, RFC 6960 CertID
    assert same(ids(csms, MF)[1], [cert_id(pki, "rsaca")])
    # DeleteCertificate (M04): unknown, then each one; the ManufacturerRootCertificate may go too
    other = dict(cert_id(pki, "ca2"))
    assert delete(csms, other) == "NotFound"
    wrong_alg = dict(cert_id(pki, "ca"), hashAlgorithm="SHA384")
    assert delete(csms, wrong_alg) == "NotFound"  # hashes of another algorithm name nothing we hold
    assert delete(csms, dict(cert_id(pki, "rsaca"))) == "Accepted"
    assert ids(csms, MF) == ("NotFound", None)
    upper = {k: v.upper() if k != "hashAlgorithm" else v for k, v in cert_id(pki, "ca").items()}
    assert delete(csms, upper) == "Accepted"  # not in use: the link is ws://; hex in any case
    assert ids(csms, CS) == ("NotFound", None)
    assert delete(csms, cert_id(pki, "ca")) == "NotFound"
    fw.stop()
    changes = [i for _, _, k, i in security_log(fw.data_dir) if k == "ReconfigurationOfSecurityParameters"]
    assert changes[0] == "CentralSystemRootCertificate installed" and len(changes) == 4, changes  # ca, rsaca, 2 deletes
    assert changes[2].startswith("certificate ") and changes[2].endswith(" deleted")
    assert csms.violations == []


GARBAGE = {
    "text": "hello",
    "broken base64": "-----BEGIN CERTIFICATE-----\nMIIB!!!notbase64\n-----END CERTIFICATE-----\n",
    "truncated": None,  # the CA's PEM cut in the middle (set below)
    "not a CA": None,  # the server certificate
    "a key": None,  # a private key in PEM
    "two certificates": None,  # InstallCertificate takes one
    "expired": None,
    "empty": "",
}


def test_garbage_and_non_ca_certificates_are_rejected(csms, firmware_factory, pki):
    g = dict(GARBAGE)
    pem = pki.pem("ca")
    body = pem.splitlines()
    g["truncated"] = "\n".join(body[:4] + body[-1:]) + "\n"
    g["not a CA"] = pki.pem("server")
    g["a key"] = (pki / "ca.key").read_text()
    g["two certificates"] = pki.pem("ca") + pki.pem("ca2")
    g["expired"] = pki.pem("expiredca")
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    for what, text in g.items():
        assert install(csms, CS, text) == "Rejected", what
        assert install(csms, MF, text) == "Rejected", what
    assert ids(csms, CS)[0] == "NotFound" and ids(csms, MF)[0] == "NotFound"
    lines = "\n".join(fw.lines)
    assert "rejected: it is not a CA certificate" in lines and "rejected: it expired" in lines
    assert "rejected: not one PEM or DER certificate" in lines
    assert not fw.crashed() and csms.violations == []


def test_store_limit_persistence_and_read_only_keys(csms, firmware_factory, pki, tmp_path):
    fw = firmware_factory(csms, board=board_with(tmp_path, CertificateStoreMaxLength=2))
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert get(csms, "CertificateStoreMaxLength") == "2" and get(csms, "AdditionalRootCertificateCheck") == "false"
    assert change(csms, "CertificateStoreMaxLength", "50") == "Rejected"  # read-only (§7.4)
    assert change(csms, "AdditionalRootCertificateCheck", "true") == "Rejected"  # read-only (§7.1)
    assert change(csms, "CpoName", "Test CPO") == "Accepted" and get(csms, "CpoName") == "Test CPO"
    assert install(csms, CS, pki.pem("ca")) == "Accepted"
    assert install(csms, MF, pki.pem("rsaca")) == "Accepted"
    assert install(csms, CS, pki.pem("ca2")) == "Rejected"  # M05.FR.03: full (both kinds count)
    fw.wait_line(r"CentralSystemRootCertificate rejected: the store is full \(2 of CertificateStoreMaxLength 2\)")
    assert install(csms, CS, pki.pem("ca")) == "Accepted"  # installed already: no room needed
    fw.kill()  # a power cut: all of it is in flash
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert same(ids(csms, CS)[1], [cert_id(pki, "ca")]) and same(ids(csms, MF)[1], [cert_id(pki, "rsaca")])
    assert get(csms, "CpoName") == "Test CPO"
    assert delete(csms, cert_id(pki, "rsaca")) == "Accepted"
    assert install(csms, CS, pki.pem("ca2")) == "Accepted"  # room again
    assert csms.violations == []


def test_the_root_in_use_cannot_be_deleted(pki, firmware_factory, tmp_path):
    from dev_csms import DevCSMS
    csms = DevCSMS(passwords={"CP001": KEY})
    csms.start_in_thread(ssl=server_tls(pki))
    try:
        fw = firmware_factory("wss://localhost:%d" % csms.port, board=board_with(tmp_path, AuthorizationKey=KEY),
                              extra=["--ca", str(pki / "ca.pem")])
        fw.start()
        fw.wait_line(r"SecurityProfile 2, from the configuration")
        fw.wait_line(r"accepted this charge point")
        assert delete(csms, cert_id(pki, "ca")) == "Failed"  # M04.FR.06: the only root, in use
        fw.wait_line(r"validates the connection in use: not deleted")
        assert install(csms, CS, pki.pem("ca2")) == "Accepted"
        assert install(csms, CS, pki.pem("rsaca")) == "Accepted"
        n = csms.connections
        t = time.time()
        assert delete(csms, cert_id(pki, "ca")) == "Failed"  # ca2 and rsaca cannot validate the CSMS
        print("DeleteCertificate with a TLS probe: %.2f s" % (time.time() - t))
        fw.wait_line(r"validates the connection in use \(without it: .*not correctly signed.*\): not deleted")
        assert delete(csms, cert_id(pki, "ca2")) == "Accepted"  # not needed for this connection
        assert same(ids(csms, CS)[1], [cert_id(pki, "ca"), cert_id(pki, "rsaca")])
        assert csms.connections == n  # the probe was no OCPP connection
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_an_installed_root_counts_from_the_next_connection(site, firmware_factory, tmp_path, pki):  # noqa: F811
    csms = site
    fw = firmware_factory(site.ws_url, board=board_with(tmp_path, AuthorizationKey=KEY))
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert change(csms, "CsmsUrl", site.wss_url) == "RebootRequired"
    assert change(csms, "SecurityProfile", "2") == "Rejected"  # no root yet
    assert install(csms, CS, pki.pem("ca")) == "Accepted"
    assert change(csms, "SecurityProfile", "2") == "Accepted"  # no restart in between
    assert reconnected(csms, 2)
    assert csms.ports[-1] == port_of(site.wss_url) and csms.auth[-1] == basic(KEY)
    assert csms.violations == []


def test_ca_option_seeds_the_store_once(csms, firmware_factory, pki):
    fw = firmware_factory(csms, extra=["--ca", str(pki / "bundle.pem")])
    fw.start()
    fw.wait_line(r"--ca .*bundle.pem: 2 CentralSystemRootCertificate\(s\) installed")
    fw.wait_line(r"accepted this charge point")
    assert same(ids(csms, CS)[1], [cert_id(pki, "ca"), cert_id(pki, "ca2")])
    assert delete(csms, cert_id(pki, "ca2")) == "Accepted"
    fw.stop()
    fw.start()  # the same --ca again: the store is what counts now
    fw.wait_line(r"--ca .*bundle.pem ignored: the certificate store was seeded before")
    fw.wait_line(r"accepted this charge point")
    assert same(ids(csms, CS)[1], [cert_id(pki, "ca")])
    assert csms.violations == []


INSTALL_CUT = """
import os, certs
from hw import unixflash
unixflash.mount(%(data)r)
s = certs.Store("/flash")
unixflash.dev.cut_after_writes = unixflash.dev.writes + %(n)d
der = open(%(der)r, "rb").read()
try:
    print("status", s.install(certs.CS, der, False))
except Exception as e:
    print("error", type(e).__name__, e)
unixflash.mount(%(data)r)  # the power is back
s = certs.Store("/flash")
got = s.roots(certs.CS)
print("= " + repr([len(got), got == [der], s.count()]))
"""


def test_an_install_cut_by_a_power_loss_leaves_all_or_nothing(tmp_path, pki):
    data = tmp_path / "d"
    seen = set()
    for n in range(0, 12):
        img = tmp_path / ("d%d" % n)
        img.mkdir()
        script = tmp_path / "cut.py"
        script.write_text(INSTALL_CUT % {"data": str(img), "n": n, "der": str(pki / "ca.der")})
        out = run_mp(script)
        count, whole, files = eval([ln for ln in out.splitlines() if ln.startswith("= ")][-1][2:])
        assert (count, files) in ((0, 0), (1, 1)) and whole == (count == 1), (n, out)
        seen.add(count)
    assert seen == {0, 1}, seen  # cuts before the rename lose it, later ones keep it whole
    del data


CONSOLE = """
import cfg
cfg.open(%(data)r, "boards/unix")
cfg.ca(%(ca)r)
cfg.ca(%(leaf)r)
cfg.key(%(key)r)
cfg.cpo("Test CPO")
cfg.csms(%(url)r)
cfg.profile(2)
cfg.certs()
"""


def test_an_installer_provisions_profile_2_at_the_console(pki, firmware_factory, tmp_path):
    # README "Security": with the firmware stopped, root, key, CpoName and profile over the REPL
    from dev_csms import DevCSMS
    csms = DevCSMS(passwords={"CP001": KEY})
    csms.start_in_thread(ssl=server_tls(pki))
    try:
        url = "wss://localhost:%d" % csms.port
        fw = firmware_factory(url)
        fw.start()  # the first start creates the flash (no root yet: it cannot connect)
        fw.wait_line(r"cannot connect: TLS handshake failed: no CA certificate configured")
        fw.stop()
        script = tmp_path / "console.py"
        script.write_text(CONSOLE % {"data": str(fw.data_dir), "ca": str(pki / "ca.pem"), "leaf": str(pki / "server.pem"),
                                     "key": KEY, "url": url})
        out = run_mp(script)
        assert out.count("CentralSystemRootCertificate: Accepted") == 1, out
        assert "CentralSystemRootCertificate: Rejected" in out  # a server certificate is no CA
        assert "SecurityProfile = 2: Accepted" in out and "CpoName = Test CPO: Accepted" in out
        assert re.search(r"CentralSystemRootCertificate [0-9a-f]{16} CN=Test CSMS CA until 20\d\d-", out), out
        assert "1 of CertificateStoreMaxLength 10; client certificate: none" in out
        assert KEY not in out
        fw.start()
        fw.wait_line(r"connecting to wss://localhost:\d+/CP001 \(security profile 2\)")
        fw.wait_line(r"accepted this charge point")
        assert csms.auth[-1] == basic(KEY) and get(csms, "CpoName") == "Test CPO"
        assert csms.violations == []
    finally:
        csms.stop_thread()


FULL_FLASH = """
import os, certs
from hw import unixflash
unixflash.mount(%(data)r, blocks=24)
s = certs.Store("/flash")
with open("/flash/filler", "wb") as f:  # the flash full to the last block
    b = bytes(4096)
    try:
        while True:
            f.write(b)
            f.flush()
    except OSError:
        pass
print("= " + repr([s.install(certs.CS, open(%(der)r, "rb").read()), s.count(),
                   [n for n in os.listdir("/flash/certs") if n.endswith(".tmp")] if "certs" in os.listdir("/flash") else []]))
"""


def test_a_full_flash_fails_the_install_and_leaves_nothing_behind(tmp_path, pki):
    script = tmp_path / "full.py"
    script.write_text(FULL_FLASH % {"data": str(tmp_path / "d"), "der": str(pki / "ca.der")})
    out = run_mp(script)
    assert eval([ln for ln in out.splitlines() if ln.startswith("= ")][-1][2:]) == ["Failed", 0, []], out
    assert "cannot store the CentralSystemRootCertificate" in out


def test_https_transfers_trust_the_stores_roots(csms, firmware_factory, pki):
    # GetDiagnostics to https://: verified with the CentralSystemRootCertificates, as the link is
    from test_transfer import HTTPFixture
    web = HTTPFixture(server_tls(pki))
    try:
        fw = firmware_factory(csms)
        fw.start()
        fw.wait_line(r"accepted this charge point")
        url = web.url("/up/", "https", "localhost")
        statuses = lambda: [p["status"] for _, _, p in csms.calls("DiagnosticsStatusNotification")]  # noqa: E731
        csms.run_call("CP001", call.GetDiagnostics(location=url, retries=0))
        csms.wait_for(lambda: "UploadFailed" in statuses(), 20, "UploadFailed without a root")
        assert install(csms, CS, pki.pem("ca")) == "Accepted"
        csms.run_call("CP001", call.GetDiagnostics(location=url, retries=0))
        csms.wait_for(lambda: "Uploaded" in statuses(), 20, "Uploaded with the root installed")
        assert web.received and csms.violations == []
    finally:
        web.stop()
