# Installer-readable log lines on the console: "12:04:05 INFO  boot: ...".
# OCPP frames are logged at FRAME level when enabled (config LogFrames / --frames).
#
# The same lines go to the flash log with their UTC date and time
# ("2026-12-01T22:04:05Z INFO  boot: ..."), kept for GetDiagnostics (OCPP 1.6
# §5.9): a file pair under the Store's root, "log.0" (being written) and
# "log.1" (the one before). When log.0 would pass half of LogFileSizeKB it
# becomes log.1, replacing the old one, so the pair never takes more than
# LogFileSizeKB. Lines collect in a 512-byte RAM buffer written in one piece
# when full, at once for a WARN or ERROR, and every _FLUSH_S by keep_flushed():
# few writes, because each one makes LittleFS copy the file's last block anew.
# Lines before start() (the flash is not known yet) wait in the buffer.
# logfile.Reader reads the lines back for the upload.
import os
import time

try:
    from micropython import const
except ImportError:  # CPython: the fast tests import schedule.py, which imports clock and log

    def const(x):
        return x

DEBUG = 10
FRAME = 15
INFO = 20
WARN = 30
ERROR = 40

level = INFO
_NAMES = ("DEBUG", "FRAME", "INFO ", "", "WARN ", "", "ERROR")  # by (level - 10) // 5: a tuple in flash
_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")  # LogFileLevel's values, as DEBUG..ERROR

_BUF = const(512)
_FLUSH_S = const(300)  # INFO lines wait at most this long for the flash (a crash loses them)
_FRAME_FLASH = const(8192)  # characters of one frame written to the flash log
_MARGIN = const(65536)  # free flash the log never takes: the transaction queue's default room

_buf = bytearray(_BUF)  # None while the flash log is off
_n = 0  # bytes in _buf
_dir = None  # the Store's root once start() ran
_half = 32768  # LogFileSizeKB * 512: log.0 rotates when it would pass this
_flevel = INFO  # LogFileLevel; FRAME lines go whenever frames are logged
_size = 0  # bytes in log.0
_gen = 0  # rotations so far, so a logfile.Reader finds its files again
_why = 0  # 1 while flash writes fail
_told = 0  # _why as the console was last told of it (between whole lines)
_err = ""  # the last flash write failure


