# The package's unit from the repository's (deploy/systemd/mnmon.service), which runs a
# checkout's virtualenv at /opt/mnmon: the package runs /usr/bin/mnmon, and its
# install is done by the package (enabled and started at install, the config a conffile).
s|^ExecStart=/opt/mnmon/\.venv/bin/mnmon |ExecStart=/usr/bin/mnmon |
s|^Documentation=file:///opt/mnmon/README\.md$|Documentation=man:mnmon(1) file:///usr/share/doc/mnmon/README.md|
/^# Assumed install path:/,/^# `mnmon serve` reads/c\
# Installed by the mnmon Debian package, enabled and started at install. `mnmon serve`\
# reads /etc/mnmon/config.yaml, the package's conffile.
