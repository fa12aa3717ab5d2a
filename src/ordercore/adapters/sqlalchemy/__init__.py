"""SQLAlchemy persistence: tables, repositories, unit of work and Alembic migrations."""

from .engine import make_engine
from .tables import Tables, UTCDateTime, build_tables
from .uow import UnitOfWork

__all__ = ["Tables", "UTCDateTime", "UnitOfWork", "build_tables", "make_engine"]
