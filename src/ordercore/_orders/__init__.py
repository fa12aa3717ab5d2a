"""Orders: the catalogue, customers, coupons, wallets, pricing, the order list and the order
use cases. Domain modules (``domain``, ``pricing``, ``listing``, ``wallet``) are pure; the
``*_service`` modules are the use cases that run them in a unit of work."""
