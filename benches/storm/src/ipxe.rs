//! What a simulated iPXE does with a script: the few commands a boot
//! script uses, read into steps. Pure: the machine fetches, this reads.

/// What the script asks for, in order, up to the first command that ends
/// it (`chain`, `boot` or `exit`).
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Fetch this script and go on with it instead.
    Chain(String),
    /// Load this kernel and initrd, then start the kernel with `args`.
    Boot {
        kernel: String,
        args: Vec<String>,
        initrds: Vec<String>,
    },
    /// The script gives up on network boot (`exit`); `said` is what it
    /// echoed last, the reason a real console would show.
    Exit { said: String },
}

/// Reads `script`, fetched from `base` (an `http://host:port/path` URL),
/// for the machine with `mac` (`aa:bb:cc:dd:ee:ff`).
pub fn read(script: &str, base: &str, mac: &str) -> Result<Next, String> {
    let mut lines = script.lines();
    match lines.next() {
        Some(first) if first.trim_end().starts_with("#!ipxe") => {}
        _ => return Err("not an iPXE script (no #!ipxe line)".into()),
    }
    let mut kernel: Option<(String, Vec<String>)> = None;
    let mut initrds = Vec::new();
    let mut said = String::new();
    for line in lines {
        // `cmd || goto failed`: the part before `||` is what runs first.
        let line = line.split("||").next().unwrap_or("").trim();
        let line = line.replace("${netX/mac}", mac).replace("${net0/mac}", mac);
        let line = line.replace("${mac}", mac);
        let mut words = line.split_whitespace();
        let Some(cmd) = words.next() else { continue };
        let mut operands = words.filter(|w| !w.starts_with("--"));
        match cmd {
            "chain" | "chainload" => {
                let url = operands.next().ok_or("chain without a URL")?;
                return Ok(Next::Chain(resolve(base, url)));
            }
            "kernel" | "imgexec" => {
                let url = operands.next().ok_or("kernel without a URL")?;
                kernel = Some((resolve(base, url), operands.map(String::from).collect()));
            }
            "initrd" | "module" => {
                let url = operands.next().ok_or("initrd without a URL")?;
                initrds.push(resolve(base, url));
            }
            "boot" => break,
            "exit" => return Ok(Next::Exit { said }),
            "echo" => said = operands.collect::<Vec<_>>().join(" "),
            _ => {}
        }
    }
    match kernel {
        Some((kernel, args)) => Ok(Next::Boot {
            kernel,
            args,
            initrds,
        }),
        None => Err("the script loads no kernel".into()),
    }
}

/// `url` as iPXE would resolve it against the script's own URL.
fn resolve(base: &str, url: &str) -> String {
    if url.contains("://") {
        return url.to_string();
    }
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    if let Some(path) = url.strip_prefix('/') {
        let host_end = base[after_scheme..]
            .find('/')
            .map_or(base.len(), |i| after_scheme + i);
        return format!("{}/{path}", &base[..host_end]);
    }
    match base[after_scheme..].rfind('/') {
        Some(i) => format!("{}/{url}", &base[..after_scheme + i]),
        None => format!("{base}/{url}"),
    }
}

/// The value of `name=...` among kernel arguments.
pub fn kernel_arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: &str = "52:54:02:00:00:07";

    fn check(script: &str, expected: Result<Next, &str>) {
        let got = read(script, "http://10.0.0.1:8080/ipxe/x", MAC);
        assert_eq!(got, expected.map_err(String::from), "{script}");
    }

    #[test]
    fn scripts_read_as_ipxe_would() {
        check(
            "#!ipxe\necho fetching\nchain --replace --autofree http://h:1/ipxe/${netX/mac} || goto failed\n:failed\nexit 1\n",
            Ok(Next::Chain(format!("http://h:1/ipxe/{MAC}"))),
        );
        check(
            "#!ipxe\nkernel http://h/k a=1 b\ninitrd /i.img\nboot\n",
            Ok(Next::Boot {
                kernel: "http://h/k".into(),
                args: vec!["a=1".into(), "b".into()],
                initrds: vec!["http://10.0.0.1:8080/i.img".into()],
            }),
        );
        check(
            "#!ipxe\nkernel vmlinuz\nboot\n",
            Ok(Next::Boot {
                kernel: "http://10.0.0.1:8080/ipxe/vmlinuz".into(),
                args: vec![],
                initrds: vec![],
            }),
        );
        check(
            "#!ipxe\necho bootloader: m: unknown MAC; booting from the local disk\nexit\n",
            Ok(Next::Exit {
                said: "bootloader: m: unknown MAC; booting from the local disk".into(),
            }),
        );
        check("<html>", Err("not an iPXE script (no #!ipxe line)"));
        check("#!ipxe\necho nothing\n", Err("the script loads no kernel"));
        check("#!ipxe\nchain\n", Err("chain without a URL"));
    }

    #[test]
    fn kernel_args_by_name() {
        let args = vec!["quiet".to_string(), "bootloader.steps=a,b".to_string()];
        assert_eq!(kernel_arg(&args, "bootloader.steps"), Some("a,b"));
        assert_eq!(kernel_arg(&args, "bootloader"), None);
        assert_eq!(kernel_arg(&args, "quiet"), None);
    }
}
