"""Development CSMS: a small OCPP 1.6 and 2.0.1 central system on the mobilityhouse `ocpp` library.

It accepts charge points at ws://host:port/<id>, answers every charge-point
initiated operation, records every frame in both directions and checks each one
the charge point sends against the official JSON schema of its action (OCPP 1.6 or
2.0.1, whichever the connection speaks), including the `date-time` formats the
library itself does not check.

Used three ways: `make run` (tools/demo.py), the test suite (as a library, in a
background thread), and by hand: `python tools/dev_csms.py --port 9000 [--ocpp 2.0.1,1.6]`.

Protocol choice (OCPP-J 2.0.1 part 4 §3.1.2, §3.2): the charge point offers `ocpp2.0.1`
and/or `ocpp1.6` in the WebSocket handshake, in its order of preference; this CSMS takes
the first of its own `protocols` (default `("ocpp1.6", "ocpp2.0.1")`) that was offered,
or, with `prefer="station"`, the first offered that it speaks. The default puts 1.6
first: every charge point that worked with this CSMS before 2.0.1 was added gets the same
protocol as before, and a test that wants 2.0.1 says so (`protocols=("ocpp2.0.1",)`, the
`csms201` fixture). `protocols` and `prefer` are read at each handshake, so a test may
change them between connections. With no common protocol the handshake completes
without a Sec-WebSocket-Protocol header and the connection is closed at once (part 4
§3.2), recorded in `no_protocol`. `offered` / `subprotocols` hold the offer and the
choice of every upgrade; `protocol[cp id]` the choice of its last connection; every
recorded frame has `.proto` ("ocpp1.6" / "ocpp2.0.1") and `calls(action, proto=...)`
filters on it.

A fair judge for fault-injection tests, as a real CSMS with a database is:
- OCPP 1.6: a StartTransaction repeated with the same (charge point, connectorId, idTag,
  meterStart, timestamp) gets the transactionId already given, and is counted in
  `duplicates["StartTransaction"]`; a MeterValues entry repeated for the same
  (charge point, transactionId, timestamp, values) is recorded once and counted in
  `duplicates["MeterValues"]`; a StopTransaction for an already stopped transaction
  is counted in `duplicates["StopTransaction"]` (and in `conflicts` if it differs);
  MeterValues/StopTransaction naming an unknown transactionId go to `orphans`;
- OCPP 2.0.1: `transactions201[transactionId]` = its TransactionEvent payloads in the
  order they arrived, each (transactionId, seqNo) once: a repeat is counted in
  `duplicates["TransactionEvent"]` (and in `conflicts` if it differs); a seqNo other
  than the next one of its transaction (0 first) is recorded in `seq_gaps` as
  (time, cp, transactionId, expected, got) -- part 6 allows late delivery in any order,
  the seqNo tell the CSMS what is missing (`missing_seq_nos(txid)`); a transaction
  whose first event is not `Started` goes to `orphans`;
- `stop_thread()` / `restart()`: the CSMS goes down (gracefully, or `abrupt=True`
  like a crash: connections dropped without a close frame) and comes back on the
  same port keeping its whole record (`transactions`, `transactions201`, `frames`, the
  id counter);
- `delay[action] = seconds` answers that action late; `silent[action] = n` (or True)
  leaves the next n (or all) CALLs of that action unanswered (recorded in `unanswered`);
  `errors[action] = (code, n or True)` answers the next n (or all) CALLs of that action
  with a CALLERROR of that code instead of its CALLRESULT (recorded in `errored`), as a
  CSMS that fails to process a message does (OCPP-J 1.6 §4.2.3); a dict instead of a
  code is sent as the CALLRESULT payload as it is (an invalid answer), and the CALL is
  not processed; `replies[action] = dict` merges those fields into the CALLRESULT that
  the CALL got after being processed normally (a callable `fn(request, answer) -> answer`
  may rewrite it), e.g. a TransactionEvent answered with idTokenInfo Invalid;
- security events (both versions): `security_events[(cp, type, timestamp, techInfo)]` =
  {"t": first arrival, "n": frames}, one record per distinct event (no id of its own: those
  four fields are its key, as in a database); a repeat is counted in `n` and in
  `duplicates["SecurityEventNotification"]`;
- `registration[cp id]`: the status of the last BootNotification answer; CALLs other
  than BootNotification that a charge point sends while Pending or Rejected are listed
  in `before_accepted` as (time, cp id, action) (OCPP 1.6 §4.2, 2.0.1 B02/B03: only
  what the CSMS asked for, e.g. a NotifyReport, may come then).

OCPP 2.0.1 (handler class `ChargePointHandler201`, on `ocpp.v201.ChargePoint`): Boot-
Notification (the same `boot_replies` as 1.6), Heartbeat, StatusNotification
(`status201[(cp, evseId, connectorId)]`), Authorize and TransactionEvent (idTokenInfo from
`tags`: {idToken: status, or a whole 2.0.1 idTokenInfo dict}; an unknown one Accepted, or
"Unknown" with accept_unknown_tags=False), MeterValues, NotifyReport (`reports[requestId]`
= its payloads in order; `report_data(requestId)`), NotifyEvent (`notify_events`),
NotifyMonitoringReport, SecurityEventNotification, DataTransfer (vendorId "devcsms"),
FirmwareStatusNotification, LogStatusNotification, SignCertificate (`csrs`) and the rest
of the charging-station-initiated messages. The checks add what OCPP-J 2.0.1 asks of a
frame beyond its schema: message ids of at most 36 characters, CALLERRORs of 5 elements
with a 2.0.1 error code (part 4 §4.2.3, §4.3), no unknown message type, date-times
with at most 3 decimals of a second (part 2, dateTime).

CSMS-initiated calls, the same for both protocols: `run_call(cp, payload)` with an
`ocpp.v16.call` or `ocpp.v201.call` object (the one the connection speaks) returns the
library's answer object (`raw=True`: the answer payload as sent, camelCase) and raises
the OCPPError of a CALLERROR; `call_raw(cp, action, payload)` sends any CALL unchecked and
returns the answer frame as a list; `send_raw` / `send_frame` send any text or frames.

Security (OCPP 1.6 security whitepaper §2, 2.0.1 A00): `serve(ssl=...)` / `start_in_thread(ssl=...)` serve
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
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jsonschema
import ocpp.v16
import ocpp.v201
import websockets
from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v201 import call_result as call_result201

V16 = "ocpp1.6"
V201 = "ocpp2.0.1"
PROTOCOLS = (V16, V201)
SCHEMAS = Path(ocpp.v16.__file__).parent / "schemas"
SCHEMAS201 = Path(ocpp.v201.__file__).parent / "schemas"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
# OCPP-J 2.0.1 part 4 §4.3: the only error codes a 2.0.1 CALLERROR may carry
ERROR_CODES201 = frozenset((
    "FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported", "NotImplemented",
    "NotSupported", "OccurrenceConstraintViolation", "PropertyConstraintViolation", "ProtocolError",
    "RpcFrameworkError", "SecurityError", "TypeConstraintViolation"))
log = logging.getLogger("csms")


def protocol_name(v):
    """"2.0.1", "ocpp2.0.1", "201" -> "ocpp2.0.1"; "1.6", "16" -> "ocpp1.6"."""
    v = v.strip().lower()
    v = v[4:] if v.startswith("ocpp") else v
    name = {"1.6": V16, "16": V16, "2.0.1": V201, "201": V201}.get(v)
    if name is None:
        raise ValueError("unknown OCPP version %r (this CSMS speaks 1.6 and 2.0.1)" % v)
    return name


def _client_cn(conn):
    # The subject CN of the TLS client certificate of a connection, None without one.
    cert = conn.transport.get_extra_info("peercert") if conn.transport else None
    if not cert:
        return None
    return dict(x[0] for x in cert.get("subject", ())).get("commonName", "")


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_schemas = {}


def _schema(name, proto=V16):
    # numbers as Decimal, as the ocpp library validates: 15.9 is a multiple of 0.1 then
    key = (proto, name)
    if key not in _schemas:
        path = (SCHEMAS201 if proto == V201 else SCHEMAS) / (name + ".json")
        schema = json.loads(path.read_text(encoding="utf-8-sig"), parse_float=Decimal)
        # the draft the schema names: draft-04 (1.6), draft-06 (2.0.1); same keywords in use
        _schemas[key] = (schema, jsonschema.validators.validator_for(schema, jsonschema.Draft4Validator)(schema))
    return _schemas[key]


def schema_errors(action, payload, response=False, proto=V16):
    """Every way `payload` breaks the official schema (of OCPP 1.6, or 2.0.1 with
    proto="ocpp2.0.1"), date-time formats included."""
    if not isinstance(action, str) or not re.match(r"^[A-Za-z0-9]+$", action):
        return ["no schema for action %r" % (action,)]
    name = action + ("Response" if response else "Request" if proto == V201 else "")
    try:
        schema, validator = _schema(name, proto)
    except FileNotFoundError:
        return ["no schema for action %r" % action]
    exact = json.loads(json.dumps(payload), parse_float=Decimal)
    errors = [e.message for e in validator.iter_errors(exact)]
    for path, v in _date_times(schema, schema, payload, ""):
        if not (isinstance(v, str) and RFC3339.match(v) and _valid_date(v)):
            errors.append("%s: %r is not an RFC 3339 date-time" % (path, v))
        elif proto == V201 and len(RFC3339.match(v).group(1) or ".") > 4:
            # OCPP 2.0.1 part 2, primitive dateTime: at most 3 decimal places of a second
            errors.append("%s: %r has more than 3 decimals of a second" % (path, v))
    return errors


def _valid_date(v):
    try:
        datetime.fromisoformat(v.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def _date_times(root, schema, value, path):
    # (path, value) of every date-time field present in value; 2.0.1 schemas use
    # local "$ref": "#/definitions/..." (1.6 ones have none)
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return
        schema = root
        for part in ref[2:].split("/"):
            schema = schema.get(part, {})
    if schema.get("format") == "date-time":
        yield path, value
    if isinstance(value, dict):
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                yield from _date_times(root, sub, value[k], path + "." + k)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _date_times(root, schema["items"], item, "%s[%d]" % (path, i))


class Frame(tuple):
    """One recorded frame, (time, direction, cp id, message); `.proto` is the OCPP
    version of its connection ("ocpp1.6" / "ocpp2.0.1")."""
    proto = V16


class Recorder:
    """Wraps a websockets connection: records and checks every frame."""

    def __init__(self, conn, csms, cp_id, proto=V16):
        self.conn = conn
        self.csms = csms
        self.cp_id = cp_id
        self.proto = proto
        self.request = conn.request
        self.sent_calls = {}  # our CALL ids -> action, to check the answers
        self.recv_calls = {}  # the charge point's CALL ids -> (action, payload), for the answer
        self.answers = {}  # our CALL ids -> the answer frame (a list), for run_call(raw=True)
        self.waiting = {}  # our CALL ids whose answer is wanted -> asyncio.Future of call_raw, or None

    async def recv(self):
        while True:
            text = await self.conn.recv()
            self.csms.record("<<", self.cp_id, text, self)
            answer = self.csms.error_for(self.cp_id, text)
            if answer is None:
                return text
            # The CALL never reaches the ocpp library's handler: nothing of it is recorded
            # as processed (no transaction numbered, no status kept).
            self.recv_calls.pop(json.loads(answer)[1], None)
            self.csms.record(">>", self.cp_id, answer, self)
            await self.conn.send(answer)

    async def send(self, text):
        csms = self.csms
        if text[:2] in ("[3", "[4"):
            try:
                msg = json.loads(text)
                action, request = self.recv_calls.pop(msg[1], (None, None))
            except (ValueError, IndexError, TypeError):
                msg, action, request = None, None, None
            left = csms.silent.get(action)
            if left:
                if left is not True:
                    csms.silent[action] = left - 1
                csms.unanswered.append((time.time(), self.cp_id, action, text))
                log.info("not answering %s to %s (silent)", action, self.cp_id)
                return
            if csms.delay.get(action):
                await asyncio.sleep(csms.delay[action])
            if action in csms.replies and msg and msg[0] == 3:
                change = csms.replies[action]
                msg[2] = change(request, msg[2]) if callable(change) else dict(msg[2], **change)
                text = json.dumps(msg)
            if action == "BootNotification" and msg and msg[0] == 3 and isinstance(msg[2], dict):
                csms.registration[self.cp_id] = msg[2].get("status")
        self.csms.record(">>", self.cp_id, text, self)
        await self.conn.send(text)

    def take(self, msg_id):
        """The payload of the charge point's CALL `msg_id`, as sent (camelCase)."""
        return self.recv_calls.get(msg_id, (None, {}))[1]


