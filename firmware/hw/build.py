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
                u = Serial(spec["path"], spec.get("baudrate", 9600))
            else:  # microcontroller: machine.UART
                from machine import UART
                kw = {"baudrate": spec.get("baudrate", 9600)}
                for k in ("tx", "rx", "bits", "parity", "stop", "timeout"):
                    if k in spec:
                        kw[k] = spec[k]
                u = UART(spec["id"], **kw)
            self.uarts[name] = u
        return u


def pin(spec, mode, ctx):
    # A digital pin from a board-file entry: an int (machine.Pin number) or
    # {"gpio": n} / {"path": ...} for Linux GPIO.
    if isinstance(spec, int):
        import machine
        return machine.Pin(spec, machine.Pin.OUT if mode == "out" else machine.Pin.IN)
    from hw.linux_gpio import LinuxPin
    return LinuxPin(spec, mode)


def contactor(cid, spec, ctx):
    kind = spec.get("type", "sim")
    if kind == "sim":
        from hw.sim import SimContactor
        return SimContactor(cid)
    raise ValueError("connector %d: unknown contactor type %r" % (cid, kind))


def meter(cid, spec, ctx, contactor_port):
    kind = spec.get("type", "sim")
    if kind == "sim":
        from hw.sim import SimMeter
        state = ctx.data + "/meter%d.txt" % cid if ctx.data else None
        return SimMeter(contactor_port, state, spec.get("phases", 3), spec.get("volts", 230.0))
    raise ValueError("connector %d: unknown meter type %r" % (cid, kind))


def plug(cid, spec, ctx):
    if not spec:
        return None
    raise ValueError("connector %d: unknown plug input %r" % (cid, spec))


def reader(spec, ctx):
    if not spec:
        return None
    raise ValueError("unknown card reader %r" % (spec,))


def modem(spec, ctx):
    if not spec:
        return None
    raise ValueError("unknown modem %r" % (spec,))


def watchdog(spec, ctx):
    if not spec:
        return None
    raise ValueError("unknown watchdog %r" % (spec,))
