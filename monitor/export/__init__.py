"""One model of the numbers, and its Prometheus renderings."""
