//! A VM behind a BMC: OpenIPMI's `ipmi_sim` in the lab's namespace with a
//! chassis_control program that starts QEMU (network boot after `bootdev
//! pxe`, disk otherwise) and stops it.

use std::path::Path;

use super::netns::Lab;

/// Kills the VM the chassis program started, whatever happens to the test.
pub struct VmPid(pub std::path::PathBuf);

impl Drop for VmPid {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = std::process::Command::new("kill")
                .arg(pid.trim())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Writes the chassis program and ipmi_sim's configuration into the lab
/// directory; returns the BMC's port.
pub fn bmc_files(lab: &Lab, qemu: &[String]) -> u16 {
    let dir = lab.dir.path();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // QEMU's arguments, one per line, read back by the shell script.
    std::fs::write(dir.join("qemu.args"), qemu.join("\n") + "\n").unwrap();
    let chassis = dir.join("chassis.sh");
    std::fs::write(
        &chassis,
        r#"#!/bin/bash
# ipmi_sim's chassis_control: <mc> get|set <parm> [value] ...
dir=$(dirname "$0")
echo "$*" >> "$dir/chassis.calls"
running() { [ -e "$dir/qemu.pid" ] && kill -0 "$(cat "$dir/qemu.pid")" 2>/dev/null; }
start_vm() {
  running && return
  mapfile -t args < "$dir/qemu.args"
  if [ "$(cat "$dir/bootdev" 2>/dev/null)" = pxe ]; then boot=n; else boot=c; fi
  setsid "${args[@]}" -boot "$boot" </dev/null >>"$dir/qemu-bmc.log" 2>&1 &
  echo $! > "$dir/qemu.pid"
}
stop_vm() {
  running && kill "$(cat "$dir/qemu.pid")"
  for _ in $(seq 50); do running || break; sleep 0.1; done
}
shift
op=$1; shift
case $op in
get)
  for p in "$@"; do
    case $p in
      power) if running; then echo power:1; else echo power:0; fi;;
      boot) echo "boot:$(cat "$dir/bootdev" 2>/dev/null || echo default)";;
    esac
  done;;
set)
  while [ $# -gt 1 ]; do
    case $1 in
      power) if [ "$2" = 1 ]; then start_vm; else stop_vm; fi;;
      reset) stop_vm; start_vm;;
      boot) echo "$2" > "$dir/bootdev";;
    esac
    shift 2
  done;;
esac
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&chassis, std::fs::Permissions::from_mode(0o755)).unwrap();
    sim_config(dir, port, &chassis);
    std::fs::create_dir_all(dir.join("bmc-state")).unwrap();
    port
}

/// Writes `lan.conf` (a LAN channel on 127.0.0.1:`port`, user
/// `admin`/`secret` with ADMINISTRATOR, `viewer`/`secret` with USER, and
/// `chassis` as the chassis_control program) and `sim.emu` (one BMC) into
/// `dir`, for `ipmi_sim -c lan.conf -f sim.emu`.
pub fn sim_config(dir: &Path, port: u16, chassis: &Path) {
    std::fs::write(
        dir.join("lan.conf"),
        format!(
            r#"name "bltest"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{} 0x20"
user 2 true  "admin"  "secret" admin 10 none md2 md5 straight
user 3 true  "viewer" "secret" user  10 none md2 md5 straight
"#,
            chassis.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("sim.emu"),
        "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n",
    )
    .unwrap();
}

/// Starts `ipmi_sim` for VM `name` (a BIOS machine with `mac`) in the lab's
/// namespace; returns its port and the guard that kills the VM.
pub fn start(lab: &mut Lab, name: &str, mac: &str) -> (u16, VmPid) {
    start_firmware(lab, name, mac, false)
}

/// As `start`, the machine with OVMF (UEFI, the firmware's own PXE) when
/// `uefi`.
pub fn start_firmware(lab: &mut Lab, name: &str, mac: &str, uefi: bool) -> (u16, VmPid) {
    // (The chassis program runs in the lab's namespace, as ipmi_sim does.)
    let qemu = lab.vm_args(name, mac, uefi, false);
    let port = bmc_files(lab, &qemu);
    let guard = VmPid(lab.dir.path().join("qemu.pid"));
    let dir = lab.dir.path().to_path_buf();
    let conf = dir.join("lan.conf").display().to_string();
    let emu = dir.join("sim.emu").display().to_string();
    let state = dir.join("bmc-state").display().to_string();
    let ns = lab.ns.clone();
    lab.spawn_in(
        &ns,
        "ipmi_sim",
        &[
            "ipmi_sim", "-c", &conf, "-f", &emu, "-s", &state, "-n", "-p",
        ],
    );
    (port, guard)
}

/// What the chassis program was asked, one call per line.
pub fn chassis_calls(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir.path().join("chassis.calls")).unwrap_or_default()
}
