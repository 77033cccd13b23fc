# OCPP-J RPC framing (OCPP-J 1.6 §4, 2.0.1 part 4 §4), the same in both versions.
#   CALL        [2, "<id>", "<Action>", {payload}]
#   CALLRESULT  [3, "<id>", {payload}]
#   CALLERROR   [4, "<id>", "<code>", "<description>", {details}]
# One CALL of ours is in flight at a time (§4.1.1); CALLs from the CSMS that
# cross it are still answered, from the reader task.
# Where they differ (v201=True on a 2.0.1 session): the error codes' spelling
# (FormatViolation, not FormationViolation), and what cannot be answered in 1.6
# is answered in 2.0.1: an unknown message type with MessageTypeNotSupported
# (part 4 §4.4), a frame that is not a valid RPC message (not JSON, no readable
# message id, a CALL without 4 elements, an id over 36 characters) with
# RpcFrameworkError, under message id "-1" when none can be read (§4.2.3).
# Answers of the CSMS (types 3 and 4) are never answered, in either version.
import json
import asyncio
import gc
import os
import binascii
from micropython import const
import log

_CALL = const(2)
_RESULT = const(3)
_ERROR = const(4)
_MAX_ID = const(36)


async def _coro():
    pass


_CORO = type(_coro())  # what an async def handler returns (MicroPython: a generator)


class CallError(Exception):
    # The CSMS answered our CALL with a CALLERROR (or with an invalid answer);
    # raised by a handler, the CSMS's CALL is answered with this CALLERROR
    # (e.g. NotSupported for UpdateFirmware once signed updates are enforced).
    # super(): MicroPython's Exception has no __init__ attribute to call directly.
    def __init__(self, code, desc):
        super().__init__(code)
        self.code = code
        self.desc = desc


class CallTimeout(Exception):
    pass


class NotConnected(Exception):
    pass


def _log_frame(direction, text):
    # Logging a frame copies it (twice); a big one may not fit a small heap:
    # then log its start only, never fail the exchange for the log's sake.
    # The password a ChangeConfiguration (AuthorizationKey, whitepaper §2.3) or
    # a SetVariables (SecurityCtrlr.BasicAuthPassword, OCPP 2.0.1) sets is never
    # logged: not on the console, not in the flash log that GetLog uploads.
    if log.level > log.FRAME:
        return
    for action, secret in (("ChangeConfiguration", "authorizationkey"), ("SetVariables", "basicauthpassword")):
        i = text.find(action)
        if i > 0 and secret in text.lower():
            text = text[: i + len(action) + 1] + " ...] (it sets a password: the rest is not logged)"
            break
    try:
        log.frame(direction, text)
    except MemoryError:
        gc.collect()
        log.frame(direction, "%s... (%d characters)" % (text[:200], len(text)))


_SPLIT_DEPTH = const(5)  # [2, id, action, {..., "meterValue": [{"sampledValue": [<each whole>]}]}]


def _pieces(o, depth):
    # The JSON text of o as pieces: lists and dicts down to `depth` levels are
    # taken apart, what lies below goes whole through json.dumps. The same
    # object gives the same pieces each time (parts() is called twice).
    t = type(o)
    if depth and (t is dict or t is list):
        sep = "{" if t is dict else "["
        for k in o:
            yield sep
            if t is dict:
                yield json.dumps(k)
                yield ":"
                k = o[k]
            yield from _pieces(k, depth - 1)
            sep = ","
        if sep != ",":  # empty
            yield sep
        yield "}" if t is dict else "]"
    else:
        yield json.dumps(o)


def _event(why, kind="InvalidMessages", warn=True):
    # A security event (whitepaper §8: InvalidMessages for a frame that is not
    # valid OCPP, MemoryExhaustion) with the words of the log line. security is
    # imported here, not at the top: a module global more costs RAM at boot.
    if warn:
        log.warn("ocpp", why)
    import security
    security.event(kind, why)


def _frame_ok(msg):
    # A CALL needs 4 elements with a string id; a result 3; an error 5 (4 tolerated).
    if type(msg) is not list or len(msg) < 3:
        return False
    return type(msg[0]) is int and type(msg[1]) is str


def _id201(msg):
    # The message id of a frame if it can be read, else "-1" (2.0.1 part 4 §4.2.3).
    i = msg[1] if type(msg) is list and len(msg) > 1 else None
    return i if type(i) is str and len(i) <= _MAX_ID else "-1"


