# A serial port on the unix port / Linux controller (/dev/ttyUSB0, /dev/ttyAMA0,
# a pty), usable the way machine.UART is on the boards: non-blocking
# readinto/read that return None when nothing is waiting, write, any(), and the
# stream ioctl asyncio needs, so asyncio.StreamReader(Serial(...)) waits on the
# tty's file descriptor in the event loop's poll and never blocks it.
#
# The tty is put in raw mode (no echo, no line editing, no CR/LF mapping, no
# flow control, receiver on, modem lines ignored), 8 data bits, the parity and
# stop bits given, VMIN=0 VTIME=0 so a read returns what is there at once.
import io
import select
import termios
from micropython import const

_POLL = const(3)  # MP_STREAM_POLL
_CLOSE = const(4)  # MP_STREAM_CLOSE
_FILENO = const(10)  # MP_STREAM_GET_FILENO: select/asyncio then poll the fd itself
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
        # parity: None, "E" or "O"; stop: 1 or 2
        speed = getattr(termios, "B%d" % baudrate, None) or _SPEEDS.get(baudrate)
        if speed is None:
            raise ValueError("%s: %d Bd is not a standard baud rate" % (path, baudrate))
        self.path = path
        self.baudrate = baudrate
        self._f = open(path, "r+b")
        fd = self._f.fileno()
        try:
            a = termios.tcgetattr(fd)
            a[0] = 0  # iflag: no break/parity marking, no CR/NL mapping, no XON/XOFF
            a[1] = 0  # oflag: bytes go out as written
            c = a[2] & ~(_CSIZE | _CSTOPB | _PARENB | _PARODD | _CRTSCTS)
            c |= _CS8 | _CREAD | _CLOCAL
            if parity == "E":
                c |= _PARENB
            elif parity == "O":
                c |= _PARENB | _PARODD
            elif parity is not None:
                raise ValueError("%s: parity %r (None, 'E' or 'O')" % (path, parity))
            if stop == 2:
                c |= _CSTOPB
            a[2] = c
            a[3] = 0  # lflag: no echo, no canonical mode, no signals
            a[4] = a[5] = speed
            a[6][_VMIN] = 0
            a[6][_VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, a)
        except Exception:
            self._f.close()
            raise

    def fileno(self):
        return self._f.fileno()

    def readinto(self, buf, n=-1):
        # Bytes waiting now, or None (like machine.UART with timeout=0).
        k = self._f.readinto(buf) if n < 0 else self._f.readinto(buf, n)
        return k or None

    def read(self, n=-1):
        b = self._f.read(n if n > 0 else 256)
        return b or None

    def write(self, buf):
        return self._f.write(buf)

    def any(self):
        p = select.poll()
        p.register(self._f, select.POLLIN)
        return 1 if p.poll(0) else 0

    def ioctl(self, req, arg):
        if req == _FILENO:
            return self._f.fileno()
        if req == _POLL:
            p = select.poll()
            p.register(self._f, arg)
            r = p.poll(0)
            return r[0][1] if r else 0
        if req == _CLOSE:
            self._f.close()
            return 0
        return 0

    def close(self):
        self._f.close()

    def __repr__(self):
        return "<Serial %s %d Bd>" % (self.path, self.baudrate)
