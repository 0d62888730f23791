#!/usr/bin/env bash
# Build a tiny Linux payload that the e2e tests boot in QEMU:
#   $1/vmlinuz     Debian's amd64 kernel (linux-image-6.1.0-*-amd64 on bookworm)
#   $1/initrd.img  gzip'd newc cpio: static busybox, NIC modules, /init
#   $1/payload.txt what went in (kernel package and version, modules)
#
# /init brings up the first ethernet NIC with busybox udhcpc, then for each
# step in bootloader.steps=a,b,c fetches <bootloader.callback><step> with
# busybox wget (5 attempts, 2 s apart, each bounded by `timeout 20`), printing
# "payload: ..." lines on the console, and powers off.
#
# Cached: does nothing when both outputs exist and are newer than this script.
# Needs root only to install missing Debian packages (busybox-static, cpio) and
# to run `apt-get update` when the package lists are missing or stale.
#
# Environment:
#   PAYLOAD_KERNEL_PKG  kernel package to use (default: what linux-image-amd64
#                       depends on), optionally pinned as name=version
#   PAYLOAD_MODULES     top-level modules to include (default below); their
#                       dependencies are added and ordered automatically
#   PAYLOAD_FORCE=1     rebuild even when the cache is fresh
set -euo pipefail
# With pipefail, never end a pipeline with a reader that quits early (head,
# grep -q, awk exit): the writer's SIGPIPE (141) would abort the build.

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
out=$1
script=$(readlink -f "${BASH_SOURCE[0]}")
# e1000: QEMU -device e1000; e1000e: q35's default -nic; virtio_pci + virtio_net:
# -device virtio-net-pci.
modules_wanted=${PAYLOAD_MODULES:-"e1000 e1000e virtio_pci virtio_net"}

log() { echo "build-payload: $*" >&2; }
die() { log "error: $*"; exit 1; }

fresh() {
    [ "${PAYLOAD_FORCE:-0}" != 1 ] &&
        [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] &&
        [ "$out/vmlinuz" -nt "$script" ] && [ "$out/initrd.img" -nt "$script" ]
}

mkdir -p "$out"
out=$(readlink -f "$out")
if fresh; then
    log "up to date: $out"
    exit 0
fi

# Concurrent callers (parallel tests) wait for one builder, then reuse its result.
if command -v flock >/dev/null; then
    exec 9>"$out/.build.lock"
    flock 9
    if fresh; then
        log "up to date: $out (built by a concurrent caller)"
        exit 0
    fi
fi

tmp=$(mktemp -d /var/tmp/build-payload.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt downloads as _apt, which must reach $tmp/dl

# --- host tools -------------------------------------------------------------
apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        apt-get update -qq >&2
        apt_updated=1
    fi
}

missing=()
bb_status=$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null || true)
if [[ "$bb_status" != *"ok installed"* ]]; then
    missing+=(busybox-static)
fi
command -v cpio >/dev/null || missing+=(cpio)
command -v gzip >/dev/null || missing+=(gzip)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}) and not root to install them"
    log "installing ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
        apt_update
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
fi
busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox (busybox-static) not found"

# --- kernel package ---------------------------------------------------------
resolve_kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '!found && $1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; found = 1 }'
}

# Sets kpkg to name=version; with stale package lists, updates them once.
resolve_kpkg() {
    local name=${PAYLOAD_KERNEL_PKG:-} ver
    if [ -z "$name" ]; then
        name=$(resolve_kernel_pkg)
        if [ -z "$name" ]; then
            apt_update
            name=$(resolve_kernel_pkg)
        fi
        [ -n "$name" ] || die "cannot resolve the kernel package behind linux-image-amd64"
    fi
    if [[ "$name" == *=* ]]; then
        kpkg=$name
        return
    fi
    ver=$(apt-cache show --no-all-versions "$name" 2>/dev/null | awk '!found && /^Version:/ { print $2; found = 1 }')
    if [ -z "$ver" ]; then
        apt_update
        ver=$(apt-cache show --no-all-versions "$name" 2>/dev/null | awk '!found && /^Version:/ { print $2; found = 1 }')
    fi
    [ -n "$ver" ] || die "no version of $name in the package lists"
    kpkg="$name=$ver"
}
resolve_kpkg

dl=$tmp/dl
mkdir -p "$dl"
# apt drops privileges to _apt for downloads: let it write here.
if id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
if ! (cd "$dl" && apt-get download -qq "$kpkg" >&2); then
    # Stale lists can name a version (even an ABI) the mirror no longer has:
    # refresh them, resolve again, retry once.
    if [ "$apt_updated" = 0 ]; then
        apt_update
        resolve_kpkg
    fi
    (cd "$dl" && apt-get download -qq "$kpkg" >&2) || die "apt-get download $kpkg failed"