class ChargePointHandler(ocpp.v16.ChargePoint):
    """The CSMS side of one OCPP 1.6 charge point connection."""

    PROTOCOL = V16

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
        self.csms.security_event(self.id, type, timestamp, kw.get("tech_info"))
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


class ChargePointHandler201(ocpp.v201.ChargePoint):
    """The CSMS side of one OCPP 2.0.1 charging station connection.

    The library passes each handler the payload in snake_case; the bookkeeping keeps the
    payload as it was sent (`self._connection.take(call_unique_id)`), as tests read it."""

    PROTOCOL = V201

    def __init__(self, cp_id, conn, csms):
        super().__init__(cp_id, conn, response_timeout=csms.response_timeout)
        self.csms = csms

    def _sent(self, uid):
        return self._connection.take(uid)

    @on("BootNotification")
    def on_boot(self, call_unique_id, **kw):
        status, interval = self.csms.next_boot_reply()
        return call_result201.BootNotification(current_time=now_iso(), interval=interval, status=status)

    @on("Heartbeat")
    def on_heartbeat(self, **kw):
        return call_result201.Heartbeat(current_time=now_iso())

    @on("StatusNotification")
    def on_status(self, call_unique_id, **kw):
        p = self._sent(call_unique_id)
        self.csms.status201[(self.id, p["evseId"], p["connectorId"])] = p["connectorStatus"]
        return call_result201.StatusNotification()

    @on("Authorize")
    def on_authorize(self, call_unique_id, **kw):
        p = self._sent(call_unique_id)
        return call_result201.Authorize(id_token_info=self.csms.id_token_info(p["idToken"]))

    @on("TransactionEvent")
    def on_transaction_event(self, call_unique_id, **kw):
        answer = self.csms.transaction_event(self.id, self._sent(call_unique_id))
        return call_result201.TransactionEvent(**answer)

    @on("MeterValues")
    def on_meter_values(self, **kw):
        return call_result201.MeterValues()

    @on("NotifyReport")
    def on_notify_report(self, call_unique_id, **kw):
        p = self._sent(call_unique_id)
        self.csms.reports.setdefault(p["requestId"], []).append(p)
        return call_result201.NotifyReport()

    @on("NotifyMonitoringReport")
    def on_notify_monitoring_report(self, call_unique_id, **kw):
        p = self._sent(call_unique_id)
        self.csms.monitoring_reports.setdefault(p["requestId"], []).append(p)
        return call_result201.NotifyMonitoringReport()

    @on("NotifyEvent")
    def on_notify_event(self, call_unique_id, **kw):
        self.csms.notify_events.append((self.id, self._sent(call_unique_id)))
        return call_result201.NotifyEvent()

    @on("SecurityEventNotification")
    def on_security_event(self, call_unique_id, **kw):
        p = self._sent(call_unique_id)
        self.csms.security_event(self.id, p.get("type"), p.get("timestamp"), p.get("techInfo"))
        return call_result201.SecurityEventNotification()

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id, call_unique_id, **kw):
        if vendor_id != "devcsms":
            return call_result201.DataTransfer(status="UnknownVendorId")
        return call_result201.DataTransfer(status="Accepted", data=self._sent(call_unique_id).get("data"))

    @on("FirmwareStatusNotification")
    def on_fw(self, **kw):
        return call_result201.FirmwareStatusNotification()

    @on("LogStatusNotification")
    def on_log_status(self, **kw):
        return call_result201.LogStatusNotification()

    @on("SignCertificate")
    def on_sign_certificate(self, csr, **kw):
        # the CSR is kept in csms.csrs; a test's CA answers it with CertificateSigned
        self.csms.csrs.append((self.id, csr))
        return call_result201.SignCertificate(status=self.csms.sign_certificate_status)

    # ---- the rest of what a charging station may send: taken, nothing kept but the frames ----
    @on("PublishFirmwareStatusNotification")
    def on_publish_fw(self, **kw):
        return call_result201.PublishFirmwareStatusNotification()

    @on("ReservationStatusUpdate")
    def on_reservation_status(self, **kw):
        return call_result201.ReservationStatusUpdate()

    @on("ClearedChargingLimit")
    def on_cleared_limit(self, **kw):
        return call_result201.ClearedChargingLimit()

    @on("NotifyChargingLimit")
    def on_charging_limit(self, **kw):
        return call_result201.NotifyChargingLimit()

    @on("ReportChargingProfiles")
    def on_report_profiles(self, **kw):
        return call_result201.ReportChargingProfiles()

    @on("NotifyCustomerInformation")
    def on_customer_information(self, **kw):
        return call_result201.NotifyCustomerInformation()

    @on("NotifyDisplayMessages")
    def on_display_messages(self, **kw):
        return call_result201.NotifyDisplayMessages()

    @on("NotifyEVChargingNeeds")
    def on_ev_charging_needs(self, **kw):
        return call_result201.NotifyEVChargingNeeds(status="Accepted")

    @on("NotifyEVChargingSchedule")
    def on_ev_charging_schedule(self, **kw):
        return call_result201.NotifyEVChargingSchedule(status="Accepted")

    @on("GetCertificateStatus")
    def on_certificate_status(self, **kw):
        return call_result201.GetCertificateStatus(status="Failed")  # no OCSP responder here

    @on("Get15118EVCertificate")
    def on_15118_certificate(self, **kw):
        return call_result201.Get15118EVCertificate(status="Failed", exi_response="")


