# NXP PN532 NFC reader on a UART (HSU mode), reading ISO/IEC 14443A card UIDs
# as OCPP idTags. Frames as in the PN532 User Manual (UM0701-02) §6.2:
#   information  00 00 FF LEN LCS TFI PD0..PDn DCS 00
#                LEN counts TFI+PD; LEN+LCS = 0 and TFI+PD0+..+PDn+DCS = 0 (mod 256);
#                TFI D4 host->PN532, D5 PN532->host; PD0 is the command code
#                (the answer's is command+1)
#   ACK          00 00 FF 00 FF 00   (PN532: command received; host: abort it)
#   NACK         00 00 FF FF 00 00   (host: send the last answer again)
#   error        00 00 FF 01 FF 7F 81 00   (application-level syntax error)
# Preamble and postamble may be any number of 00 bytes. The chip starts in a
# low-power state; in HSU it wakes on a 55 55 00 00 .. preamble, and its first
# command must be SAMConfiguration (normal mode). RFConfiguration MaxRetries
# limits the passive activation retries, so InListPassiveTarget answers
# "no card" instead of waiting for one forever.
#
# poll() runs one InListPassiveTarget (106 kbps type A, one target) and gives
# the UID once per presentation: a card that stays on the reader is not
# reported again until it has been seen absent (removal_polls polls in a row).
# Every wait has a timeout; a silent reader logs one warning and is retried
# every retry_ms while poll() returns None.
import asyncio
import time
from micropython import const
import log

_ACK = b"\x00\x00\xff\x00\xff\x00"
_NACK = b"\x00\x00\xff\xff\x00\x00"
_WAKE = b"\x55\x55\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
_TFI_HOST = const(0xD4)
_TFI_CHIP = const(0xD5)
_TFI_ERROR = const(0x7F)
_GET_FIRMWARE = const(0x02)
_SAM_CONFIGURATION = const(0x14)
_RF_CONFIGURATION = const(0x32)
_IN_LIST_PASSIVE_TARGET = const(0x4A)
_SAM_NORMAL = b"\x01"
_MAX_RETRIES = b"\x05\xff\x01\x02"  # CfgItem 5: MxRtyATR, MxRtyPSL, MxRtyPassiveActivation
_ONE_TYPE_A = b"\x01\x00"  # MaxTg 1, BrTy 106 kbps ISO/IEC 14443 type A
_ID_MAX = const(20)  # OCPP 1.6 IdToken: 20 characters

# _parse() results
_NEED = const(0)
_GOT_ACK = const(1)
_NOISE = const(2)
_BAD = const(3)
_FRAME = const(4)


