# bootloader (rpm %pre): the system user exists before the files are
# unpacked with its group.
if command -v systemd-sysusers >/dev/null 2>&1 && [ -f /usr/lib/sysusers.d/bootloader.conf ]; then
    systemd-sysusers /usr/lib/sysusers.d/bootloader.conf
elif ! getent passwd bootloader >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/bootloader --no-create-home \
        --shell /usr/sbin/nologin --comment "bootloader provisioning daemon" bootloader
fi
exit 0