class DevCSMS:
    """A CSMS with a scriptable boot answer, an idTag list and a full frame record.

    protocols: the OCPP versions it speaks, in its order of preference (see the module
    docstring); prefer="station" takes the charge point's order instead."""

    def __init__(self, boot_replies=(), heartbeat_interval=300, tags=None, accept_unknown_tags=True,
                 response_timeout=10, reject_auth=False, passwords=None, protocols=PROTOCOLS, prefer="csms"):
        self.protocols = tuple(protocol_name(p) for p in protocols)
        if prefer not in ("csms", "station"):
            raise ValueError("prefer is 'csms' or 'station', not %r" % prefer)
        self.prefer = prefer
        self.offered = []  # the subprotocols every upgrade offered, in its order
        self.subprotocols = []  # the one chosen for it (None: no common one)
        self.no_protocol = []  # (time, cp id, offered) of every upgrade closed for want of a common one
        self.protocol = {}  # cp id -> the subprotocol of its last connection
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
        self.frames = []  # Frame (time, direction, cp id, message list), .proto
        self.violations = []  # schema problems in frames the charge point sent
        self.status = {}  # 1.6: (cp, connectorId) -> status
        self.transactions = {}
        self.registration = {}  # cp id -> status of its last BootNotification answer
        self.before_accepted = []  # (time, cp id, action) of CALLs sent while Pending / Rejected
        # OCPP 2.0.1 (see the module docstring)
        self.status201 = {}  # (cp, evseId, connectorId) -> connectorStatus
        self.transactions201 = {}  # transactionId -> [TransactionEvent payloads in order of arrival]
        self.tx_seq = {}  # transactionId -> {seqNo: payload}
        self.seq_gaps = []  # (time, cp, transactionId, expected seqNo, got)
        self.reports = {}  # NotifyReport requestId -> [payloads in order]
        self.monitoring_reports = {}  # NotifyMonitoringReport requestId -> [payloads]
        self.notify_events = []  # (cp, NotifyEvent payload)
        self.replies = {}  # action -> fields merged into its CALLRESULT, or fn(request, answer) -> answer
        self.tx_ids = itertools.count(1)
        self.handlers = {}  # cp id -> ChargePointHandler / ChargePointHandler201 of the live connection
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
        # security events (both versions), one record per distinct (cp, type, timestamp, techInfo):
        # what a CSMS database would key them on (the event carries no id of its own); a repeat
        # of one already recorded (a retransmission after a lost answer or a restart) is counted
        # in duplicates["SecurityEventNotification"] and in the record's "n"
        self.security_events = {}  # (cp, type, timestamp, techInfo) -> {"t": first arrival, "n": frames}
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
        v = self.tags.get(id_tag, "Accepted" if self.accept_unknown_tags else "Invalid")
        return v["status"] if isinstance(v, dict) else v

    def id_token_info(self, id_token):
        """2.0.1 idTokenInfo for an idToken {idToken, type} (or the idToken string)."""
        token = id_token.get("idToken") if isinstance(id_token, dict) else id_token
        v = self.tags.get(token, "Accepted" if self.accept_unknown_tags else "Unknown")
        return dict(v) if isinstance(v, dict) else {"status": v}

    def transaction_event(self, cp_id, p):
        """Book a 2.0.1 TransactionEvent (the module docstring says how); -> the
        TransactionEventResponse fields (snake_case, for call_result201)."""
        txid = p["transactionInfo"]["transactionId"]
        seq = p["seqNo"]
        seen = self.tx_seq.setdefault(txid, {})
        events = self.transactions201.setdefault(txid, [])
        if seq in seen:  # a repeat of an event already booked
            self.duplicates["TransactionEvent"] += 1
            self.duplicate_log.append((time.time(), cp_id, "TransactionEvent", txid))
            log.info("%s repeated TransactionEvent %s seqNo %d", cp_id, txid, seq)
            if seen[seq] != p:
                self.conflicts.append((txid, p))
        else:
            expected = max(seen) + 1 if seen else 0
            if seq != expected:
                self.seq_gaps.append((time.time(), cp_id, txid, expected, seq))
                log.info("%s TransactionEvent %s: seqNo %d where %d was next", cp_id, txid, seq, expected)
            if not events and p["eventType"] != "Started":
                self.orphans.append((time.time(), cp_id, "TransactionEvent", txid))
            seen[seq] = p
            events.append(p)
        answer = {}
        if "idToken" in p:  # E01..E03: the CSMS answers with the token's idTokenInfo
            answer["id_token_info"] = self.id_token_info(p["idToken"])
        return answer

    def security_event(self, cp_id, kind, timestamp, tech_info):
        """Book a SecurityEventNotification (the `security_events` record)."""
        key = (cp_id, kind, timestamp, tech_info)
        rec = self.security_events.get(key)
        if rec is None:
            self.security_events[key] = {"t": time.time(), "n": 1}
        else:
            rec["n"] += 1
            self.duplicates["SecurityEventNotification"] += 1
            self.duplicate_log.append((time.time(), cp_id, "SecurityEventNotification", None))

    def missing_seq_nos(self, txid):
        """seqNo values below the highest received that never came, for a 2.0.1 transaction."""
        seen = self.tx_seq.get(txid, {})
        return sorted(set(range(max(seen) + 1)) - set(seen)) if seen else []

    def report_data(self, request_id):
        """Every reportData entry of the NotifyReports of `request_id`, in seqNo order."""
        parts = sorted(self.reports.get(request_id, ()), key=lambda p: p["seqNo"])
        return [d for p in parts for d in p.get("reportData", ())]

    def report_done(self, request_id):
        """True once the NotifyReport of `request_id` with tbc false (or absent) has come."""
        return any(not p.get("tbc", False) for p in self.reports.get(request_id, ()))

    # ---- the record -----------------------------------------------------
    def record(self, direction, cp_id, text, rec):
        # Any frame at all may pass here (malformed-input tests send garbage).
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            msg = text
        frame = Frame((time.time(), direction, cp_id, msg))
        frame.proto = proto = getattr(rec, "proto", V16)
        self.frames.append(frame)
        if not (isinstance(msg, list) and len(msg) > 2 and isinstance(msg[1], str)):
            if direction == "<<":
                self.violations.append((msg, ["not an OCPP-J message"]))
            return
        if direction == ">>" and msg[0] == 2 and isinstance(msg[2], str):
            rec.sent_calls[msg[1]] = msg[2]
        if direction == "<<" and msg[0] == 2 and len(msg) == 4 and isinstance(msg[2], str):
            rec.recv_calls[msg[1]] = (msg[2], msg[3])
            if msg[2] != "BootNotification" and self.registration.get(cp_id) in ("Pending", "Rejected"):
                self.before_accepted.append((time.time(), cp_id, msg[2]))
        if direction == "<<" and msg[0] in (3, 4):
            if msg[1] in rec.waiting:
                waiting = rec.waiting.pop(msg[1])
                rec.answers[msg[1]] = msg
                if waiting is not None and not waiting.done():
                    waiting.set_result(msg)
        if direction == "<<":
            if msg[0] == 2:
                problems = schema_errors(msg[2], msg[3], proto=proto) if len(msg) == 4 else ["a CALL has 4 elements"]
            elif msg[0] == 3 and msg[1] in rec.sent_calls:
                problems = schema_errors(rec.sent_calls[msg[1]], msg[2], response=True, proto=proto)
            else:
                problems = []
            if proto == V201:
                problems = self._rpc_problems201(msg, rec) + problems
            if problems:
                self.violations.append((msg, problems))
                log.error("%s sent an invalid frame %s: %s", cp_id, text, problems)

    @staticmethod
    def _rpc_problems201(msg, rec):
        # OCPP-J 2.0.1 part 4 §4.1.4, §4.2, §4.3: what a frame must be beyond its payload
        problems = []
        if len(msg[1]) > 36:
            problems.append("a message id has at most 36 characters")
        if msg[0] == 3 and len(msg) != 3:
            problems.append("a CALLRESULT has 3 elements")
        elif msg[0] == 4:
            if len(msg) != 5:
                problems.append("a CALLERROR has 5 elements")
            else:
                if msg[2] not in ERROR_CODES201:
                    problems.append("%r is not an OCPP 2.0.1 error code" % (msg[2],))
                if not isinstance(msg[3], str) or len(msg[3]) > 255:
                    problems.append("errorDescription is a string of at most 255 characters")
                if not isinstance(msg[4], dict):
                    problems.append("errorDetails is an object")
        elif msg[0] not in (2, 3):
            problems.append("unknown message type %r" % (msg[0],))
        return problems

    def calls(self, action=None, direction="<<", proto=None):
        """CALL messages in order: [(id, action, payload)]; proto: only those of
        connections of that OCPP version ("ocpp1.6" / "ocpp2.0.1")."""
        return [(m[1], m[2], m[3]) for f in self.frames for _, d, _, m in (f,)
                if d == direction and isinstance(m, list) and len(m) == 4 and m[0] == 2
                and (action is None or m[2] == action) and (proto is None or f.proto == proto)]

    def actions(self, proto=None):
        return [a for _, a, _ in self.calls(proto=proto)]

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

    def _select_subprotocol(self, conn, offered):
        # OCPP-J part 4 §3.1.2: the charge point lists what it speaks, best first; we choose.
        conn.ocpp_offered = list(offered)
        if self.prefer == "station":
            common = [p for p in offered if p in self.protocols]
        else:
            common = [p for p in self.protocols if p in offered]
        return common[0] if common else None  # None: the handshake goes on without one (§3.2)

    async def _handler(self, conn):
        # the last path segment, percent-decoded (OCPP-J §3.1.1); a query is not part of it
        cp_id = unquote(urlsplit(conn.request.path).path.rstrip("/").split("/")[-1])
        self.paths.append(conn.request.path)
        self.auth.append(conn.request.headers.get("Authorization"))
        self.client_cns.append(_client_cn(conn))
        self.ports.append(conn.transport.get_extra_info("sockname")[1])
        offered = getattr(conn, "ocpp_offered", [])
        proto = conn.subprotocol
        self.offered.append(offered)
        self.subprotocols.append(proto)
        if proto is None:  # part 4 §3.2: no Sec-WebSocket-Protocol in the answer, then close at once
            self.no_protocol.append((time.time(), cp_id, offered))
            log.info("charge point %s offered %s, this CSMS speaks %s: no common OCPP version, closing",
                     cp_id, offered or "no subprotocol", list(self.protocols))
            await conn.close(1002, "no common OCPP version")
            return
        self.connections += 1
        self.protocol[cp_id] = proto
        log.info("charge point %s connected (%s)", cp_id, proto)
        cls = ChargePointHandler201 if proto == V201 else ChargePointHandler
        handler = cls(cp_id, Recorder(conn, self, cp_id, proto), self)
        self.handlers[cp_id] = handler
        try:
            await handler.start()
        except websockets.ConnectionClosed:
            log.info("charge point %s disconnected", cp_id)
        finally:
            if self.handlers.get(cp_id) is handler:
                del self.handlers[cp_id]

    def _serve(self, host, port, ssl):
        return websockets.serve(self._handler, host, port, select_subprotocol=self._select_subprotocol,
                                process_request=self._process_request, ssl=ssl)

    async def serve(self, host="127.0.0.1", port=0, ssl=None):
        self.loop = asyncio.get_running_loop()
        self.server = await self._serve(host, port, ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _listen_also(self, host, port, ssl):
        server = await self._serve(host, port, ssl)
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

    def run_call(self, cp_id, payload, timeout=15, raw=False):
        """Send a CSMS-initiated CALL (an ocpp.v16.call or ocpp.v201.call object, of the
        version the connection speaks) and return its answer: the library's object, or
        with raw=True the answer payload as the charge point sent it. A CALLERROR
        raises the library's OCPPError (its .code is the error code)."""
        handler = self.handlers[cp_id]
        module = type(payload).__module__
        want = "ocpp.v201." if handler.PROTOCOL == V201 else "ocpp.v16."
        if not module.startswith(want):
            raise TypeError("%s speaks %s on this connection: send a %scall object, not %s.%s"
                            % (cp_id, handler.PROTOCOL, want, module, type(payload).__name__))
        uid = str(uuid.uuid4())
        if raw:
            handler._connection.waiting[uid] = None  # keep the answer frame
        fut = asyncio.run_coroutine_threadsafe(handler.call(payload, suppress=False, unique_id=uid), self.loop)
        answer = fut.result(timeout)
        if raw:
            return handler._connection.answers.pop(uid)[2]
        return answer

    def call_raw(self, cp_id, action, payload, timeout=10, msg_id=None):
        """Send [2, id, action, payload] as it is (no schema check: for bad-input tests)
        and return the charge point's answer frame, a list ([3, id, payload] or
        [4, id, code, description, details])."""
        rec = self.handlers[cp_id]._connection
        msg_id = msg_id or str(uuid.uuid4())

        async def go():
            slot = rec.waiting[msg_id] = self.loop.create_future()
            await rec.send(json.dumps([2, msg_id, action, payload]))
            try:
                return await asyncio.wait_for(slot, timeout)
            finally:
                rec.waiting.pop(msg_id, None)
                rec.answers.pop(msg_id, None)

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(timeout + 1)

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
    ap.add_argument("--ocpp", default="1.6,2.0.1", metavar="VERSIONS",
                    help="the OCPP versions spoken, in this CSMS's order of preference (default 1.6,2.0.1)")
    ap.add_argument("--prefer", choices=("csms", "station"), default="csms",
                    help="whose order of preference decides when both sides speak several (default csms)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    passwords = dict(p.split("=", 1) for p in args.password) if args.password else None
    try:
        protocols = [protocol_name(v) for v in args.ocpp.split(",")]
    except ValueError as e:
        ap.error(str(e))
    csms = DevCSMS(heartbeat_interval=args.heartbeat, passwords=passwords, protocols=protocols,
                   prefer=args.prefer)
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
        log.info("dev CSMS listening on %s://%s:%d/<charge point id>, speaking %s", "wss" if tls else "ws",
                 args.host, port, ", ".join(csms.protocols))
        await asyncio.Future()

    asyncio.run(run())


if __name__ == "__main__":
    main()
