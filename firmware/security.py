# Security events (OCPP 1.6 security whitepaper ed. 2, section 8; A04, N01.FR.05).
#
# event(kind, info=None, at=None) records one under its whitepaper name (kind),
# with techInfo `info` (at most 255 characters; callers never put a key or a
# password in it) and the time it happened (`at`, Unix seconds; default now):
# - every event is a line of the security log, a file pair under the Store's
#   root: "seclog.0" (being written) and "seclog.1" (the one before). When
#   seclog.0 would pass 8 KB it becomes seclog.1, so the pair never holds
#   more than 16 KB (about 150 events):
#     2026-12-01T22:04:05Z CRITICAL StartupOfTheDevice firmware 0.1.0
#     2026-12-01T22:04:09Z INFO InvalidMessages frame is not valid JSON, ignored
#   GetLog(SecurityLog) uploads it (logfile.Reader with this module as source);
#   the installer may empty it (cfg.clear_security_log(), secext.clear_log()).
# - a critical one (the table of section 8) is also queued in flash as a
#   SecurityEventNotification {type, timestamp, techInfo} in the outbox's
#   journal (A04.FR.02): it reaches the CSMS after the BootNotification of the
#   next connection, in order, across reconnects, restarts and power cuts.
# Each line is written at once: an event is rare and must survive the power
# cut that may follow it. Events raised before start() (no flash yet), and
# those raised while one is being recorded (a write that fails raises
# MemoryExhaustion), wait in RAM, at most 8. A burst of one kind is cut: past 5
# in a minute the rest of that minute is counted, and the count goes into the
# next one's techInfo (a CSMS flooding us with bad frames must neither wear out
# the flash nor push the history out of the log). It never raises.
# It is imported at boot: few functions and names (each costs RAM on a board).
import os
import time
import clock
import log

try:
    from micropython import const
except ImportError:  # CPython: the fast tests import clock, whose set() may raise an event
    def const(x):
        return x

# The events sent to the CSMS, between spaces (a str: no objects in RAM when frozen):
# section 8's critical ones, and the two L01.FR.02/03 says SHALL be sent.
_CRITICAL = (" FirmwareUpdated SettingSystemTime StartupOfTheDevice ResetOrReboot SecurityLogWasCleared"
             " MemoryExhaustion TamperDetectionActivated InvalidFirmwareSignature InvalidFirmwareSigningCertificate ")
_HALF = const(8192)  # seclog.0 rotates when it would pass this
_BURST = const(5)  # events of one kind recorded per _WINDOW
_WINDOW = const(60000)  # ms
_WAIT = const(8)  # events held in RAM until they can be recorded
_INFO = const(255)  # techInfo, string[0..255]
_KEPT = const(0)  # ocpp.outbox.KEPT: journaled, not a transaction's

_dir = None  # the Store's root once start() ran
_box = None  # the ocpp.outbox.Outbox for the notifications
wake = None  # an asyncio.Event set when a notification is queued (the charge point's)
_size = 0  # bytes in seclog.0
_gen = 0  # rotations (and clears) so far, so a logfile.Reader finds its files again
_st = 0  # 1 while an event is recorded, 2 while writes fail (said once)
_wait = []  # (kind, info, at, ticks_ms or None) not recorded yet
_bursts = {}  # kind -> [ticks_ms of its window's start, recorded in it, only counted]
_unset = {}  # timestamp -> clock.offset() of an event raised before the clock was set (this boot)


def event(kind, info=None, at=None):
    global _st
    try:
        if kind is not None and len(_wait) < _WAIT:  # None: only what waits (start())
            k = None
            if at is None:
                at = clock.now()
                if not clock.synced():  # its time may be corrected at delivery (restamp)
                    k = clock.offset()
            _wait.append((kind, info, at, k))
        if _st & 1 or _dir is None:
            return
        _st |= 1
        try:
            while _wait:
                _record(*_wait.pop(0))
        finally:
            _st &= 2
    except Exception as e:  # e.g. MemoryError: the caller's work goes on
        log.console_warn("security", "event %s not recorded: %s %s" % (kind, type(e).__name__, e))


def start(root, box=None):
    # app.py, once the flash and the outbox are there: events from now on,
    # and those raised before.
    global _dir, _box, _size
    _dir = root
    _box = box
    try:
        _size = os.stat(root + "seclog.0")[6]
    except OSError:
        _size = 0
    event(None)


def _record(kind, info, at, k):
    global _size, _gen, _st
    now = time.ticks_ms()
    for x in list(_bursts):  # windows over with nothing counted: forgotten (RAM)
        b = _bursts[x]
        if x != kind and not b[2] and not 0 <= time.ticks_diff(now, b[0]) < _WINDOW:
            del _bursts[x]
    b = _bursts.get(kind)
    if b is None or not 0 <= time.ticks_diff(now, b[0]) < _WINDOW:
        if b and b[2]:
            info = "%d more in the minute before, not recorded one by one; %s" % (b[2], info or "")
        b = _bursts[kind] = [now, 0, 0]
    if b[1] >= _BURST:
        b[2] += 1
        return
    b[1] += 1
    if info:
        info = str(info).replace("\n", " ")[:_INFO]
    crit = (" %s " % kind) in _CRITICAL
    stamp = clock.iso(at)
    line = ("%s %s %s%s\n" % (stamp, "CRITICAL" if crit else "INFO", kind, " " + info if info else "")).encode()
    try:
        if _size and _size + len(line) > _HALF:
            try:
                os.remove(_dir + "seclog.1")
            except OSError:
                pass
            os.rename(_dir + "seclog.0", _dir + "seclog.1")
            _size = 0
            _gen += 1
        with open(_dir + "seclog.0", "ab") as f:
            f.write(line)
        _size += len(line)
        _st &= 1
    except Exception as e:  # OSError (flash full or failing), MemoryError
        if not _st & 2:
            _st |= 2
            log.warn("security", "cannot write the security log: %s %s" % (type(e).__name__, e))
    if crit and _box is not None:
        p = {"type": kind[:50], "timestamp": stamp}
        if info:
            p["techInfo"] = info
        if k is not None and len(_unset) < 16:
            _unset[stamp] = k
        _box.put("SecurityEventNotification", p, _KEPT)
        if wake:
            wake.set()
    # after the writes: the line means the event is kept (a kill -9 right after it loses nothing)
    log.info("security", "%s%s%s" % (kind, " (critical)" if crit else "", ": " + info if info else ""))


def reconfigured(key, v):
    # A configuration listener (app.py): a new SecurityProfile or
    # AuthorizationKey, from the CSMS, the console or the station's own rules.
    if key == "SecurityProfile" or key == "AuthorizationKey":
        event("ReconfigurationOfSecurityParameters", "%s set%s" % (key, " to %d" % v if key[0] == "S" else ""))


def restamp(p):
    # A SecurityEventNotification about to go: an event raised before the
    # clock was set (a board without a battery-backed clock boots in 2000)
    # gets its time anew once it is: its own time moved by the steps the clock
    # took since (this boot only), exact to the second.
    k = _unset.pop(p.get("timestamp"), None) if _unset else None
    if k is not None and clock.synced():
        was = clock.parse(p["timestamp"]) or 0
        t = was + clock.offset() - k
        if abs(t - was) > 60:  # only when the clock has really moved since
            p["timestamp"] = clock.iso(t)
