"""Anomalies: what could not be applied as it came (duplicate payment, amount mismatch, payment
on a closed order, ...) and the workflow an operator follows to resolve it."""
