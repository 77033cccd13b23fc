# Builds the hardware ports a board file describes. One function per kind of
# port; each reads its own part of board.json and returns an object with the
# port's small interface:
#   meter:     async read() -> {measurand: value} or None; async identify() -> {bootField: value}
#   contactor: close(), open(), closed, ok() -> False when its feedback disagrees
#   plug:      plugged() -> bool   (None: the board detects vehicles by current)
#   reader:    async poll() -> idTag or None
#   modem:     async identify() -> {"iccid": ..., "imsi": ...} (empty when silent)
#   watchdog:  feed()
# `ctx` carries what several ports share: the board, the data dir, open UARTs.


class Context:
    def __init__(self, board, data):
        self.board = board
        self.data = data  # unix port: the DATA dir on the host; None on boards
        self.uarts = {}

    def uart(self, name):
        # One shared stream per named UART in the board file (a meter bus can
        # carry several meters).
        u = self.uarts.get(name)
        if u is None:
            spec = self.board["uarts"][name]
            if "path" in spec:  # unix / Linux: a tty device
                from hw.serial_unix import Serial
                u = Serial(spec["path"], spec.get("baudrate", 9600), spec.get("parity"), spec.get("stop", 1))
            else:  # microcontroller: machine.UART
                from machine import UART
                kw = {"baudrate": spec.get("baudrate", 9600)}
                for k in ("tx", "rx", "bits", "parity", "stop", "timeout"):
                    if k in spec:
                        kw[k] = spec[k]
                u = UART(spec["id"], **kw)
            self.uarts[name] = u
        return u


def pin(spec, mode, ctx, value=None):
    # A digital pin from a board-file entry: an int or {"id": n, "pull": "up"}
    # (machine.Pin), or {"gpio": n} / {"path": ...} for Linux GPIO (both take
    # "active_low": true). `value`: the first level of an output.
    if isinstance(spec, int):
        spec = {"id": spec}
    if "id" in spec:
        import machine
        P = machine.Pin
        pull = spec.get("pull")
        pull = getattr(P, "PULL_UP" if pull == "up" else "PULL_DOWN") if pull else None
        m = P.OUT if mode == "out" else P.IN
        if value is None:
            return P(spec["id"], m, pull)
        return P(spec["id"], m, pull, value=value)
    from hw.linux_gpio import LinuxPin
    return LinuxPin(spec, mode, None, value)


def contactor(cid, spec, ctx):
    kind = spec.get("type", "sim")
    if kind == "sim":
        from hw.sim import SimContactor
        return SimContactor(cid)
    if kind == "pin":
        # {"pin": <pin>, "active": 1, "feedback": <pin>, "feedback_active": 1, "settle_ms": 200}
        from hw.contactor import PinContactor
        active = spec.get("active", 1)
        out = pin(spec["pin"], "out", ctx, 0 if active else 1)  # starts open
        fb = spec.get("feedback")
        return PinContactor(out, active, None if fb is None else pin(fb, "in", ctx),
                            spec.get("feedback_active", 1), spec.get("settle_ms", 200), cid)
    raise ValueError("connector %d: unknown contactor type %r" % (cid, kind))


def meter(cid, spec, ctx, contactor_port):
    kind = spec.get("type", "sim")
    if kind == "sim":
        from hw.sim import SimMeter
        state = ctx.data + "/meter%d.txt" % cid if ctx.data else None
        return SimMeter(contactor_port, state, spec.get("phases", 3), spec.get("volts", 230.0))
    if kind == "modbus":
        # {"type": "modbus", "uart": name, "address": 1, "profile": "SDM630",
        #  "phases": 3, "de": pin (optional), "timeout_ms": 200}. Meters on the
        # same UART share one bus master (its lock, buffers); the first meter's
        # "de" and "timeout_ms" configure it.
        from hw.modbus_meter import ModbusMeter
        buses = getattr(ctx, "modbus_buses", None)
        if buses is None:
            buses = ctx.modbus_buses = {}
        name = spec.get("uart")
        if name not in ctx.board.get("uarts", {}):
            raise ValueError("connector %d: meter uart %r is not in the board's uarts" % (cid, name))
        bus = buses.get(name)
        if bus is None:
            from modbus import ModbusRTU
            de = spec.get("de")
            bus = ModbusRTU(ctx.uart(name), ctx.board["uarts"][name].get("baudrate", 9600),
                            pin(de, "out", ctx, 0) if de is not None else None, spec.get("timeout_ms", 200))
            buses[name] = bus
        return ModbusMeter(bus, spec.get("address", 1), spec.get("profile", "SDM630"),
                           spec.get("phases", 3), "connector %d" % cid)
    raise ValueError("connector %d: unknown meter type %r" % (cid, kind))


def plug(cid, spec, ctx, meter=None):
    if not spec:
        return None
    if spec.get("type") == "sim":
        # {"type": "sim"}: the simulated vehicle, moved with the console's
        # plug/unplug/load commands and still there after a restart
        from hw.sim import SimPlug
        return SimPlug(meter, ctx.data + "/vehicle%d.txt" % cid if ctx.data else None)
    if spec.get("type") == "pin":
        # {"pin": <pin>, "active": 0, "debounce_ms": 50}
        from hw.plug import PinPlug
        return PinPlug(pin(spec["pin"], "in", ctx), spec.get("active", 0), spec.get("debounce_ms", 50))
    raise ValueError("connector %d: unknown plug input %r" % (cid, spec))


def pilot(cid, spec, ctx, meter=None):
    # The control pilot: {"type": "sim"} on the unix board (the simulated
    # vehicle follows the offered current); None when absent (contactor only).
    if not spec:
        return None
    if spec.get("type") == "sim":
        from hw.sim import SimPilot
        return SimPilot(meter)
    raise ValueError("connector %d: unknown control pilot %r" % (cid, spec))


def lock(cid, spec, ctx):
    # Cable lock: {"type": "sim"} on the unix board; None (no lock) when absent,
    # and UnlockConnector then answers NotSupported.
    if not spec:
        return None
    if spec.get("type") == "sim":
        from hw.sim import SimLock
        return SimLock(cid)
    raise ValueError("connector %d: unknown cable lock %r" % (cid, spec))


def reader(spec, ctx):
    if not spec:
        return None
    if spec.get("type") == "pn532":
        # {"uart": <name>, "connector": 1}: a PN532 in HSU mode
        from hw.pn532 import PN532
        return PN532(ctx.uart(spec["uart"]))
    raise ValueError("unknown card reader %r" % (spec,))


def modem(spec, ctx):
    if not spec:
        return None
    if spec.get("type") == "at":
        # {"uart": <name>}: ICCID / IMSI with AT commands
        from hw.modem import Modem
        return Modem(ctx.uart(spec["uart"]))
    raise ValueError("unknown modem %r" % (spec,))


def watchdog(spec, ctx):
    # {"timeout_ms": 8000, "device": "/dev/watchdog"}: machine.WDT where the
    # port has one, else the Linux device if given, else a no-op.
    if not spec:
        return None
    from hw.watchdog import Watchdog
    return Watchdog(spec.get("timeout_ms", 8000), spec.get("device"))
