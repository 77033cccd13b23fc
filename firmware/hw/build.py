# Builds the hardware ports a board file describes. One function per kind of
# port; each reads its own part of board.json and returns an object with the
# port's small interface:
#   meter:     async read() -> {measurand: value} or None; async identify() -> {bootField: value}
#   contactor: close(), open(), closed, ok() -> False when its feedback disagrees
#   plug:      plugged() -> bool   (None: the board detects vehicles by current)
#   pilot:     offer(amps), offered() -> amps or None, state() -> "A".."F"
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


# The calibration keys of a pilot entry, passed to hw.pilot.Pilot as they are.
_PILOT_KEYS = ("divider", "offset_mv", "full_scale_mv", "invert", "uv", "window_us")
_ATTEN = {0: "ATTN_0DB", 2.5: "ATTN_2_5DB", 6: "ATTN_6DB", 11: "ATTN_11DB"}


def pilot(cid, spec, ctx, meter=None):
    # The IEC 61851-1 control pilot, for boards that generate it (None: the
    # board has none). {"type": "pwm", "pwm": <pin>, "adc": <pin>, "atten": 11
    # (ESP32: the ADC's attenuation in dB), "divider": 10.09, "offset_mv": 1486.5,
    # "full_scale_mv": 3300, "uv": false, "invert": false, "window_us": 1100}
    # (README, "Board file"); {"type": "sim"}: the unix board's simulated vehicle,
    # drawing at most the current offered (no line to sense: its plug says it is
    # there); {"type": "sim_line"}: a simulated line and vehicle (hw.sim_line,
    # the vehicle as pilot.vehicle), for tests.
    if not spec:
        return None
    kind = spec.get("type")
    if kind == "sim":
        from hw.sim import SimPilot
        return SimPilot(meter)
    from hw.pilot import Pilot
    kw = {}
    for k in _PILOT_KEYS:
        if k in spec:
            kw[k] = spec[k]
    if kind == "sim_line":
        from hw.sim_line import SimPWM, SimADC, SimVehicle
        pwm, vehicle = SimPWM(), SimVehicle()
        p = Pilot(pwm, SimADC(pwm, vehicle, invert=kw.get("invert", False)), cid=cid, **kw)
        p.vehicle = vehicle
        return p
    if kind != "pwm":
        raise ValueError("connector %d: unknown pilot type %r" % (cid, kind))
    import machine
    PWM = getattr(machine, "PWM", None)
    ADC = getattr(machine, "ADC", None)
    if PWM is None or ADC is None:
        raise ValueError("connector %d: pilot: this port has no machine.PWM / machine.ADC; on the unix "
                         "port use {\"type\": \"sim_line\"}" % cid)
    P = machine.Pin
    # Steady +12 V (no charging allowed) from the first instant the PWM runs.
    steady = 0 if kw.get("invert") else 65535
    try:
        pwm = PWM(P(spec["pwm"]), freq=1000, duty_u16=steady)
    except TypeError:  # a port without constructor keywords
        pwm = PWM(P(spec["pwm"]))
    atten = spec.get("atten")
    if atten is None:
        adc = ADC(P(spec["adc"]))
    else:
        if atten not in _ATTEN:
            raise ValueError("connector %d: pilot atten %r: one of 0, 2.5, 6, 11 (dB)" % (cid, atten))
        adc = ADC(P(spec["adc"]), atten=getattr(ADC, _ATTEN[atten]))
    return Pilot(pwm, adc, cid=cid, **kw)


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