fi
log "kernel package $kpkg"
debs=("$dl"/*.deb)
deb=${debs[0]}
[ -f "$deb" ] || die "apt-get download left no .deb"
kx=$tmp/kernel
dpkg-deb -x "$deb" "$kx"

kernels=("$kx"/boot/vmlinuz-*)
vmlinuz=${kernels[0]}
[ -f "$vmlinuz" ] || die "no boot/vmlinuz-* in $deb"
krel=${vmlinuz##*/vmlinuz-}
moddir=$kx/lib/modules/$krel
config=$kx/boot/config-$krel
[ -d "$moddir" ] || die "no lib/modules/$krel in $deb"

# --- modules: index, dependency order, decompression ------------------------
declare -A ko_path=()
while IFS= read -r -d '' f; do
    name=${f##*/}
    name=${name%%.ko*}
    ko_path[${name//-/_}]=$f
done < <(find "$moddir" -name '*.ko*' -print0)

# CONFIG_ symbol per module for the built-in check; unknown ones rely on
# modules.builtin instead.
declare -A ko_config=(
    [e1000]=CONFIG_E1000 [e1000e]=CONFIG_E1000E
    [virtio_net]=CONFIG_VIRTIO_NET [virtio_pci]=CONFIG_VIRTIO_PCI
)
is_builtin() {
    local m=$1
    if [ -n "${ko_config[$m]:-}" ] && [ -f "$config" ] && grep -qx "${ko_config[$m]}=y" "$config"; then
        return 0
    fi
    [ -f "$moddir/modules.builtin" ] &&
        awk -v m="$m" '{ sub(/.*\//, ""); sub(/\.ko.*/, ""); gsub(/-/, "_") } $0 == m { found = 1 } END { exit !found }' "$moddir/modules.builtin"
}

# Decompressed copy of a module, so its .modinfo is readable and busybox
# insmod (no xz/zstd support for modules) can load it.
declare -A ko_plain=()
plain_ko() {
    local m=$1 src=${ko_path[$1]} dst=$tmp/ko/$1.ko
    if [ -z "${ko_plain[$m]:-}" ]; then
        mkdir -p "$tmp/ko"
        case "$src" in
            *.ko) cp "$src" "$dst" ;;
            *.ko.xz) xz -dc "$src" >"$dst" ;;
            *.ko.gz) gzip -dc "$src" >"$dst" ;;
            *.ko.zst) command -v zstd >/dev/null || die "zstd needed for $src"; zstd -qdc "$src" >"$dst" ;;
            *) die "unknown module compression: $src" ;;
        esac
        ko_plain[$m]=$dst
    fi
    printf '%s\n' "${ko_plain[$m]}"
}

ko_depends() {
    local f
    f=$(plain_ko "$1")
    # .modinfo holds NUL-separated key=value strings; depends= lists modules.
    tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',-' ' _'
}

declare -A visited=()
order=()
builtin_list=()
visit() { # depth-first, dependencies before dependents
    local m=${1//-/_} d
    [ -z "${visited[$m]:-}" ] || return 0
    visited[$m]=1
    if [ -z "${ko_path[$m]:-}" ]; then
        if is_builtin "$m"; then
            builtin_list+=("$m")
            return 0
        fi
        die "module $m is neither in $deb nor built in"
    fi
    # plain_ko runs in a subshell inside ko_depends: decompress here so the
    # ko_plain cache in this shell is filled.
    plain_ko "$m" >/dev/null
    for d in $(ko_depends "$m"); do visit "$d"; done
    order+=("$m")
}
for m in $modules_wanted; do visit "$m"; done
log "modules (load order): ${order[*]:-none}${builtin_list:+; built in: ${builtin_list[*]}}"

# --- initramfs tree ---------------------------------------------------------
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,lib/modules,usr/share/udhcpc,etc/udhcpc}
cp "$busybox" "$root/bin/busybox"
# Every applet as a symlink, created now so /init needs no --install step.
"$busybox" --list-full | while IFS= read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
done
[ -e "$root/bin/sh" ] || ln -s busybox "$root/bin/sh"

: >"$root/lib/modules/load-order"
for m in "${order[@]}"; do
    cp "${ko_plain[$m]}" "$root/lib/modules/$m.ko"
    echo "$m" >>"$root/lib/modules/load-order"
done

# The kernel gives /init no stdin/stdout unless the archive has /dev/console.
if [ "$(id -u)" = 0 ]; then
    mknod -m 600 "$root/dev/console" c 5 1
    mknod -m 666 "$root/dev/null" c 1 3
fi

