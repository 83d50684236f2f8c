# %preun ($1: 0 = erase, 1+ = upgrade): on erase stop and disable the service. Data,
# logs, configuration and the user stay (rpm has no purge: remove them by hand,
# see README "Packages").
if [ "$1" -eq 0 ]; then
  systemctl --no-reload disable --now appliance.service >/dev/null 2>&1 || :
fi
