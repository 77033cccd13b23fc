# Digital pins on a Linux controller, through files:
#   {"gpio": 17}        the sysfs GPIO interface: /sys/class/gpio/gpio17/value,
#                       exported and given its direction here if needed
#   {"path": "/x/y"}    any file taking "1"/"0" (a relay driver's attribute, as
#                       the original station software's controlRelay(path, state))
# Optional keys: "active_low": true inverts the level; "sysfs": another GPIO
# class directory (tests use a tmp dir laid out like /sys/class/gpio).
# The object looks like a machine.Pin to the ports: value() / value(v).
import os
import time

_SYSFS = "/sys/class/gpio"


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class LinuxPin:
    IN = "in"
    OUT = "out"

    def __init__(self, spec, mode="in", active_low=None, value=None):
        if active_low is None:
            active_low = spec.get("active_low", False)
        self._inv = 1 if active_low else 0
        self._out = mode == "out"
        self._buf = bytearray(1)
        self._last = 0
        if "gpio" in spec:
            path = self._export(spec["gpio"], spec.get("sysfs", _SYSFS), value)
        else:
            path = spec["path"]
        self.path = path
        # Opened once: value() then costs a seek and a one-byte read/write.
        self._readable = True
        try:
            if not self._out:
                self._f = open(path, "rb")
            else:
                try:
                    self._f = open(path, "r+b")
                except OSError:  # a write-only attribute: value() gives the last command
                    self._f = open(path, "wb")
                    self._readable = False
        except OSError as e:
            raise OSError("cannot open %s (%s)" % (path, e))
        if value is not None:
            self.value(value)

    def _export(self, n, root, value):
        # Boot-time only (before the tasks start): the kernel creates gpioN
        # after the write to export; udev may take a moment to set permissions.
        d = "%s/gpio%d" % (root, n)
        if not _exists(d + "/value"):
            _write(root + "/export", str(n))
            for _ in range(100):
                if _exists(d + "/value"):
                    break
                time.sleep_ms(10)
            else:
                raise OSError("GPIO %d: %s did not appear after export" % (n, d))
        want = "in"
        if self._out:
            # "low"/"high" set the direction and the first level in one step,
            # so the output never glitches to the wrong level.
            want = "out" if value is None else ("high" if (value ^ self._inv) else "low")
        try:
            with open(d + "/direction") as f:
                have = f.read().strip()
        except OSError:
            have = ""
        if have != want:
            for _ in range(50):  # udev may still be fixing permissions
                try:
                    _write(d + "/direction", want)
                    break
                except OSError:
                    time.sleep_ms(20)
            else:
                raise OSError("GPIO %d: cannot set direction %s" % (n, want))
        return d + "/value"

    def value(self, v=None):
        f = self._f
        if v is None:
            if not self._readable:
                return self._last
            f.seek(0)
            # "1" is high; "0", anything else or an empty file is low
            high = 1 if f.readinto(self._buf) and self._buf[0] == 0x31 else 0
            return high ^ self._inv
        if not self._out:
            raise ValueError("input pin")
        v = 1 if v else 0
        self._buf[0] = 0x30 + (v ^ self._inv)
        f.seek(0)
        f.write(self._buf)
        self._last = v
        return None

    def close(self):
        self._f.close()

