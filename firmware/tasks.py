# Long-lived tasks that survive their own failures (the seed station's
# uncaughtException handler, done per task), and the boot-loop guard: boots
# that end uncleanly soon after they began are counted in flash; past a limit
# the firmware starts in safe mode without the parts that crashed. A boot that
# ended because the power went is not counted, where the board can tell.
import asyncio
import gc
import time
from micropython import const
import log

RESTART_DELAY = 5  # seconds
BOOT_LOOP_LIMIT = const(5)  # unclean boots in a row before safe mode
STABLE_MS = const(60000)  # up this long: the boot counts as good

store = None  # storage.Store, set at boot to record crashes
disabled = ()  # task names safe mode does not start
# Safe mode keeps the OCPP link, the transaction queue's recovery and the
# watchdog whatever crashed: without them the station is unreachable or unsafe.
ESSENTIAL = ("link", "recovery", "watchdog")


def guard(name, start, delay=RESTART_DELAY):
    # Runs start() as a task; if it raises it is logged and started again, so
    # one failing part never takes the charge point down. The restart comes
    # from the event loop's exception handler, not from a wrapper coroutine
    # around each task: a wrapper's frame, closure and cells cost ~150 B per task.
    if name in disabled:
        log.warn("tasks", "safe mode: %s not started" % name)
        return None
    if not _guarded:
        asyncio.get_event_loop().set_exception_handler(_failed)
    t = asyncio.create_task(start())
    _guarded[t] = (name, start, delay)
    return t


_guarded = {}  # task -> (name, start, delay) of the guarded tasks (one entry each: bounded)


def stop(name):
    # Ends the guarded task of that name (a protocol switch replaces its tasks).
    for t in list(_guarded):
        if _guarded[t][0] == name:
            del _guarded[t]
            t.cancel()


def _failed(loop, context):
    # The loop calls this for a task that raised and that nobody awaits.
    e = context["exception"]
    g = _guarded.pop(context.get("future"), None)
    if g is None:
        log.exc("tasks", "a task failed", e)
        return
    name, start, delay = g
    log.exc("tasks", "task %s failed, restarting it in %d s" % (name, delay), e)
    if isinstance(e, MemoryError):
        import security
        security.event("MemoryExhaustion", "task %s: out of RAM" % name)
    record_crash(name)
    gc.collect()
    asyncio.create_task(_restart(g))


async def _restart(g):
    await asyncio.sleep(g[2])
    guard(*g)


def record_crash(name):
    if store is None:
        return
    try:
        state = store.load("boots", {})
        crashed = state.get("crashed", [])
        if name not in crashed:
            state["crashed"] = crashed + [name]
            store.save("boots", state)
    except Exception:
        pass  # recording must never make things worse


def boot_check(st):
    # Called first at boot: -> the list of parts to leave off (safe mode), or [].
    global store, disabled
    store = st
    state = st.load("boots", {})
    count = 1 if _powered_on() else state.get("count", 0) + 1
    crashed = state.get("crashed", [])
    try:
        st.save("boots", {"count": count, "crashed": crashed})
    except OSError as e:  # a flash that cannot take writes must not stop the boot
        log.exc("tasks", "cannot count this boot", e)
    if count <= BOOT_LOOP_LIMIT:
        return []
    disabled = tuple(n for n in crashed if n not in ESSENTIAL) or ("reader", "modem")
    log.error("tasks", "%d boots ended badly in a row: safe mode, without %s" % (count - 1, ", ".join(disabled)))
    return list(disabled)


def _powered_on():
    # True when the board says this boot began with the power coming on (an
    # ESP32 also after a brown-out): the boot before was cut by the power, not
    # ended by a fault of its own. Crashes reset by software or the watchdog
    # still count. The unix port cannot tell (its kills count).
    try:
        import machine
    except ImportError:
        return False
    cause = getattr(machine, "reset_cause", None)  # (no exception to allocate at boot where it is missing)
    return cause is not None and cause() == machine.PWRON_RESET


async def boot_ok():
    # After STABLE_MS of running the boot is good: clear the count.
    await asyncio.sleep_ms(STABLE_MS)
    clean_stop()


def clean_stop(restart_by=None, st=None):
    # A deliberate stop: the boot-loop count is cleared. With restart_by, the
    # next boot is a commanded restart: a transaction still running then ends
    # with reason Reboot, not PowerLoss (ChargePoint.recover reads "restart").
    log.flush()  # the last lines to the flash log
    st = st or store
    if st is not None:
        try:
            st.save("boots", {"count": 0, "crashed": []})
            if restart_by:
                import clock  # (imported at boot already)
                st.save("restart", {"by": restart_by, "at": clock.now()})
        except OSError:
            pass
