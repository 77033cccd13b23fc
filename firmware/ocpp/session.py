# What a ChargePoint of either OCPP version does the same way: one WebSocket
# session (the reader and the talker side by side, a keepalive), the send loop
# over the persistent outbox with its retry rule, idling with Heartbeats, the
# boot's retry timing, and the readings kept for a transaction's last message.
# ocpp/v16/chargepoint.py and ocpp/v201/chargepoint.py subclass Session and
# give it their words: _boot_payload(), _talk(ws), optionally _ready(e) and
# _answered(e, answer), and the attributes the constructor sets (station, config, rpc,
# outbox, registration, online, wake, _boot_not_before, _boot_wake, _listener).
import asyncio
import time
import clock
import log
import slots
import security
from ocpp.rpc import CallError, CallTimeout
from station import split_phase


def why(e):
    # A failed CALL of ours in a few words for the log.
    if isinstance(e, CallError):
        return "the CSMS answered %s %s" % (e.code, e.desc)
    return "no answer" if isinstance(e, CallTimeout) else "not connected"


VENDOR_ID = "mpocpp"  # our vendorId for DataTransfer


def data_transfer(p):
    # A DataTransfer from the CSMS (1.6 §5.6, 2.0.1 P01): we know only our own
    # vendorId and its Echo message.
    if p["vendorId"] != VENDOR_ID:
        return {"status": "UnknownVendorId"}
    if p.get("messageId") == "Echo":
        return {"status": "Accepted", "data": p.get("data", "")}
    return {"status": "UnknownMessageId"}


def csms_time(config, text):
    # The CSMS's currentTime (BootNotification, Heartbeat) sets the clock,
    # unless TimeSource (2.0.1 ClockCtrlr) leaves Heartbeat out.
    t = clock.parse(text) if text else None
    if t and "Heartbeat" in config.get("TimeSource"):
        clock.set(t)


def keep_sample(tx, t, context, measurands, reading, limit):
    # A reading for the transaction's last message (1.6 StopTransaction's
    # transactionData, 2.0.1 the Ended event's meterValue): only the values
    # asked for are kept. Beside the Begin and End values at most `limit` - 2
    # are held (StopTransactionMaxMeterValues): when full, every other one goes
    # (errata 9.1.23: 1st, 3rd, 5th...) and from then on only every second new
    # one is kept, so they stay evenly spread.
    tx.sample_count += 1
    if not measurands or reading is None or tx.sample_count % tx.sample_stride:
        return
    tx.samples.append((t, context, measurands, tuple([reading.get(split_phase(m)[0]) for m in measurands])))
    if len(tx.samples) > max(limit - 2, 0):
        tx.samples = tx.samples[1::2]
        tx.sample_stride *= 2


