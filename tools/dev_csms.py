"""Development CSMS: a small OCPP 1.6 central system on the mobilityhouse `ocpp` library.

It accepts charge points at ws://host:port/<id>, answers every charge-point
initiated operation, records every frame in both directions and checks each one
the charge point sends against the official OCPP 1.6 JSON schema of its action,
including the `date-time` formats the library itself does not check.

Used three ways: `make run` (tools/demo.py), the test suite (as a library, in a
background thread), and by hand: `python tools/dev_csms.py --port 9000`.

A fair judge for fault-injection tests, as a real CSMS with a database is:
- a StartTransaction repeated with the same (charge point, connectorId, idTag,
  meterStart, timestamp) gets the transactionId already given, and is counted in
  `duplicates["StartTransaction"]`; a MeterValues entry repeated for the same
  (charge point, transactionId, timestamp, values) is recorded once and counted in
  `duplicates["MeterValues"]`; a StopTransaction for an already stopped transaction
  is counted in `duplicates["StopTransaction"]` (and in `conflicts` if it differs);
  MeterValues/StopTransaction naming an unknown transactionId go to `orphans`;
- `stop_thread()` / `restart()`: the CSMS goes down (gracefully, or `abrupt=True`
  like a crash: connections dropped without a close frame) and comes back on the
  same port keeping its whole record (`transactions`, `frames`, the id counter);
- `delay[action] = seconds` answers that action late; `silent[action] = n` (or True)
  leaves the next n (or all) CALLs of that action unanswered (recorded in `unanswered`);
  `errors[action] = (code, n or True)` answers the next n (or all) CALLs of that action
  with a CALLERROR of that code instead of its CALLRESULT (recorded in `errored`), as a
  CSMS that fails to process a message does (OCPP-J 1.6 §4.2.3); a dict instead of a
  code is sent as the CALLRESULT payload as it is (an invalid answer).

Security (OCPP 1.6 security whitepaper §2): `serve(ssl=...)` / `start_in_thread(ssl=...)` serve
wss:// (a server context that requires client certificates makes it profile 3);
`add_listener(ssl=None)` opens another port on the same CSMS (one per profile, A00.FR.006);
`passwords = {cp id: key}` makes it check HTTP Basic auth: a charge point in it that presents
neither that password nor a TLS client certificate gets HTTP 401 (recorded in `refused`).
Every upgrade records its Authorization header (`auth`), the client certificate's subject
CN (`client_cns`, None without one) and the listening port (`ports`).
"""
import argparse
import asyncio
import base64
import collections
import itertools
import json
import logging
import re
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jsonschema
import ocpp.v16
import websockets
from ocpp.routing import after, on
from ocpp.v16 import call_result

SCHEMAS = Path(ocpp.v16.__file__).parent / "schemas"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
log = logging.getLogger("csms")


def _client_cn(conn):
    # The subject CN of the TLS client certificate of a connection, None without one.
    cert = conn.transport.get_extra_info("peercert") if conn.transport else None
    if not cert:
        return None
    return dict(x[0] for x in cert.get("subject", ())).get("commonName", "")


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _schema(name):
    # numbers as Decimal, as the ocpp library validates: 15.9 is a multiple of 0.1 then
    return json.loads((SCHEMAS / (name + ".json")).read_text(encoding="utf-8-sig"), parse_float=Decimal)


def schema_errors(action, payload, response=False):
    """Every way `payload` breaks the official schema, date-time formats included."""
    try:
        schema = _schema(action + ("Response" if response else ""))
    except FileNotFoundError:
        return ["no schema for action %r" % action]
    exact = json.loads(json.dumps(payload), parse_float=Decimal)
    errors = [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(exact)]
    errors += ["%s: %r is not an RFC 3339 date-time" % (path, v) for path, v in _date_times(schema, payload, "")
               if not (isinstance(v, str) and RFC3339.match(v) and _valid_date(v))]
    return errors


