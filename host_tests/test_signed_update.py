"""Signed firmware updates (security whitepaper L01): SignedUpdateFirmware with the signing
certificate checked against the installed ManufacturerRootCertificate, the signature over
the whole downloaded file (RSA-PSS SHA-256 with any salt length, ECDSA P-256 SHA-256),
SignedFirmwareStatusNotification with the requestId on every status, the restart into the
new version through the slots and Installed after its BootNotification; and the L01.FR.20
policy for the plain UpdateFirmware.

The firmware runs on the unix port under tools/unix_loop.sh against the dev CSMS (every frame
checked against the official schemas) and a real HTTP server; the test PKI and the
signatures are made with `cryptography` (and the openssl CLI, as a vendor would)."""
import base64
import json
import subprocess
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import padding
from ocpp.v16 import call

import pki
import scenario
from conftest import ROOT, run_mp
from test_maintenance import Files, boot_versions, booted, wait, web  # noqa: F401 (web: a fixture)

NEW = "3.0.0-signed"
OLD = "0.1.0"  # firmware/version.py
MANUFACTURER = "ManufacturerRootCertificate"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "signed.bin"
    p = subprocess.run(["make", "-s", "bundle", "VERSION=" + NEW, "OUT=" + str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


@pytest.fixture(scope="module")
def keys():
    """The manufacturer's root (RSA 3072) with an RSA-2048 and an EC P-256 firmware signing
    certificate under it; another root's signing certificate; an expired one; a 1024-bit one."""
    maker = pki.root("Test Manufacturer Root", "rsa3072", o="Test Manufacturer")
    other = pki.root("Someone Else Root", "ec", o="Someone Else")
    return {
        "root": maker,
        "rsa": pki.leaf("Firmware Signing RSA", maker, "rsa2048", usage="code"),
        "ec": pki.leaf("Firmware Signing EC", maker, "ec", usage="code"),
        "other": pki.leaf("Firmware Signing Other", other, "ec", usage="code"),
        "expired": pki.leaf("Firmware Signing Expired", maker, "ec", usage="code",
                            not_before=pki.now() - 30 * pki.DAY, not_after=pki.now() - pki.DAY),
        "short": pki.leaf("Firmware Signing RSA-1024", maker, "rsa1024", usage="code"),
    }


# ---- helpers -------------------------------------------------------------------------

def signed(csms):
    """(status, requestId) of every SignedFirmwareStatusNotification."""
    return [(p["status"], p.get("requestId")) for _, _, p in csms.calls("SignedFirmwareStatusNotification")]


def install_root(csms, keys, kind=MANUFACTURER):
    answer = csms.run_call("CP001", call.InstallCertificate(certificate_type=kind, certificate=keys["root"].pem))
    assert answer.status == "Accepted", answer


def signed_update(csms, location, signer, signature, request_id, retrieve=0, install=None, retries=0):
    fw = {"location": location, "retrieveDateTime": scenario.iso(retrieve), "signingCertificate": signer.pem,
          "signature": base64.b64encode(signature).decode()}
    if install is not None:
        fw["installDateTime"] = scenario.iso(install)
    return csms.run_call("CP001", call.SignedUpdateFirmware(request_id=request_id, firmware=fw, retries=retries,
                                                            retry_interval=2)).status


def security_events(csms):
    return [p["type"] for _, _, p in csms.calls("SecurityEventNotification")]


def openssl_sign(tmp_path, key, path, pss):
    """The signature as the README tells a vendor to make it: openssl dgst."""
    key_file = tmp_path / "signer.key"
    key_file.write_text(pki.key_pem(key))
    sig = tmp_path / "sig.bin"
    cmd = ["openssl", "dgst", "-sha256", "-sign", str(key_file), "-out", str(sig)]
    if pss:
        cmd += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:max"]
    subprocess.run(cmd + [str(path)], check=True, capture_output=True)
    return sig.read_bytes()


# ---- the signature check on the unix port ---------------------------------------------

def test_signature_check_takes_pss_of_any_salt_and_ecdsa_and_refuses_the_rest(keys, tmp_path):
    # maintenance.signature_ok on MicroPython against signatures made by cryptography and openssl.
    import hashlib
    data = b"an update file" * 1000
    (tmp_path / "file.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    rsa_key, ec_key = keys["rsa"].key, keys["ec"].key
    n = rsa_key.public_key().public_numbers()
    point = ec_key.public_key().public_bytes(pki.serialization.Encoding.X962,
                                              pki.serialization.PublicFormat.UncompressedPoint).hex()
    rsa_k, ec_k = ["rsa", "%x" % n.n, n.e], ["ec", point]
    der = pki.sign_file(ec_key, data)
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    r, s = decode_dss_signature(der)
    cases = [  # (name, key, signature, expected)
        ("pss salt 0", rsa_k, pki.sign_file(rsa_key, data, 0), True),
        ("pss salt 20", rsa_k, pki.sign_file(rsa_key, data, 20), True),
        ("pss salt 32", rsa_k, pki.sign_file(rsa_key, data, 32), True),
        ("pss salt max", rsa_k, pki.sign_file(rsa_key, data, padding.PSS.MAX_LENGTH), True),
        ("pss openssl", rsa_k, openssl_sign(tmp_path, rsa_key, tmp_path / "file.bin", True), True),
        ("ecdsa der", ec_k, der, True),
        ("ecdsa openssl", ec_k, openssl_sign(tmp_path, ec_key, tmp_path / "file.bin", False), True),
        ("ecdsa r|s", ec_k, r.to_bytes(32, "big") + s.to_bytes(32, "big"), True),
        ("pkcs1 v1.5 is not PSS", rsa_k, rsa_key.sign(data, padding.PKCS1v15(), pki.hashes.SHA256()), False),
        ("pss of other data", rsa_k, pki.sign_file(rsa_key, data + b"x"), False),
        ("ecdsa of other data", ec_k, pki.sign_file(ec_key, data + b"x"), False),
        ("ecdsa with another key", ec_k, pki.sign_file(keys["other"].key, data), False),
        ("rsa signature, ec key", ec_k, pki.sign_file(rsa_key, data), False),
        ("empty", ec_k, b"", False),
    ]
    spec = [[name, key, base64.b64encode(sig).decode(), digest] for name, key, sig, _ in cases]
    spec.append(["not base64", ec_k, "AAAAA", digest])
    (tmp_path / "cases.json").write_text(json.dumps(spec))
    out = run_mp(ROOT / "host_tests" / "mp" / "signature_cases.py", str(tmp_path / "cases.json"))
    got = dict(line.split(": ", 1) for line in out.strip().splitlines())
    want = {name: str(ok) for name, _, _, ok in cases}
    want["not base64"] = "ValueError"
    assert got == want


# ---- SignedUpdateFirmware end to end ----------------------------------------------------

@pytest.mark.parametrize("how", ["rsa-pss-32", "rsa-pss-max", "ecdsa"])
def test_signed_update_end_to_end(csms, firmware_factory, web, bundle, keys, how):
    data = bundle.read_bytes()
    Files.files["signed.bin"] = data
    signer = keys["rsa" if how.startswith("rsa") else "ec"]
    sig = pki.sign_file(signer.key, data, padding.PSS.MAX_LENGTH if how == "rsa-pss-max" else 32)
    fw = firmware_factory(csms)
    booted(fw, csms)
    install_root(csms, keys)
    # ECDSA: installDateTime a few seconds ahead (L01.FR.16: InstallScheduled, installed then)
    install_at = 6 if how == "ecdsa" else None
    asked = time.time()
    assert signed_update(csms, web + "/signed.bin", signer, sig, 123, install=install_at) == "Accepted"
    if how == "rsa-pss-32":  # once installing, a new request cannot cancel it (L01.FR.27)
        wait(lambda: ("InstallRebooting", 123) in signed(csms), 60, "InstallRebooting")
        assert signed_update(csms, web + "/signed.bin", signer, sig, 124) == "Rejected"
    wait(lambda: ("Installed", 123) in signed(csms), 90, "Installed")
    want = ["Downloading", "Downloaded", "SignatureVerified"] + (["InstallScheduled"] if install_at else []) + [
        "Installing", "InstallRebooting", "Installed"]
    assert signed(csms) == [(s, 123) for s in want]  # requestId on every one (L01.FR.10, FR.21)
    assert csms.calls("FirmwareStatusNotification") == []  # not the plain notification
    assert boot_versions(csms) == [OLD, NEW]
    order = [a for _, a, _ in csms.calls() if a in ("BootNotification", "SignedFirmwareStatusNotification")]
    assert order[-2:] == ["BootNotification", "SignedFirmwareStatusNotification"], order
    if install_at:
        t_installing = [t for t, d, _, m in csms.frames if d == "<<" and isinstance(m, list) and m[0] == 2
                        and m[2] == "SignedFirmwareStatusNotification" and m[3]["status"] == "Installing"][0]
        assert t_installing >= asked + install_at - 1
    wait(lambda: "FirmwareUpdated" in security_events(csms), 10, "the FirmwareUpdated event")
    assert security_events(csms).count("FirmwareUpdated") == 1
    assert csms.violations == []


def test_a_bad_signature_installs_nothing(csms, firmware_factory, web, bundle, keys):
    data = bundle.read_bytes()
    Files.files["signed.bin"] = data
    sig = bytearray(pki.sign_file(keys["rsa"].key, data))
    sig[10] ^= 1
    fw = firmware_factory(csms)
    booted(fw, csms)
    install_root(csms, keys)
    assert signed_update(csms, web + "/signed.bin", keys["rsa"], bytes(sig), 7) == "Accepted"
    wait(lambda: ("InvalidSignature", 7) in signed(csms), 60, "InvalidSignature")
    fw.wait_line(r"InvalidFirmwareSignature")  # the security log, and sent (L01.FR.03)
    wait(lambda: "InvalidFirmwareSignature" in security_events(csms), 10, "the InvalidFirmwareSignature event")
    # ExtendedTriggerMessage gives the last status, with its requestId (L01.FR.29)
    answer = csms.run_call("CP001", call.ExtendedTriggerMessage(requested_message="FirmwareStatusNotification"))
    assert answer.status == "Accepted"
    wait(lambda: len(signed(csms)) == 4, 10, "the triggered status")
    assert signed(csms) == [("Downloading", 7), ("Downloaded", 7), ("InvalidSignature", 7), ("InvalidSignature", 7)]
    # so does the plain TriggerMessage: a signed update's status has no place in FirmwareStatusNotification
    assert csms.run_call("CP001", call.TriggerMessage(requested_message="FirmwareStatusNotification")).status == \
        "Accepted"
    wait(lambda: len(signed(csms)) == 5, 10, "the status for TriggerMessage")
    assert signed(csms)[-1] == ("InvalidSignature", 7) and csms.calls("FirmwareStatusNotification") == []
    # a good signature of all but the last byte is as bad: the file is checked whole
    assert signed_update(csms, web + "/signed.bin", keys["ec"], pki.sign_file(keys["ec"].key, data[:-1]), 8) == \
        "Accepted"
    wait(lambda: ("InvalidSignature", 8) in signed(csms), 60, "InvalidSignature of request 8")
    time.sleep(3)
    assert boot_versions(csms) == [OLD]  # no restart
    csms.run_call("CP001", call.Reset(type="Soft"))
    wait(lambda: len(boot_versions(csms)) == 2, 30, "the boot after the Reset")
    assert boot_versions(csms) == [OLD, OLD]  # nothing was installed
    assert csms.violations == []


def test_a_signing_certificate_that_does_not_chain_is_refused_before_any_download(csms, firmware_factory, web,
                                                                                  bundle, keys):
    data = bundle.read_bytes()
    Files.files["signed.bin"] = data
    fw = firmware_factory(csms)
    booted(fw, csms)
    url = web + "/signed.bin"
    # no ManufacturerRootCertificate installed: nothing can be verified
    assert signed_update(csms, url, keys["ec"], pki.sign_file(keys["ec"].key, data), 1) == "InvalidCertificate"
    fw.wait_line(r"security: InvalidFirmwareSigningCertificate.*: no ManufacturerRootCertificate is installed")
    install_root(csms, keys)
    for rid, who, why in ((2, "other", "no trusted issuer"), (3, "expired", "has expired"),
                          (4, "short", "less than 2048 bits")):
        sig = pki.sign_file(keys[who].key, data)
        assert signed_update(csms, url, keys[who], sig, rid) == "InvalidCertificate", who
        fw.wait_line(r"security: InvalidFirmwareSigningCertificate.*: .*" + why)
    garbage = {"location": url, "retrieveDateTime": scenario.iso(0), "signature": "AAAA",
               "signingCertificate": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                                     "-----END CERTIFICATE-----\n"}
    answer = csms.run_call("CP001", call.SignedUpdateFirmware(request_id=5, firmware=garbage))
    assert answer.status == "InvalidCertificate"
    time.sleep(2)
    assert Files.gets == []  # nothing downloaded
    assert signed(csms) == []
    fw.wait_line(r"security: InvalidFirmwareSigningCertificate.*: ")
    # each refusal is sent to the CSMS too (L01.FR.02)
    wait(lambda: security_events(csms).count("InvalidFirmwareSigningCertificate") == 5, 10, "5 events")
    # a location the station cannot fetch: Rejected (the certificate is good)
    assert signed_update(csms, "sftp://127.0.0.1/x.bin", keys["ec"], b"x", 6) == "Rejected"
    assert csms.violations == []


def test_a_new_request_cancels_the_one_under_way_and_the_request_id_survives_a_restart(csms, firmware_factory,
                                                                                         web, bundle, keys):
    data = bundle.read_bytes()
    Files.files["signed.bin"] = data
    sig = pki.sign_file(keys["ec"].key, data)
    fw = firmware_factory(csms)
    booted(fw, csms)
    install_root(csms, keys)
    assert signed_update(csms, web + "/signed.bin", keys["ec"], sig, 41, retrieve=300) == "Accepted"
    wait(lambda: ("DownloadScheduled", 41) in signed(csms), 10, "DownloadScheduled")
    csms.run_call("CP001", call.Reset(type="Soft"))  # the request is kept in flash
    fw.wait_line(r"firmware update from http://127.0.0.1:\d+/signed.bin still to do", timeout=30)
    wait(lambda: signed(csms).count(("DownloadScheduled", 41)) == 2, 20, "DownloadScheduled again")
    # a new request replaces it (L01.FR.26)
    assert signed_update(csms, web + "/signed.bin", keys["ec"], sig, 42) == "AcceptedCanceled"
    wait(lambda: ("Installed", 42) in signed(csms), 90, "Installed")
    assert [s for s in signed(csms) if s[1] == 41] == [("DownloadScheduled", 41)] * 2
    assert [s for s, r in signed(csms) if r == 42] == ["Downloading", "Downloaded", "SignatureVerified",
                                                        "Installing", "InstallRebooting", "Installed"]
    assert len([g for g in Files.gets if g[1] == "/signed.bin"]) == 1
    assert boot_versions(csms) == [OLD, OLD, NEW]
    # after Installed a trigger says Idle, without a requestId (L01.FR.28)
    csms.run_call("CP001", call.ExtendedTriggerMessage(requested_message="FirmwareStatusNotification"))
    wait(lambda: signed(csms)[-1] == ("Idle", None), 10, "Idle")
    assert csms.violations == []


def test_the_install_waits_for_the_transaction_with_the_other_connectors_unavailable(csms, firmware_factory, web,
                                                                                      bundle, keys):
    # L01.FR.06, FR.07: installed once the transaction has ended; meanwhile no new one can start
    data = bundle.read_bytes()
    Files.files["signed.bin"] = data
    fw = firmware_factory(csms)
    booted(fw, csms)
    install_root(csms, keys)
    fw.send("plug 1")
    fw.send("card 1 CARD7")
    wait(lambda: csms.calls("StartTransaction"), 10, "StartTransaction")
    assert signed_update(csms, web + "/signed.bin", keys["ec"], pki.sign_file(keys["ec"].key, data), 9) == "Accepted"
    wait(lambda: scenario.statuses(csms, 2)[-1:] == ["Unavailable"], 30, "connector 2 Unavailable")
    assert [s for s, _ in signed(csms)] == ["Downloading", "Downloaded", "SignatureVerified"]
    fw.send("plug 2")
    fw.send("card 2 CARD8")  # no transaction on a connector held for the update
    time.sleep(2)
    assert len(csms.calls("StartTransaction")) == 1
    fw.send("card 1 CARD7")
    wait(lambda: ("Installed", 9) in signed(csms), 90, "Installed")
    stop = [p for _, _, p in csms.calls("StopTransaction")]
    assert len(stop) == 1 and stop[0]["reason"] == "Local", stop  # ended by its card, not by the update
    assert boot_versions(csms) == [OLD, NEW]
    fw.send("unplug 2")
    wait(lambda: scenario.statuses(csms, 2)[-1:] == ["Available"], 20, "connector 2 Available in the new version")
    assert csms.violations == []


# ---- L01.FR.20: the plain UpdateFirmware ---------------------------------------------------

def test_update_firmware_works_until_a_manufacturer_root_is_installed(csms, firmware_factory, web, bundle, keys):
    from ocpp.exceptions import NotSupportedError
    Files.files["signed.bin"] = bundle.read_bytes()
    fw = firmware_factory(csms)
    booted(fw, csms)
    install_root(csms, keys, "CentralSystemRootCertificate")  # a CPO root changes nothing
    csms.run_call("CP001", call.UpdateFirmware(location=web + "/nothing.bin", retrieve_date=scenario.iso(0),
                                               retries=0))
    wait(lambda: [p["status"] for _, _, p in csms.calls("FirmwareStatusNotification")] == ["Downloading",
                                                                                          "DownloadFailed"],
         20, "the plain update's DownloadFailed")
    install_root(csms, keys)
    gets = len(Files.gets)
    with pytest.raises(NotSupportedError):
        csms.run_call("CP001", call.UpdateFirmware(location=web + "/signed.bin", retrieve_date=scenario.iso(0)))
    fw.wait_line(r"UpdateFirmware refused \(NotSupported\): a ManufacturerRootCertificate is installed")
    time.sleep(2)
    assert len(Files.gets) == gets  # the update process did not start
    assert len(csms.calls("FirmwareStatusNotification")) == 2
    assert csms.violations == []


# ---- on demand only ----------------------------------------------------------------------

ON_DEMAND = {"maintenance", "update", "x509", "der", "p256", "rsa", "certs", "certstore", "ocpp.signedfw",
             "ocpp.v16.certsign"}


def loaded(fw):
    fw.send("modules")
    return set(fw.wait_line(r"console: modules: ").split("modules: ", 1)[1].split())


def test_boot_loads_none_of_the_signed_update_and_certificate_code(csms, firmware_factory, web, bundle, keys):
    fw = firmware_factory(csms)
    booted(fw, csms)
    at_boot = loaded(fw)
    assert "app" in at_boot and "ocpp.v16.chargepoint" in at_boot
    assert at_boot & ON_DEMAND == set()
    # a signed update with a bad signature loads them: once it is over only the job is kept (maintenance,
    # update); nothing of it at the next boot
    data = bundle.read_bytes()
    Files.files["signed.bin"] = data
    install_root(csms, keys)
    assert signed_update(csms, web + "/signed.bin", keys["ec"], pki.sign_file(keys["ec"].key, data[1:]), 3) == \
        "Accepted"
    wait(lambda: ("InvalidSignature", 3) in signed(csms), 60, "InvalidSignature")
    after = loaded(fw)
    assert "maintenance" in after and after & {"x509", "der", "p256", "rsa", "ocpp.signedfw"} == set()
    csms.run_call("CP001", call.Reset(type="Soft"))
    fw.wait_line(r"accepted this charge point", timeout=30)
    assert loaded(fw) & ON_DEMAND == set()
