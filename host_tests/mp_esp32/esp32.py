# A stand-in for MicroPython's esp32 module on the unix port (host_tests/test_slots.py
# puts this directory first on MICROPYPATH): two OTA application partitions,
# ota_0 and ota_1, as files in $FAKE_ESP32 (a directory), and the otadata the
# ESP-IDF bootloader keeps, with its rollback: an image set to boot starts
# once "pending verify"; if the board resets before mark_app_valid_cancel_rollback(),
# the bootloader goes back to the previous one. FAKE_ESP32_NO_ROLLBACK=1: a
# bootloader built without rollback. Importing this module is the boot.
import os
import json

_DIR = os.getenv("FAKE_ESP32")
_SIZE = 64 * 4096  # bytes per partition
_LABELS = ("ota_0", "ota_1")


def _load():
    try:
        with open(_DIR + "/otadata.json") as f:
            return json.load(f)
    except OSError:
        return {"boot": "ota_0", "state": "valid", "marked": 0, "log": []}


def _save(d):
    with open(_DIR + "/otadata.json", "w") as f:
        json.dump(d, f)


_d = _load()
if _d["state"] == "new":  # first start of a new image
    _d["state"] = "pending"
elif _d["state"] == "pending" and not os.getenv("FAKE_ESP32_NO_ROLLBACK"):  # reset before it was confirmed
    _d["log"].append("rollback %s -> %s" % (_d["boot"], _d["prev"]))
    _d["boot"], _d["state"] = _d["prev"], "aborted"
_d["log"].append("boot " + _d["boot"])
_save(_d)
_running = _d["boot"]


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0

    def __init__(self, id):
        if id == Partition.RUNNING or id == Partition.BOOT:
            id = _running if id == Partition.RUNNING else _load()["boot"]
        if id not in _LABELS:
            raise ValueError("no partition %r" % id)
        self.label = id

    def info(self):
        i = _LABELS.index(self.label)
        return (0, 0x10 + i, 0x10000 + i * _SIZE, _SIZE, self.label, False)

    def get_next_update(self):
        return Partition(_LABELS[1 - _LABELS.index(self.label)])

    def ioctl(self, op, arg):
        return {4: _SIZE // 4096, 5: 4096}.get(op, 0)

    def writeblocks(self, n, buf):
        assert len(buf) % 4096 == 0, "writeblocks needs whole blocks"
        path = _DIR + "/" + self.label + ".bin"
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
        f.seek(n * 4096)
        f.write(buf)
        f.close()

    def set_boot(self):
        # The IDF checks the image first (esp_ota_set_boot_partition).
        with open(_DIR + "/" + self.label + ".bin", "rb") as f:
            if f.read(1) != b"\xe9":
                raise OSError(-5379)  # ESP_ERR_OTA_VALIDATE_FAILED
        d = _load()
        d["prev"], d["boot"], d["state"] = _running, self.label, "new"
        d["log"].append("set_boot " + self.label)
        _save(d)

    @staticmethod
    def mark_app_valid_cancel_rollback():
        d = _load()
        d["state"] = "valid"
        d["marked"] += 1
        d["log"].append("mark_app_valid " + _running)
        _save(d)