class Session:
    ACCEPTED = "the CSMS accepted this charge point"  # the log line of an accepted boot

    def detach(self):
        # Before a ChargePoint of the other OCPP version takes over (app.switch).
        self.station.observer = None
        self.config.unlisten(self._listener)
        security.wake = None

    def _config_changed(self, key, value):
        if key == "HeartbeatInterval":
            self.wake.set()

    def _keep(self, c, tx, measurands, context):
        if tx and c.meter_ok:
            keep_sample(tx, c.reading_time, context, measurands, c.reading,
                        self.config.get("StopTransactionMaxMeterValues"))

    async def _restart(self, hard, stop_reason, by=None):
        # A Reset from the CSMS, after its answer: running transactions end
        # (stop_reason) and their last messages are given MessageTimeout seconds
        # to reach the CSMS (they stay queued in flash anyway), then the link is
        # closed and the firmware restarts.
        self.station.stop_all(stop_reason)
        await self._settle(self.outbox.pending_tx, 1)
        ws = self.rpc.ws
        if ws:
            try:
                await ws.close()
            except Exception:
                pass
        log.info("boot", "restarting now")
        if self.on_reset:
            self.on_reset(hard, by)

    async def _settle(self, waiting, timeouts):
        # Before a restart of our own: the queued messages waiting() says are
        # still to go get timeouts x MessageTimeout seconds, while online.
        self.wake.set()
        end = time.ticks_add(time.ticks_ms(), self.config.get("MessageTimeout") * timeouts * 1000)
        while waiting() and self.online and time.ticks_diff(end, time.ticks_ms()) > 0:
            await asyncio.sleep_ms(50)

    async def _restart_for_update(self, version):
        # The FirmwareUpdate job's restart into the new application. Its last
        # statuses wait in RAM, maybe behind a CALL still waiting for its answer
        # (MessageTimeout): they go first, else the CSMS never hears them; and
        # for 2 s at least the station still answers (a new request is refused
        # while installing, L01.FR.27).
        await asyncio.sleep(2)
        await self._settle(lambda: self.outbox.volatile, 2)
        log.info("update", "restarting into version %s" % version)
        self.on_reset(False, "installing an update")

    # ---- one connection ----------------------------------------------------
    async def session(self, ws):
        # Runs while the WebSocket is open: the reader and the talker side by side.
        self.online = True
        talker = asyncio.create_task(self._talk(ws))
        keeper = asyncio.create_task(self._keepalive(ws))
        try:
            await self.rpc.serve(ws)
        except Exception as e:
            log.exc("ocpp", "connection failed", e)
            if "memory" in str(e):  # lib/ws.py closed it (1009) for want of heap: whitepaper §8
                security.event("MemoryExhaustion", str(e))
        finally:
            self.online = False
            self.offline_at = time.ticks_ms()
            talker.cancel()
            keeper.cancel()
            self.outbox.drop_volatile()
            try:
                await ws.close()
            except Exception:
                pass

    async def _keepalive(self, ws):
        # WebSocket ping every WebSocketPingInterval seconds of silence; a link
        # that stays silent for two intervals more is half-open: drop it, so
        # the supervisor reconnects (OCPP-J 1.6 §5.3, 2.0.1 part 4 §5.3).
        while True:
            interval = self.config.get("WebSocketPingInterval") * 1000
            if interval <= 0:
                await asyncio.sleep(5)
                continue
            quiet = time.ticks_diff(time.ticks_ms(), ws.last_rx)
            if quiet >= 3 * interval:
                log.warn("link", "no sign of the CSMS for %d s: the connection is dead, reconnecting" % (quiet // 1000))
                await ws.close(1001, "no pong")
                return
            if quiet >= interval:
                try:
                    await ws.ping()
                except Exception:
                    pass
            await asyncio.sleep_ms(min(interval, 1000))

    # ---- boot (1.6 §4.2, 2.0.1 B01-B03) ------------------------------------------
    async def _boot(self):
        while True:
            # After Pending/Rejected nothing is sent before the interval is over,
            # even across reconnects; a TriggerMessage(BootNotification) cuts
            # the wait short.
            early = time.ticks_diff(self._boot_not_before, time.ticks_ms())
            if early > 0:
                self._boot_wake.clear()
                try:
                    await asyncio.wait_for_ms(self._boot_wake.wait(), early)
                except asyncio.TimeoutError:
                    pass
            wait = self.config.get("BootRetryInterval")
            try:
                answer = await self.rpc.call("BootNotification", self._boot_payload())
            except (CallError, CallTimeout) as e:
                # An error answer is no registration; the next try waits
                # BootRetryInterval, even across a reconnect.
                log.warn("boot", "BootNotification failed (%s), retrying in %d s" % (why(e), wait))
                self._boot_not_before = time.ticks_add(time.ticks_ms(), wait * 1000)
                continue
            status = answer["status"]
            self.registration = status
            if answer["interval"] > 0:
                wait = answer["interval"]
            csms_time(self.config, answer["currentTime"])
            if status == "Accepted":
                log.info("boot", "%s (heartbeat every %d s)" % (self.ACCEPTED, wait))
                slots.confirm()  # an update on trial is good: keep it
                if answer["interval"] > 0:
                    self.config.set("HeartbeatInterval", answer["interval"], False)
                return
            log.info("boot", "the CSMS answered %s, next BootNotification in %d s" % (status, wait))
            self._boot_not_before = time.ticks_add(time.ticks_ms(), wait * 1000)

    # ---- the outbox -------------------------------------------------------------
    async def _send_loop(self):
        while True:
            e = self.outbox.peek()
            if e is not None and e.retry_at is not None:
                wait = time.ticks_diff(e.retry_at, time.ticks_ms())
                if wait > 0:
                    # A transaction message waits for its retry: messages that
                    # are not transaction-related need not wait behind it.
                    e = self.outbox.peek_volatile()
                    if e is None:
                        await self._idle(wait)
                        continue
            if e is None:
                await self._idle()
                continue
            if not self._ready(e):
                continue
            if e.action == "SecurityEventNotification":
                security.restamp(e.payload)
            try:
                answer = await self.rpc.call(e.action, e.payload, self.config.get("MessageTimeout"))
            except CallError as err:
                # NotImplemented, NotSupported: a CSMS that does not know the action
                self._failed(e, "%s %s" % (err.code, err.desc), err.code in ("NotImplemented", "NotSupported"))
                continue
            except CallTimeout:
                self._failed(e, "no answer within MessageTimeout")
                continue
            self._answered(e, answer)
            if e.action[-26:] == "FirmwareStatusNotification":
                self._update_reported(e.payload["status"])
            self.outbox.pop(e)

    def _update_reported(self, status):
        # The CSMS has the boot stage's word on the update before this boot:
        # only now may it leave the flash. The status waits in RAM, so a power
        # cut or a lost link before the answer has it reported again
        # (_report_update at the next connection).
        done = slots.outcome()
        if done and status == done[0]:
            if status == "Installed":
                security.event("FirmwareUpdated", "version %s installed" % done[1])
            slots.clear_outcome()
            self.station.store.remove("fwsigned")
            log.info("update", "the CSMS has the outcome: %s, version %s" % done)

    def _ready(self, e):
        # The queued message e is about to go; -> False when it was dropped instead.
        return True

    def _answered(self, e, answer):
        # The CSMS answered the queued message e.
        pass

    def _failed(self, e, reason, unknown=False):
        # A transaction message the CSMS fails to process (a CALLERROR, an
        # invalid answer or none; 1.6 §3.7.1 errata, 2.0.1 E13) is sent at most
        # TransactionMessageAttempts times, waiting TransactionMessageRetryInterval
        # x the number of earlier sends before each resend, then skipped. Other
        # messages are not resent: the next status or reading supersedes them.
        # A KEPT one (SecurityEventNotification) follows the transaction rule,
        # except that a CSMS that does not know the action (`unknown`: no
        # security extension) is not asked again; a skipped event stays in the
        # security log. A lost link is no attempt: the message waits for the
        # next connection.
        e.attempts += 1
        what = "%s of transaction %d" % (e.action, e.local) if e.local else e.action
        if e.local is None or e.attempts >= self.config.get("TransactionMessageAttempts") or (
                unknown and e.local == 0):  # outbox.KEPT
            log.warn("outbox", "%s dropped after %d attempt%s, the CSMS did not process it: %s%s" % (
                what, e.attempts, "" if e.attempts == 1 else "s", reason,
                "; its later messages go too" if e.action == "StartTransaction" else ""))
            self.outbox.pop(e)
            return
        wait = self.config.get("TransactionMessageRetryInterval") * e.attempts
        e.retry_at = time.ticks_add(time.ticks_ms(), wait * 1000)
        log.warn("outbox", "%s failed (%s), sending it again in %d s" % (what, reason, wait))

    async def _idle(self, limit=None):
        # Wait for the next message (at most `limit` ms), sending a Heartbeat
        # when the link has been quiet.
        interval = self.config.get("HeartbeatInterval") * 1000
        quiet = time.ticks_diff(time.ticks_ms(), self.rpc.last_sent)
        if interval > 0 and quiet >= interval:
            try:
                answer = await self.rpc.call("Heartbeat", {})
                csms_time(self.config, answer["currentTime"])
            except (CallError, CallTimeout) as e:
                log.warn("ocpp", "Heartbeat failed: %s" % why(e))
                self.rpc.last_sent = time.ticks_ms()
            return
        self.wake.clear()
        wait = interval - quiet if interval > 0 else 60000
        if limit is not None:
            wait = min(wait, limit)
        try:
            await asyncio.wait_for_ms(self.wake.wait(), max(wait, 10))
        except asyncio.TimeoutError:
            pass
