# Modbus RTU master for asyncio: reads holding (03) and input (04) registers
# from slaves on one RS-485 bus, never blocking the event loop.
#
#   bus = ModbusRTU(uart, 9600, de_pin=None, timeout_ms=200)
#   data = await bus.read_registers(address, 4, 0x0000, 76)  # memoryview, 2*count bytes
#
# `uart` is a byte stream with readinto(buf) -> n or None/0 that does not wait
# and write(buf): hw.serial_unix.Serial on Linux, machine.UART on the boards
# (read through any(), so even a UART made with a timeout never waits); an
# asyncio.StreamReader wrapping one is unwrapped. The master waits
# with asyncio.sleep_ms, timed from the baud rate, instead of the stream's I/O
# queue: a transaction then allocates nothing but its own coroutine and the
# bus lock's, whatever the frame size and the number of chunks it arrives in.
# The returned memoryview points into the master's one response buffer: decode
# it before the next await that may start another transaction on this bus.
#
# Framing: 3.5 character times of silence before each request (1.75 ms above
# 19200 Bd), stale input discarded first; an answer must start within
# timeout_ms after the request went out and be complete one frame time later.
# Answers with a CRC error, from another address, with the wrong function or
# length, or cut short raise ModbusError after the rest of the noise has been
# read and dropped (input flushed).
import asyncio
import time
from micropython import const

_MAX_REGS = const(125)
_FRAME = const(256)  # the longest answer: 5 + 2 * 125 bytes
_CHUNK = const(64)
_STEP_MS = const(20)  # longest nap while an answer is due
_QUIET_MS = const(20)  # silence that ends a flush (USB adapters deliver in 16 ms bursts)
_FLUSH_MS = const(500)  # a babbling bus is given up on after this

# CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), four bits at a time.
_NIB = (0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
        0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400)

# Exception codes (Modbus application protocol v1.1b, section 7)
EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge",
    6: "slave device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

# ModbusError.kind
TIMEOUT = "timeout"  # no answer at all
CRC = "crc"  # an answer with a bad checksum
EXCEPTION = "exception"  # the slave answered with an exception code
ADDRESS = "address"  # an answer from another slave address
FRAME = "frame"  # garbage, wrong function or length, cut short
PORT = "port"  # the serial port itself failed


class ModbusError(Exception):
    # str(e) is a sentence for the log; kind is one of the constants above;
    # code is the Modbus exception code (kind EXCEPTION), else 0.
    def __init__(self, text, kind, code=0):
        super().__init__(text)
        self.kind = kind
        self.code = code


def crc16(buf, n=-1, crc=0xFFFF):
    # CRC-16/MODBUS of buf[:n]; over a whole frame including its CRC it is 0.
    if n < 0:
        n = len(buf)
    t = _NIB
    for i in range(n):
        crc ^= buf[i]
        crc = (crc >> 4) ^ t[crc & 15]
        crc = (crc >> 4) ^ t[crc & 15]
    return crc


