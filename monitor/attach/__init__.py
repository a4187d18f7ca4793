"""Loading and attaching: compile for a plan, attach each probe, keep notifier callbacks probed."""
