"""Reading the BPF maps and events into numbers, per concern."""
