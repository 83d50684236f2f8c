# %postun ($1: 0 = erased, 1+ = upgraded): reload units; after an upgrade restart the
# service only if it was running.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -ge 1 ]; then
    systemctl try-restart appliance.service >/dev/null 2>&1 || :
  fi
fi
