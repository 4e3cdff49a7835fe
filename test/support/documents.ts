// Document texts several tests start from.

/** The endpoint of the founding brief's example (§3), as YAML. */
export const EXAMPLE_ENDPOINT_YAML = `kind: Endpoint
host: hv1
orchestrator: openstack
workload: vm-1
id: port-1
name: tap0a1b2c3d
state: active
mac: "02:00:00:00:00:01"
ipv4_nets: [198.18.1.2/32]
profile_ids: [db]
`;
