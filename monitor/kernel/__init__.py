"""Kernel facts: what the running kernel offers (version, BTF and the struct layout in it, headers, symbols)."""
