# Creates a fresh Neutron database schema from Neutron's models, as Neutron's
# own unit tests do (neutron.tests.unit.testlib_api): Neutron's alembic
# migrations do not run on SQLite. Usage: neutron_db_init.py sqlite:////path/neutron.db
import sys

from neutron.db.migration.models import head  # noqa: F401  (imports every model)
from neutron_lib.db import model_base
import sqlalchemy

engine = sqlalchemy.create_engine(sys.argv[1])
model_base.BASEV2.metadata.create_all(engine)
engine.dispose()
