# A serial port on the unix port / Linux controller (/dev/ttyUSB0, /dev/ttyAMA0,
# a pty), usable the way machine.UART is on the boards: non-blocking
# readinto/read that return None when nothing is waiting, write, and the
# stream ioctl asyncio needs, so asyncio.StreamReader(Serial(...)) waits on the
# tty's file descriptor in the event loop's poll and never blocks it.
#
# The tty is put in raw mode (no echo, no line editing, no CR/LF mapping, no
# flow control, receiver on, modem lines ignored), 8 data bits, the parity and
# stop bits given, VMIN=0 VTIME=0 so a read returns what is there at once.
# When the device fails (a USB adapter pulled out), reads and writes raise
# OSError and the port is opened again by path, at most once a second, so a
# re-plugged adapter works again without a restart.
import io
import select
import termios
import time
from micropython import const
import log

_POLL = const(3)  # MP_STREAM_POLL
_CLOSE = const(4)  # MP_STREAM_CLOSE
_FILENO = const(10)  # MP_STREAM_GET_FILENO: select/asyncio then poll the fd itself
_EBADF = const(9)
_VTIME = const(5)
_VMIN = const(6)
# Linux <asm-generic/termbits.h>; this port's termios module has few of them.
_CSIZE = const(0o60)
_CS8 = const(0o60)
_CSTOPB = const(0o100)
_CREAD = const(0o200)
_PARENB = const(0o400)
_PARODD = const(0o1000)
_CLOCAL = const(0o4000)
_CRTSCTS = const(0o20000000000)
_SPEEDS = {1200: 0o11, 2400: 0o13, 4800: 0o14, 9600: 0o15, 19200: 0o16, 38400: 0o17,
           57600: 0o10001, 115200: 0o10002, 230400: 0o10003, 460800: 0o10004}


class Serial(io.IOBase):
    def __init__(self, path, baudrate=9600, parity=None, stop=1):
        # parity: None, 0 or "E" (even), 1 or "O" (odd), as machine.UART takes
        # it from a board file; stop: 1 or 2
        speed = getattr(termios, "B%d" % baudrate, None) or _SPEEDS.get(baudrate)
        if speed is None:
            raise ValueError("%s: %d Bd is not a standard baud rate" % (path, baudrate))
        c = _CS8 | _CREAD | _CLOCAL
        if parity == 0 or parity == "E":
            c |= _PARENB
        elif parity == 1 or parity == "O":
            c |= _PARENB | _PARODD
        elif parity is not None:
            raise ValueError("%s: parity %r (None, 0/'E' even, 1/'O' odd)" % (path, parity))
        if stop == 2:
            c |= _CSTOPB
        self.path = path
        self.baudrate = baudrate
        self._setting = (speed, c, "%d Bd, parity %r, %d stop bit(s)" % (baudrate, parity, stop))
        self._f = None
        self._retry = 0  # ticks_ms of the next reopen attempt after a failure
        self._closed = False
        self._open()

    def _open(self):
        speed, cflag, text = self._setting
        try:
            f = open(self.path, "r+b")
        except OSError as e:
            raise OSError("%s cannot be opened: %s" % (self.path, e))
        try:
            fd = f.fileno()
            a = termios.tcgetattr(fd)
            a[0] = 0  # iflag: no break/parity marking, no CR/NL mapping, no XON/XOFF
            a[1] = 0  # oflag: bytes go out as written
            a[2] = (a[2] & ~(_CSIZE | _CSTOPB | _PARENB | _PARODD | _CRTSCTS)) | cflag
            a[3] = 0  # lflag: no echo, no canonical mode, no signals
            a[4] = a[5] = speed
            a[6][_VMIN] = 0
            a[6][_VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, a)
        except OSError as e:
            f.close()
            raise OSError("%s refuses %s: %s" % (self.path, text, e))
        self._f = f

    def _lost(self, e):
        # The device failed (a USB adapter unplugged, a pty closed): drop it;
        # the next read or write tries to open it again, at most once a second.
        if self._f is not None:
            log.warn("serial", "%s failed (%s); it will be opened again" % (self.path, e))
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
            self._retry = time.ticks_ms()

    def _file(self):
        f = self._f
        if f is None:
            if self._closed:
                raise OSError(_EBADF)
            if time.ticks_diff(time.ticks_ms(), self._retry) < 0:
                raise OSError("%s is not there (tried again every second)" % self.path)
            self._retry = time.ticks_add(time.ticks_ms(), 1000)
            self._open()
            f = self._f
            log.info("serial", "%s is open again" % self.path)
        return f

    def fileno(self):
        return self._file().fileno()

    def readinto(self, buf, n=-1):
        # Bytes waiting now, or None (like machine.UART with timeout=0).
        f = self._f if self._f is not None else self._file()
        try:
            k = f.readinto(buf) if n < 0 else f.readinto(buf, n)
        except OSError as e:
            self._lost(e)
            raise
        return k or None

    def read(self, n=-1):
        try:
            b = self._file().read(n if n > 0 else 256)
        except OSError as e:
            self._lost(e)
            raise
        return b or None

    def write(self, buf):
        f = self._f if self._f is not None else self._file()
        try:
            return f.write(buf)
        except OSError as e:
            self._lost(e)
            raise

    def ioctl(self, req, arg):
        if req == _FILENO:
            return self._file().fileno()
        if req == _POLL:
            p = select.poll()
            p.register(self._file(), arg)
            r = p.poll(0)
            return r[0][1] if r else 0
        if req == _CLOSE:
            self.close()
            return 0
        return 0

    def close(self):
        self._closed = True
        if self._f is not None:
            self._f.close()
            self._f = None

    def __repr__(self):
        return "<Serial %s %d Bd>" % (self.path, self.baudrate)
