# Palisade's ML2 mechanism driver (DESIGN §11.11). neutron-server loads it
# in its own process, so it is Python; it stays thin: every question goes to
# palisade-openstack's ML2 endpoint (services/openstack/ml2-endpoint.ts)
# over loopback HTTP, and all translation stays in the adapter.
#
#   bind_port        binds only on a host whose Palisade driver is connected
#                    (else no binding: ML2 reports binding_failed, as for a
#                    dead agent); the vif type is the topology Palisade
#                    enforces there ([palisade] vif_type).
#   *_precommit      a bound instance port gets a provisioning block
#                    (entity "palisade") in the port's own transaction, so it
#                    cannot go ACTIVE, nor Nova get network-vif-plugged,
#                    before Palisade has programmed it.
#   poller           every poll_interval, asks which blocked ports are
#                    programmed on their current host at their current
#                    revision, and lifts their blocks (compare and remove in
#                    one transaction: a port changed meanwhile waits).
#                    The blocks live in Neutron's database: after a restart
#                    the poller reads them back. No answer completes nothing.
#   status feed      after ACTIVE, Palisade's DOWN / ERROR (held for the
#                    adapter's --ml2-down-after) and ACTIVE again become the
#                    port's status in Neutron.
#   *_postcommit,    tell the adapter which ports, groups, rules (with their
#   registry         group) and address groups changed, in batches from a
#                    bounded queue, so it fetches those by id now (the
#                    adapter's own watch stays the safety net: a queue
#                    overflow or an undelivered notice makes the next notice
#                    say "overflow", and the adapter lists everything).
#   log driver       (log_driver.py) makes Neutron's `log` service plugin
#                    accept security_group logs on our ports, and sends a
#                    notice when one is created, changed or deleted.
#
# Fail closed everywhere: an adapter that does not answer binds nothing and
# lifts no block.
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events
from neutron_lib.callbacks import registry
from neutron_lib.callbacks import resources
from neutron_lib import constants as n_const
from neutron_lib import context as n_context
from neutron_lib.db import api as db_api
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg
from oslo_log import log as logging

from neutron.db import models_v2
from neutron.db import provisioning_blocks
from neutron.objects import provisioning_blocks as pb_obj
from neutron.plugins.ml2 import db as ml2_db

from palisade_ml2 import log_driver

LOG = logging.getLogger(__name__)

ENTITY = "palisade"
BATCH = 1000  # the endpoint's limit per request
# Distinct changes queued at most (the adapter's limit per notice too):
# beyond, they are dropped and the next notice says "overflow".
MAX_NOTICES = 1000

OPTS = [
    cfg.StrOpt("adapter_url", default="http://127.0.0.1:9716",
               help="palisade-openstack watch --ml2-listen address"),
    cfg.FloatOpt("poll_interval", default=0.5, min=0.05, max=60,
                 help="Seconds between readiness polls of blocked ports"),
    cfg.FloatOpt("request_timeout", default=2.0, min=0.1, max=60,
                 help="Seconds before a request to the adapter is given up"),
    cfg.StrOpt("vif_type", default="bridge",
               choices=["bridge", "ovs-hybrid", "tap"],
               help="The topology Palisade enforces on the hosts: a Linux "
                    "bridge per network (linuxbridge), OVS with the hybrid "
                    "plug (qbr), or routed taps"),
]
cfg.CONF.register_opts(OPTS, "palisade")

_CHANGE_EVENTS = (events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE)
_CHANGE_RESOURCES = {
    resources.SECURITY_GROUP: "security_group",
    resources.SECURITY_GROUP_RULE: "security_group_rule",
    resources.ADDRESS_GROUP: "address_group",
}


class AdapterUnavailable(Exception):
    pass


class StaleStatusChange(Exception):
    pass


def _vif():
    kind = cfg.CONF.palisade.vif_type
    if kind == "ovs-hybrid":
        return portbindings.VIF_TYPE_OVS, {
            portbindings.CAP_PORT_FILTER: True,
            portbindings.OVS_HYBRID_PLUG: True}
    if kind == "tap":
        return portbindings.VIF_TYPE_TAP, {portbindings.CAP_PORT_FILTER: True}
    return portbindings.VIF_TYPE_BRIDGE, {portbindings.CAP_PORT_FILTER: True}