cat >"$root/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
# busybox udhcpc hook: apply the lease (udhcpc itself configures nothing).
case "$1" in
    deconfig)
        ip addr flush dev "$interface" 2>/dev/null
        ip link set "$interface" up
        ;;
    bound|renew)
        ip addr flush dev "$interface" 2>/dev/null
        ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
        ip route del default dev "$interface" 2>/dev/null
        for r in $router; do
            ip route add default via "$r" dev "$interface" && break
        done
        : >/etc/resolv.conf
        [ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
        echo "$ip" >/run/payload-ip
        ;;
esac
exit 0
EOF
chmod 755 "$root/usr/share/udhcpc/default.script"
ln -s /usr/share/udhcpc/default.script "$root/etc/udhcpc/default.script"

cat >"$root/init" <<'EOF'
#!/bin/sh
# bootloader e2e payload: DHCP, HTTP callbacks from the kernel command line,
# power off. Every line it prints starts with "payload: ".
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /run /tmp
ln -sf /proc/self/fd /dev/fd 2>/dev/null

say() { echo "payload: $*"; }

finish() {
    say "done $1"
    say "poweroff"
    sync
    poweroff -f
    sleep 2
    echo o >/proc/sysrq-trigger
    sleep 10
    # Never let PID 1 exit (that is a kernel panic).
    while :; do sleep 3600; done
}

say "init started (kernel $(uname -r))"

callback=
steps=
set -f
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        bootloader.callback=*) callback=${arg#*=} ;;
        bootloader.steps=*) steps=${arg#*=} ;;
    esac
done
set +f

while read -r m; do
    [ -n "$m" ] || continue
    if [ -f "/lib/modules/$m.ko" ]; then
        insmod "/lib/modules/$m.ko" 2>/dev/null || say "insmod $m failed (ignored)"
    fi
done </lib/modules/load-order

ip link set lo up

# First ethernet interface (ARPHRD_ETHER = 1); drivers may need a moment.
iface=
i=0
while [ $i -lt 50 ]; do
    for n in /sys/class/net/*; do
        name=${n##*/}
        [ "$name" = lo ] && continue
        [ "$(cat "$n/type" 2>/dev/null)" = 1 ] || continue
        iface=$name
        break
    done
    [ -n "$iface" ] && break
    sleep 0.2
    i=$((i + 1))
done

if [ -z "$iface" ]; then
    say "no ethernet interface"
    say "dhcp failed"
    finish failed
fi
say "nic $iface $(cat /sys/class/net/$iface/address)"
ip link set "$iface" up
# e1000 reports link ~2 s after "up"; a DISCOVER sent before that is lost and
# udhcpc waits its full retry pause. Wait for carrier (at most 10 s).
i=0
while [ $i -lt 50 ] && [ "$(cat /sys/class/net/$iface/carrier 2>/dev/null)" != 1 ]; do
    sleep 0.2
    i=$((i + 1))
done

if udhcpc -f -i "$iface" -n -q -t 10 -T 2 -s /usr/share/udhcpc/default.script >/tmp/udhcpc.log 2>&1 \
    && [ -s /run/payload-ip ]; then
    say "dhcp ok $(cat /run/payload-ip)"
else
    cat /tmp/udhcpc.log
    say "dhcp failed"
    finish failed
fi

if [ -z "$callback" ] || [ -z "$steps" ]; then
    say "no bootloader.callback/bootloader.steps on the command line: nothing to call"
    finish ok
fi

result=ok
IFS=,
set -f
for step in $steps; do
    [ -n "$step" ] || continue
    url="$callback$step"
    ok=
    attempt=1
    while [ $attempt -le 5 ]; do
        if timeout 20 wget -q -O /tmp/callback.out "$url" 2>/tmp/callback.err; then
            ok=1
            break
        fi
        say "callback $step attempt $attempt failed: $(cat /tmp/callback.err 2>/dev/null | tail -n1)"
        attempt=$((attempt + 1))
        [ $attempt -le 5 ] && sleep 2
    done
    if [ -n "$ok" ]; then
        say "callback $step ok"
    else
        say "callback $step failed"
        say "skipping the remaining steps"
        result=failed
        break
    fi
done
unset IFS
set +f

finish "$result"
EOF
chmod 755 "$root/init"

# --- pack and install -------------------------------------------------------
# Fixed mtimes, sorted names, root owner, gzip -n: same inputs, same bytes.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) |
    gzip -9n >"$tmp/initrd.img"
cp "$vmlinuz" "$tmp/vmlinuz"
{
    echo "kernel_package=${kpkg%%=*}"
    echo "kernel_version=${kpkg#*=}"
    echo "kernel_release=$krel"
    echo "modules=${order[*]:-}"
    echo "modules_builtin=${builtin_list[*]:-}"
    echo "busybox=$("$busybox" 2>&1 | sed -n 1p || true)"
} >"$tmp/payload.txt"

mv -f "$tmp/payload.txt" "$out/payload.txt"
mv -f "$tmp/vmlinuz" "$out/vmlinuz"
mv -f "$tmp/initrd.img" "$out/initrd.img"
log "built $out/vmlinuz ($(stat -c %s "$out/vmlinuz") bytes), $out/initrd.img ($(stat -c %s "$out/initrd.img") bytes)"
