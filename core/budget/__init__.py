"""One fleet-wide budget for OneRoster: a token bucket with an adaptive rate, a cap on requests
in flight held as expiring leases, a shared pause on ``429``, and three request classes.

``policy`` (the numbers), ``bucket`` (the pure arithmetic, time passed in), ``lua/`` (the same
arithmetic as Redis scripts), ``store`` (the Redis and in-process budgets), ``gate`` (what the
OneRoster clients call around every request), ``classes`` (which class a call belongs to).
"""
