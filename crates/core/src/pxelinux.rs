//! pxelinux configuration files (`pxelinux.cfg/01-<mac>`), read so that a
//! UEFI machine of a deployment written for pxelinux boots the same entry
//! through iPXE: the entry pxelinux would boot (`DEFAULT`, else
//! `ONTIMEOUT`, else the first `LABEL`), its kernel, initrds and
//! command line, as an iPXE script. Keywords are read in any case, as
//! syslinux reads them; menus, prompts and timeouts have no meaning
//! without pxelinux and are passed over.

/// What pxelinux would boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PxeEntry {
    Linux {
        label: String,
        kernel: String,
        initrds: Vec<String>,
        append: String,
    },
    /// `LOCALBOOT`: the machine's own disk.
    Local { label: String },
}

#[derive(Default)]
struct Label {
    name: String,
    kernel: Option<String>,
    initrd: Option<String>,
    append: Option<String>,
    local: bool,
}

/// The entry `config` boots, or why none.
pub fn default_entry(config: &str) -> Result<PxeEntry, String> {
    let mut labels: Vec<Label> = Vec::new();
    let mut default: Option<String> = None;
    let mut on_timeout: Option<String> = None;
    for raw in config.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, rest) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(k, r)| (k, r.trim()));
        let keyword = keyword.to_ascii_lowercase();
        match keyword.as_str() {
            "default" => default = Some(rest.to_string()),
            "ontimeout" => on_timeout = Some(rest.to_string()),
            "label" => labels.push(Label {
                name: rest.to_string(),
                ..Label::default()
            }),
            "kernel" | "linux" => {
                if let Some(l) = labels.last_mut() {
                    l.kernel = Some(rest.to_string());
                } else if default.is_none() {
                    // A KERNEL before any LABEL is the default's.
                    labels.push(Label {
                        kernel: Some(rest.to_string()),
                        ..Label::default()
                    });
                }
            }
            "initrd" => {
                if let Some(l) = labels.last_mut() {
                    l.initrd = Some(rest.to_string());
                }
            }
            "append" => {
                if let Some(l) = labels.last_mut() {
                    l.append = Some(if rest == "-" {
                        String::new()
                    } else {
                        rest.to_string()
                    });
                }
            }
            "localboot" => {
                if let Some(l) = labels.last_mut() {
                    l.local = true;
                }
            }
            _ => {}
        }
    }
    // DEFAULT naming a menu module (`vesamenu.c32`) leaves the choice to
    // the menu, whose own default is ONTIMEOUT or the first entry.
    let wanted = [default.as_deref(), on_timeout.as_deref()]
        .into_iter()
        .flatten()
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| !d.ends_with(".c32") && !d.is_empty());
    let chosen = match wanted {
        Some(name) => labels
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("DEFAULT {name} names no LABEL"))?,
        None => labels
            .iter()
            .find(|l| l.kernel.is_some() || l.local)
            .ok_or("no LABEL with a KERNEL or LOCALBOOT")?,
    };
    if chosen.local {
        return Ok(PxeEntry::Local {
            label: chosen.name.clone(),
        });
    }
    let Some(kernel) = chosen.kernel.clone() else {
        return Err(format!("LABEL {} has no KERNEL", chosen.name));
    };
    // The kernel's own arguments after its name, then APPEND; an
    // `initrd=` among them names initrds too (comma-separated).
    let mut words: Vec<&str> = kernel.split_whitespace().collect();
    let kernel = words.remove(0).to_string();
    let append_text = chosen.append.clone().unwrap_or_default();
    words.extend(append_text.split_whitespace());
    let mut initrds: Vec<String> = chosen
        .initrd
        .iter()
        .flat_map(|i| i.split(','))
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .collect();
    let mut append = Vec::new();
    for w in words {
        match w.strip_prefix("initrd=") {
            Some(list) => {
                initrds.extend(list.split(',').filter(|i| !i.is_empty()).map(String::from))
            }
            None => append.push(w),
        }
    }
    Ok(PxeEntry::Linux {
        label: chosen.name.clone(),
        kernel,
        initrds,
        append: append.join(" "),
    })
}

