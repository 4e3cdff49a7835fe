# Palisade's log driver for Neutron's logging service (DESIGN §11.13). Thin:
# it only makes Neutron accept `openstack network log create
# --resource-type security_group ...` for ports Palisade binds (Neutron lists
# and accepts only the resource types a registered log driver supports, and
# checks a --target port's vif type against the driver's), and tells the
# adapter that a log changed so its watch polls now. What a log selects, and
# writing the records, is palisade-openstack's: it reads /v2.0/log/logs.
from neutron_lib.api.definitions import portbindings
from neutron_lib.services.logapi import constants as log_const
from oslo_log import log as logging
from oslo_utils import importutils

from neutron.services.logapi.drivers import base

LOG = logging.getLogger(__name__)

DRIVER = None


class PalisadeLogDriver(base.DriverBase):

    def __init__(self, notice):
        super().__init__(
            name="palisade",
            # The vif types Palisade's mechanism driver binds with
            # ([palisade] vif_type: bridge, ovs-hybrid, tap).
            vif_types=[portbindings.VIF_TYPE_BRIDGE, portbindings.VIF_TYPE_OVS,
                       portbindings.VIF_TYPE_TAP],
            vnic_types=[portbindings.VNIC_NORMAL],
            supported_logging_types=[log_const.SECURITY_GROUP],
            requires_rpc=False)
        self._notice = notice

    # Called by the logging plugin after its transaction commits.
    def create_log(self, context, log_obj):
        self._notice("log", log_obj.id)

    def update_log(self, context, log_obj):
        self._notice("log", log_obj.id)

    def delete_log(self, context, log_obj):
        self._notice("log", log_obj.id)


def register(notice):
    """Registers the driver (once per process): the logging plugin, created
    after the core plugin, finds it on its AFTER_INIT event."""
    global DRIVER
    if DRIVER is None:
        DRIVER = PalisadeLogDriver(notice)
        # Neutron's validator of security_group log requests (the resource
        # exists, the target port is bound with a supported vif type, the
        # port is in the group) registers itself on import.
        importutils.import_module("neutron.services.logapi.common.sg_validate")
        LOG.info("Palisade: log driver registered (security_group)")
    return DRIVER