class Rpc:
    # handlers: {action: fn(payload) -> response | (response, after), or a
    #   coroutine giving one of these (DeleteCertificate: it probes the CSMS first)}
    #   response: a dict, or for a large one a generator function yielding its
    #   JSON text in pieces (sent as they come: GetConfiguration of every key).
    #   `after` is a coroutine function run once the response has been sent
    #   (TriggerMessage, Reset: the confirmation goes first).
    # gate(action) -> None to dispatch normally, False to leave the CALL
    #   unanswered (boot Rejected), a response dict to answer without the
    #   handler, or a CallError to answer with.
    # check(action, payload, response) -> None or (code, description): ocpp.check.make().
    # v201: a 2.0.1 session (the codes and answers above).
    def __init__(self, handlers, check, gate=None, v201=False):
        self.handlers = handlers
        self.check = check
        self.gate = gate
        self.v201 = v201
        self._format = "FormatViolation" if v201 else "FormationViolation"
        self._framework = "RpcFrameworkError" if v201 else None
        self.ws = None
        self.last_sent = 0  # ticks_ms of our last CALL, for Heartbeat skipping
        self._lock = asyncio.Lock()
        self._wait_id = None
        self._reply = None
        self._replied = asyncio.Event()
        self._prefix = binascii.hexlify(os.urandom(4)).decode()
        self._seq = 0

    def _new_id(self):
        # Unique within this boot and, thanks to the random prefix, across boots.
        self._seq += 1
        return "%s-%d" % (self._prefix, self._seq)

    async def _send(self, msg):
        # The frame's JSON text is made in pieces (_pieces) as it is logged and
        # sent: a MeterValues of many sampled values or a StopTransaction with
        # its transactionData needs no kilobyte-long string (the largest
        # allocations a small heap fails on).
        def parts():
            return _pieces(msg, _SPLIT_DEPTH)
        log.frame_parts(">>", parts)
        await self.ws.send_parts(parts)

    async def _send_parts(self, msg_id, payload):
        # A CALLRESULT whose payload() yields its JSON text in pieces: it is
        # logged and sent piece by piece, never held whole in memory.
        head = "[3,%s," % json.dumps(msg_id)

        def parts():
            yield head
            yield from payload()
            yield "]"
        log.frame_parts(">>", parts)
        await self.ws.send_parts(parts)

    # ---- outbound -------------------------------------------------------
    async def call(self, action, payload, timeout=30):
        # Send a CALL and wait for its answer. Returns the CALLRESULT payload;
        # raises CallError, CallTimeout or NotConnected. payload: a dict, or
        # for a large one a generator function yielding its JSON text in
        # pieces, the same text at each call (NotifyReport: it is logged, then
        # measured and sent); sent piece by piece like a large result.
        async with self._lock:
            ws = self.ws
            if ws is None:
                raise NotConnected()
            msg_id = self._new_id()
            self._wait_id = msg_id
            self._reply = None
            self._replied.clear()
            try:
                if callable(payload):
                    head = "[2,%s,%s," % (json.dumps(msg_id), json.dumps(action))

                    def parts():
                        yield head
                        yield from payload()
                        yield "]"
                    log.frame_parts(">>", parts)
                    await ws.send_parts(parts)
                else:
                    await self._send([_CALL, msg_id, action, payload])
                self.last_sent = asyncio.ticks()
                await asyncio.wait_for(self._replied.wait(), timeout)
            except asyncio.TimeoutError:
                raise CallTimeout()
            except Exception as e:  # the link broke while sending
                log.exc("ocpp", "could not send " + action, e)
                raise NotConnected()
            finally:
                self._wait_id = None
            reply = self._reply
            if reply is None:
                raise NotConnected()
            if reply[0] == _ERROR:
                desc = reply[3] if len(reply) > 3 and type(reply[3]) is str else ""
                raise CallError(reply[2][:40], desc[:120])
            bad = self.check(action, reply[2], True)
            if bad:
                # A malformed answer is treated like an error answer.
                _event("%s answer is not valid OCPP: %s" % (action, bad[1]))
                raise CallError(bad[0], bad[1])
            return reply[2]

    # ---- inbound --------------------------------------------------------
    async def serve(self, ws):
        # Read frames until the connection ends. Returns normally on close.
        self.ws = ws
        try:
            while True:
                text = await ws.recv()
                if text is None:
                    return
                if type(text) is not str:
                    log.warn("ocpp", "binary frame ignored: OCPP-J uses text frames")
                    continue
                _log_frame("<<", text)
                await self._on_text(text)
        finally:
            self.ws = None
            if self._wait_id is not None:
                self._reply = None
                self._replied.set()

    async def _on_text(self, text):
        try:
            msg = json.loads(text)
        except ValueError:
            if self.v201:
                return await self.error("-1", self._framework, "frame is not valid JSON")
            return _event("frame is not valid JSON, ignored")
        except (MemoryError, RuntimeError) as e:
            # Too big or too deeply nested for this heap (e.g. 10000 nested
            # arrays): no id can be read, drop it and keep the session.
            gc.collect()
            why = "frame too complex to parse (%s)" % type(e).__name__
            kind = "MemoryExhaustion" if type(e) is MemoryError else "InvalidMessages"
            if not self.v201:
                return _event(why + ", ignored", kind)
            _event(why, kind)
            return await self.error("-1", self._framework, why, False)
        if not _frame_ok(msg):
            if self.v201:
                return await self._odd201(msg)
            # No usable message id: nothing can be answered (OCPP-J §4.1.3).
            return _event("frame is not an OCPP-J message, ignored")
        kind = msg[0]
        if kind == _CALL:
            await self._on_call(msg)
        elif kind == _RESULT or kind == _ERROR:
            self._on_answer(msg)
        elif self.v201:  # part 4 §4.4: say so, the CSMS falls back to CALL/CALLRESULT/CALLERROR
            await self.error(_id201(msg), "MessageTypeNotSupported", "message type %d is not supported" % kind)
        else:
            _event("unknown message type %r ignored" % (kind,))

    async def _odd201(self, msg):
        # A frame _frame_ok refuses, on a 2.0.1 session: answered unless it is an
        # answer of the CSMS (those are never answered).
        kind = msg[0] if type(msg) is list and msg else None
        if type(kind) is not int:
            return await self.error("-1", self._framework, "frame is not an OCPP-J message")
        if kind == _RESULT or kind == _ERROR:
            return _event("frame is not an OCPP-J message, ignored")
        if kind != _CALL:
            return await self.error(_id201(msg), "MessageTypeNotSupported", "message type %d is not supported" % kind)
        await self.error(_id201(msg), self._framework, "a CALL has 4 elements and a message id")

    def _on_answer(self, msg):
        if msg[1] != self._wait_id:
            log.warn("ocpp", "answer to unknown message id %s dropped" % msg[1][:_MAX_ID])
            return
        if msg[0] == _RESULT and type(msg[2]) is not dict or msg[0] == _ERROR and (
            len(msg) < 4 or type(msg[2]) is not str
        ):
            msg = [_ERROR, msg[1], self._format, "malformed answer"]
            _event("malformed answer to a CALL of ours", warn=False)
        self._reply = msg
        self._replied.set()

    async def _on_call(self, msg):
        msg_id = msg[1]
        if len(msg_id) > _MAX_ID:  # (2.0.1: not echoed, an answer may not carry it either)
            return await self.error(_id201(msg) if self.v201 else msg_id, self._framework or "ProtocolError",
                                    "message id longer than 36 characters")
        if len(msg) != 4 or type(msg[2]) is not str:
            return await self.error(msg_id, self._framework or self._format, "a CALL has 4 elements")
        action = msg[2]
        payload = msg[3]
        bad = self.check(action, payload, False)
        if bad and bad[0] == "NotImplemented":
            return await self.error(msg_id, "NotImplemented", "unknown action " + action[:40])
        handler = self.handlers.get(action)
        if handler is None:  # an OCPP action this charge point does not offer
            return await self.error(msg_id, "NotSupported", action + " is not supported")
        if bad:
            return await self.error(msg_id, bad[0], bad[1])
        if self.gate:
            verdict = self.gate(action)
            if verdict is False:
                log.info("ocpp", "%s not answered: the CSMS rejected our boot" % action)
                return
            if type(verdict) is CallError:  # e.g. 2.0.1's SecurityError while Rejected (B03.FR.08)
                return await self.error(msg_id, verdict.code, verdict.desc)
            if verdict is not None:
                return await self.result(msg_id, verdict)
        after = None
        try:
            answer = handler(payload)
            if type(answer) is _CORO:  # a handler that must wait for something first
                answer = await answer
            if type(answer) is tuple:
                answer, after = answer
        except CallError as e:  # the handler's own answer: that CALLERROR
            return await self.error(msg_id, e.code, e.desc)
        except Exception as e:
            log.exc("ocpp", "%s handler failed" % action, e)
            return await self.error(msg_id, "InternalError", "%s failed" % action)
        await self.result(msg_id, answer)
        if after:
            asyncio.create_task(after())

    async def result(self, msg_id, payload):
        try:
            if callable(payload):  # a large answer, as JSON text in pieces
                await self._send_parts(msg_id, payload)
            else:
                await self._send([_RESULT, msg_id, payload])
        except MemoryError as e:  # the answer does not fit the heap: say so
            gc.collect()
            log.exc("ocpp", "could not send answer", e)
            _event("no RAM to send an answer", "MemoryExhaustion", False)
            await self.error(msg_id, "InternalError", "answer too large for memory")
        except Exception as e:  # link gone: the CSMS will time out
            log.exc("ocpp", "could not send answer", e)

    async def error(self, msg_id, code, desc, event=True):
        log.warn("ocpp", "answering CALL %s with %s: %s" % (msg_id, code, desc))
        if event and code not in ("NotSupported", "InternalError", "SecurityError"):  # the CALL was not valid OCPP
            _event("%s: %s" % (code, desc), warn=False)
        try:
            await self._send([_ERROR, msg_id, code, desc, {}])
        except Exception as e:
            log.exc("ocpp", "could not send error", e)
