//! Every shipped profile and every seed profile from the older system must
//! parse, validate and render with a full context.

use std::path::{Path, PathBuf};

use bootloader_core::profile::{self, CONTEXT_VARIABLES, Profile};

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn sample_context(p: &Profile) -> serde_json::Value {
    let mut ctx = serde_json::Map::new();
    for name in CONTEXT_VARIABLES {
        ctx.insert(
            (*name).to_string(),
            serde_json::json!(format!("sample-{name}")),
        );
    }
    let mut set = |k: &str, v: serde_json::Value| {
        ctx.insert(k.to_string(), v);
    };
    set("agent_url", "http://192.0.2.1:8080".into());
    set(
        "callback_base",
        "http://192.0.2.1:8080/callback/d-1/".into(),
    );
    set("deployment_id", "d-1".into());
    set("hostname", "node1".into());
    set("domain", "example.com".into());
    set("fqdn", "node1.example.com".into());
    set("ipaddress", "192.0.2.10".into());
    set("netmask", "255.255.255.0".into());
    set("gateway", "192.0.2.254".into());
    set("nameserver", "192.0.2.53".into());
    set("nameservers", "192.0.2.53 192.0.2.54".into());
    set("mac_address", "52:54:00:12:34:56".into());
    set("mac_address_dashed", "52-54-00-12-34-56".into());
    set(
        "labels",
        serde_json::json!({"rack": "r1", "role": "compute"}),
    );
    set("profile", p.name.clone().into());
    set("profile_version", p.version.clone().into());
    serde_json::Value::Object(ctx)
}

fn check_dir(sub: &str, expected_min: usize) -> Vec<Profile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(sub);
    let files = yaml_files(&dir);
    assert!(
        files.len() >= expected_min,
        "expected at least {expected_min} profiles in {}",
        dir.display()
    );
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let p = profile::parse(&text)
            .unwrap_or_else(|errs| panic!("{} does not validate:\n{errs}", file.display()));
        let ctx = sample_context(&p);
        for name in p.templates.keys() {
            let out = profile::render_template(&p, name, &ctx).unwrap_or_else(|e| {
                panic!("{}: template {name} does not render: {e}", file.display())
            });
            assert!(!out.contains("{{"), "{}: {name} left a tag", file.display());
        }
        for (_, step) in p.workflow.steps() {
            for action in &step.actions {
                let text = match &action.kind {
                    profile::ActionKind::ServeFile { filename, .. }
                    | profile::ActionKind::DeleteFile { filename, .. } => filename,
                    profile::ActionKind::Echo { message } => message,
                    _ => continue,
                };
                profile::render_str(text, &ctx).unwrap_or_else(|e| {
                    panic!("{}: {text:?} does not render: {e}", file.display())
                });
            }
        }
        serde_json::to_string(&p).unwrap_or_else(|e| panic!("serialize: {e}"));
        out.push(p);
    }
    out
}

#[test]
fn shipped_profiles_parse_and_render() {
    let profiles = check_dir("profiles", 3);
    let find = |name: &str| {
        profiles
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("profile {name} missing"))
    };
    for name in ["echo", "debian-12-netinst", "payload"] {
        assert_eq!(find(name).version, "1.0");
    }
    assert_eq!(
        find("payload").callback_names(),
        ["preparing", "installing", "configuring", "postconfiguring"]
    );
    assert_eq!(
        find("debian-12-netinst").callback_names(),
        ["installing", "configuring", "postconfiguring"]
    );
}

#[test]
fn seed_profiles_parse_and_render() {
    let profiles = check_dir("tests/fixtures/seed-profiles", 2);
    let versions: Vec<(&str, &str)> = profiles
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert!(versions.contains(&("echo", "0.1")), "{versions:?}");
    assert!(
        versions.contains(&("ubuntu-16.04", "0.1-a")),
        "{versions:?}"
    );
}

#[test]
fn rendered_payload_ipxe_script() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/payload-1.0.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let p = profile::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let script =
        profile::render_template(&p, "ipxe", &sample_context(&p)).unwrap_or_else(|e| panic!("{e}"));
    assert!(script.starts_with("#!ipxe\n"));
    assert!(script.contains(
        "bootloader.callback=http://192.0.2.1:8080/callback/d-1/ bootloader.steps=preparing,installing,configuring,postconfiguring"
    ));
}

/// Hostile and broken uploads give errors, never a panic: every prefix of
/// every known profile, and each with bytes swapped for YAML punctuation.
#[test]
fn damaged_profiles_never_panic() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut texts = Vec::new();
    for dir in ["profiles", "tests/fixtures/seed-profiles"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            texts.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
        }
    }
    let mut parsed = 0usize;
    for text in &texts {
        let bytes = text.as_bytes();
        let step = (bytes.len() / 400).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            if let Ok(prefix) = std::str::from_utf8(&bytes[..cut]) {
                let _ = bootloader_core::profile::parse(prefix);
                parsed += 1;
            }
        }
        for (i, junk) in (0..bytes.len()).step_by(step * 3).zip(
            [":", "{", "[", "&a", "*a", "- ", "\t", "{{", "{%", "'"]
                .iter()
                .cycle(),
        ) {
            let mut damaged = text.clone();
            if damaged.is_char_boundary(i) {
                damaged.insert_str(i, junk);
                let _ = bootloader_core::profile::parse(&damaged);
                parsed += 1;
            }
        }
    }
    assert!(parsed > 1000, "only {parsed} variants tried");
}
