"""The command line: commands, doctor, terminal tables."""
