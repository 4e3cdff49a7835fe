# An ML2 mechanism driver for the tests' real Neutron, which runs without
# agents: Neutron's own drivers (openvswitch, linuxbridge) bind a port only on
# a host whose agent reports in, so without one every binding fails. This one
# binds any host the way the linuxbridge driver would (vif_type "bridge",
# port filtering by the host), except hosts whose name starts with "fail-",
# where binding fails (binding:vif_type "binding_failed") as it does in a
# cloud when a host's agent is dead. Loaded by neutron-server through the
# entry point in palisade_test_mech-0.dist-info (the same directory is put on
# PYTHONPATH). Everything else — API, database, ML2, port bindings — is
# Neutron's own code.
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class PalisadeTestMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        if context.host.startswith("fail-"):
            return  # no driver binds: ML2 reports binding_failed
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_BRIDGE,
                                {portbindings.CAP_PORT_FILTER: True})
            return
