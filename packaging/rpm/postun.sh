# bootloader (rpm %postun): rpm has no purge: erasing keeps the data in
# /var/lib/bootloader (remove it by hand to start afresh); a modified
# config is kept as bootloader.toml.rpmsave.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
