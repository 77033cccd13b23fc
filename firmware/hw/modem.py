# Cellular modem identity for BootNotification: the SIM's ICCID and IMSI, read
# with AT commands over the modem's UART (an asyncio stream: machine.UART on a
# board, hw.serial_unix.Serial on Linux). Every command has a timeout, so a
# missing modem costs a bounded time at boot and never blocks the loop.
# Tolerated: command echo (ATE0 is sent, but the echo may already be on the
# line), unsolicited lines (RDY, +CPIN: READY, SMS Ready...), and the vendor
# spellings of the ICCID query (AT+CCID, Quectel AT+QCCID, AT+ICCID, SIMCom
# AT+CICCID).
import asyncio
import time
import log

_ICCID_MAX = 20  # OCPP 1.6 BootNotification.iccid maxLength
_IMSI_MAX = 20  # BootNotification.imsi maxLength
_CCID_CMDS = (b"AT+CCID\r", b"AT+QCCID\r", b"AT+ICCID\r", b"AT+CICCID\r")


def _value(line, lo, hi, hexok):
    # The answer's value: after an optional "+XXX:" prefix, without quotes and
    # spaces; digits only (hex digits with hexok: an ICCID may end in F).
    i = line.find(b":")
    if i >= 0:
        line = line[i + 1:]
    v = line.strip().strip(b'"').strip()
    if not lo <= len(v) <= hi:
        return None
    for c in v:
        if not (0x30 <= c <= 0x39 or hexok and (0x41 <= c <= 0x46 or 0x61 <= c <= 0x66)):
            return None
    return v.decode().upper()


class Modem:
    def __init__(self, uart, timeout_ms=1000, probe_ms=400, probes=3):
        self._s = asyncio.StreamReader(uart)
        self.timeout_ms = timeout_ms
        self.probe_ms = probe_ms
        self.probes = probes
        self._buf = bytearray(96)  # received bytes, split into lines here
        self._mv = memoryview(self._buf)
        self._n = 0

    async def _fill(self, ms):
        # More bytes from the UART within ms; False on timeout.
        if ms <= 0:
            return False
        if self._n == len(self._buf):
            self._n = 0  # a line longer than the buffer: not one we want
        try:
            k = await asyncio.wait_for_ms(self._s.readinto(self._mv[self._n:]), ms)
        except asyncio.TimeoutError:
            return False
        if k:
            self._n += k
        return True

    async def _readline(self, deadline):
        # The next line without its line end, or None at the deadline.
        while True:
            i = self._buf.find(b"\n", 0, self._n)
            if i >= 0:
                line = bytes(self._mv[:i])
                n = self._n - i - 1
                self._mv[:n] = self._mv[i + 1:self._n]
                self._n = n
                return line
            if not await self._fill(time.ticks_diff(deadline, time.ticks_ms())):
                return None

    async def _flush(self):
        # Drop what is left on the line (late answers, boot messages).
        self._n = 0
        for _ in range(16):
            if not await self._fill(20):
                break
            self._n = 0

    async def command(self, cmd, timeout_ms=None):
        # Sends one command; returns ("OK" | "ERROR" | None on timeout, [lines]).
        await self._flush()
        self._s.write(cmd)
        await self._s.drain()
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms or self.timeout_ms)
        echo = cmd.rstrip()
        lines = []
        while True:
            line = await self._readline(deadline)
            if line is None:
                return None, lines
            line = line.strip()
            if not line or line == echo:
                continue
            if line == b"OK":
                return "OK", lines
            if line == b"ERROR" or line.startswith(b"+CME ERROR") or line.startswith(b"+CMS ERROR"):
                return "ERROR", lines
            if len(lines) < 8:
                lines.append(line)

    async def _query(self, cmd, lo, hi, hexok):
        status, lines = await self.command(cmd)
        if status == "OK":
            for line in lines:
                v = _value(line, lo, hi, hexok)
                if v:
                    return v
        return None

    async def identify(self):
        answered = False
        for _ in range(self.probes):  # autobauding modems need an AT or two
            status, _ = await self.command(b"AT\r", self.probe_ms)
            if status == "OK":
                answered = True
                break
        if not answered:
            log.warn("modem", "no answer from the modem on its UART: ICCID/IMSI not reported "
                     "(check the modem's power, wiring and baud rate)")
            return {}
        await self.command(b"ATE0\r")
        out = {}
        for cmd in _CCID_CMDS:
            v = await self._query(cmd, 18, 22, True)
            if v:
                out["iccid"] = v[:_ICCID_MAX]
                break
        v = await self._query(b"AT+CIMI\r", 6, 15, False)
        if v:
            out["imsi"] = v[:_IMSI_MAX]
        if out:
            log.info("modem", "SIM %s" % ", ".join("%s %s" % kv for kv in sorted(out.items())))
        else:
            log.warn("modem", "the modem answers but gives no ICCID/IMSI: is a SIM card inserted?")
        return out
