# Installer-readable log lines on the console: "12:04:05 INFO  boot: ...".
# OCPP frames are logged at FRAME level when enabled (config LogFrames / --frames).
import time

DEBUG = 10
FRAME = 15
INFO = 20
WARN = 30
ERROR = 40

level = INFO
_NAMES = {DEBUG: "DEBUG", FRAME: "FRAME", INFO: "INFO ", WARN: "WARN ", ERROR: "ERROR"}


def _emit(lvl, tag, msg, end="\n"):
    if lvl < level:
        return
    t = time.localtime()
    # msg is printed as it is, not copied into a formatted line: a frame's text can be kilobytes
    print("%02d:%02d:%02d %s %s:" % (t[3], t[4], t[5], _NAMES[lvl], tag), msg, end=end)


def debug(tag, msg):
    _emit(DEBUG, tag, msg)


def info(tag, msg):
    _emit(INFO, tag, msg)


def warn(tag, msg):
    _emit(WARN, tag, msg)


def error(tag, msg):
    _emit(ERROR, tag, msg)


def frame(direction, text):
    # direction: ">>" sent to the CSMS, "<<" received from it
    if FRAME >= level:
        _emit(FRAME, "ocpp", direction, " ")
        print(text)


def frame_parts(direction, parts):
    # A large frame, printed piece by piece on one line.
    if FRAME >= level:
        _emit(FRAME, "ocpp", direction + " ", "")
        for piece in parts():
            print(piece, end="")
        print()


def exc(tag, msg, e):
    # One line for the installer plus the exception type and text.
    _emit(ERROR, tag, "%s: %s %s" % (msg, type(e).__name__, e))
