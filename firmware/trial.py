# The boot stage's update state (slots.py imports this only when
# <flash>/app/state exists): it picks the slot, tries a new one once and rolls
# back one that does not confirm. Built in, like slots.py.
#
# A new slot is marked "tried" before it starts, and must confirm() (the
# application calls slots.confirm() when its BootNotification is Accepted)
# within its trial time, or the station restarts. A slot found "tried" at boot
# (it raised, stopped, hung until the watchdog reset the board, or ran out of
# time) is abandoned: the previous application runs, and outcome() says
# InstallationFailed until it is reported. An ESP32 image update is tried the
# same way, its OTA partition confirmed to the bootloader in confirm().
#
# The state is a few "key value" lines, not JSON:
#   run    the confirmed slot, a or b (none: the built-in application)
#   try    the slot to try, a or b, or "image" (an OTA partition)
#   tried  1 once it was started; ver its version; secs its trial time (s)
#   why    why it failed, when it could say; part, was: the image's partition
#          and the one it came from (labels)
#   out    what to report: "Installed <version>" or "InstallationFailed <why>"
import sys
import os
import slots

TRIAL_S = 300  # default trial time: BootNotification Accepted within 5 minutes
_TRIAL = ("try", "tried", "ver", "secs", "why", "part", "was")

_st = None  # the state, {key: value}
_trial = None  # what is on trial ("a", "b", "image") until it confirms
_timer = None


def state():
    # -> the state (read once; update.py changes it and calls save()).
    global _st
    if _st is None:
        _st = {}
        try:
            with open(slots.base() + "/state") as f:
                for line in f:
                    k, _, v = line.rstrip("\n").partition(" ")
                    if v:
                        _st[k] = v
        except OSError:
            pass  # no update installed
    return _st


def save():
    # Written whole to a temporary file, then renamed: a power cut leaves the
    # old state or the new one. Nothing left to keep: no file.
    b = slots.base()
    p = b + "/state"
    if not _st:
        try:
            os.remove(p)
        except OSError:
            pass
        return
    try:
        os.mkdir(b)
    except OSError:
        pass
    with open(p + ".tmp", "w") as f:
        for k, v in _st.items():
            f.write("%s %s\n" % (k, str(v).replace("\n", " ")))
    try:
        os.rename(p + ".tmp", p)
    except OSError:  # a file system whose rename does not replace
        os.remove(p)
        os.rename(p + ".tmp", p)


def _say(msg, warn=False):
    import log
    (log.warn if warn else log.info)("slots", msg)


def _restart():
    if slots.unix():
        raise SystemExit(slots.RESTART_EXIT)  # tools/unix_loop.sh starts it again
    import machine
    machine.reset()


def _ota_running():
    import esp32
    return esp32.Partition(esp32.Partition.RUNNING).info()[4]


def _pick(st):
    # -> the slot to run ("": the built-in application). A new one becomes
    # the trial, marked tried before it starts.
    global _trial
    t = st.get("try")
    if t:
        if st.get("tried"):  # the last boot started it and it never confirmed
            _abandon(st.get("why") or "it never confirmed (a hang, a reset or a power cut)")
        elif t not in ("a", "b", "image"):
            _abandon("unknown slot %r" % t)
        elif t == "image" and _ota_running() != st.get("part"):
            _abandon("the bootloader did not start the new image")
        else:
            st["tried"] = "1"
            save()
            _trial = t
            _say("trying version %s (%s) once: it must confirm within %s s" % (st.get("ver"), t, st.get("secs")))
            return "" if t == "image" else t
    run = st.get("run", "")
    return run if run in ("a", "b") else ""


def _abandon(why):
    st = _st
    image = st.get("try") == "image"
    part, was = st.get("part"), st.get("was")
    ver = st.get("ver", "?")
    for k in _TRIAL:
        st.pop(k, None)
    st["out"] = "InstallationFailed version %s: %s" % (ver, why)
    save()
    _say("version %s abandoned (%s); the previous application runs" % (ver, why), True)
    if image and _ota_running() == part:  # a bootloader without rollback: go back ourselves
        import esp32
        esp32.Partition(was).set_boot()
        _restart()


