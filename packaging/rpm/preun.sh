# bootloader (rpm %preun): erasing (not upgrading) stops and disables it.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now bootloader.service >/dev/null 2>&1 || true
fi
exit 0
