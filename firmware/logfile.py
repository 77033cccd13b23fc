# The flash log's lines between two times, for the GetDiagnostics upload
# (OCPP 1.6 §5.9: the lines from startTime to stopTime, all when absent) and
# GetLog (whitepaper N01). log.py writes the files, security.py the security
# log's in the same way; this module, imported only while an upload runs, reads
# them back in blocks through the caller's buffer, never a whole file.
import os
import log
import clock


def _cmp(b, i, s):
    # b[i:i+20] (a time stamp) against s: <0, 0, >0, without a slice copy
    for k in range(20):
        d = b[i + k] - s[k]
        if d:
            return d
    return 0


class Reader:
    # The lines stamped from start to stop (Unix seconds, both included;
    # None: no bound), log.1 then log.0, as they were when the Reader was made
    # (its buffer is written out first). readinto(buf) fills the bytearray buf
    # (64 bytes or more) with whole or partial lines and returns the count, 0
    # at the end: the source of the upload. A line without a stamp continues
    # the entry before it and goes with it. Lines stamped before the clock was
    # set (a board's RTC starts in 2000) fall before any start. src: the
    # module that writes the file pair (log; security with name "seclog.%d"):
    # its _dir, _size (bytes in the file being written), _gen (rotations) and,
    # if it buffers, flush().
    def __init__(self, start=None, stop=None, src=log, name="log.%d"):
        if hasattr(src, "flush"):
            src.flush()
        self.src = src
        self.name = name
        self.a = None if start is None else clock.iso(start).encode()
        self.b = None if stop is None else clock.iso(stop).encode()
        try:
            n = os.stat(src._dir + name % 1)[6]
        except Exception:  # missing, or not started
            n = 0
        self.end = (src._size, n)  # by file: 0 = log.0, 1 = log.1
        self.g = src._gen
        self.rewind()

    def rewind(self):
        # Back to the first line: a second pass gives the same bytes (an HTTP
        # upload counts them first), lines logged since are not in it.
        self.f = 1
        self.pos = 0
        self.keep = self.a is None and self.b is None  # for a continuation at the very start
        self.bol = True  # at the beginning of a line

    def _read(self, m):
        # The next block of the file being read into m -> bytes read, 0 at its end
        src = self.src
        n = self.f + src._gen - self.g  # its name now: each rotation made 0 into 1 and removed 1
        k = min(len(m), self.end[self.f] - self.pos)
        if n > 1 or k <= 0:
            return 0
        try:
            with open(src._dir + self.name % n, "rb") as f:
                f.seek(self.pos)
                return f.readinto(m, k)
        except OSError:
            return 0

    def readinto(self, buf):
        m = memoryview(buf)
        o = 0
        while not o and self.f >= 0:
            k = self._read(m)
            if not k:
                self.f -= 1
                self.pos = 0
                self.bol = True
                continue
            i = 0
            while i < k:
                if self.bol:
                    if i and i + 20 > k and self.pos + i + 20 <= self.end[self.f]:
                        break  # a stamp cut by the block's end: read from the line's start next time
                    if i + 20 <= k and buf[i + 10] == 84 and buf[i + 19] == 90:  # "T", "Z": a stamp
                        a = self.a
                        b = self.b
                        self.keep = (a is None or _cmp(buf, i, a) >= 0) and (b is None or _cmp(buf, i, b) <= 0)
                    self.bol = False
                j = buf.find(b"\n", i, k)
                e = k if j < 0 else j + 1
                if self.keep:
                    if o != i:
                        m[o : o + e - i] = m[i:e]  # memmove: the selected lines close up
                    o += e - i
                self.bol = j >= 0
                i = e
            self.pos += i
        return o
