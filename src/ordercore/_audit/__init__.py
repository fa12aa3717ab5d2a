"""The audit trail: entries, the hash chain and its verification (``chain``, pure) and the
use case that reads and verifies it."""
