# The unix board's "front panel": commands on standard input, one per line.
# It is how a person, or a test, plugs vehicles in and presents cards.
#   plug <c> | unplug <c> | card <c> <idTag> | load <c> <amps>
#   set <key> <value> | status | datatransfer <vendorId> [messageId] [data] | quit
#   fault <c> [errorCode|off] | lock <c> jam|free | ev <c> A..E|nodiode | mem | stall | heartbeat [n]
#   flash [cut <n>]
import asyncio
import gc
import sys
import time
import micropython
import log

HELP = "commands: plug <c>, unplug <c>, card <c> <idTag>, load <c> <amps>, set <key> <value>, status, datatransfer <vendorId> [messageId] [data], fault <c> [errorCode|off], lock <c> jam|free, ev <c> A..E|nodiode, mem, modules, stall, heartbeat [n], quit"

_stall = None  # [longest lateness in us, ticks_ms at start] once `stall` has run


async def _watch(s):
    # Loop stall monitor: a 5 ms ticker; any lateness is time the loop was blocked.
    t = time.ticks_us()
    while True:
        await asyncio.sleep_ms(5)
        n = time.ticks_us()
        late = time.ticks_diff(n, t) - 5000
        if late > s[0]:
            s[0] = late
        t = n


async def run(station, config, meters):
    reader = asyncio.StreamReader(sys.stdin.buffer)
    while True:
        line = await reader.readline()
        if not line:
            # stdin closed: keep running (a service without a terminal).
            await asyncio.Event().wait()
        words = line.decode().split()
        if not words:
            continue
        try:
            # the station's observer is the ChargePoint of the OCPP version running now
            if await _command(station, config, station.observer, meters, words):
                return
        except (ValueError, IndexError):
            log.warn("console", "bad command %r; %s" % (" ".join(words), HELP))
        except Exception as e:
            log.exc("console", "command failed", e)


def _vehicle(station, cid):
    # The simulated vehicle (hw.sim.SimPlug) of a connector, or None.
    c = station.connector(cid)
    p = c.plug_input if c else None
    return p if p is not None and hasattr(p, "set") else None


async def _command(station, config, cp, meters, w):
    global _stall
    cmd = w[0]
    if cmd == "quit":
        log.info("console", "quit; heap peak %d bytes" % micropython.mem_peak())
        return True
    if cmd == "plug" or cmd == "unplug":
        cid = int(w[1])
        vehicle = _vehicle(station, cid)
        if vehicle:
            vehicle.set(cmd == "plug")
        (station.plug if cmd == "plug" else station.unplug)(cid)
    elif cmd == "card":
        asyncio.create_task(station.present_card(int(w[1]), w[2]))
    elif cmd == "load":
        meters[int(w[1])].load = float(w[2])
        vehicle = _vehicle(station, int(w[1]))
        if vehicle:
            vehicle.save()
        log.info("console", "connector %s: vehicle asks for %s A" % (w[1], w[2]))
    elif cmd == "set":
        log.info("console", "set %s: %s" % (w[1], config.set(w[1], " ".join(w[2:]), False)))
    elif cmd == "fault":
        # A hardware fault on connector c (0: the station), e.g. fault 1 GroundFailure; fault 1 off
        c = station.connectors[int(w[1])]
        code = w[2] if len(w) > 2 else "OtherError"
        c.fault = None if code == "off" else code
        station.refresh(c)
    elif cmd == "ev":
        # ev <c> A|B|C|D|E|nodiode: the simulated vehicle behind a {"type": "sim_line"} pilot
        # (B connected, C asks for energy, E the pilot shorted, nodiode a vehicle without its diode)
        v = station.connectors[int(w[1])].pilot.vehicle
        if w[2] == "nodiode":
            v.set(diode=False)
        else:
            v.set(state=w[2], diode=True)
        log.info("console", "connector %s: vehicle in pilot state %s" % (w[1], w[2]))
    elif cmd == "lock":
        # lock <c> jam: the cable lock sticks (UnlockConnector fails); lock <c> free: it works again
        station.connectors[int(w[1])].lock.jammed = w[2] == "jam"
        log.info("console", "connector %s: cable lock %s" % (w[1], "stuck" if w[2] == "jam" else "works"))
    elif cmd == "mem":
        # Heap in use after a full collection (the fuzz test bounds its growth), and the bytes
        # allocated since start where the port counts them (tools/mem_probe.py: what a message costs).
        gc.collect()
        total = getattr(micropython, "mem_total", None)
        log.info("console", "memory: %d bytes in use, %d free%s" % (
            gc.mem_alloc(), gc.mem_free(), ", %d allocated since start" % total() if total else ""))
        micropython.qstr_info()  # interned names: in RAM when loaded, in flash when frozen
    elif cmd == "modules":
        # The modules loaded now: what the boot imports, what an operation leaves behind.
        import sys
        log.info("console", "modules: %s" % " ".join(sorted(sys.modules)))
    elif cmd == "stall":
        # The first call starts the monitor; each call reports the longest stall so far.
        if _stall is None:
            _stall = [0, time.ticks_ms()]
            asyncio.create_task(_watch(_stall))
        log.info("console", "loop stall: longest %d us over %d s" % (
            _stall[0], time.ticks_diff(time.ticks_ms(), _stall[1]) // 1000))
    elif cmd == "heartbeat":
        # heartbeat [n]: n Heartbeats in a row, each round trip as the charge point sees it.
        for _ in range(int(w[1]) if len(w) > 1 else 1):
            t = time.ticks_us()
            await cp.rpc.call("Heartbeat", {})
            log.info("console", "heartbeat round trip %d us" % time.ticks_diff(time.ticks_us(), t))
    elif cmd == "status":
        for c in station.connectors:
            log.info("console", "connector %d: %s %s, %s Wh, limit %s A" % (
                c.id, c.status, c.error_code, c.energy(), "-" if c.limit is None else "%.1f" % c.limit))
    elif cmd == "flash":
        # Flash wear: JSON bytes the firmware wrote, and LittleFS block writes.
        # "flash cut <n>": the emulated power goes after n more block writes (fault injection).
        from hw import unixflash
        dev = unixflash.dev
        if len(w) > 2 and w[1] == "cut" and dev:
            dev.cut_after_writes = dev.writes + int(w[2])
            log.info("console", "flash: power cut after %s more block writes (at write %d)" % (w[2], dev.cut_after_writes))
            return
        log.info("console", "flash: %d bytes of state, %d bytes of queue, %d bytes programmed in %d writes" % (
            station.store.bytes_written, cp.outbox.bytes_written, dev.bytes if dev else 0, dev.writes if dev else 0))
    elif cmd == "datatransfer":
        from ocpp.rpc import CallError
        try:
            answer = await cp.data_transfer(w[1], w[2] if len(w) > 2 else None, " ".join(w[3:]) if len(w) > 3 else None)
        except CallError as e:
            log.warn("console", "DataTransfer failed, the CSMS answered %s %s" % (e.code, e.desc))
        else:
            log.info("console", "DataTransfer answer: %s" % answer)
    else:
        log.warn("console", "unknown command %r; %s" % (cmd, HELP))
    return False
