// palisade-openstack watch metrics (--metrics-listen; names are part of the
// operator contract, README "OpenStack").
import { createRegistry } from "../runtime/metrics-server.js";
import { Counter, Gauge } from "prom-client";

export function createAdapterMetrics() {
  const registry = createRegistry("palisade_openstack_");
  return {
    registry,
    heldDeletions: new Gauge({
      name: "palisade_openstack_held_endpoint_deletions",
      help: "Endpoint deletions the mass-deletion guard holds back (0 when none; --allow-mass-delete applies them)", registers: [registry],
    }),
    syncs: new Counter({ name: "palisade_openstack_syncs_total", help: "Syncs by result (ok, failed)", labelNames: ["result"], registers: [registry] }),
    polls: new Counter({ name: "palisade_openstack_polls_total", help: "Neutron polls by kind: full (everything listed), changes (something changed), idle", labelNames: ["kind"], registers: [registry] }),
    nudges: new Counter({ name: "palisade_openstack_ml2_change_notices_total", help: "Change notices from the Palisade ML2 mechanism driver (each makes the next Neutron poll immediate)", registers: [registry] }),
    noticedChanges: new Counter({ name: "palisade_openstack_ml2_noticed_changes_total", help: "Changes named by the ML2 driver's notices (ports, groups, rules, address groups), fetched by id at the next poll", registers: [registry] }),
    noticeOverflows: new Counter({ name: "palisade_openstack_ml2_notice_overflows_total", help: "Notices saying the ML2 driver dropped changes (its queue was full, or a notice was not delivered): the next poll is a full listing", registers: [registry] }),
    pollReads: new Counter({ name: "palisade_openstack_poll_reads_total", help: "Requests to Neutron by the watch's polls, by read: list (a page of a collection listing), by_id (named objects, ?id=…), bindings (one port's bindings)", labelNames: ["read"], registers: [registry] }),
    operatorPolicyReloads: new Counter({ name: "palisade_openstack_operator_policy_reloads_total", help: "Re-reads of the --operator-policy file on SIGHUP, by result (ok, failed: refused, the last good policy stays)", labelNames: ["result"], registers: [registry] }),
    operatorPolicyValid: new Gauge({ name: "palisade_openstack_operator_policy_valid", help: "1 when the last read of the --operator-policy file was accepted, 0 when it was refused (the last good policy is in force)", registers: [registry] }),
    operatorPolicyProfiles: new Gauge({ name: "palisade_openstack_operator_policy_profiles", help: "Operator profiles in the last accepted --operator-policy file", registers: [registry] }),
    ml2Requests: new Counter({ name: "palisade_openstack_ml2_requests_total", help: "Requests to the ML2 endpoint (--ml2-listen) from the Palisade ML2 mechanism driver, by route", labelNames: ["route"], registers: [registry] }),
    networkLogs: new Gauge({ name: "palisade_openstack_network_logs", help: "Enabled security_group logs of Neutron's logging API the --network-log-file follows (the last listing read)", registers: [registry] }),
    networkLogReads: new Counter({ name: "palisade_openstack_network_log_reads_total", help: "Reads of Neutron's /v2.0/log/logs, by result (ok, failed: the last good selection stays)", labelNames: ["result"], registers: [registry] }),
    networkLogRecords: new Counter({
      name: "palisade_openstack_network_log_records_total",
      help: "Flow records of ports a Neutron log selects, by result (written; dropped: the file's writer was behind, or the flow stream was away)", labelNames: ["result"], registers: [registry],
    }),
    lastSuccess: new Gauge({ name: "palisade_openstack_last_success_timestamp_seconds", help: "Unix time of the last successful sync", registers: [registry] }),
  };
}
