"""Firmware updates: the update file (`make bundle`), the two application slots on
flash, the boot stage's trial and rollback (firmware/slots.py, firmware/update.py),
and the ESP32 OTA image path against a simulated esp32 module (host_tests/mp_esp32).

Installs are driven by host_tests/mp/update_driver.py, as the OCPP UpdateFirmware
handler will: the file goes to the flash through update.Checker, then update.install()."""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time

import pytest
from ocpp.v16 import call

from conftest import ROOT, MICROPYTHON, MICROPYPATH, mp_env
from dev_csms import DevCSMS

sys.path.insert(0, str(ROOT / "tools"))
import bundle  # noqa: E402
import deploy  # noqa: E402

NEW = "9.9.9-slots"
OLD = "0.1.0"  # the checkout's own, firmware/version.py
FAKE_ESP32_PATH = "host_tests/mp_esp32:" + MICROPYPATH


def driver(data, *cmds, micropypath=None):
    """update_driver.py on the station's flash: -> its "ok ..." / "refused: ..." lines."""
    p = subprocess.run([MICROPYTHON, "host_tests/mp/update_driver.py", str(data)] + [str(c) for c in cmds], cwd=ROOT,
                       env=mp_env(micropypath), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return [line for line in p.stdout.splitlines() if line.startswith(("ok", "refused"))]


def state(data, micropypath=None):
    out = driver(data, "state", micropypath=micropypath)[0]
    assert out.startswith("ok ")
    return out[3:]


def boot_versions(csms):
    return [p["firmwareVersion"] for _, _, p in csms.calls("BootNotification")]


def reported(csms, status, fw=None, timeout=10):
    # The outcome the application reports after its BootNotification (FirmwareStatusNotification),
    # which clears it from the state; with fw, also until the firmware has the answer (the state cleared).
    end = time.time() + timeout
    while time.time() < end:
        got = [p["status"] for _, _, p in csms.calls("FirmwareStatusNotification")]
        if got:
            assert got == [status], got
            if fw:
                fw.wait_line(r"the CSMS has the outcome")
            return
        time.sleep(0.05)
    raise AssertionError("no FirmwareStatusNotification %s" % status)


@pytest.fixture(scope="module")
def full_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "new.bin"
    p = subprocess.run(["make", "-s", "bundle", "VERSION=" + NEW, "OUT=" + str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def tiny_bundle(tmp_path, version, app_source, name="tiny.bin"):
    """A bundle of one app.py (the rest of the modules come from the built-in path)."""
    src = tmp_path / "app_src.py"
    src.write_text(app_source)
    files = [("app.mpy", bundle.compile_mpy(src, "app.py", "x64", tmp_path))]
    out = tmp_path / name
    out.write_bytes(bundle.pack(bundle.APP, version, files))
    return out


# ---------------------------------------------------------------- the update file

def test_make_bundle_packs_the_board_modules_the_version_and_a_hash(full_bundle, tmp_path):
    data = full_bundle.read_bytes()
    magic, fmt, kind, n, size, count = struct.unpack_from("<4sBcBxIHxx", data)
    assert (magic, fmt, kind, size) == (b"MPUF", 1, b"A", len(data))
    assert data[16:16 + n].decode() == NEW
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    kind, version, files = bundle.unpack(data)
    assert len(files) == count
    listed, _ = deploy.read_manifest(ROOT / "boards" / "unix" / "manifest.py")
    want = {t[:-3] + ".mpy" for _, t in listed} - {"slots.mpy", "trial.mpy"}  # the boot stage is built in
    assert {p for p, _ in files} == want
    assert all(d[:2] == b"M\x06" for _, d in files)
    assert NEW.encode() in dict(files)["version.mpy"]

    # Offline, quickly, in any clone: a bare copy of the tree (no .git) gives the same bytes.
    clone = tmp_path / "clone"
    for d in ("firmware", "lib", "boards", "tools"):
        shutil.copytree(ROOT / d, clone / d, ignore=shutil.ignore_patterns("__pycache__"))
    t = time.time()
    p = subprocess.run([sys.executable, "tools/bundle.py", "--version", NEW, "--out", str(tmp_path / "again.bin")],
                       cwd=clone, capture_output=True, text=True, timeout=60)
    took = time.time() - t
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "again.bin").read_bytes() == data
    assert took < 20, took

    # A board's CPU: ws.py's viper code compiled for the ESP32 (arch 10 in the .mpy header).
    p = subprocess.run([sys.executable, "tools/bundle.py", "--version", NEW, "--board", "esp32",
                        "--out", str(tmp_path / "esp32.bin")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    _, _, files = bundle.unpack((tmp_path / "esp32.bin").read_bytes())
    esp, _ = deploy.read_manifest(ROOT / "boards" / "esp32" / "manifest.py")
    assert {p for p, _ in files} == {t[:-3] + ".mpy" for _, t in esp} - {"slots.mpy", "trial.mpy"}
    assert dict(files)["ws.mpy"][2] >> 2 == deploy.MPY_CROSS_ARCH_CODES["xtensawin"]


def test_version_strings_up_to_50_characters(tmp_path):
    def make(version):
        return subprocess.run(["make", "-s", "bundle", "VERSION=" + version, "OUT=" + str(tmp_path / "v.bin")],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    fifty = "1.2.3-rc.1 (build 42, Grüße) " + "x" * 21
    assert len(fifty) == 50
    p = make(fifty)
    assert p.returncode == 0, p.stderr
    assert bundle.unpack((tmp_path / "v.bin").read_bytes())[1] == fifty
    p = make(fifty + "y")
    assert p.returncode != 0 and "51 characters; at most 50" in p.stderr
    p = make("")
    assert p.returncode != 0 and "needs VERSION" in p.stderr


def test_image_bundle_refuses_a_whole_flash_firmware_bin(tmp_path):
    whole = bytearray(b"\xe9" + bytes(0x9000))
    whole[0x7000:0x7002] = b"\xaa\x50"  # the partition table of a firmware.bin flashed at 0x1000
    (tmp_path / "firmware.bin").write_bytes(whole)
    p = subprocess.run([sys.executable, "tools/bundle.py", "--version", "2", "--image", str(tmp_path / "firmware.bin"),
                        "--out", str(tmp_path / "x.bin")], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "micropython.bin" in p.stderr


# ---------------------------------------------------------------- install, boot, confirm

def test_a_good_bundle_boots_as_the_new_version_and_keeps_the_configuration(csms, firmware_factory, full_bundle):
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    fw.send("set MeterValueSampleInterval 17")
    fw.wait_line(r"set MeterValueSampleInterval: Accepted")
    fw.stop()
    assert driver(fw.data_dir, "receive", full_bundle, "install") == ["ok " + NEW, "ok " + NEW]
    assert "('try', 'a')" in state(fw.data_dir)

    fw.start()
    fw.wait_line(r"trying version %s \(a\) once" % NEW)
    fw.wait_line(r"accepted this charge point")
    fw.wait_line(r"version %s confirmed" % NEW)
    assert boot_versions(csms) == [OLD, NEW]
    conf = csms.run_call("CP001", call.GetConfiguration(key=["MeterValueSampleInterval"]))
    assert conf.configuration_key[0]["value"] == "17"
    reported(csms, "Installed", fw)
    fw.stop()
    assert fw.proc.returncode == 0
    assert state(fw.data_dir) == "[('run', 'a')] None"  # reported: the outcome is gone
    assert driver(fw.data_dir, "clear", "state") == ["ok", "ok [('run', 'a')] None"]

    # Confirmed: it stays, no trial any more.
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert not [line for line in fw.lines if "slots:" in line]
    assert boot_versions(csms) == [OLD, NEW, NEW]
    assert csms.violations == []


def test_the_outcome_stays_on_flash_until_the_csms_answered_it(csms, firmware_factory, full_bundle):
    # Found by the soak (fw-firstboot, flash cut): the outcome left the flash as its
    # FirmwareStatusNotification was queued in RAM; a power cut before it went lost Installed.
    fw = firmware_factory(csms)
    assert driver(fw.data_dir, "receive", full_bundle, "install") == ["ok " + NEW, "ok " + NEW]
    csms.silent["FirmwareStatusNotification"] = True  # received, never answered
    fw.start()
    fw.wait_line(r"version %s confirmed" % NEW)
    csms.wait_for(lambda: csms.calls("FirmwareStatusNotification"), 10, "the Installed status")
    fw.kill()  # the power goes before the answer
    assert "Installed " + NEW in state(fw.data_dir)
    assert not [p for _, _, p in csms.calls("SecurityEventNotification")
                if p["type"] == "FirmwareUpdated"]  # raised once the CSMS has the status

    csms.silent.clear()
    fw.start()
    fw.wait_line(r"accepted this charge point")
    csms.wait_for(lambda: len(csms.calls("FirmwareStatusNotification")) == 2, 10, "Installed again")
    csms.wait_for(lambda: [p for _, _, p in csms.calls("SecurityEventNotification") if p["type"] == "FirmwareUpdated"],
                  10, "the FirmwareUpdated event")
    fw.stop()
    assert [p["status"] for _, _, p in csms.calls("FirmwareStatusNotification")] == ["Installed", "Installed"]
    assert state(fw.data_dir) == "[('run', 'a')] None"  # answered: the outcome is gone
    assert csms.violations == []


def test_a_truncated_or_damaged_file_is_refused_and_the_old_version_runs(csms, firmware_factory, full_bundle,
                                                                          tmp_path):
    data = full_bundle.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "short.bin").write_bytes(data[:-100])
    (tmp_path / "flipped.bin").write_bytes(flipped)
    (tmp_path / "long.bin").write_bytes(data + b"\0")
    (tmp_path / "short_head.bin").write_bytes(data[:10])
    d = tmp_path / "station"
    out = driver(d, "receive", tmp_path / "short.bin", "receive", tmp_path / "flipped.bin", "1",
                 "receive", tmp_path / "long.bin", "receive", tmp_path / "short_head.bin",
                 "put", tmp_path / "flipped.bin", "install", "put", tmp_path / "short.bin", "install",
                 "put", tmp_path / "long.bin", "install", "state")
    assert out == [
        "refused: truncated: %d of %d bytes" % (len(data) - 100, len(data)),
        "refused: damaged: its SHA-256 does not match",  # fed byte by byte
        "refused: longer than the %d bytes its header declares" % len(data),
        "refused: truncated: 10 of ? bytes",
        "ok %d" % len(data), "refused: damaged: its SHA-256 does not match",
        "ok %d" % (len(data) - 100), "refused: truncated: %d of %d bytes" % (len(data) - 100, len(data)),
        "ok %d" % (len(data) + 1), "refused: too long: %d of %d bytes" % (len(data) + 1, len(data)),
        "ok [] None"]
    # Space is checked before a download, and again from the header's declared size.
    out = driver(d, "room", 2500000, "room", 1000, "tight", full_bundle)
    assert out[0].startswith("refused: not enough flash: an update of 2500000 bytes, ")
    assert out[1].startswith("ok ")
    assert out[2].startswith("refused: not enough flash: this update needs")

    fw = firmware_factory(csms, data=d)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    fw.stop()
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert boot_versions(csms) == [OLD, OLD]
    assert not [line for line in fw.lines if "slots:" in line]


BROKEN = {
    "import": ('raise RuntimeError("broken on purpose")\n', "RuntimeError: broken on purpose"),
    "start": ('def main():\n    raise ValueError("no start")\n', "ValueError: no start"),
    "exit": ('import sys\n\n\ndef main():\n    sys.exit(3)\n', "it exited with code 3"),
}


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_a_new_application_that_fails_is_rolled_back(csms, firmware_factory, tmp_path, how):
    source, why = BROKEN[how]
    d = tmp_path / "station"
    assert driver(d, "receive", tiny_bundle(tmp_path, "broken-1", source), "install")[1] == "ok broken-1"
    fw = firmware_factory(csms, data=d)
    fw.start()
    fw.wait_line(r"trying version broken-1")
    fw.wait_line(r"version broken-1 failed its trial \(%s\): restarting" % why)
    fw.wait_line(r"version broken-1 abandoned \(%s\); the previous application runs" % why)
    fw.wait_line(r"accepted this charge point")  # the restart came from tools/unix_loop.sh
    assert boot_versions(csms) == [OLD]
    fw.wait_line(r"update: InstallationFailed: version broken-1: %s" % why)
    reported(csms, "InstallationFailed", fw)
    fw.stop()
    assert state(d) == "[] None"


def test_an_application_that_never_confirms_is_rolled_back_after_its_deadline(csms, firmware_factory, tmp_path):
    d = tmp_path / "station"
    silent = "import asyncio\n\n\nasync def forever():\n    await asyncio.sleep(3600)\n\n\n" \
             "def main():\n    asyncio.run(forever())\n"  # no BootNotification at all
    assert driver(d, "receive", tiny_bundle(tmp_path, "silent-1", silent), "install", 2)[1] == "ok silent-1"
    fw = firmware_factory(csms, data=d)
    fw.start()
    fw.wait_line(r"trying version silent-1 \(a\) once: it must confirm within 2 s")
    t = time.time()
    fw.wait_line(r"failed its trial \(no BootNotification Accepted within 2 s\): restarting")
    assert 1.5 < time.time() - t < 5
    fw.wait_line(r"accepted this charge point")
    assert boot_versions(csms) == [OLD]
    reported(csms, "InstallationFailed")
    fw.wait_line(r"update: InstallationFailed: version silent-1: no BootNotification Accepted within 2 s")


def test_a_new_version_the_csms_rejects_is_rolled_back(firmware_factory, full_bundle, tmp_path):
    csms = DevCSMS(boot_replies=[("Rejected", 60)])
    csms.start_in_thread()
    try:
        d = tmp_path / "station"
        assert driver(d, "receive", full_bundle, "install", 3)[1] == "ok " + NEW
        fw = firmware_factory(csms, data=d)
        fw.start()
        fw.wait_line(r"the CSMS answered Rejected")
        fw.wait_line(r"failed its trial \(no BootNotification Accepted within 3 s\): restarting", 10)
        fw.wait_line(r"accepted this charge point")
        assert boot_versions(csms) == [NEW, OLD]
        reported(csms, "InstallationFailed")
        fw.wait_line(r"update: InstallationFailed: version %s: no BootNotification Accepted within 3 s" % NEW)
    finally:
        csms.stop_thread()


def test_a_hang_then_a_reset_rolls_back(csms, firmware_factory, tmp_path):
    # A board's watchdog resets it; here the process is killed, as by a power cut.
    d = tmp_path / "station"
    hang = "import time\n\n\ndef main():\n    print('hanging')\n    time.sleep(3600)\n"
    assert driver(d, "receive", tiny_bundle(tmp_path, "hang-1", hang), "install")[1] == "ok hang-1"
    fw = firmware_factory(csms, data=d)
    fw.start()
    fw.wait_line(r"^hanging")
    fw.kill()
    fw.start()
    fw.wait_line(r"version hang-1 abandoned \(it never confirmed")
    fw.wait_line(r"accepted this charge point")
    assert boot_versions(csms) == [OLD]


def test_a_confirmed_slot_that_no_longer_imports_gives_way_to_the_built_in_application(csms, firmware_factory,
                                                                                          tmp_path):
    # As when the .mpy files no longer suit the MicroPython they run on: the first start confirms, later
    # imports fail.
    once = ("import os\nimport slots\n\ntry:\n    os.stat('/flash/ran')\n    gone = True\nexcept OSError:\n"
            "    gone = False\nif gone:\n    raise ImportError('gone')\n\n\ndef main():\n"
            "    open('/flash/ran', 'w').close()\n    slots.confirm()\n    raise SystemExit(75)\n")  # a Reset
    d = tmp_path / "station"
    assert driver(d, "receive", tiny_bundle(tmp_path, "once-1", once), "install")[1] == "ok once-1"
    fw = firmware_factory(csms, data=d)
    fw.start()
    fw.wait_line(r"version once-1 confirmed")
    fw.wait_line(r"slot a does not start \(ImportError: gone\): the built-in application runs")
    fw.wait_line(r"accepted this charge point")
    assert boot_versions(csms) == [OLD]
    reported(csms, "Installed", fw)  # once-1 did install and confirm; what runs now is in the BootNotification
    fw.stop()
    assert state(d) == "[] None"


def test_the_boot_stage_imports_nothing_more_without_an_update(tmp_path):
    (tmp_path / "app.py").write_text("import sys\n\n\ndef main():\n    print(sorted(sys.modules))\n")
    (tmp_path / "main.py").write_text("import slots\nslots.boot()\n")
    env = mp_env("%s:%s" % (tmp_path, MICROPYPATH))
    p = subprocess.run([MICROPYTHON, str(tmp_path / "main.py"), "--data", str(tmp_path / "d")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    # the unix port's flash driver (and its log) only: a board imports nothing else at all
    assert p.stdout.splitlines()[-1] == "['app', 'clock', 'hw', 'hw.unixflash', 'log', 'slots']"


# ---------------------------------------------------------------- ESP32 OTA image, simulated partitions

@pytest.fixture
def esp32(tmp_path, monkeypatch):
    d = tmp_path / "esp32"
    d.mkdir()
    (d / "ota_0.bin").write_bytes(b"\xe9old image")
    monkeypatch.setenv("FAKE_ESP32", str(d))
    return d


def otadata(esp32):
    return json.loads((esp32 / "otadata.json").read_text())


def image_bundle(tmp_path, version, size=10000, first=b"\xe9"):
    image = first + os.urandom(size - 1)
    (tmp_path / "image.bin").write_bytes(image)
    out = tmp_path / "image.upd"
    p = subprocess.run(["make", "-s", "bundle", "VERSION=" + version, "IMAGE=" + str(tmp_path / "image.bin"),
                        "OUT=" + str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return image, out


def test_an_esp32_image_goes_to_the_next_ota_partition_and_is_confirmed(csms, firmware_factory, esp32, tmp_path):
    image, upd = image_bundle(tmp_path, "2.0.0-image")
    d = tmp_path / "station"
    assert driver(d, "receive", upd, "install", micropypath=FAKE_ESP32_PATH) == ["ok 2.0.0-image"] * 2
    written = (esp32 / "ota_1.bin").read_bytes()
    assert written == image + b"\xff" * (-len(image) % 4096)  # whole blocks, the last one padded
    assert otadata(esp32)["boot"] == "ota_1" and otadata(esp32)["state"] == "new"
    assert "('part', 'ota_1'), ('secs', '300'), ('try', 'image'), ('ver', '2.0.0-image'), ('was', 'ota_0')" \
        in state(d, FAKE_ESP32_PATH)

    fw = firmware_factory(csms, data=d, micropypath=FAKE_ESP32_PATH)
    fw.start()
    fw.wait_line(r"trying version 2.0.0-image \(image\) once")
    fw.wait_line(r"version 2.0.0-image confirmed")
    reported(csms, "Installed", fw)  # before the stop: it queues behind the boot's security events
    fw.stop()
    ota = otadata(esp32)
    assert ota["boot"] == "ota_1" and ota["state"] == "valid" and ota["marked"] == 1
    assert state(d, FAKE_ESP32_PATH) == "[] None"


@pytest.mark.parametrize("bootloader", ["rollback", "no rollback"])
def test_an_esp32_image_that_never_confirms_is_rolled_back(firmware_factory, esp32, tmp_path, monkeypatch, bootloader):
    if bootloader == "no rollback":
        monkeypatch.setenv("FAKE_ESP32_NO_ROLLBACK", "1")
    _, upd = image_bundle(tmp_path, "2.0.1-image")
    d = tmp_path / "station"
    assert driver(d, "receive", upd, "install", 2, micropypath=FAKE_ESP32_PATH)[1] == "ok 2.0.1-image"
    csms = DevCSMS(boot_replies=[("Rejected", 60)])
    csms.start_in_thread()
    try:
        fw = firmware_factory(csms, data=d, micropypath=FAKE_ESP32_PATH)
        fw.start()
        fw.wait_line(r"failed its trial \(no BootNotification Accepted within 2 s\)", 10)
        fw.wait_line(r"version 2.0.1-image abandoned")
        fw.wait_line(r"accepted this charge point")
        reported(csms, "InstallationFailed")
        fw.wait_line(r"update: InstallationFailed: version 2.0.1-image: no BootNotification Accepted within 2 s")
        fw.stop()
    finally:
        csms.stop_thread()
    ota = otadata(esp32)
    assert ota["boot"] == "ota_0" and ota["marked"] == 0
    if bootloader == "rollback":
        assert "rollback ota_1 -> ota_0" in ota["log"]
    else:  # the new image started again: the boot stage went back itself
        assert ota["log"][-3:] == ["boot ota_1", "boot ota_1", "set_boot ota_0"], ota["log"]
    assert state(d, FAKE_ESP32_PATH).endswith("] None")  # reported: the outcome is gone


def test_an_image_that_does_not_verify_or_fit_is_refused(esp32, tmp_path):
    d = tmp_path / "station"
    bad = tmp_path / "bad.upd"
    bad.write_bytes(bundle.pack(bundle.IMAGE, "3", image=b"\x00not an image"))
    big = tmp_path / "big.upd"
    big.write_bytes(bundle.pack(bundle.IMAGE, "4", image=b"\xe9" * (64 * 4096 + 1)))
    out = driver(d, "receive", bad, "install", "receive", big, micropypath=FAKE_ESP32_PATH)
    assert out[1] == "refused: the image does not verify (-5379)"
    assert out[2] == "refused: the image (262145 bytes) is larger than the partition ota_1 (262144 bytes)"
    assert otadata(esp32)["boot"] == "ota_0"
    # A board without OTA partitions (here: no esp32 module) refuses an image before the download.
    out = driver(d, "receive", bad)
    assert out[0].startswith("refused: an image update needs MicroPython's OTA firmware on an ESP32")