class ModbusRTU:
    def __init__(self, uart, baudrate, de_pin=None, timeout_ms=200):
        if hasattr(uart, "drain") and hasattr(uart, "s"):
            uart = uart.s  # an asyncio stream: its UART
        self._uart = uart
        self._de = de_pin
        self._txdone = uart.txdone if hasattr(uart, "txdone") else None
        # machine.UART: read only what any() says is there, so a UART built
        # with a timeout never waits in readinto
        self._any = uart.any if hasattr(uart, "any") else None
        if de_pin is not None:
            de_pin.value(0)  # receive
        self.baudrate = baudrate
        self.timeout_ms = timeout_ms
        self.lock = asyncio.Lock()  # one transaction at a time on the bus
        # 11 bits a character (start, 8 data, parity or a 2nd stop bit, stop)
        self._char_us = 11000000 // baudrate
        self._t35_us = self._char_us * 7 // 2 if baudrate <= 19200 else 1750
        self._req = bytearray(8)
        self._resp = bytearray(_FRAME)
        self._chunk = bytearray(_CHUNK)
        self._views = {}  # count -> memoryview of the data in _resp
        self._quiet_at = time.ticks_us()  # last byte seen or sent on the bus
        self.last_ms = 0  # duration of the last transaction
        self.dropped = 0  # stale or noise bytes discarded so far

    async def read_registers(self, address, function, start, count):
        # Read `count` registers from `start` with function 3 (holding) or 4
        # (input); returns a memoryview of 2*count bytes, big-endian registers.
        if function != 3 and function != 4:
            raise ValueError("function code %r: only 3 and 4 are supported" % function)
        if not (1 <= address <= 247 and 0 <= start <= 0xFFFF and 1 <= count <= _MAX_REGS):
            raise ValueError("bad request: address %r start %r count %r" % (address, start, count))
        lock = self.lock
        await lock.acquire()
        de = self._de
        driving = False
        try:
            uart = self._uart
            cu = self._char_us
            # The bus must be silent for 3.5 characters before a request.
            # Anything still arriving (a late answer, noise) is dropped first.
            if self._discard():
                await self._flush()
            wait = self._t35_us - time.ticks_diff(time.ticks_us(), self._quiet_at)
            if wait > 0:
                await asyncio.sleep_ms(min(wait, self._t35_us) // 1000 + 1)
            r = self._req
            r[0] = address
            r[1] = function
            r[2] = start >> 8
            r[3] = start & 0xFF
            r[4] = 0
            r[5] = count
            crc = crc16(r, 6)
            r[6] = crc & 0xFF
            r[7] = crc >> 8
            t0 = time.ticks_ms()
            if de is not None:
                de.value(1)  # transmit
                driving = True
            try:
                uart.write(r)
            except OSError as e:
                raise ModbusError("serial port error: %s" % e, PORT)
            tx_ms = 8 * cu // 1000
            if de is not None:
                # RS-485: keep the driver on until the last stop bit has left.
                await asyncio.sleep_ms(tx_ms)
                txdone = self._txdone
                if txdone is None:
                    await asyncio.sleep_ms(1)
                else:
                    t = time.ticks_ms()
                    while not txdone() and time.ticks_diff(time.ticks_ms(), t) < 3:
                        pass  # the last character or two
                de.value(0)
                driving = False
            # The answer: address, function, byte count, data, CRC; an
            # exception answer is address, function | 0x80, code, CRC.
            expect = 5 + 2 * count
            resp = self._resp
            chunk = self._chunk
            pos = 0
            head = 0  # how much of the header has been checked
            first = tx_ms + self.timeout_ms  # the answer must have started by then
            limit = first + expect * cu // 1000 + 1  # and be complete by then
            while True:
                try:
                    n = self._read()
                except OSError as e:
                    raise ModbusError("serial port error: %s" % e, PORT)
                if n:
                    self._quiet_at = time.ticks_us()
                    for i in range(n):
                        if pos < _FRAME:
                            resp[pos] = chunk[i]
                            pos += 1
                    if head == 0 and pos >= 2:
                        head = 1
                        if resp[0] != address:
                            await self._flush()
                            if resp[1] & 0x7F == function:  # a well-formed answer, from someone else
                                raise ModbusError("answer from address %d, expected %d" % (resp[0], address), ADDRESS)
                            raise ModbusError("garbage on the bus (0x%02x 0x%02x ...)" % (resp[0], resp[1]), FRAME)
                        if resp[1] == function | 0x80:
                            expect = 5
                        elif resp[1] != function:
                            await self._flush()
                            raise ModbusError("garbage on the bus (function byte 0x%02x)" % resp[1], FRAME)
                    if head == 1 and expect > 5 and pos >= 3:
                        head = 2
                        if resp[2] != 2 * count:
                            await self._flush()
                            raise ModbusError("answer of %d bytes to a request for %d" % (resp[2], 2 * count), FRAME)
                    if pos >= expect:
                        break
                    continue
                spent = time.ticks_diff(time.ticks_ms(), t0)
                end = first if pos == 0 else limit
                if spent >= end:
                    if pos == 0:
                        raise ModbusError("no answer from address %d within %d ms" % (address, self.timeout_ms), TIMEOUT)
                    await self._flush()
                    raise ModbusError("answer from address %d cut short (%d of %d bytes)" % (address, pos, expect), FRAME)
                nap = (expect - pos) * cu // 1000
                if nap > _STEP_MS:
                    nap = _STEP_MS
                if nap > end - spent:
                    nap = end - spent
                await asyncio.sleep_ms(nap if nap > 0 else 1)
            if crc16(resp, expect):
                await self._flush()
                raise ModbusError("CRC error in the answer from address %d" % address, CRC)
            if pos > expect:
                self.dropped += pos - expect  # noise right after a good answer
            if expect == 5:
                code = resp[2]
                raise ModbusError("address %d answered exception %d (%s)" % (
                    address, code, EXCEPTIONS.get(code, "unknown")), EXCEPTION, code)
            v = self._views.get(count)
            if v is None:
                v = self._views[count] = memoryview(self._resp)[3:3 + 2 * count]
            self.last_ms = time.ticks_diff(time.ticks_ms(), t0)
            return v
        finally:
            if driving:
                de.value(0)  # never leave the bus jammed (error, cancellation)
            lock.release()

    def _read(self):
        # What is waiting now, into _chunk, without waiting: n (or None/0).
        if self._any is None:
            return self._uart.readinto(self._chunk)
        n = self._any()
        if n:
            return self._uart.readinto(self._chunk, n if n < _CHUNK else _CHUNK)
        return 0

    def _discard(self):
        # Drop whatever is waiting in the input now; returns how much.
        dropped = 0
        while dropped < 4096:
            try:
                n = self._read()
            except OSError:
                break
            if not n:
                break
            dropped += n
        if dropped:
            self.dropped += dropped
            self._quiet_at = time.ticks_us()
        return dropped

    async def _flush(self):
        # Read and drop until the bus has been silent for _QUIET_MS (bounded).
        t0 = last = time.ticks_ms()
        while True:
            now = time.ticks_ms()
            if self._discard():
                last = now
            elif time.ticks_diff(now, last) >= _QUIET_MS or time.ticks_diff(now, t0) >= _FLUSH_MS:
                return
            await asyncio.sleep_ms(2)
