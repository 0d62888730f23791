//! Layering, sources, redaction and validation of the configuration.

use super::*;
use bootloader_store::PostgresTarget;
use std::collections::HashMap;

fn load_with(toml_text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |k: &str| vars.get(k).cloned();
    let path = Path::new("test.toml");
    let file = parse_file(toml_text, path)?;
    resolve(
        file,
        Some(path.to_path_buf()),
        &lookup,
        &CliOverrides::default(),
    )
}

fn source_of(c: &Config, key: &str) -> String {
    let s = c.settings.iter().find(|s| s.key == key).unwrap();
    format!("{}={} ({})", s.key, s.value, s.source)
}

#[test]
fn zero_config_defaults() {
    let c = load_with("", &[]).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("./bootloader-data"));
    assert_eq!(c.public_url, "http://127.0.0.1:8080");
    assert_eq!(
        c.database,
        DatabaseConfig::Sqlite {
            path: PathBuf::from("./bootloader-data/bootloader.sqlite3")
        }
    );
    assert_eq!(
        c.secret,
        SecretSource::File(PathBuf::from("./bootloader-data/secret.key"))
    );
    assert_eq!(
        source_of(&c, "http.listen"),
        "http.listen=127.0.0.1:8080 (default)"
    );
}

#[test]
fn unknown_keys_are_named() {
    let err = load_with("[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("lisen"), "{err}");
    let err = load_with("[htp]\n", &[]).unwrap_err().to_string();
    assert!(err.contains("htp"), "{err}");
}

#[test]
fn env_beats_file_and_legacy_names_work() {
    let c = load_with(
        "[server]\nurl = \"http://10.0.0.1:8080\"\n[database]\nhost = \"db\"\n",
        &[
            ("BOOTLOADER_URL", "http://boot.example.com/"),
            ("DB_PASSWORD", "hunter2hunter2"),
            ("DB_NAME", "inventory"),
            ("SSL_ENABLE", "True"),
            ("SSL_CERTIFICATE_FILE", "/etc/ssl/bootloader.crt"),
            ("SSL_KEY_FILE", "/etc/ssl/private/bootloader.key"),
        ],
    )
    .unwrap();
    assert_eq!(c.public_url, "http://boot.example.com");
    assert_eq!(
        source_of(&c, "server.url"),
        "server.url=http://boot.example.com/ (env BOOTLOADER_URL)"
    );
    assert_eq!(
        source_of(&c, "database.host"),
        "database.host=db (file test.toml)"
    );
    assert_eq!(
        source_of(&c, "database.password"),
        "database.password=<redacted> (env DB_PASSWORD)"
    );
    assert!(c.tls.enable);
    match &c.database {
        DatabaseConfig::Postgres {
            target: PostgresTarget::Parts { name, password, .. },
            ..
        } => {
            assert_eq!(name, "inventory");
            assert_eq!(password.as_deref(), Some("hunter2hunter2"));
        }
        other => panic!("expected postgres, got {other:?}"),
    }
}

#[test]
fn database_url_password_is_redacted() {
    let c = load_with(
        "",
        &[("DATABASE_URL", "postgres://app:s3cret@127.0.0.1:5432/bl")],
    )
    .unwrap();
    let shown = source_of(&c, "database.url");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("app:<redacted>@127.0.0.1:5432/bl"),
        "{shown}"
    );
    assert!(!format!("{:?}", c.database).contains("s3cret"));
}

#[test]
fn empty_env_is_unset() {
    let c = load_with("", &[("DB_HOST", ""), ("SECRET_KEY", " ")]).unwrap();
    assert!(matches!(c.database, DatabaseConfig::Sqlite { .. }));
}

#[test]
fn invalid_values_are_all_reported() {
    let err = load_with(
        "[http]\nlisten = \"0.0.0.0:80\"\n[log]\nformat = \"xml\"\n",
        &[("SECRET_KEY", "short"), ("SSL_ENABLE", "maybe")],
    )
    .unwrap_err()
    .to_string();
    for needle in ["server.url", "log.format", "SECRET_KEY", "SSL_ENABLE"] {
        assert!(err.contains(needle), "{needle} missing from {err}");
    }
}

#[test]
fn reload_applies_quirks_and_names_the_rest() {
    let running = load_with("[dhcp]\nlease_time = 600\n", &[]).unwrap();
    let same = load_with("[dhcp]\nlease_time = 600\n", &[]).unwrap();
    assert_eq!(compare(&running, &same), Reload::default());
    let reread = load_with(
        "[dhcp]\nlease_time = 900\n[[dhcp.quirk]]\nname = \"old-rom\"\nmac_prefix = \"52:54:00\"\ntftp_blksize = 512\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        compare(&running, &reread),
        Reload {
            quirks: true,
            need_restart: vec!["dhcp.lease_time"],
        }
    );
}

