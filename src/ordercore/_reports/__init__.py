"""Reports: statistics, exports and backups.

Empty for now: the statistics and export issues fill it. Queries that compute in SQL live in
``adapters/sqlalchemy``; what is computed from their rows lives here."""
