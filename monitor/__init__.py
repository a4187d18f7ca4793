"""mnmon: eBPF live monitor of mmu notifiers and the OOM reaper."""

__version__ = "0.1.0"