/// A pxelinux path as a URL iPXE fetches: URLs as they are; `::path`
/// and relative paths from the TFTP server at `tftp_base`
/// (`tftp://host`), as pxelinux reads them from its own server's root.
fn url(path: &str, tftp_base: &str) -> String {
    if path.contains("://") {
        return path.to_string();
    }
    let path = path.trim_start_matches("::").trim_start_matches('/');
    format!("{tftp_base}/{path}")
}

/// The iPXE script that boots `entry`; `from` names the config in the
/// script's first line. iPXE names each initrd and passes `initrd=` for
/// each, which Linux's EFI stub reads.
pub fn ipxe_script(entry: &PxeEntry, from: &str, tftp_base: &str) -> String {
    match entry {
        PxeEntry::Local { label } => format!(
            "#!ipxe\necho bootloader: {from} label {label} is LOCALBOOT; booting from the local disk\nexit\n"
        ),
        PxeEntry::Linux {
            label,
            kernel,
            initrds,
            append,
        } => {
            let names: Vec<String> = (0..initrds.len()).map(|i| format!("initrd{i}")).collect();
            let mut args: Vec<String> = names.iter().map(|n| format!("initrd={n}")).collect();
            if !append.is_empty() {
                args.push(append.clone());
            }
            let mut s = format!(
                "#!ipxe\necho bootloader: {from} label {label}, booted through iPXE\nkernel {} {}\n",
                url(kernel, tftp_base),
                args.join(" ")
            );
            for (name, initrd) in names.iter().zip(initrds) {
                s.push_str(&format!(
                    "initrd --name {name} {}\n",
                    url(initrd, tftp_base)
                ));
            }
            s.push_str("boot\n");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_older_ubuntu_config_boots_its_entry() {
        let cfg = "DEFAULT ubuntu1604\nLABEL ubuntu1604\n  MENU LABEL ^Ubuntu 16.04\n  \
                   KERNEL http://10.0.0.5:8080/images/ubuntu/16.04/kernel\n  \
                   INITRD http://10.0.0.5:8080/images/ubuntu/16.04/initrd.gz\n  \
                   APPEND auto=true hostname=r1 preseed/url=http://10.0.0.5:8080/p.cfg\n";
        let entry = default_entry(cfg).unwrap();
        let script = ipxe_script(&entry, "pxelinux.cfg/01-aa", "tftp://10.0.0.5");
        assert_eq!(
            script,
            "#!ipxe\necho bootloader: pxelinux.cfg/01-aa label ubuntu1604, booted through iPXE\n\
             kernel http://10.0.0.5:8080/images/ubuntu/16.04/kernel initrd=initrd0 auto=true hostname=r1 preseed/url=http://10.0.0.5:8080/p.cfg\n\
             initrd --name initrd0 http://10.0.0.5:8080/images/ubuntu/16.04/initrd.gz\n\
             boot\n"
        );
    }

    #[test]
    fn entries_as_pxelinux_picks_them() {
        // A menu default leaves it to ONTIMEOUT; initrd= in APPEND;
        // relative paths from the TFTP server; keywords in any case.
        let cfg = "ui vesamenu.c32\ndefault vesamenu.c32\nontimeout install\n\
                   label local\n localboot 0\nlabel install\n linux images/vmlinuz quiet\n \
                   append initrd=images/a.img,::b.img console=ttyS0\n";
        assert_eq!(
            default_entry(cfg).unwrap(),
            PxeEntry::Linux {
                label: "install".into(),
                kernel: "images/vmlinuz".into(),
                initrds: vec!["images/a.img".into(), "::b.img".into()],
                append: "quiet console=ttyS0".into(),
            }
        );
        let script = ipxe_script(&default_entry(cfg).unwrap(), "x", "tftp://192.0.2.1");
        assert!(script.contains("kernel tftp://192.0.2.1/images/vmlinuz initrd=initrd0 initrd=initrd1 quiet console=ttyS0\n"), "{script}");
        assert!(
            script.contains("initrd --name initrd1 tftp://192.0.2.1/b.img\n"),
            "{script}"
        );
        let local = "DEFAULT disk\nLABEL disk\nLOCALBOOT 0\n";
        assert!(matches!(default_entry(local), Ok(PxeEntry::Local { .. })));
        assert!(default_entry("DEFAULT nope\nLABEL x\nKERNEL k\n").is_err());
        assert!(default_entry("# nothing\n").is_err());
        assert!(default_entry("LABEL x\nAPPEND a\n").is_err());
    }
}