def _emit(lvl, tag, msg, flash=True, parts=None):
    # One line. parts: () -> the pieces of the rest of it (a frame's text, not
    # copied into one string). The console has the whole line before the
    # flash log is written: a flash write may log (a failure, a power cut).
    f = flash and _buf is not None and (lvl >= _flevel or lvl == FRAME)
    if lvl < level and not f:
        return
    name = _NAMES[(lvl - 10) // 5]
    s = time.time()  # one reading for the console's time and the flash's stamp
    if lvl >= level:
        t = time.localtime(int(s))
        # msg is printed as it is, not copied into a formatted line: a frame's text can be kilobytes
        print("%02d:%02d:%02d %s %s:" % (t[3], t[4], t[5], name, tag), msg, end="\n" if parts is None else " ")
        if parts is not None:
            for piece in parts():
                print(piece, end="")
            print()
    if f and (_dir is not None or parts is None and _n + len(tag) + len(msg) < _BUF - 31):  # before start(): whole lines only
        import clock  # (not at the top: clock imports log)

        _put(clock.iso(clock.now(s)))
        _put(" ")
        _put(name)
        _put(" ")
        _put(tag)
        _put(": ")
        _put(msg)  # in pieces, for the same reason
        if parts is not None:
            _put(" ")
            room = _FRAME_FLASH
            for piece in parts():
                room = _put_frame(piece, room)
        _put("\n")
        if lvl >= WARN and not _why:
            _flush()
    if flash:
        _tell()


def _put(s):
    # Copies s (str or bytes) into the buffer, writing it out each time it is full.
    global _n
    m = memoryview(s)
    while len(m):
        if _n == _BUF:
            _flush()
            if _n:  # not started yet: the rest is lost
                return
        k = min(_BUF - _n, len(m))
        _buf[_n : _n + k] = m[:k]
        _n += k
        m = m[k:]


def _rm(name):
    try:
        os.remove(_dir + name)
    except OSError:
        pass


def _len(name):
    try:
        return os.stat(_dir + name)[6]
    except Exception:  # missing, or not started
        return 0


def flush():
    # The buffer to log.0, never raising: a full or failing flash drops the
    # lines (one console line says so) and the next flush tries again.
    _flush()
    _tell()


def _flush():
    # flush(), without telling: it may run in the middle of a line.
    global _n, _size, _gen, _why, _err
    n = _n
    if not n or _dir is None:
        return
    _n = 0
    try:
        s = os.statvfs(_dir or "/")
        if s[0] * s[4] < _MARGIN:  # leave the room to the configuration and the transactions
            raise OSError("less than 64 KB free")
        if _size and _size + n > _half:
            _rm("log.1")
            os.rename(_dir + "log.0", _dir + "log.1")
            _size = 0
            _gen += 1
        with open(_dir + "log.0", "ab") as f:
            f.write(_buf, n)
        _size += n
    except Exception as e:  # OSError, or MemoryError opening the file on a full heap
        _size = _len("log.0")
        if not _why:
            _why = 1
            _err = "%s %s" % (type(e).__name__, e)
        return
    _why = 0


def _tell():
    # Says on the console (and in the security log) that the flash log stopped
    # or writes again: after the line being written, never inside it (a frame
    # line cut by these lines is no longer one line to read or to grep).
    global _told
    if _told == _why:
        return
    _told = _why
    if _why:
        warn("log", "flash log stopped (%s), the console has the lines" % _err)
        import security  # (not at the top: security imports log)

        security.event("MemoryExhaustion", "the flash log cannot write: %s" % _err)
    else:
        info("log", "flash log writing again")


def start(root, config):
    # Called by app.py once the configuration is loaded: the flash log from
    # now on, under root (the Store's), sized and levelled by config.
    global _dir, _size
    _dir = root
    _size = _len("log.0")
    config.check(lambda k, v: k != "LogFileLevel" or v.upper() in _LEVELS)
    config.listen(_config)
    _config("LogFileLevel", config.get("LogFileLevel"))
    _config("LogFileSizeKB", config.get("LogFileSizeKB"))


def _config(key, v):
    # Changes take effect at once; LogFileSizeKB 0 turns the log off and removes it.
    global _buf, _n, _half, _flevel, _size
    if key == "LogFileLevel":
        v = v.upper()
        _flevel = 10 * _LEVELS.index(v) + 10 if v in _LEVELS else INFO
    elif key == "LogFileSizeKB":
        _half = v * 512
        if v:
            if _buf is None:
                _buf = bytearray(_BUF)
            flush()
        else:
            _buf = None
            _n = 0
            _rm("log.0")
            _rm("log.1")
            _size = 0


async def keep_flushed():
    # A task of app.py's: INFO lines reach the flash within _FLUSH_S.
    import asyncio

    while True:
        await asyncio.sleep(_FLUSH_S)
        flush()


def debug(tag, msg):
    _emit(DEBUG, tag, msg)


def info(tag, msg):
    _emit(INFO, tag, msg)


def warn(tag, msg):
    _emit(WARN, tag, msg)


def error(tag, msg):
    _emit(ERROR, tag, msg)


def console_warn(tag, msg):
    # A WARN line for the console only: from a flash driver, which must not
    # make the log write the flash from inside one of its writes.
    _emit(WARN, tag, msg, False)


def _put_frame(text, room):
    # At most `room` characters of a frame go to the flash log (-> what is left):
    # a 64 KB frame would be 128 buffer writes in one go, a loop stall of
    # seconds on a slow flash. A GetConfiguration answer (5 KB) fits whole.
    if room < 0:  # cut already (or no flash log)
        return room
    if len(text) > room:
        _put(text[:room])
        _put(" ... (cut in the flash log)")
        return -1
    _put(text)
    return room - len(text)


def frame(direction, text):
    # direction: ">>" sent to the CSMS, "<<" received from it
    if FRAME >= level:
        _emit(FRAME, "ocpp", direction, True, lambda: (text,))


def frame_parts(direction, parts):
    # A large frame, printed piece by piece on one line: parts() -> its pieces.
    if FRAME >= level:
        _emit(FRAME, "ocpp", direction, True, parts)


def exc(tag, msg, e):
    # One line for the installer plus the exception type and text.
    _emit(ERROR, tag, "%s: %s %s" % (msg, type(e).__name__, e))
