"""`mnmon serve`'s process: attach, serve, reload, detach; systemd's notify protocol."""
