# Receiving and installing an update file; imported only while an update is
# under way. The boot stage (slots.py, trial.py) tries the installed update at the next
# boot and rolls it back if it does not confirm. The file, as tools/bundle.py
# (`make bundle`) writes it, little-endian:
#
#   0   4  magic b"MPUF"
#   4   1  format, 1
#   5   1  kind: "A" the application's modules (into a slot), "I" a whole
#          MicroPython image (an ESP32 OTA partition)
#   6   1  n: the version's length in bytes (UTF-8, 1 to 50 characters)
#   7   1  0
#   8   4  the size of the whole file, this header and the hash included
#   12  2  app: the number of files; image: 0
#   14  2  0
#   16  n  the version
#   then app: per file its path length (1 byte), its path below the slot, its
#             size (4 bytes) and its bytes; image: the image's bytes
#   last 32: SHA-256 of every byte before them
#
# The downloader passes every piece through a Checker as it writes it to flash:
# the declared size refuses a file that cannot fit before it is written and
# shows a truncated one; the hash shows a damaged one. install() checks the
# stored file again as it installs it, and nothing is switched over before
# the hash matched.
#   free = update.make_room(size)    # before the download; raises UpdateError
#   c = update.Checker(free)         # c.feed(piece) as each piece is written
#   c.finish()                       # -> version, or UpdateError (DownloadFailed)
#   await update.install(path)       # -> version, or UpdateError (InstallationFailed)
#   then restart: the new version is tried at the next boot
import os
import sys
import struct
import hashlib
import asyncio
from micropython import const
import slots
import trial

MAGIC = b"MPUF"
FORMAT = const(1)
APP = const(0x41)  # "A"
IMAGE = const(0x49)  # "I"
MAX_VERSION = const(50)  # characters: BootNotification's firmwareVersion is a CiString50
_HEAD = const(16)
_HASH = const(32)
_CHUNK = const(1024)  # unpacking buffer
_SPARE = const(4)  # blocks for directories and the state file
_MPY = getattr(sys.implementation, "_mpy", 0)  # this MicroPython's .mpy version and CPU


class UpdateError(Exception):
    pass


def download_path():
    return slots.base() + "/download"


def _block():
    return os.statvfs(slots.flash() or "/")[0]


def free():
    # -> bytes free on the flash.
    s = os.statvfs(slots.flash() or "/")
    return s[0] * s[4]


def need(size, kind=APP, files=0):
    # -> flash bytes an update file of `size` bytes takes: itself, and an
    # application's unpacked files (each rounded up to whole blocks).
    bs = _block()
    if kind != APP:
        return size + _SPARE * bs
    return 2 * size + (files + _SPARE) * bs


def make_room(size=None):
    # Before a download: removes what an earlier update left (its file, a
    # half-unpacked slot, the slot that runs nothing) -> bytes free, for the
    # Checker. Raises UpdateError while an update is on trial, or if a file
    # of `size` bytes (when known) cannot fit; whether its unpacked files fit
    # too, the Checker knows from the header.
    st = _idle()
    b = slots.base()
    try:
        os.mkdir(b)
    except OSError:
        pass  # there
    _rm(download_path())
    _rmtree(b + "/new")
    _rmtree(b + "/" + _spare(st))
    room = free()
    if size is not None and need(size, IMAGE) > room:
        raise UpdateError("not enough flash: an update of %d bytes, %d free" % (size, room))
    return room


def _idle():
    st = trial.state()
    if st.get("try"):
        raise UpdateError("version %s is still on trial" % st.get("ver"))
    return st


def _spare(st):
    # The slot an update goes to: the one the confirmed application is not in.
    return "b" if st.get("run") == "a" else "a"


def _rm(p):
    try:
        os.remove(p)
    except OSError:
        pass


def _rmtree(p):
    try:
        names = [(e[0], e[1]) for e in os.ilistdir(p)]
    except OSError:
        return
    for n, t in names:
        if t == 0x4000:
            _rmtree(p + "/" + n)
        else:
            os.remove(p + "/" + n)
    os.rmdir(p)