def _valid_date(v):
    try:
        datetime.fromisoformat(v.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def _date_times(schema, value, path):
    if schema.get("format") == "date-time":
        yield path, value
    if isinstance(value, dict):
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                yield from _date_times(sub, value[k], path + "." + k)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _date_times(schema["items"], item, "%s[%d]" % (path, i))


class Recorder:
    """Wraps a websockets connection: records and checks every frame."""

    def __init__(self, conn, csms, cp_id):
        self.conn = conn
        self.csms = csms
        self.cp_id = cp_id
        self.request = conn.request
        self.sent_calls = {}  # our CALL ids -> action, to check the answers
        self.recv_calls = {}  # the charge point's CALL ids -> action, for delay/silent

    async def recv(self):
        while True:
            text = await self.conn.recv()
            self.csms.record("<<", self.cp_id, text, self)
            answer = self.csms.error_for(self.cp_id, text)
            if answer is None:
                return text
            # The CALL never reaches the ocpp library's handler: nothing of it is recorded
            # as processed (no transaction numbered, no status kept).
            self.csms.record(">>", self.cp_id, answer, self)
            await self.conn.send(answer)

    async def send(self, text):
        csms = self.csms
        if (csms.delay or csms.silent) and text[:2] in ("[3", "[4"):
            try:
                action = self.recv_calls.pop(json.loads(text)[1], None)
            except (ValueError, IndexError, TypeError):
                action = None
            left = csms.silent.get(action)
            if left:
                if left is not True:
                    csms.silent[action] = left - 1
                csms.unanswered.append((time.time(), self.cp_id, action, text))
                log.info("not answering %s to %s (silent)", action, self.cp_id)
                return
            if csms.delay.get(action):
                await asyncio.sleep(csms.delay[action])
        self.csms.record(">>", self.cp_id, text, self)
        await self.conn.send(text)


class ChargePointHandler(ocpp.v16.ChargePoint):
    """The CSMS side of one charge point connection."""

    def __init__(self, cp_id, conn, csms):
        super().__init__(cp_id, conn, response_timeout=csms.response_timeout)
        self.csms = csms

    @on("BootNotification")
    def on_boot(self, charge_point_vendor, charge_point_model, **kw):
        status, interval = self.csms.next_boot_reply()
        return call_result.BootNotification(current_time=now_iso(), interval=interval, status=status)

    @on("Heartbeat")
    def on_heartbeat(self):
        return call_result.Heartbeat(current_time=now_iso())

    @on("StatusNotification")
    def on_status(self, connector_id, error_code, status, **kw):
        self.csms.status[(self.id, connector_id)] = status
        return call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag):
        return call_result.Authorize(id_tag_info={"status": self.csms.tag_status(id_tag)})

    @on("StartTransaction")
    def on_start(self, connector_id, id_tag, meter_start, timestamp, **kw):
        csms = self.csms
        key = (self.id, connector_id, id_tag, meter_start, timestamp)
        tx_id = csms.start_keys.get(key)
        if tx_id is not None:  # a repeat of a start we already numbered
            csms.duplicates["StartTransaction"] += 1
            csms.duplicate_log.append((time.time(), self.id, "StartTransaction", tx_id))
            log.info("%s repeated StartTransaction %s: transaction %d again", self.id, key, tx_id)
        else:
            tx_id = next(csms.tx_ids)
            csms.start_keys[key] = tx_id
            csms.transactions[tx_id] = {"cp": self.id, "connector": connector_id, "idTag": id_tag,
                                        "meterStart": meter_start, "start": timestamp, "meterValues": []}
        return call_result.StartTransaction(transaction_id=tx_id,
                                            id_tag_info={"status": csms.tag_status(id_tag)})

    @on("MeterValues")
    def on_meter_values(self, connector_id, meter_value, transaction_id=None):
        csms = self.csms
        tx = csms.transactions.get(transaction_id)
        if tx is not None:
            for mv in meter_value:
                key = (self.id, transaction_id, json.dumps(mv, sort_keys=True))
                if key in csms.meter_keys:
                    csms.duplicates["MeterValues"] += 1
                    csms.duplicate_log.append((time.time(), self.id, "MeterValues", transaction_id))
                else:
                    csms.meter_keys.add(key)
                    tx["meterValues"].append(mv)
        elif transaction_id is not None:
            csms.orphans.append((time.time(), self.id, "MeterValues", transaction_id))
        return call_result.MeterValues()

    @on("StopTransaction")
    def on_stop(self, meter_stop, timestamp, transaction_id, **kw):
        csms = self.csms
        tx = csms.transactions.get(transaction_id)
        if tx is None:
            csms.orphans.append((time.time(), self.id, "StopTransaction", transaction_id))
        elif "meterStop" in tx:
            csms.duplicates["StopTransaction"] += 1
            csms.duplicate_log.append((time.time(), self.id, "StopTransaction", transaction_id))
            if (tx["meterStop"], tx["stop"], tx["reason"]) != (meter_stop, timestamp, kw.get("reason")):
                csms.conflicts.append((transaction_id, dict(meterStop=meter_stop, stop=timestamp,
                                                            reason=kw.get("reason"))))
        else:
            tx.update(meterStop=meter_stop, stop=timestamp, reason=kw.get("reason"))
        return call_result.StopTransaction(id_tag_info={"status": "Accepted"})

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id, **kw):
        if vendor_id != "devcsms":
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="Accepted", data=kw.get("data"))

    @on("DiagnosticsStatusNotification")
    def on_diag(self, status):
        return call_result.DiagnosticsStatusNotification()

    @on("FirmwareStatusNotification")
    def on_fw(self, status):
        return call_result.FirmwareStatusNotification()

    # ---- security whitepaper (the charge point's messages) ----
    @on("SecurityEventNotification")
    def on_security_event(self, type, timestamp, **kw):
        return call_result.SecurityEventNotification()

    @on("LogStatusNotification")
    def on_log_status(self, status, **kw):
        return call_result.LogStatusNotification()

    @on("SignedFirmwareStatusNotification")
    def on_signed_fw(self, status, **kw):
        return call_result.SignedFirmwareStatusNotification()

    @on("SignCertificate")
    def on_sign_certificate(self, csr):
        # the CSR is kept in csms.csrs; a test's CA answers it with CertificateSigned
        self.csms.csrs.append((self.id, csr))
        return call_result.SignCertificate(status=self.csms.sign_certificate_status)