#[test]
fn email_needs_a_sender_and_recipients() {
    let err = load_with("[email]\nsmtp_url = \"imap://x\"\nto = \"nobody\"\n", &[])
        .unwrap_err()
        .to_string();
    for needle in ["email.smtp_url", "email.from", "email.to"] {
        assert!(err.contains(needle), "{needle} missing from {err}");
    }
    let c = load_with(
        "",
        &[
            ("BOOTLOADER_EMAIL_SMTP_URL", "smtp://relay.example.com:25"),
            ("BOOTLOADER_EMAIL_FROM", "bl@example.com"),
            ("BOOTLOADER_EMAIL_TO", "a@example.com, b@example.com"),
        ],
    )
    .unwrap();
    let email = c.email.expect("email settings");
    assert_eq!(email.to, ["a@example.com", "b@example.com"]);
    assert!(load_with("", &[]).unwrap().email.is_none());
}

#[test]
fn shipped_default_config_parses() {
    let text = include_str!("../../packaging/bootloader.toml");
    let file = parse_file(text, Path::new("packaging/bootloader.toml")).unwrap();
    assert_eq!(file.server.data_dir.as_deref(), Some("/var/lib/bootloader"));
    // Every setting is documented under its section.
    let c = load_with("", &[]).unwrap();
    for setting in &c.settings {
        let (section, key) = setting.key.split_once('.').unwrap();
        let start = text
            .find(&format!("[{section}]"))
            .unwrap_or_else(|| panic!("[{section}] undocumented"));
        let body = &text[start..];
        let end = body[1..].find("\n[").map_or(body.len(), |i| i + 1);
        let section_text = &body[..end];
        let documented = section_text.contains(&format!("#{key} ="))
            || section_text.contains(&format!("\n{key} ="))
            || key == "quirk";
        assert!(
            documented,
            "{} is not documented in packaging/bootloader.toml",
            setting.key
        );
    }
}

#[test]
fn dhcp_settings_and_quirks() {
    let c = load_with(
        r#"
[dhcp]
mode = "proxy"
interfaces = ["eth1"]
[[dhcp.quirk]]
name = "old-rom"
mac_prefix = "00:1b:21"
tftp_blksize = 512
"#,
        &[("BOOTLOADER_DHCP_UNKNOWN", "local")],
    )
    .unwrap();
    assert_eq!(
        c.boot.dhcp.mode,
        Some(bootloader_core::dhcp::decide::Mode::Proxy)
    );
    assert_eq!(c.boot.dhcp.interfaces, vec!["eth1".to_string()]);
    assert_eq!(c.boot.dhcp.quirks.len(), 1);
    assert_eq!(c.boot.dhcp.quirks[0].tftp_blksize, Some(512));
    assert!(source_of(&c, "dhcp.quirk").contains("old-rom"));
    assert!(source_of(&c, "dhcp.unknown").contains("env BOOTLOADER_DHCP_UNKNOWN"));

    let errors = match load_with(
        r#"
[dhcp]
mode = "sometimes"
[[dhcp.quirk]]
mac_prefix = "zz"
set_arch = 0
[[dhcp.quirk]]
answer = "proxy"
[[dhcp.quirk]]
arch = 7
"#,
        &[],
    ) {
        Err(ConfigError::Invalid(e)) => e.join("\n"),
        other => panic!("{other:?}"),
    };
    for needle in [
        "dhcp.mode",
        "dhcp.quirk[0].mac_prefix",
        "dhcp.quirk[1]: give at least one of",
        "dhcp.quirk[2]: the rule changes nothing",
    ] {
        assert!(errors.contains(needle), "{needle} in {errors}");
    }
    // An interface is needed once DHCP is on.
    assert!(matches!(
        load_with("[dhcp]\nmode = \"authoritative\"\n", &[]),
        Err(ConfigError::Invalid(e)) if e.iter().any(|m| m.contains("dhcp.interfaces"))
    ));
}

/// The settings table and layering agree: every key resolved is in the
/// table and every key of the table is resolved, once.
#[test]
fn the_table_names_every_setting_once() {
    let c = load_with("", &[]).unwrap();
    let resolved: Vec<&str> = c.settings.iter().map(|s| s.key).collect();
    let mut table: Vec<&str> = keys::KEYS.iter().map(|k| k.name).collect();
    let mut sorted = resolved.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), resolved.len(), "a key resolved twice");
    table.sort_unstable();
    let before = table.len();
    table.dedup();
    assert_eq!(table.len(), before, "a key twice in the table");
    assert_eq!(sorted, table);
}

/// Each environment name of the table overrides its key (the older
/// system's names included), and secrets stay hidden in `check-config`.
#[test]
fn every_environment_name_of_the_table_works() {
    for key in keys::KEYS {
        for var in key.env {
            let c = match load_with("", &[(var, "0")]) {
                Ok(c) => c,
                // "0" is not valid for every key; the error must name it.
                Err(ConfigError::Invalid(errors)) => {
                    assert!(
                        errors.iter().any(|e| e.contains(key.name)),
                        "{var}: {errors:?}"
                    );
                    continue;
                }
                Err(e) => panic!("{var}: {e}"),
            };
            let s = c.settings.iter().find(|s| s.key == key.name).unwrap();
            assert_eq!(s.source, Source::Env(var), "{var} sets {}", key.name);
            if key.secrecy == keys::Secrecy::Secret {
                assert_eq!(s.value, "<redacted>", "{}", key.name);
            }
        }
    }
}