class Checker:
    # Checks an update file as it arrives: feed() every piece in order, then
    # finish(). From the 16th byte on: .size, .kind, .files; then .version.
    # room: flash bytes free for it (make_room()); None: not checked.
    def __init__(self, room=None):
        self.room = room
        self.got = 0
        self.size = self.kind = self.version = None
        self.files = 0
        self.hlen = _HEAD  # the header's length, with the version once known
        self._head = bytearray()
        self._tail = bytearray(_HASH)
        self._h = hashlib.sha256()

    def feed(self, data):
        mv = memoryview(data)
        got = self.got
        end = got + len(mv)
        if got < self.hlen:
            self._header(mv, got)
        size = self.size
        if size is None:
            self._h.update(mv)  # header bytes, far from the hash
        else:
            if end > size:
                raise UpdateError("longer than the %d bytes its header declares" % size)
            cut = size - _HASH
            k = cut - got  # bytes of this piece before the hash
            if k >= len(mv):
                self._h.update(mv)
            else:
                if k > 0:
                    self._h.update(mv[:k])
                else:
                    k = 0
                self._tail[got + k - cut:end - cut] = mv[k:]
        self.got = end

    def _header(self, mv, got):
        h = self._head
        h.extend(mv[:self.hlen - got])
        if self.size is None and len(h) >= _HEAD:
            magic, fmt, kind, n, size, files = struct.unpack_from("<4sBBBxIH", h)
            if magic != MAGIC:
                raise UpdateError("not an update file")
            if fmt != FORMAT:
                raise UpdateError("update file format %d; this firmware reads format %d" % (fmt, FORMAT))
            if kind not in (APP, IMAGE) or not n or size < _HEAD + n + _HASH or (kind == APP) != (files > 0):
                raise UpdateError("a broken update file header")
            self.size, self.kind, self.files = size, kind, files
            self.hlen = _HEAD + n
            if self.room is not None:
                if need(size, kind, files) > self.room:
                    raise UpdateError("not enough flash: this update needs %d bytes, %d free"
                                      % (need(size, kind, files), self.room))
                if kind == IMAGE:
                    _ota(size - self.hlen - _HASH)
            h.extend(mv[_HEAD - got:self.hlen - got])
        if self.size is not None and len(h) >= self.hlen:
            try:
                v = str(h[_HEAD:], "utf-8")
            except UnicodeError:
                raise UpdateError("a version that is not UTF-8")
            if len(v) > MAX_VERSION:
                raise UpdateError("a version of more than %d characters" % MAX_VERSION)
            self.version = v

    def finish(self):
        # -> the version; raises UpdateError if the file is short or damaged.
        if self.size is None or self.got < self.size:
            raise UpdateError("truncated: %d of %s bytes" % (self.got, self.size or "?"))
        if self._h.digest() != self._tail:
            raise UpdateError("damaged: its SHA-256 does not match")
        return self.version


class _Reader:
    # The stored file, read in order, every byte through a Checker.
    def __init__(self, f, c):
        self.f = f
        self.c = c

    def take(self, n):
        b = self.f.read(n)
        if len(b) < n:
            raise UpdateError("truncated")
        self.c.feed(b)
        return b

    def into(self, mv):
        if self.f.readinto(mv) < len(mv):
            raise UpdateError("truncated")
        self.c.feed(mv)