class DevCSMS:
    """A CSMS with a scriptable boot answer, an idTag list and a full frame record."""

    def __init__(self, boot_replies=(), heartbeat_interval=300, tags=None, accept_unknown_tags=True,
                 response_timeout=10, reject_auth=False, passwords=None):
        self.boot_replies = list(boot_replies)  # [(status, interval)], then Accepted
        self.heartbeat_interval = heartbeat_interval
        self.tags = tags if tags is not None else {}
        self.accept_unknown_tags = accept_unknown_tags
        self.response_timeout = response_timeout
        self.reject_auth = reject_auth  # answer the WebSocket upgrade with 401
        self.passwords = passwords  # {cp id: AuthorizationKey}: Basic auth checked (see the docstring)
        self.refused = []  # (time, cp id, why) of every upgrade answered with 401
        self.client_cns = []  # the TLS client certificate's subject CN of every upgrade (None: none)
        self.ports = []  # the listening port of every upgrade
        self.frames = []  # (time, direction, cp id, message list)
        self.violations = []  # schema problems in frames the charge point sent
        self.status = {}
        self.transactions = {}
        self.tx_ids = itertools.count(1)
        self.handlers = {}  # cp id -> ChargePointHandler of the live connection
        self.connections = 0
        self.paths = []  # the request path of every WebSocket upgrade, as sent
        self.auth = []  # its Authorization header (None without one)
        self.loop = None
        self.server = None
        self.port = None
        # fair-judge record (see the module docstring)
        self.start_keys = {}  # (cp, connectorId, idTag, meterStart, timestamp) -> transactionId
        self.meter_keys = set()  # (cp, transactionId, meterValue as JSON)
        self.duplicates = collections.Counter()  # action -> repeats absorbed
        self.duplicate_log = []  # (time, cp, action, transactionId)
        self.conflicts = []  # (transactionId, second StopTransaction that differs)
        self.orphans = []  # (time, cp, action, unknown transactionId)
        self.delay = {}  # action -> seconds before answering
        self.silent = {}  # action -> CALLs left unanswered (int) or True for all
        self.unanswered = []  # (time, cp, action, the answer not sent)
        self.errors = {}  # action -> (CALLERROR code, CALLs left to answer so: int or True)
        self.errored = []  # (time, cp, action, code) of the CALLERRORs sent
        self.restarts = 0
        self.csrs = []  # (cp id, PEM CSR) of every SignCertificate
        self.sign_certificate_status = "Accepted"
        self._listen = None  # (host, port, ssl) of the last start_in_thread
        self.listeners = []  # [(server, host, port, ssl)] opened by add_listener

    # ---- behaviour ------------------------------------------------------
    def next_boot_reply(self):
        if self.boot_replies:
            return self.boot_replies.pop(0)
        return "Accepted", self.heartbeat_interval

    def error_for(self, cp_id, text):
        # The CALLERROR that `errors` asks for, as text, for a CALL of the charge point; else None.
        if not self.errors or not isinstance(text, str) or not text.startswith("[2"):
            return None
        try:
            msg = json.loads(text)
            msg_id, action = msg[1], msg[2]
        except (ValueError, IndexError, TypeError, KeyError):
            return None
        if action not in self.errors:
            return None
        code, left = self.errors[action]
        if left is not True:
            if left <= 1:
                del self.errors[action]
            else:
                self.errors[action] = (code, left - 1)
        self.errored.append((time.time(), cp_id, action, code))
        log.info("answering %s of %s with CALLERROR %s", action, cp_id, code)
        if isinstance(code, dict):
            return json.dumps([3, msg_id, code])
        return json.dumps([4, msg_id, code, "dev CSMS: %s answered with an error on purpose" % action, {}])

    def tag_status(self, id_tag):
        return self.tags.get(id_tag, "Accepted" if self.accept_unknown_tags else "Invalid")

    # ---- the record -----------------------------------------------------
    def record(self, direction, cp_id, text, rec):
        # Any frame at all may pass here (malformed-input tests send garbage).
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            msg = text
        self.frames.append((time.time(), direction, cp_id, msg))
        if not (isinstance(msg, list) and len(msg) > 2 and isinstance(msg[1], str)):
            if direction == "<<":
                self.violations.append((msg, ["not an OCPP-J message"]))
            return
        if direction == ">>" and msg[0] == 2 and isinstance(msg[2], str):
            rec.sent_calls[msg[1]] = msg[2]
        if direction == "<<" and (self.delay or self.silent) and msg[0] == 2:
            rec.recv_calls[msg[1]] = msg[2]
        if direction == "<<":
            if msg[0] == 2:
                problems = schema_errors(msg[2], msg[3]) if len(msg) == 4 else ["a CALL has 4 elements"]
            elif msg[0] == 3 and msg[1] in rec.sent_calls:
                problems = schema_errors(rec.sent_calls[msg[1]], msg[2], response=True)
            else:
                problems = []
            if problems:
                self.violations.append((msg, problems))
                log.error("%s sent an invalid frame %s: %s", cp_id, text, problems)

    def calls(self, action=None, direction="<<"):
        """CALL messages in order: [(id, action, payload)]."""
        return [(m[1], m[2], m[3]) for _, d, _, m in self.frames
                if d == direction and isinstance(m, list) and len(m) == 4 and m[0] == 2
                and (action is None or m[2] == action)]

    def actions(self):
        return [a for _, a, _ in self.calls()]

    # ---- server ---------------------------------------------------------
    async def _process_request(self, conn, request):
        if self.reject_auth:
            return conn.respond(401, "Unauthorized\n")
        if self.passwords is not None:
            cp_id = unquote(urlsplit(request.path).path.rstrip("/").split("/")[-1])
            want = self.passwords.get(cp_id)
            if want is not None and not _client_cn(conn):
                got = request.headers.get("Authorization")
                if got != "Basic " + base64.b64encode(("%s:%s" % (cp_id, want)).encode()).decode():
                    why = "no Basic auth" if got is None else "wrong Basic auth credentials"
                    self.refused.append((time.time(), cp_id, why))
                    log.info("refusing %s: %s", cp_id, why)
                    return conn.respond(401, "Unauthorized\n")
        return None

    async def _handler(self, conn):
        # the last path segment, percent-decoded (OCPP-J §3.1.1); a query is not part of it
        cp_id = unquote(urlsplit(conn.request.path).path.rstrip("/").split("/")[-1])
        self.paths.append(conn.request.path)
        self.auth.append(conn.request.headers.get("Authorization"))
        self.client_cns.append(_client_cn(conn))
        self.ports.append(conn.transport.get_extra_info("sockname")[1])
        self.connections += 1
        log.info("charge point %s connected", cp_id)
        handler = ChargePointHandler(cp_id, Recorder(conn, self, cp_id), self)
        self.handlers[cp_id] = handler
        try:
            await handler.start()
        except websockets.ConnectionClosed:
            log.info("charge point %s disconnected", cp_id)
        finally:
            if self.handlers.get(cp_id) is handler:
                del self.handlers[cp_id]

    async def serve(self, host="127.0.0.1", port=0, ssl=None):
        self.loop = asyncio.get_running_loop()
        self.server = await websockets.serve(self._handler, host, port, subprotocols=["ocpp1.6"],
                                             process_request=self._process_request, ssl=ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _listen_also(self, host, port, ssl):
        server = await websockets.serve(self._handler, host, port, subprotocols=["ocpp1.6"],
                                        process_request=self._process_request, ssl=ssl)
        port = server.sockets[0].getsockname()[1]
        self.listeners.append((server, host, port, ssl))
        return port

    def add_listener(self, ssl=None, host="127.0.0.1", port=0):
        """Another port of this CSMS (started with start_in_thread), e.g. wss:// beside ws://."""
        return asyncio.run_coroutine_threadsafe(self._listen_also(host, port, ssl), self.loop).result(10)

    async def close(self, abrupt=False):
        # abrupt: like a crash, every connection dropped without a close frame.
        if abrupt:
            for h in list(self.handlers.values()):
                transport = getattr(h._connection.conn, "transport", None)
                if transport is not None:
                    transport.abort()
        for server, _, _, _ in self.listeners:
            server.close(close_connections=not abrupt)
        self.server.close(close_connections=not abrupt)
        try:
            for server, _, _, _ in self.listeners:
                await asyncio.wait_for(server.wait_closed(), 5)
            await asyncio.wait_for(self.server.wait_closed(), 5)
        except asyncio.TimeoutError:  # a peer that does not answer the close (half-open link)
            for h in list(self.handlers.values()):
                transport = getattr(h._connection.conn, "transport", None)
                if transport is not None:
                    transport.abort()
            await asyncio.wait_for(self.server.wait_closed(), 5)

    # ---- for tests running the CSMS in a background thread ---------------
    def start_in_thread(self, host="127.0.0.1", port=0, ssl=None):
        self._listen = (host, port, ssl)
        ready = threading.Event()

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.serve(host, port, ssl))
            ready.set()
            loop.run_forever()
            loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("dev CSMS did not start")
        return self.port

    def stop_thread(self, abrupt=False):
        fut = asyncio.run_coroutine_threadsafe(self.close(abrupt), self.loop)
        fut.result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.handlers.clear()

    def restart(self, down_for=0.0, abrupt=False):
        """Stop the CSMS and start it again on the same port; the record is kept."""
        host, _, ssl = self._listen
        self.stop_thread(abrupt)
        if down_for:
            time.sleep(down_for)
        self.restarts += 1
        extra, self.listeners = self.listeners, []
        port = self.start_in_thread(host, self.port, ssl)
        for _, h, p, tls in extra:  # the other ports come back too
            asyncio.run_coroutine_threadsafe(self._listen_also(h, p, tls), self.loop).result(10)
        return port

    def run_call(self, cp_id, payload, timeout=15):
        """Send a CSMS-initiated CALL (an ocpp.v16.call object) and return its answer."""
        handler = self.handlers[cp_id]
        fut = asyncio.run_coroutine_threadsafe(handler.call(payload, suppress=False), self.loop)
        return fut.result(timeout)

    def send_raw(self, cp_id, text):
        """Send any text frame to the charge point (for malformed-input tests)."""
        handler = self.handlers[cp_id]
        fut = asyncio.run_coroutine_threadsafe(handler._connection.send(text), self.loop)
        return fut.result(5)

    def send_frame(self, cp_id, data, text=None):
        """Send str or bytes as one frame; text=True sends bytes as a Text frame without
        checking their UTF-8 (invalid UTF-8 tests), text=False a str as a Binary frame.
        A list of str (or of bytes) goes out as one message in that many fragments."""
        rec = self.handlers[cp_id]._connection
        self.record(">>", cp_id, data[0][:0].join(data) if isinstance(data, list) else data, rec)
        fut = asyncio.run_coroutine_threadsafe(rec.conn.send(data, text=text), self.loop)
        return fut.result(10)

    def drop(self, cp_id):
        """Close the live connection of a charge point abruptly."""
        handler = self.handlers[cp_id]
        fut = asyncio.run_coroutine_threadsafe(handler._connection.conn.close(), self.loop)
        return fut.result(5)

    def wait_for(self, predicate, timeout=20, what="condition"):
        end = time.time() + timeout
        while time.time() < end:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError("dev CSMS: timed out waiting for " + what)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--heartbeat", type=int, default=300, help="heartbeat interval given at boot (s)")
    ap.add_argument("--cert", help="serve wss:// with this server certificate (PEM, with --key)")
    ap.add_argument("--key", help="the server certificate's private key (PEM)")
    ap.add_argument("--client-ca", help="wss:// only: require a client certificate from this CA (profile 3)")
    ap.add_argument("--password", action="append", default=[], metavar="CP=KEY",
                    help="check HTTP Basic auth of charge point CP (profiles 1 and 2); repeatable")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    passwords = dict(p.split("=", 1) for p in args.password) if args.password else None
    csms = DevCSMS(heartbeat_interval=args.heartbeat, passwords=passwords)
    tls = None
    if args.cert:
        import ssl
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            tls.verify_mode = ssl.CERT_REQUIRED
            tls.load_verify_locations(args.client_ca)

    async def run():
        port = await csms.serve(args.host, args.port, tls)
        log.info("dev CSMS listening on %s://%s:%d/<charge point id>", "wss" if tls else "ws", args.host, port)
        await asyncio.Future()

    asyncio.run(run())


if __name__ == "__main__":
    main()
