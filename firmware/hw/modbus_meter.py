# The meter port for Modbus RTU energy meters: one meter at one address on a
# shared bus (lib/modbus.py), its registers described by a profile in
# hw/meters.py.
#
#   m = ModbusMeter(bus, 1, "SDM630", phases=3, label="connector 1")
#   await m.read()      -> {measurand: value} (per-phase values as tuples), or
#                          None when the poll failed: no answer, CRC error,
#                          garbage, exception answer. Never raises, never
#                          returns a stale or made-up value.
#   await m.identify()  -> {"meterType": ..., "meterSerialNumber": ...}, {} if silent
#   m.last_error        -> why the last poll failed (None after a good one)
#
# One WARN line when the meter starts failing, one INFO line when it answers
# again; not a line per failed poll.
import struct
import log
from modbus import ModbusError, TIMEOUT, CRC, EXCEPTION, ADDRESS, FRAME, PORT
from hw import meters

_PER_PHASE = (meters.CURRENT, meters.VOLTAGE)
_REGS = {"H": 1, "f": 2, "I": 2, "i": 2, "Q": 4}
# ABB marks a value it does not have with all ones (signed: the largest value).
_MISSING = {"H": 0xFFFF, "I": 0xFFFFFFFF, "i": 0x7FFFFFFF, "Q": 0xFFFFFFFFFFFFFFFF, "f": None}
_VALUE = "value"  # ModbusError kind: the answer was fine, its content is not
_HINTS = {
    _VALUE: "is the meter profile in the board file the right one for this meter?",
    TIMEOUT: "check the RS-485 wiring (A/B), the meter's Modbus address and baud rate",
    CRC: "check the bus wiring, its termination and the baud rate/parity",
    FRAME: "check the bus wiring, its termination and the baud rate/parity",
    EXCEPTION: "is the meter profile in the board file the right one for this meter?",
    ADDRESS: "another device answered: are two devices set to the same Modbus address?",
    PORT: "check the serial port / RS-485 adapter",
}


class ModbusMeter:
    def __init__(self, bus, address, profile_name, phases=3, label=None):
        self.meter_type, self.function, blocks, fields, self._serial = meters.profile(profile_name)
        self.bus = bus
        self.address = address
        self.profile = profile_name
        self.label = "%s: meter %s at address %d" % (label, profile_name, address) if label else \
            "meter %s at address %d" % (profile_name, address)
        self.last_error = None
        self.failures = 0  # consecutive failed polls
        # Per block: the fields it holds, as (measurand, struct format, byte
        # offset, value size, count, scale, missing marker, per-phase), worked
        # out once. Per-phase registers must be adjacent (one unpack).
        plan = [(start, count, []) for start, count in blocks]
        self.measurands = {}  # what read() delivers: measurand -> phases (0: one total value)
        for f in fields:
            name, enc, scale, regs = f[0], f[1], f[2], f[3:]
            phased = name in _PER_PHASE
            if phased:
                regs = regs[:max(1, phases)]
            self.measurands[name] = len(regs) if phased else 0
            n = _REGS[enc]
            if any(regs[k + 1] - regs[k] != n for k in range(len(regs) - 1)):
                raise ValueError("meter profile %s: %s registers are not adjacent" % (profile_name, name))
            for start, count, into in plan:
                if start <= regs[0] and regs[-1] + n <= start + count:
                    into.append((name, ">%d%s" % (len(regs), enc), (regs[0] - start) * 2, 2 * n, len(regs),
                                 scale, _MISSING.get(enc), phased))
                    break
            else:
                raise ValueError("meter profile %s: %s is outside the registers it reads" % (profile_name, name))
        self._plan = tuple((start, count, tuple(into)) for start, count, into in plan)

    async def read(self):
        try:
            out = {}
            for start, count, fields in self._plan:
                data = await self.bus.read_registers(self.address, self.function, start, count)
                # decoded before the next await: data lives in the bus's buffer
                for name, fmt, off, size, n, scale, missing, phased in fields:
                    vals = struct.unpack_from(fmt, data, off)
                    ok = True
                    for k in range(n):
                        if missing is None:  # float32: exponent all ones is NaN or infinite
                            p = off + k * size
                            if data[p] & 0x7F == 0x7F and data[p + 1] & 0x80:
                                ok = False
                        elif vals[k] == missing:  # integers: all ones, "not available"
                            ok = False
                    if not ok:
                        if name == meters.E_IMPORT:
                            raise ModbusError("the meter reports no valid import energy value", _VALUE)
                        continue  # a measurand the meter does not have
                    if phased:
                        v = vals if scale == 1 else tuple([x * scale for x in vals])
                    else:
                        v = vals[0] if scale == 1 else vals[0] * scale
                        if name == meters.POWER and v < 0:
                            v = 0.0  # exporting: nothing imported
                    out[name] = v
        except Exception as e:  # a failed poll is None, whatever went wrong
            self._failed(e)
            return None
        if self.failures:
            log.info("meter", "%s answers again (after %d failed poll%s)" % (
                self.label, self.failures, "" if self.failures == 1 else "s"))
            self.failures = 0
        self.last_error = None
        return out

    def _failed(self, e):
        if isinstance(e, ModbusError):
            text, hint = str(e), _HINTS.get(e.kind)
        else:
            text, hint = "%s: %s" % (type(e).__name__, e), None
        self.last_error = text
        self.failures += 1
        if self.failures == 1:
            log.warn("meter", "%s gives no reading: %s%s; no meter values until it answers" % (
                self.label, text, " (%s)" % hint if hint else ""))

    async def identify(self):
        # BootNotification fields: {} while the meter is silent; the meter type
        # alone if it answers but has no (readable) serial number.
        if self._serial is None:
            return {"meterType": self.meter_type} if await self.read() is not None else {}
        fc, reg, enc = self._serial
        serial = err = None
        for _ in range(2):
            try:
                data = await self.bus.read_registers(self.address, fc, reg, _REGS[enc])
                serial = struct.unpack_from(">" + enc, data, 0)[0]
                err = None
                break
            except Exception as e:
                err = e
                if isinstance(e, ModbusError) and e.kind == EXCEPTION:
                    break  # it is there, without that register
        if err is not None and not (isinstance(err, ModbusError) and err.kind == EXCEPTION):
            self._failed(err)
            return {}
        fields = {"meterType": self.meter_type}
        if serial is not None and serial not in (0, _MISSING[enc]):
            fields["meterSerialNumber"] = str(serial)
        log.info("meter", "%s: %s, serial number %s" % (
            self.label, self.meter_type, fields.get("meterSerialNumber", "unknown")))
        return fields
