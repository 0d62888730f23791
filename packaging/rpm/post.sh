# bootloader (rpm %post): the data dir and config permissions; the service
# is enabled on first install (as the preset says) and restarted on upgrade.
# The system user and the data
# dir, through systemd-sysusers/systemd-tmpfiles where they exist, by hand
# where they do not (a container or chroot without systemd).
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers /usr/lib/sysusers.d/bootloader.conf
elif ! getent passwd bootloader >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/bootloader --no-create-home \
        --shell /usr/sbin/nologin --comment "bootloader provisioning daemon" bootloader
fi
# systemd-tmpfiles needs /proc, which an image build's chroot may lack.
if ! { command -v systemd-tmpfiles >/dev/null 2>&1 &&
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/bootloader.conf 2>/dev/null; }; then
    mkdir -p /var/lib/bootloader
    chown bootloader:bootloader /var/lib/bootloader
    chmod 0750 /var/lib/bootloader
fi
# The config may hold secrets (database password, SECRET_KEY): the daemon's
# group reads it, nobody else.
if [ -f /etc/bootloader/bootloader.toml ]; then
    chgrp bootloader /etc/bootloader/bootloader.toml
    chmod 0640 /etc/bootloader/bootloader.toml
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if [ "$1" -eq 1 ]; then
        systemctl preset bootloader.service >/dev/null 2>&1 || true
    else
        systemctl try-restart bootloader.service >/dev/null 2>&1 || true
    fi
fi
exit 0