def _l2_agent_type():
    # The agent that wires the taps in the configured topology (none when
    # routed): its own readiness still counts, as with its own driver.
    return {"bridge": n_const.AGENT_TYPE_LINUXBRIDGE,
            "ovs-hybrid": n_const.AGENT_TYPE_OVS}.get(
                cfg.CONF.palisade.vif_type)


def _instance_port(port):
    # Only instance ports become Palisade endpoints; a block on a DHCP or
    # router port would never be lifted.
    return (port.get("device_owner") or "").startswith("compute:")


# Network types a Linux bridge / OVS-hybrid host plugs a VM into.
_SEGMENT_TYPES = (n_const.TYPE_FLAT, n_const.TYPE_VLAN, n_const.TYPE_VXLAN)
# A block added this recently may not be committed when the database is
# read back: it is not dropped for being absent.
_FRESH = 10.0


class PalisadeMechanismDriver(api.MechanismDriver):

    def initialize(self):
        self._lock = threading.Lock()
        # Ports this process has seen blocked -> monotonic time it saw it
        # (the database holds the blocks themselves, and each poll reads
        # the port's binding host and revision from it).
        self._blocked = {}
        self._poller_pid = None
        # Where this process reads the adapter's port status feed from.
        self._epoch = None
        self._seq = 0
        # The status change _apply_transition is making (checked in precommit).
        self._expect = threading.local()
        # (resource, id) -> the rule's group id (None for other resources),
        # in arrival order; bounded by MAX_NOTICES.
        self._notices = {}
        self._overflow = False
        self._notifier_running = False
        registry.subscribe(self._process_started, resources.PROCESS,
                           events.AFTER_INIT)
        for resource in _CHANGE_RESOURCES:
            for event in _CHANGE_EVENTS:
                registry.subscribe(self._resource_changed, resource, event)
        # Neutron's logging API (`network log create`): a log driver so the
        # `log` service plugin accepts security_group logs on our ports.
        log_driver.register(self._notice)

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    # ------------------------------------------------------------- adapter

    def _call(self, method, path, body=None):
        url = cfg.CONF.palisade.adapter_url.rstrip("/") + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            url, data=data, method=method,
            headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(
                    req, timeout=cfg.CONF.palisade.request_timeout) as r:
                return json.loads(r.read().decode() or "{}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise AdapterUnavailable("%s %s: %s" % (method, url, e))

    # ------------------------------------------------------------- binding

    def bind_port(self, context):
        port = context.current
        if port.get(portbindings.VNIC_TYPE,
                    portbindings.VNIC_NORMAL) != portbindings.VNIC_NORMAL:
            return  # SR-IOV, macvtap, baremetal: not a tap Palisade polices
        segments = [s for s in context.segments_to_bind
                    if s[api.NETWORK_TYPE] in _SEGMENT_TYPES]
        if not segments:
            return
        # The network's own ports (DHCP, routers) are no endpoints: they
        # bind without a Palisade driver (a network node need not run one).
        if _instance_port(port) and not self._host_connected(context):
            return
        vif_type, details = _vif()
        context.set_binding(segments[0][api.ID], vif_type, details)

    def _host_connected(self, context):
        host = context.host
        try:
            answer = self._call(
                "GET", "/v1/hosts/" + urllib.parse.quote(host, safe=""))
        except AdapterUnavailable as e:
            LOG.warning("Palisade: not binding port %(port)s on %(host)s: "
                        "the adapter does not answer (%(err)s)",
                        {"port": context.current["id"], "host": host,
                         "err": e})
            return False
        if answer.get("connected") is not True:
            LOG.warning("Palisade: not binding port %(port)s on %(host)s: "
                        "no Palisade driver connected for that host",
                        {"port": context.current["id"], "host": host})
            return False
        return True

    # ----------------------------------------------------------- readiness

    def create_port_precommit(self, context):
        self._block(context)

    def update_port_precommit(self, context):
        expect = getattr(self._expect, "value", None)
        if expect and expect[0] == context.current["id"]:
            # A status change from the feed (_apply_transition), inside its
            # transaction: the port must still be bound to that host and
            # hold no block, or the change is rolled back.
            if context.host != expect[1] or provisioning_blocks.is_object_blocked(
                    context._plugin_context, expect[0], resources.PORT):
                self._expect.stale = True
                raise StaleStatusChange(
                    "palisade: stale status change for port %s" % expect[0])
            return
        if (context.host == context.original_host and
                context.vif_type == context.original_vif_type):
            return
        self._block(context)

    def _block(self, context):
        port = context.current
        if not _instance_port(port):
            return
        if not context.host or (context.vif_type ==
                                portbindings.VIF_TYPE_BINDING_FAILED):
            # Unbound, or its binding failed: it cannot go ACTIVE anyway,
            # and there is nothing to ask about until it binds again.
            provisioning_blocks.remove_provisioning_component(
                context._plugin_context, port["id"], resources.PORT, ENTITY)
            with self._lock:
                self._blocked.pop(port["id"], None)
            return
        if port.get("status") == n_const.PORT_STATUS_ACTIVE:
            return
        self._ensure_poller()
        provisioning_blocks.add_provisioning_component(
            context._plugin_context, port["id"], resources.PORT, ENTITY)
        agent = _l2_agent_type()
        if agent and context.host_agents(agent):
            # As the agent's own driver would: the bridge wiring counts too.
            provisioning_blocks.add_provisioning_component(
                context._plugin_context, port["id"], resources.PORT,
                provisioning_blocks.L2_AGENT_ENTITY)
        with self._lock:
            self._blocked[port["id"]] = time.monotonic()

    def delete_port_postcommit(self, context):
        with self._lock:
            self._blocked.pop(context.current["id"], None)
        self._notice("port", context.current["id"])

    def _process_started(self, resource, event, trigger, payload=None):
        self._ensure_poller()

    def _ensure_poller(self):
        # One poller per worker process that handles ports or starts up
        # (the plugin is loaded before neutron-server forks its workers).
        with self._lock:
            if self._poller_pid == os.getpid():
                return
            self._poller_pid = os.getpid()
        threading.Thread(target=self._poll_forever, daemon=True).start()
        # Its own thread: a page of status writes never delays lifting the
        # blocks of VMs that are booting.
        threading.Thread(target=self._feed_forever, daemon=True).start()

    def _blocked_in_db(self):
        ctx = n_context.get_admin_context()
        with db_api.CONTEXT_READER.using(ctx):
            ids = [b.standard_attr_id for b in
                   pb_obj.ProvisioningBlock.get_objects(ctx, entity=ENTITY)]
            if not ids:
                return set()
            rows = (ctx.session.query(models_v2.Port.id).
                    filter(models_v2.Port.standard_attr_id.in_(ids)).all())
        return {pid for (pid,) in rows}

    def _ports_now(self, ids, ctx=None):
        """Port id -> (active binding host, revision_number), from the database."""
        ctx = ctx or n_context.get_admin_context()
        out = {}
        with db_api.CONTEXT_READER.using(ctx):
            for p in (ctx.session.query(models_v2.Port).
                      filter(models_v2.Port.id.in_(ids)).all()):
                hosts = [b.host for b in p.port_bindings
                         if b.status == n_const.ACTIVE and b.host]
                if hosts:
                    out[p.id] = (hosts[0], p.revision_number)
        return out

    def _poll_forever(self):
        pid = os.getpid()
        last_recovery = 0.0
        adapter_down = False
        while self._poller_pid == pid:
            try:
                # The database is the truth: read it back at start and now
                # and then (blocks added by another worker, ports gone).
                if time.monotonic() - last_recovery > 30:
                    started = time.monotonic()
                    found = self._blocked_in_db()
                    with self._lock:
                        for p, seen in list(self._blocked.items()):
                            if p not in found and seen < started - _FRESH:
                                del self._blocked[p]
                        for p in found:
                            self._blocked.setdefault(p, started)
                    last_recovery = started
                self._poll_once()
                if adapter_down:
                    LOG.info("Palisade: the adapter answers again")
                adapter_down = False
            except AdapterUnavailable as e:
                # Once per outage, not every poll_interval.
                (LOG.debug if adapter_down else LOG.warning)(
                    "Palisade: readiness poll failed, blocks stay: %s", e)
                adapter_down = True
            except Exception:  # never let the poller die
                LOG.exception("Palisade: readiness poll failed")
            time.sleep(cfg.CONF.palisade.poll_interval)

    def _poll_once(self):
        with self._lock:
            ids = list(self._blocked)
        for i in range(0, len(ids), BATCH):
            now = self._ports_now(ids[i:i + BATCH])
            if not now:
                continue
            # The port as the database has it now: the adapter answers
            # "programmed" only for this host, and only once it has synced
            # this revision of the port (a rebinding or any change since
            # makes it wait for that one).
            batch = [{"id": p, "host": h, "revision": r}
                     for p, (h, r) in now.items()]
            answer = self._call("POST", "/v1/ports/status", {"ports": batch})
            for row in answer.get("ports", []):
                if row.get("programmed") is not True:
                    continue
                asked = now.get(row.get("id"))
                if asked is None or asked[0] != row.get("host"):
                    continue
                self._lift(row["id"], asked)

    def _feed_forever(self):
        pid = os.getpid()
        down = False
        while self._poller_pid == pid:
            try:
                self._poll_transitions()
                down = False
            except AdapterUnavailable as e:
                if not down:
                    LOG.warning("Palisade: port status feed unavailable: %s", e)
                down = True
            except Exception:  # never let the feed die
                LOG.exception("Palisade: port status feed failed")
            time.sleep(cfg.CONF.palisade.poll_interval)

    def _poll_transitions(self):
        # Port status after ACTIVE: the adapter's feed holds each port's
        # current status once (a compacted log), so a reader that starts,
        # or whose adapter restarted (another epoch), reads it from 0 and
        # gets the full state; behind, it reads on and loses nothing.
        query = "?after=%d" % self._seq
        if self._epoch:
            query += "&epoch=" + urllib.parse.quote(self._epoch)
        try:
            page = self._call("GET", "/v1/ports/transitions" + query)
        except AdapterUnavailable as e:
            if "404" in str(e):
                return  # an adapter without the feed: readiness still works
            raise
        if page.get("reset"):
            self._epoch = page.get("epoch")
            self._seq = 0
            return
        items = page.get("transitions", [])
        if items:
            self._apply_page(items)
        self._seq = int(page.get("seq", self._seq))

    def _apply_page(self, items):
        ctx = n_context.get_admin_context()
        ids = list({t.get("id") for t in items if t.get("id")})
        state = self._ports_state(ids, ctx)
        for t in items:
            try:
                self._apply_transition(ctx, t, state.get(t.get("id")))
            except Exception:  # one bad entry must not stop the feed
                LOG.exception("Palisade: port status %s not applied", t)

    def _ports_state(self, ids, ctx):
        """Port id -> (active binding host, status, admin_state_up, blocked)."""
        out = {}
        if not ids:
            return out
        with db_api.CONTEXT_READER.using(ctx):
            ports = (ctx.session.query(models_v2.Port).
                     filter(models_v2.Port.id.in_(ids)).all())
            blocked = {b.standard_attr_id for b in
                       pb_obj.ProvisioningBlock.get_objects(
                           ctx, standard_attr_id=[p.standard_attr_id
                                                  for p in ports])}
            for p in ports:
                hosts = [b.host for b in p.port_bindings
                         if b.status == n_const.ACTIVE and b.host]
                out[p.id] = (hosts[0] if hosts else None, p.status,
                             p.admin_state_up, p.standard_attr_id in blocked)
        return out

    def _apply_transition(self, ctx, t, now):
        status = t.get("status")
        if status not in (n_const.PORT_STATUS_ACTIVE, n_const.PORT_STATUS_DOWN,
                          n_const.PORT_STATUS_ERROR) or not now:
            return
        port_id, host = t.get("id"), t.get("host")
        bound_host, current, admin_up, blocked = now
        if bound_host != host or blocked or current == status:
            # Bound elsewhere now (that binding's own state counts), not
            # ACTIVE yet (its blocks decide), or already so.
            return
        if status == n_const.PORT_STATUS_ACTIVE and not admin_up:
            return
        LOG.info("Palisade: port %(port)s on %(host)s is %(status)s "
                 "(%(detail)s)", {"port": port_id, "host": host,
                                  "status": status,
                                  "detail": t.get("detail") or "-"})
        # Checked again inside update_port_status's own transaction
        # (update_port_precommit): a port rebound or blocked since the read
        # above is left alone.
        self._expect.value = (port_id, host)
        self._expect.stale = False
        try:
            directory.get_plugin().update_port_status(
                ctx, port_id, status, host)
        except Exception:
            # ML2 wraps what precommit raised: our own flag tells ours.
            if not self._expect.stale:
                raise
            LOG.info("Palisade: port %s changed meanwhile; status change "
                     "dropped", port_id)
        finally:
            self._expect.value = None

    def _lift(self, port_id, asked):
        ctx = n_context.get_admin_context()
        with db_api.CONTEXT_WRITER.using(ctx):
            # Compare and remove in one transaction: a change of the port
            # since it was asked about (a rebinding adds no second block
            # while this one exists) keeps the block.
            if self._ports_now([port_id], ctx).get(port_id) != asked:
                return
            provisioning_blocks.remove_provisioning_component(
                ctx, port_id, resources.PORT, ENTITY)
        LOG.info("Palisade: port %(port)s is programmed on %(host)s; "
                 "lifting its provisioning block",
                 {"port": port_id, "host": asked[0]})
        # Nothing of ours is left: this emits provisioning-complete when no
        # other entity's block remains (Neutron then sets the port ACTIVE).
        provisioning_blocks.provisioning_complete(
            ctx, port_id, resources.PORT, ENTITY)
        with self._lock:
            self._blocked.pop(port_id, None)

    # ------------------------------------------------------ change notices

    def create_port_postcommit(self, context):
        self._notice("port", context.current["id"])

    def update_port_postcommit(self, context):
        self._notice("port", context.current["id"])

    def _resource_changed(self, resource, event, trigger, payload=None):
        rid = getattr(payload, "resource_id", None) if payload else None
        kind = _CHANGE_RESOURCES[resource]
        group = _rule_group(payload) if kind == "security_group_rule" else None
        self._notice(kind, rid, group)

    def _notice(self, resource, rid, group=None):
        # Never in the API request's way: a background sender. What is
        # queued is distinct (resource, id) pairs; the adapter fetches each
        # by id (a rule through its group). Without an id, or a rule without
        # its group, or beyond MAX_NOTICES: "overflow" (the adapter lists
        # everything), and nothing more is queued until it is sent.
        with self._lock:
            if not rid or (resource == "security_group_rule" and not group):
                self._overflow = True
                self._notices.clear()
            elif not self._overflow and (resource, rid) not in self._notices:
                if len(self._notices) >= MAX_NOTICES:
                    self._overflow = True
                    self._notices.clear()
                else:
                    self._notices[(resource, rid)] = group
            if self._notifier_running:
                return
            self._notifier_running = True
        threading.Thread(target=self._send_notices, daemon=True).start()

    def _send_notices(self):
        try:
            while True:
                with self._lock:
                    if not self._notices and not self._overflow:
                        self._notifier_running = False
                        return
                    batch, self._notices = self._notices, {}
                    overflow, self._overflow = self._overflow, False
                changes = []
                for (resource, rid), group in batch.items():
                    c = {"resource": resource, "id": rid}
                    if group:
                        c["group"] = group
                    changes.append(c)
                body = {"changes": changes, "overflow": overflow}
                if changes:
                    # An adapter older than the batch format reads these
                    # two alone (as "something changed"); a newer one
                    # ignores them.
                    body["resource"] = changes[0]["resource"]
                    body["id"] = changes[0]["id"]
                try:
                    self._call("POST", "/v1/changes", body)
                except AdapterUnavailable as e:
                    # Not lost: the next notice says "overflow", so the
                    # adapter lists everything (and a restarted adapter
                    # lists everything anyway).
                    LOG.debug("Palisade: change notice not delivered (the "
                              "adapter's watch will see it): %s", e)
                    with self._lock:
                        self._overflow = True
                        self._notices.clear()
                        self._notifier_running = False
                    return
        except Exception:
            with self._lock:
                self._overflow = True
                self._notifier_running = False
            LOG.exception("Palisade: change notices stopped")


def _rule_group(payload):
    """A rule's security_group_id from its event: the metadata (delete) or the rule itself (create, update)."""
    if payload is None:
        return None
    group = (getattr(payload, "metadata", None) or {}).get(
        "security_group_id")
    if group:
        return group
    for state in reversed(getattr(payload, "states", None) or ()):
        if isinstance(state, dict) and state.get("security_group_id"):
            return state["security_group_id"]
    return None