async def install(path, trial_s=trial.TRIAL_S):
    # Checks the update file at path and installs it: an application into the
    # spare slot (unpacked into <slots>/new, renamed into place once its hash
    # matched: a power cut on the way leaves the state as it was), an image
    # into the next OTA partition. It is tried at the next boot, and must
    # confirm within trial_s seconds. -> its version; raises UpdateError.
    # The file is removed once installed. Yields to the event loop between
    # pieces: the watchdog's feeder must go on.
    st = _idle()
    try:
        size = os.stat(path)[6]
    except OSError:
        raise UpdateError("no update file %s" % path)
    c = Checker()
    new = slots.base() + "/new"
    try:
        with open(path, "rb") as f:
            r = _Reader(f, c)
            r.take(_HEAD)
            if size != c.size:
                raise UpdateError("%s: %d of %d bytes" % ("truncated" if size < c.size else "too long", size, c.size))
            r.take(c.hlen - _HEAD)
            if c.kind == APP:
                await _unpack(r, c.files, new)
            else:
                part = await _image(r, size - c.hlen - _HASH)
            r.take(_HASH)
        c.finish()
        if c.kind == APP:
            slot = _spare(st)
            _rmtree(slots.base() + "/" + slot)
            os.rename(new, slots.base() + "/" + slot)
            _tried(st, c, trial_s, slot)
        else:
            # The state first: a power cut before set_boot() is a trial whose
            # image did not start, reported as failed at the next boot.
            import esp32
            was = esp32.Partition(esp32.Partition.RUNNING).info()[4]
            _tried(st, c, trial_s, "image", part.info()[4], was)
            try:
                part.set_boot()  # the IDF checks the image here
            except OSError as e:
                for k in ("try", "ver", "secs", "part", "was"):
                    st.pop(k)
                trial.save()
                raise UpdateError("the image does not verify (%s)" % e)
    except UpdateError:
        _rmtree(new)
        raise
    except OSError as e:  # the flash is full or failing
        _rmtree(new)
        raise UpdateError("cannot install: %s" % e)
    _rm(path)
    return c.version


def _tried(st, c, secs, slot, part=None, was=None):
    # The state: `slot` is tried at the next boot.
    st.pop("tried", None)
    st.pop("why", None)
    st["try"], st["ver"], st["secs"] = slot, c.version, str(secs)
    if part:
        st["part"], st["was"] = part, was
    trial.save()


async def _unpack(r, files, new):
    _rmtree(new)
    for d in (slots.base(), new):
        try:
            os.mkdir(d)
        except OSError:
            pass
    buf = memoryview(bytearray(_CHUNK))
    for _ in range(files):
        p = str(r.take(r.take(1)[0]), "utf-8")
        if not p or p[0] == "/" or ".." in p.split("/"):
            raise UpdateError("a file outside the slot: %r" % p)
        n = struct.unpack("<I", r.take(4))[0]
        d = new
        for part in p.split("/")[:-1]:
            d += "/" + part
            try:
                os.mkdir(d)
            except OSError:
                pass
        with open(new + "/" + p, "wb") as out:
            mpy = p.endswith(".mpy")
            while n:
                k = min(n, _CHUNK)
                r.into(buf[:k])
                if mpy and k > 3:
                    _check_mpy(p, buf)
                    mpy = False
                out.write(buf[:k])
                n -= k
                await asyncio.sleep_ms(0)


def _check_mpy(p, b):
    # An .mpy of another MicroPython or CPU would only fail in the trial: refuse it now.
    # Bytecode only: flags 0; native code: its CPU and the sub-version (py/persistentcode.h).
    if _MPY and (b[0] != 77 or b[1] != _MPY & 0xff or b[2] and b[2] != (_MPY >> 8) & 0xff):
        raise UpdateError("%s is for another MicroPython or CPU (.mpy %d, flags %d; here %d, %d)"
                          % (p, b[1], b[2], _MPY & 0xff, _MPY >> 8))


def _ota(n):
    # -> the OTA partition an image of n bytes goes to.
    try:
        import esp32
        part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
    except Exception as e:  # no esp32 module, or no OTA partitions
        raise UpdateError("an image update needs MicroPython's OTA firmware on an ESP32 (%s)" % e)
    if n > part.info()[3]:
        raise UpdateError("the image (%d bytes) is larger than the partition %s (%d bytes)"
                          % (n, part.info()[4], part.info()[3]))
    return part


async def _image(r, n):
    # The image, block by block (writeblocks erases first), the last one
    # padded with erased bytes.
    part = _ota(n)
    bs = part.ioctl(5, 0)
    buf = bytearray(bs)
    mv = memoryview(buf)
    i = 0
    while n > 0:
        k = min(n, bs)
        r.into(mv[:k])
        for j in range(k, bs):
            buf[j] = 0xff
        part.writeblocks(i, buf)
        i += 1
        n -= k
        await asyncio.sleep_ms(0)
    return part