/// The shipped file documents every setting of the table under its
/// section, with each environment name and, where the default is fixed,
/// that default; and it names no setting the table lacks.
#[test]
fn the_shipped_file_documents_every_setting() {
    let text = include_str!("../../packaging/bootloader.toml");
    let defaults = load_with("", &[]).unwrap();
    let mut sections: HashMap<String, String> = HashMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            continue;
        }
        if line.starts_with("#[[") {
            // Commented example tables (dhcp.quirk) are not settings.
            current = "(example)".into();
            continue;
        }
        let section = sections.entry(current.clone()).or_default();
        section.push_str(line);
        section.push('\n');
    }
    for key in keys::KEYS {
        let (section, name) = key.name.split_once('.').unwrap();
        let body = sections
            .get(section)
            .unwrap_or_else(|| panic!("[{section}] missing from the shipped file"));
        if text.contains(&format!("[[{}]]", key.name)) {
            // An array of tables, shown as a commented example.
            continue;
        }
        let line = body
            .lines()
            .find(|l| {
                let l = l.trim_start_matches('#');
                l.starts_with(&format!("{name} =")) || l.starts_with(&format!("{name}="))
            })
            .unwrap_or_else(|| panic!("{} is not in the shipped file", key.name));
        for var in key.env {
            assert!(body.contains(var), "{} lacks env {var}", key.name);
        }
        let shown = &defaults
            .settings
            .iter()
            .find(|s| s.key == key.name)
            .unwrap()
            .value;
        let computed = key.doc.contains("defaults to") || key.name == "server.data_dir";
        if line.starts_with('#') && shown != "(unset)" && !computed {
            let value = line
                .split_once('=')
                .unwrap()
                .1
                .split('#')
                .next()
                .unwrap()
                .trim()
                .trim_matches('"');
            // A list is shown as the environment spells it: comma-separated.
            let joined: String = value
                .trim_matches(['[', ']'])
                .split(',')
                .map(|v| v.trim().trim_matches('"'))
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
                .join(",");
            let value = if value.starts_with('[') {
                joined.as_str()
            } else {
                value
            };
            let same = value == shown
                || matches!((value.parse::<f64>(), shown.parse::<f64>()), (Ok(a), Ok(b)) if a == b);
            assert!(
                same,
                "the shipped default of {} is {value}, the daemon's {shown}",
                key.name
            );
        }
    }
    for (section, body) in &sections {
        if section.is_empty() || section == "(example)" {
            continue;
        }
        for line in body.lines() {
            let l = line.trim_start_matches('#');
            let Some((name, _)) = l.split_once(" = ") else {
                continue;
            };
            if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                let key = format!("{section}.{name}");
                assert!(
                    keys::lookup(&key).is_some(),
                    "{key} is in the shipped file, not in the table"
                );
            }
        }
    }
}

/// The structs' own defaults (used where no configuration is read, as in
/// tests) are the table's.
#[test]
fn struct_defaults_are_the_tables() {
    let c = load_with("", &[]).unwrap();
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.power, crate::power::PowerSettings::default());
}

/// Every range of the table is enforced, at both ends, whichever layer
/// the value comes from; the bounds themselves are accepted.
#[test]
fn the_tables_ranges_are_enforced() {
    let mut checked = 0;
    for key in keys::KEYS {
        let (Some((least, most)), Some(var)) = (key.range, key.env.first()) else {
            continue;
        };
        let mut outside = vec![];
        if least > 0 {
            outside.push(least - 1);
        }
        if let Some(m) = most {
            outside.push(m + 1);
        }
        for v in outside {
            let err = load_with("", &[(var, &v.to_string())])
                .unwrap_err()
                .to_string();
            // Past the type's own bound the parse already refuses it.
            let refused = err.contains(&format!("{} ({v}) must be", key.name))
                || err.contains(&format!("{} (from env {var}): \"{v}\"", key.name));
            assert!(refused, "{var}={v}: {err}");
        }
        for v in [Some(least), most].into_iter().flatten() {
            if let Err(e) = load_with("", &[(var, &v.to_string())]) {
                // A bound may still break a rule between keys (page sizes).
                assert!(
                    !e.to_string().contains(&format!("{} (", key.name)),
                    "{var}={v}: {e}"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 29);
    let err = load_with("[tftp]\nmax_blksize = 7\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tftp.max_blksize (7) must be between 8 and 65464"),
        "{err}"
    );
}

/// The older system's spellings of true (its GRAVATAR_PROXY took yep and
/// yup) are true here too; anything unclear is refused, not taken as false.
#[test]
fn booleans_take_the_older_systems_spellings() {
    for (raw, expected) in [
        ("yep", true),
        ("YUP", true),
        ("Yes", true),
        ("1", true),
        ("no", false),
        ("0", false),
    ] {
        let c = load_with("", &[("GRAVATAR_PROXY", raw)]).unwrap();
        assert_eq!(c.ui.gravatar_proxy, expected, "{raw}");
    }
    let err = load_with("", &[("GRAVATAR_PROXY", "maybe")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ui.gravatar_proxy"), "{err}");
}