class PN532:
    def __init__(self, uart, ack_ms=150, reply_ms=500, retry_ms=10000, removal_polls=2):
        self._s = asyncio.StreamReader(uart)
        self.ack_ms = ack_ms
        self.reply_ms = reply_ms
        self.retry_ms = retry_ms
        self.removal_polls = removal_polls
        self._tx = bytearray(16)
        self._txmv = memoryview(self._tx)
        self._rx = bytearray(96)
        self._mv = memoryview(self._rx)
        self._n = 0  # bytes held in _rx
        self._ln = 0  # LEN of the frame _parse() found
        self._uid = bytearray(10)  # the card on the reader (NFCID1: 4, 7 or 10 bytes)
        self._uid_len = 0  # 0: no card
        self._empty = 0  # "no card" answers in a row while a card was on
        self._ready = False
        self._fails = 0
        self._warned = False
        self._retry_at = time.ticks_ms()
        self.firmware = None

    # ---- frames ----------------------------------------------------------
    def _frame(self, cmd, params):
        t = self._tx
        n = len(params) + 2  # TFI, command code, parameters
        t[0] = 0
        t[1] = 0
        t[2] = 0xFF
        t[3] = n
        t[4] = -n & 0xFF
        t[5] = _TFI_HOST
        t[6] = cmd
        s = _TFI_HOST + cmd
        i = 7
        for b in params:
            t[i] = b
            s += b
            i += 1
        t[i] = -s & 0xFF
        t[i + 1] = 0
        return i + 2

    def _drop(self, k):
        n = self._n
        if k >= n:
            self._n = 0
        else:
            self._mv[0:n - k] = self._mv[k:n]
            self._n = n - k

    def _parse(self):
        # Looks at the bytes received so far. Returns _NEED when more are
        # needed, _GOT_ACK, _NOISE for a false start code, _BAD for a frame
        # with a wrong data checksum (dropped), or _FRAME: a checked frame at
        # _rx[0:LEN+5] with LEN in self._ln, TFI at _rx[4].
        rx = self._rx
        while True:
            n = self._n
            i = 0
            while i + 1 < n and not (rx[i] == 0 and rx[i + 1] == 0xFF):
                i += 1
            if i + 1 >= n:  # no start code: keep a trailing 00, it may begin one
                self._drop(n - 1 if n and rx[n - 1] == 0 else n)
                return _NEED
            self._drop(i)
            if self._n < 4:
                return _NEED
            ln = rx[2]
            lcs = rx[3]
            if ln == 0 and lcs == 0xFF:
                self._drop(4)
                return _GOT_ACK
            if (ln + lcs) & 0xFF or ln == 0 or ln + 5 > len(rx):
                # a bad length checksum, a NACK / extended frame (never sent
                # by the chip for our commands) or too long: resynchronise
                self._drop(2)
                return _NOISE
            if self._n < ln + 5:
                return _NEED
            s = 0
            for j in range(4, ln + 5):
                s += rx[j]
            if s & 0xFF:
                self._drop(ln + 5)
                return _BAD
            self._ln = ln
            return _FRAME

    async def _fill(self, deadline):
        left = time.ticks_diff(deadline, time.ticks_ms())
        if left <= 0:
            return False
        if self._n == len(self._rx):
            self._n = 0  # a buffer full of noise
        try:
            k = await asyncio.wait_for_ms(self._s.readinto(self._mv[self._n:]), left)
        except asyncio.TimeoutError:
            return False
        if k:
            self._n += k
        return True

    async def _command(self, cmd, params, reply_ms):
        # Sends a command; returns the answer's length, its data (after TFI and
        # the answer code) at _rx[6:6+length], or -1 (no ACK, no answer, error).
        self._n = 0
        s = self._s
        s.write(self._txmv[:self._frame(cmd, params)])
        await s.drain()
        deadline = time.ticks_add(time.ticks_ms(), self.ack_ms)
        acked = False
        nacked = False
        while True:
            kind = self._parse()
            if kind == _NEED:
                if await self._fill(deadline):
                    continue
                if acked:  # ACKed but never answered: abort the command
                    s.write(_ACK)
                    await s.drain()
                return -1
            if kind == _GOT_ACK:
                if not acked:
                    acked = True
                    deadline = time.ticks_add(time.ticks_ms(), reply_ms)
                continue
            if kind == _NOISE:
                continue
            if kind == _BAD:
                if not acked:
                    continue
                if nacked:  # damaged again: give up this time
                    return -1
                nacked = True  # the answer was damaged: ask once for it again
                s.write(_NACK)
                await s.drain()
                continue
            rx = self._rx
            ln = self._ln
            if acked:  # (before our ACK it can only be a late answer to an earlier command)
                if rx[4] == _TFI_CHIP and ln >= 2 and rx[5] == cmd + 1:
                    return ln - 2
                if rx[4] == _TFI_ERROR:
                    return -1
            self._drop(ln + 5)

    # ---- reader ----------------------------------------------------------
    async def _init(self):
        s = self._s
        s.write(_WAKE)
        await s.drain()
        if await self._command(_SAM_CONFIGURATION, _SAM_NORMAL, self.reply_ms) < 0:
            return False
        if await self._command(_RF_CONFIGURATION, _MAX_RETRIES, self.reply_ms) < 0:
            return False
        k = await self._command(_GET_FIRMWARE, b"", self.reply_ms)
        if k >= 3 and self.firmware is None:
            self.firmware = "%d.%d" % (self._rx[7], self._rx[8])
        log.info("reader", "PN532 card reader %s (firmware %s)" % (
            "answers again" if self._warned else "ready", self.firmware or "?"))
        self._warned = False
        return True

    async def poll(self):
        try:
            return await self._poll()
        except OSError as e:
            if not self._warned:
                log.exc("reader", "card reader UART failed", e)
                self._warned = True
            self._ready = False
            self._retry_at = time.ticks_add(time.ticks_ms(), self.retry_ms)
            return None

    async def _poll(self):
        if not self._ready:
            if time.ticks_diff(time.ticks_ms(), self._retry_at) < 0:
                return None
            if not await self._init():
                self._retry_at = time.ticks_add(time.ticks_ms(), self.retry_ms)
                if not self._warned:
                    self._warned = True
                    log.warn("reader", "no answer from the PN532 card reader: check its power, the "
                             "UART wiring (TX/RX crossed, 115200 baud) and that it is set to HSU "
                             "mode; cards cannot be read until it answers")
                return None
            self._ready = True
            self._fails = 0
        k = await self._command(_IN_LIST_PASSIVE_TARGET, _ONE_TYPE_A, self.reply_ms)
        if k < 0:
            self._fails += 1
            if self._fails >= 3:  # wake it up and configure it again
                self._ready = False
            return None
        self._fails = 0
        rx = self._rx
        # NbTg [Tg SENS_RES(2) SEL_RES NFCIDLength NFCID1...]
        if k < 6 or rx[6] == 0 or not 4 <= rx[11] <= 10 or k < 6 + rx[11]:
            if self._uid_len:
                self._empty += 1
                if self._empty >= self.removal_polls:
                    self._uid_len = 0
            return None
        self._empty = 0
        n = rx[11]
        uid = self._uid
        if n == self._uid_len:
            i = 0
            while i < n and uid[i] == rx[12 + i]:
                i += 1
            if i == n:
                return None  # still on the reader
        uid[0:n] = self._mv[12:12 + n]
        self._uid_len = n
        return "".join("%02X" % b for b in uid[:n])[:_ID_MAX]
