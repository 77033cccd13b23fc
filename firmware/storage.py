# Small JSON files on flash, safe against torn writes and bit rot.
#
# root/<name>.json holds one line of JSON followed by a trailer line
# "~xxxxxxxx" with the CRC32 of the JSON bytes. A save writes <name>.tmp,
# moves the current <name>.json to <name>.bak (the previous good copy) and then
# renames the .tmp into place, so at every instant at least one complete copy
# exists. load() takes the first valid one of .json, .tmp (a save that was cut
# before its last rename) and .bak, else the default. It never raises.
import os
import json
from binascii import crc32
import log

_TAG = "storage"


def _rm(path):
    try:
        os.remove(path)
    except OSError:
        pass


class Store:
    def __init__(self, root):
        if root and root[-1] != "/":
            root += "/"
        self.root = root
        self.bytes_written = 0  # payload bytes written to flash, for wear figures
        self._crc = {}  # name -> CRC32 of the JSON last loaded or written
        self._bad = set()  # names whose .json was found corrupt (don't keep it as .bak)

    def _read(self, path):
        # -> the JSON bytes of a complete, intact file; None if it is corrupt,
        # False if it is missing.
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return False
        n = len(data) - 10  # trailer "~xxxxxxxx\n"
        if n < 2 or data[n - 1] != 10 or data[n] != 126 or data[-1] != 10:
            return None
        body = memoryview(data)[: n - 1]  # not copied: json.loads and crc32 read it in place
        try:
            if int(data[n + 1 : -1], 16) != crc32(body):
                return None
        except ValueError:
            return None
        return body

    def load(self, name, default=None):
        try:
            return self._load(name, default)
        except Exception as e:  # e.g. MemoryError on a garbage file: never raise
            log.exc(_TAG, "cannot load %s, using defaults" % name, e)
            return default

    def _load(self, name, default):
        p = self.root + name
        bad = False
        for ext in (".json", ".tmp", ".bak"):
            body = self._read(p + ext)
            if body:
                try:
                    obj = json.loads(body)
                except ValueError:
                    obj = body = None
            if body:
                if bad:
                    log.warn(_TAG, "stored %s was corrupt, using the copy in %s%s" % (name, name, ext))
                elif ext != ".json":
                    log.warn(_TAG, "stored %s was missing, using the copy in %s%s" % (name, name, ext))
                self._crc[name] = crc32(body)
                if bad:
                    self._bad.add(name)
                return obj
            if body is None:
                bad = True
        if bad:
            log.warn(_TAG, "stored %s was corrupt, using defaults" % name)
            self._bad.add(name)
        self._crc.pop(name, None)
        return default

    def save(self, name, obj):
        # -> True if written, False if the content was unchanged. Raises OSError
        # (logged) when the flash cannot take it; the old copy stays valid then.
        body = json.dumps(obj).encode()
        c = crc32(body)
        p = self.root + name
        # Unchanged (same CRC as last loaded/written, or nothing known yet):
        # confirm against the flash copy, which also catches a damaged file.
        if self._crc.get(name, c) == c and self._read(p + ".json") == body:
            self._crc[name] = c
            return False
        t = p + ".tmp"
        try:
            with open(t, "wb") as f:
                f.write(body)
                f.write(b"\n~%08x\n" % c)
            self.bytes_written += len(body) + 11
            j = p + ".json"
            try:
                os.stat(j)
            except OSError:
                j = None  # first save, or a cut between the two renames
            if j and name in self._bad:
                _rm(j)  # never let a corrupt copy replace the good .bak
            elif j:
                b = p + ".bak"
                try:
                    os.rename(j, b)
                except OSError:  # a port whose rename can't replace
                    _rm(b)
                    os.rename(j, b)
            os.rename(t, p + ".json")
        except OSError as e:
            log.exc(_TAG, "cannot save %s" % name, e)
            raise
        self._crc[name] = c
        self._bad.discard(name)
        return True

    def remove(self, name):
        p = self.root + name
        for ext in (".json", ".tmp", ".bak"):
            _rm(p + ext)
        self._crc.pop(name, None)
        self._bad.discard(name)
