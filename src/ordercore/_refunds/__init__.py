"""Refunds and after-sales: the refund lifecycle, destinations and limits (``domain``, pure)
and the use cases that request, review, process and settle refunds and after-sales issues."""
