# Test-side helpers for the device drivers on the unix port.
# uart(path): the firmware's hw.serial_unix.Serial on a pty, or with
# DEV_TTY=own (or without that module) Tty, a stand-in opened the same way
# (raw, VMIN=0/VTIME=0 so reads return what is there) with the stream methods
# asyncio.StreamReader calls.
# ticker(): a 1 ms task that records the longest gap between its wake-ups,
# i.e. the longest time the event loop was blocked.
import io
import os
import select
import termios
import time
import asyncio

_POLL = 3  # MP_STREAM_POLL
_FILENO = 10  # MP_STREAM_GET_FILENO


class Tty(io.IOBase):
    def __init__(self, path):
        self._f = open(path, "r+b")
        fd = self._f.fileno()
        termios.setraw(fd)
        a = termios.tcgetattr(fd)
        a[6][5] = 0  # VTIME
        a[6][6] = 0  # VMIN
        termios.tcsetattr(fd, termios.TCSANOW, a)
        self._p = select.poll()
        self._p.register(self._f, select.POLLIN)

    def read(self, n=-1):
        return self._f.read(n if n > 0 else 256) or None

    def readinto(self, buf):
        return self._f.readinto(buf) or None

    def readline(self):
        return self._f.readline() or None

    def write(self, buf):
        return self._f.write(buf)

    def ioctl(self, req, arg):
        if req == _FILENO:
            return self._f.fileno()
        if req == _POLL:
            r = 0
            if arg & select.POLLIN and self._p.poll(0):
                r |= select.POLLIN
            if arg & select.POLLOUT:
                r |= select.POLLOUT
            return r
        return -1


class Ticker:
    def __init__(self):
        self.worst = 0
        self.ticks = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self):
        last = time.ticks_ms()
        while True:
            await asyncio.sleep_ms(1)
            now = time.ticks_ms()
            d = time.ticks_diff(now, last)
            if d > self.worst:
                self.worst = d
            last = now
            self.ticks += 1


KIND = None


def uart(path, baudrate=115200):
    global KIND
    if os.getenv("DEV_TTY") != "own":
        try:
            from hw.serial_unix import Serial
        except ImportError:
            pass
        else:
            KIND = "serial_unix"
            return Serial(path, baudrate)
    KIND = "own"
    return Tty(path)
