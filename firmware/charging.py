# Smart charging in the station model: the installed charging profiles, kept
# in flash, and the limit each connector may draw. Protocol-neutral: a
# protocol package turns its profiles into schedule.Profile objects, the maths
# is in schedule.py (imported only once a profile exists: a station without
# profiles charges at its rating and never loads it).
import log

_TAG = "charging"
# schedule.Profile fields, in the order they are stored in flash
_FIELDS = ("id", "connector", "purpose", "stack", "kind", "unit", "periods", "recur", "valid_from",
           "valid_to", "start", "duration", "min_rate", "tx_id")
MAX = 0  # schedule.MAX, schedule.TX_DEFAULT, schedule.TX, without importing it
TX_DEFAULT = 1
TX = 2


def _schedule():
    import schedule
    return schedule


class ChargingProfiles:
    # The profiles and their limits (OCPP 1.6 §3.13). Limits are configuration
    # keys read at each install: ChargeProfileMaxStackLevel,
    # ChargingScheduleMaxPeriods, MaxChargingProfilesInstalled,
    # ChargingScheduleAllowedChargingRateUnit.
    def __init__(self, store, config):
        self.store = store
        self.config = config
        self.profiles = []
        for row in store.load("profiles", []) or ():
            try:
                self.profiles.append(self._from_row(row))
            except Exception as e:  # a damaged entry is dropped, the others kept
                log.exc(_TAG, "a stored charging profile could not be read, dropped", e)

    def _from_row(self, row):
        s = _schedule()
        kw = dict(zip(_FIELDS, row))
        kw["periods"] = tuple(tuple(p) for p in kw["periods"])
        return s.Profile(**kw)

    def _save(self):
        rows = [[getattr(p, f) for f in _FIELDS] for p in self.profiles]
        try:
            self.store.save("profiles", rows)
        except OSError as e:
            log.exc(_TAG, "cannot store the charging profiles", e)

    def refusal(self, p, tx, starting=False):
        # -> why profile p cannot be installed, or None. tx: the running
        # Transaction on p's connector, or None; starting: p is the TxProfile
        # of a transaction about to start (RemoteStartTransaction).
        cfg = self.config
        if p.purpose == MAX and p.connector != 0:
            return "a ChargePointMaxProfile belongs on connector 0"
        if p.purpose == TX:
            if p.connector == 0:
                return "a TxProfile needs a connector"
            if tx is None and not starting:
                return "no transaction runs on connector %d" % p.connector
            if tx is not None and p.tx_id is not None and p.tx_id != tx.id:
                return "transaction %d does not run on connector %d" % (p.tx_id, p.connector)
        if p.stack > cfg.get("ChargeProfileMaxStackLevel"):
            return "stackLevel %d is above ChargeProfileMaxStackLevel" % p.stack
        if len(p.periods) > cfg.get("ChargingScheduleMaxPeriods"):
            return "%d periods, more than ChargingScheduleMaxPeriods" % len(p.periods)
        if ("Current" if p.unit == "A" else "Power") not in cfg.get("ChargingScheduleAllowedChargingRateUnit"):
            return "chargingRateUnit %s is not allowed" % p.unit
        if len([o for o in self.profiles if not self._replaced_by(o, p)]) >= cfg.get("MaxChargingProfilesInstalled"):
            return "MaxChargingProfilesInstalled profiles are installed already"
        return None

    def _replaced_by(self, old, new):
        # §5.16.3: the same id, or the same stackLevel and purpose on the same connector
        return old.id == new.id or (old.stack == new.stack and old.purpose == new.purpose
                                    and old.connector == new.connector)

    def install(self, p, tx=None):
        # -> None when installed, else the reason it was refused
        why = self.refusal(p, tx)
        if why:
            log.warn(_TAG, "charging profile %d refused: %s" % (p.id, why))
            return why
        self.profiles = [o for o in self.profiles if not self._replaced_by(o, p)]
        self.profiles.append(p)
        self._save()
        log.info(_TAG, "charging profile %d installed on connector %d (stack level %d)" % (p.id, p.connector, p.stack))
        return None

    def clear(self, pid=None, connector=None, purpose=None, stack=None):
        # ClearChargingProfile (§5.5): an id clears that profile only; else the
        # given criteria combine with AND (none: every profile). -> how many went
        if pid is not None:
            keep = [p for p in self.profiles if p.id != pid]
        else:
            keep = [p for p in self.profiles if not (
                (connector is None or p.connector == connector) and (purpose is None or p.purpose == purpose)
                and (stack is None or p.stack == stack))]
        n = len(self.profiles) - len(keep)
        if n:
            self.profiles = keep
            self._save()
            log.info(_TAG, "%d charging profile%s cleared" % (n, "" if n == 1 else "s"))
        return n

    def transaction_ended(self, connector):
        # A TxProfile ends with its transaction (§3.13.3).
        self.clear(connector=connector, purpose=TX)

    def limit_now(self, c, now, tx):
        # -> (amps, phases, seconds to the next change or None) for connector c
        if not self.profiles:
            return c.rating, c.phases, None
        return _schedule().limit_now(self.profiles, c.id, now, tx.start_time if tx else None,
                                     tx.id if tx else None, c.rating, c.phases)

    def composite(self, c, start, duration, unit, tx):
        # -> [(offset s, limit, phases)] for GetCompositeSchedule
        if not self.profiles:
            return [(0, c.rating if unit == "A" else round(c.rating * 230 * c.phases, 1), c.phases)]
        return _schedule().composite(self.profiles, c.id, start, duration, unit, tx.start_time if tx else None,
                                     tx.id if tx else None, c.rating, c.phases)
