"""The rebuild pipeline's logic: dirty marks, debounce, rebuild leases, rebuilds, reconcile."""