def _enter(slot):
    # The slot first on sys.path. The log and the hw package were imported
    # from the built-in path: the slot brings its own, except the unix port's
    # flash driver, which stays the mounted one.
    sys.path.insert(0, slots.base() + "/" + slot)
    m = sys.modules
    m.pop("log", None)
    uf = m.get("hw.unixflash")
    if m.pop("hw", None) is not None and uf:
        import hw
        hw.unixflash = uf


def _arm(secs):
    # The trial's deadline. A board's timer fires whatever the application
    # does (a hang in C code is the watchdog's); on the unix port, a task in
    # the application's event loop (asyncio.run runs the tasks created before it).
    global _timer
    try:
        from machine import Timer
    except ImportError:
        import asyncio

        async def watch():
            await asyncio.sleep(secs)
            _expire()
        asyncio.create_task(watch())
        return
    try:
        _timer = Timer(-1)
    except Exception:
        _timer = Timer(0)  # the ESP32 has no virtual timer
    _timer.init(mode=Timer.ONE_SHOT, period=secs * 1000, callback=_expire)


def _expire(t=None):
    if _trial is not None:
        _fail("no BootNotification Accepted within %s s" % _st.get("secs"))


def _fail(why):
    # The trial ends unconfirmed: restart, the next boot rolls back.
    _st["why"] = why[:100]
    save()
    _say("version %s failed its trial (%s): restarting" % (_st.get("ver"), why), True)
    _restart()


def boot():
    # slots.boot() with an update state.
    global _trial
    try:
        slot = _pick(state())
    except Exception as e:  # the boot stage never keeps the station from starting
        _say("update state unusable (%s: %s): the built-in application runs" % (type(e).__name__, e), True)
        slot, _trial = "", None
    if _trial:
        return _run_trial(slot)
    if slot:
        try:
            _enter(slot)
            import app
        except Exception as e:  # e.g. .mpy files of another MicroPython: the built-in one
            _say("slot %s does not start (%s: %s): the built-in application runs" % (slot, type(e).__name__, e), True)
            _st.pop("run")
            save()
            _restart()
    import app
    app.main()


def _run_trial(slot):
    # Whatever the new application does before it confirms ends in a restart
    # (unix: exit 75), so tools/unix_loop.sh goes on and the next boot rolls back.
    try:
        if slot:
            _enter(slot)
        _arm(int(_st.get("secs") or TRIAL_S))
        import app
        app.main()
        why = "it returned"
    except KeyboardInterrupt:
        raise  # stopped by hand: the next start rolls back
    except SystemExit as e:
        code = e.args[0] if e.args else 0
        if _trial is None or code == slots.RESTART_EXIT:
            raise
        why = "it exited with code %s" % code
    except Exception as e:
        if _trial is None:
            raise
        why = "%s: %s" % (type(e).__name__, e)
    if _trial is not None:
        _fail(why)


def confirm():
    global _trial
    t = _trial
    if t is None:
        return
    _trial = None
    if _timer:
        _timer.deinit()
    st = _st
    if t == "image":
        # First the bootloader, then the state: a power cut between the two
        # rolls the image back (the state still says "tried"), consistently.
        import esp32
        esp32.Partition.mark_app_valid_cancel_rollback()
        st.pop("run", None)  # the new image's built-in application
    else:
        st["run"] = t
    ver = st.get("ver", "?")
    for k in _TRIAL:
        st.pop(k, None)
    st["out"] = "Installed " + ver
    save()
    _say("version %s confirmed" % ver)


def outcome():
    o = state().get("out")
    if not o:
        return None
    s, _, v = o.partition(" ")
    return s, v


def clear_outcome():
    if state().pop("out", None) is not None:
        save()
