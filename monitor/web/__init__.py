"""The exporter's HTTP(S) side: the web configuration file and the server."""
