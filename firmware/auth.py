# Local authorization (OCPP 1.6 §3.5): the Local Authorization List the CSMS
# keeps in step with SendLocalList, and the Authorization Cache filled from
# every idTagInfo the CSMS returns. Both live in flash (storage.Store) and are
# bounded. An entry is [status, expiry (Unix s, 0: none), parentIdTag or None];
# idTags are case-insensitive (CiString20), so they are kept upper-cased.
#
# Authorizer decides an idTag locally: the list first, then the cache (§3.5.3),
# and, when the CSMS cannot be asked, LocalAuthorizeOffline and
# AllowOfflineTxForUnknownId (§3.5.4).
from micropython import const
import clock
import log

_TAG = "auth"
_CACHE_MAX = const(50)  # entries in the Authorization Cache
VALID = ("Accepted", "ConcurrentTx")  # a list entry that lets its holder charge (§3.5.2)


def key(id_tag):
    return id_tag.upper() if id_tag else id_tag


def same(a, b):
    # Two idTags (or parentIdTags) are the same token: case-insensitive, None never matches.
    return bool(a) and bool(b) and a.upper() == b.upper()


def entry(info):
    # idTagInfo -> stored entry; None if its expiryDate cannot be read.
    exp = info.get("expiryDate")
    t = clock.parse(exp) if exp else 0
    if t is None:
        return None
    return [info["status"], t, info.get("parentIdTag")]


def info(e, status=None):
    # stored entry -> idTagInfo
    d = {"status": status or e[0]}
    if e[1]:
        d["expiryDate"] = clock.iso(e[1])
    if e[2]:
        d["parentIdTag"] = e[2]
    return d


def _lapsed(e):
    return e[1] and e[1] <= clock.now()


def _sound(d, n):
    # Stored entries as written by this module: a dict of lists of n items
    # (anything else, e.g. from another firmware version, is left out).
    if not isinstance(d, dict):
        return {}
    for k in [k for k, e in d.items() if not (isinstance(e, list) and len(e) == n and isinstance(e[1], int))]:
        log.warn(_TAG, "stored entry for %s ignored" % k)
        del d[k]
    return d


class LocalAuthList:
    # The list and its version; only SendLocalList changes it (§3.5.2).
    def __init__(self, store):
        self._store = store
        d = store.load("authlist", None)
        if not isinstance(d, dict) or not isinstance(d.get("v"), int):
            d = {"v": 0}
        self._v = d["v"]
        self._e = _sound(d.get("e"), 3)

    def __len__(self):
        return len(self._e)

    def version(self):
        # 0 stands for an empty list (§5.10)
        return self._v if self._e else 0

    def get(self, id_tag):
        return self._e.get(key(id_tag))

    def update(self, version, full, items, max_total, max_items):
        # SendLocalList (§5.15, §6.41). items: [{"idTag", "idTagInfo"?}].
        # -> "Accepted" | "Failed" | "VersionMismatch"; the list is untouched
        # unless the whole update applies.
        if len(items) > max_items:
            log.warn(_TAG, "local list update refused: %d entries, at most %d per message" % (len(items), max_items))
            return "Failed"
        if version < 1:  # errata 3.52: 0 and -1 have a meaning of their own
            log.warn(_TAG, "local list update refused: version %d" % version)
            return "Failed"
        if not full and version <= self.version():
            log.warn(_TAG, "local list update %d refused: the list is already at version %d" % (version, self.version()))
            return "VersionMismatch"
        new = {} if full else dict(self._e)
        seen = set()
        for it in items:
            k = key(it["idTag"])
            if k in seen:
                log.warn(_TAG, "local list update refused: %s listed twice" % it["idTag"])
                return "Failed"
            seen.add(k)
            i = it.get("idTagInfo")
            if i is None:
                if full:  # a full list needs idTagInfo everywhere (§7.1)
                    log.warn(_TAG, "local list update refused: %s has no idTagInfo" % it["idTag"])
                    return "Failed"
                new.pop(k, None)
                continue
            e = entry(i)
            if e is None:
                return "Failed"
            new[k] = e
        if len(new) > max_total:
            log.warn(_TAG, "local list update refused: %d entries, room for %d" % (len(new), max_total))
            return "Failed"
        v = version if new else 0
        try:
            self._store.save("authlist", {"v": v, "e": new})
        except OSError:
            return "Failed"
        self._e = new
        self._v = v
        log.info(_TAG, "local authorization list is now version %d with %d card(s)" % (v, len(new)))
        return "Accepted"


