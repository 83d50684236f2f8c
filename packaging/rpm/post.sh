# %post ($1: 1 = install, 2+ = upgrade): the system user and the directories, then
# enable the service on first install without starting it (as the .deb does).
systemd-sysusers appliance.conf || :
systemd-tmpfiles --create appliance.conf || :
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
  systemctl --no-reload enable appliance.service >/dev/null 2>&1 || :
fi
