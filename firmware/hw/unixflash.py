# Emulated flash for the unix port: a LittleFS v2 block device backed by
# <data_dir>/flash.img, so the firmware sees the same file system as on boards.
# Every write goes straight to the image file (FileIO is unbuffered: one write(2)
# each), so a SIGKILL loses nothing that LittleFS has written. Only LittleFS's
# sync (before and after each metadata commit) flushes, which on the unix port is
# an fsync(): the order that keeps LittleFS power-safe on a Linux controller. A
# flush per block write made a flash operation 1.6x slower (3x with 32-byte units).
#
# Power-cut hook: set dev.cut_after_writes = N (or the environment variable
# FLASH_CUT_AFTER_WRITES=N before mount) and every block write or erase after
# the N-th write is silently dropped, as if the power had gone.
import os
from micropython import const
import log

_BS = const(4096)
_FF = const(256)  # erased bytes written per step: the port's heap is not spent on a whole block
_TAG = "flash"
# Read and program units of 256 bytes, as MicroPython's rp2 port mounts its
# flash (NOR pages are 256 bytes): with the default 32, LittleFS calls this
# Python block device for every 32 bytes and a file save blocked the event
# loop for 10-20 ms on x64. FLASH_UNIT=32 in the environment mounts it as an
# ESP32 does (MicroPython's defaults): the memory budget's ws:// figure is the
# ESP32's, where an open file costs 280 B instead of 1.1 KB.
_UNIT = int(os.getenv("FLASH_UNIT") or 256)
_LFS = {"readsize": _UNIT, "progsize": _UNIT, "lookahead": 32}

dev = None  # the mounted device, for tests (dev.writes, dev.cut_after_writes)
_at = None  # (data_dir, mountpoint) it is mounted from and at


class Flash:
    def __init__(self, path, blocks=512):
        self.writes = 0  # writeblocks calls so far
        self.bytes = 0  # bytes programmed, for flash wear figures
        self.erases = 0
        self.cut = False  # True once the emulated power cut dropped a write
        self._ff = b"\xff" * _FF  # an erased block reads as 0xff
        n = os.getenv("FLASH_CUT_AFTER_WRITES")
        self.cut_after_writes = int(n) if n else None
        try:
            size = os.stat(path)[6]
        except OSError:
            size = -1
        self.new = not (size > 0 and size % _BS == 0)
        if not self.new:
            blocks = size // _BS  # keep an existing image as it is
            self._f = open(path, "r+b")
        else:
            if size >= 0:
                log.warn(_TAG, "image %s has a bad size (%d), recreating" % (path, size))
            self._f = open(path, "w+b")
            for n in range(blocks):
                self._erase(n)
        self.blocks = blocks

    def _dead(self):
        c = self.cut_after_writes
        if c is not None and self.writes >= c:
            if not self.cut:  # one line, so a test knows when the "power" went
                log.console_warn(_TAG, "emulated power cut: block writes after the %d-th are dropped" % c)
            self.cut = True
            return True
        return False

    def readblocks(self, n, buf, offset=0):
        f = self._f
        f.seek(n * _BS + offset)
        f.readinto(buf)

    def writeblocks(self, n, buf, offset=0):
        if self._dead():
            return
        self.writes += 1
        self.bytes += len(buf)
        f = self._f
        f.seek(n * _BS + offset)
        f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return _BS
        if op == 6:  # erase block
            if not self._dead():
                self.erases += 1
                self._erase(arg)
            return 0
        if op == 3:  # sync: fsync() on the unix port
            self._f.flush()
        return 0  # 1 init, 2 deinit, 3 sync

    def _erase(self, n):
        f = self._f
        f.seek(n * _BS)
        for _ in range(_BS // _FF):
            f.write(self._ff)

    def close(self):
        self._f.close()


def _mkdirs(path):
    p = ""
    for part in path.split("/"):
        p = p + part + "/" if p or part else "/"
        if part:
            try:
                os.mkdir(p[:-1])
            except OSError:
                pass  # exists


def mounted(data_dir, mountpoint="/flash"):
    # The flash of data_dir, mounted once per process: the boot stage
    # (slots.py) mounts it first and the application finds it there.
    if dev is None or _at != (data_dir.rstrip("/") or "/", mountpoint):
        return mount(data_dir, mountpoint)
    return mountpoint


def mount(data_dir, mountpoint="/flash", blocks=512):
    global dev, _at
    data_dir = data_dir.rstrip("/") or "/"
    _mkdirs(data_dir)
    path = data_dir + "/flash.img"
    try:
        os.umount(mountpoint)  # mounted twice in one process: replace it
    except OSError:
        pass
    if dev is not None:
        dev.close()
        dev = None
    d = Flash(path, blocks)
    try:
        os.mount(os.VfsLfs2(d, **_LFS), mountpoint)
    except OSError as e:
        if d.new:
            log.info(_TAG, "new image %s, formatting %d KB" % (path, d.blocks * _BS // 1024))
        else:
            log.warn(_TAG, "no file system on %s (%s), formatting %d KB" % (path, e, d.blocks * _BS // 1024))
        os.VfsLfs2.mkfs(d, **_LFS)
        os.mount(os.VfsLfs2(d, **_LFS), mountpoint)
    dev = d
    _at = (data_dir, mountpoint)
    return mountpoint