class AuthCache:
    # Every idTag the CSMS told us about (§3.5.1): [status, expiry, parent, age].
    def __init__(self, store):
        self._store = store
        self._e = _sound(store.load("authcache", {}), 4)
        self._n = 0  # age counter: the highest stored age
        for e in self._e.values():
            self._n = max(self._n, e[3])

    def __len__(self):
        return len(self._e)

    def get(self, id_tag):
        # -> entry; an Accepted entry past its expiryDate turns Expired (§3.5.1).
        k = key(id_tag)
        e = self._e.get(k)
        if e and e[0] != "Expired" and _lapsed(e):
            e[0] = "Expired"
            self._save()
        return e

    def put(self, id_tag, e):
        k = key(id_tag)
        old = self._e.get(k)
        if old and old[:3] == e:
            return
        if not old and len(self._e) >= _CACHE_MAX:
            self._evict()
        self._n += 1
        self._e[k] = e + [self._n]
        self._save()

    def _evict(self):
        # Full: a NOT-valid entry goes first, else the oldest valid one (§3.5.1).
        worst = None
        for k, e in self._e.items():
            rank = (e[0] == "Accepted" and not _lapsed(e), e[3])
            if worst is None or rank < worst[0]:
                worst = (rank, k)
        del self._e[worst[1]]

    def clear(self):
        self._e = {}
        self._n = 0
        self._save()
        log.info(_TAG, "authorization cache cleared")

    def _save(self):
        try:
            self._store.save("authcache", self._e)
        except OSError:
            pass  # logged by the store; the cache is only an aid


class Authorizer:
    def __init__(self, store, config):
        self.config = config
        self.list = LocalAuthList(store)
        self.cache = AuthCache(store)

    def list_version(self):
        # GetLocalListVersion: -1 while the list is disabled
        return self.list.version() if self.config.get("LocalAuthListEnabled") else -1

    def send_list(self, version, full, items):
        # -> "Accepted" | "Failed" | "VersionMismatch" | "NotSupported"
        if not self.config.get("LocalAuthListEnabled"):
            return "NotSupported"
        return self.list.update(version, full, items, self.config.get("LocalAuthListMaxLength"),
                                self.config.get("SendLocalListMaxLength"))

    def _listed(self, id_tag):
        return self.list.get(id_tag) if self.config.get("LocalAuthListEnabled") else None

    def lookup(self, id_tag):
        # -> (idTagInfo, where) from the list, else the cache, else (None, None).
        # A list entry that lets its holder charge reads Accepted, or Expired
        # once its validity has run out (§3.5.4).
        e = self._listed(id_tag)
        if e:
            if e[0] in VALID:
                return info(e, "Expired" if _lapsed(e) else "Accepted"), "local list"
            return info(e), "local list"
        if self.config.get("AuthorizationCacheEnabled"):
            e = self.cache.get(id_tag)
            if e:
                return info(e), "cache"
        return None, None

    def learn(self, id_tag, i):
        # An idTagInfo from the CSMS. -> True when it contradicts the local
        # list (§3.5.2 LocalListConflict); otherwise it goes to the cache.
        e = self._listed(id_tag)
        if e:
            return (e[0] in VALID and not _lapsed(e)) != (i.get("status") in VALID)
        if self.config.get("AuthorizationCacheEnabled"):
            e = entry(i)
            if e:
                self.cache.put(id_tag, e)
        return False

    def offline(self, id_tag):
        # The CSMS cannot be asked (§3.5.4): -> idTagInfo
        i, where = self.lookup(id_tag)
        if i:
            if i["status"] != "Accepted":
                log.info(_TAG, "offline: %s is %s in the %s, refused" % (id_tag, i["status"], where))
                return i
            if self.config.get("LocalAuthorizeOffline"):
                log.info(_TAG, "offline: %s accepted from the %s" % (id_tag, where))
                return i
        if self.config.get("AllowOfflineTxForUnknownId"):
            log.info(_TAG, "offline: %s allowed (AllowOfflineTxForUnknownId)" % id_tag)
            return {"status": "Accepted"}
        log.info(_TAG, "offline: %s cannot be checked, refused" % id_tag)
        return {"status": "Invalid"}
