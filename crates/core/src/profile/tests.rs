//! Unit tests for parsing, validation and rendering.

use super::*;
use crate::model::Via;
use serde_json::json;

/// A valid profile whose `preparing` step and `templates` are replaceable.
fn doc(preparing: &str, templates: &str) -> String {
    format!(
        "kind: Profile
apiVersion: v1alpha1
name: test
version: '1.0'
workflow:
  new: {{}}
  preparing:
{preparing}
  installing: []
  configuring: []
  postconfiguring: []
  complete: {{}}
templates:
  boot.cfg:
    type: template
    contents: 'hello {{{{ hostname }}}}'
{templates}"
    )
}

const SERVE_URL: &str = "    - action: serve_file
      via: http
      filename: images/linux
      source:
        type: url
        url: http://example.com/linux";

enum Expect<'a> {
    /// Parses; the closure checks the result.
    Ok(&'a dyn Fn(&Profile)),
    /// Fails with exactly these (path, message fragment) errors, in any order.
    Err(&'a [(&'a str, &'a str)]),
}

fn check(input: &str, expected: Expect<'_>) {
    match (parse(input), expected) {
        (Ok(p), Expect::Ok(f)) => f(&p),
        (Err(errs), Expect::Err(want)) => {
            for (path, frag) in want {
                assert!(
                    errs.iter()
                        .any(|e| e.path == *path && e.message.contains(frag)),
                    "missing error {path}: ..{frag}.. in:\n{errs}\n--- input:\n{input}"
                );
            }
            assert_eq!(errs.len(), want.len(), "unexpected error count:\n{errs}");
        }
        (Ok(p), Expect::Err(want)) => panic!("expected errors {want:?}, parsed {p:?}"),
        (Err(errs), Expect::Ok(_)) => panic!("expected success, got:\n{errs}\n--- input:\n{input}"),
    }
}

#[test]
fn minimal_document_parses() {
    check(
        &doc(SERVE_URL, ""),
        Expect::Ok(&|p| {
            assert_eq!(p.name, "test");
            assert_eq!(p.version, "1.0");
            assert_eq!(p.action_count(), 1);
            assert_eq!(p.templates.len(), 1);
            assert!(p.workflow.error.actions.is_empty());
        }),
    );
}

/// As the older system read them: `kind` in any case, and a step left
/// out is an empty step, skipped.
#[test]
fn older_profiles_read_as_they_did() {
    let older = doc(SERVE_URL, "")
        .replace("kind: Profile", "kind: profile")
        .replace("  complete: {}\n", "")
        .replace("  configuring: []\n", "");
    check(
        &older,
        Expect::Ok(&|p| {
            assert_eq!(p.action_count(), 1);
            assert!(p.workflow.complete.actions.is_empty());
            assert!(p.workflow.configuring.actions.is_empty());
        }),
    );
    check(
        &doc(SERVE_URL, "").replace("kind: Profile", "kind: PROFILE"),
        Expect::Ok(&|_| {}),
    );
}

#[test]
fn version_text_is_preserved() {
    for (yaml, want) in [
        ("0.1", "0.1"),
        ("1.0", "1.0"),
        ("0.10", "0.10"),
        ("2", "2"),
        ("\"1.0-rc1\"", "1.0-rc1"),
        ("1.0-rc1", "1.0-rc1"),
        ("'0.1'", "0.1"),
        ("1.2.3+build.4", "1.2.3+build.4"),
    ] {
        let input = doc("    []", "").replace("version: '1.0'", &format!("version: {yaml}"));
        check(
            &input,
            Expect::Ok(&|p| assert_eq!(p.version, want, "{yaml}")),
        );
    }
    let input = doc("    []", "").replace("version: '1.0'", "version: [1]");
    check(
        &input,
        Expect::Err(&[("version", "expected a version string")]),
    );
    let input = doc("    []", "").replace("version: '1.0'", "version: 'a b'");
    check(&input, Expect::Err(&[("version", "invalid version")]));
}

#[test]
fn empty_steps_and_timeout_form() {
    let input = doc(
        "    timeout: 45m
    actions:
      - action: echo
        message: hi
        timeout: 90",
        "",
    )
    .replace("installing: []", "installing: {}")
    .replace("name: test", "name: test\ntimeout: 2h");
    check(
        &input,
        Expect::Ok(&|p| {
            let prep = p.workflow.step(StepName::Preparing);
            assert_eq!(prep.timeout.as_ref().map(|d| d.seconds), Some(2700));
            assert_eq!(
                prep.actions[0].timeout.as_ref().map(|d| d.seconds),
                Some(90)
            );
            assert_eq!(
                p.step_timeout(StepName::Preparing).map(|d| d.seconds),
                Some(2700)
            );
            assert_eq!(p.step_timeout(StepName::New).map(|d| d.seconds), Some(7200));
            assert!(p.workflow.installing.actions.is_empty());
        }),
    );
    let bad = doc("    timeout: 45m\n    bogus: 1", "");
    check(
        &bad,
        Expect::Err(&[("workflow.preparing.bogus", "unknown key")]),
    );
    let bad = doc("    timeout: 8d\n    actions: []", "");
    check(
        &bad,
        Expect::Err(&[("workflow.preparing.timeout", "maximum")]),
    );
    let bad = doc("    actions:\n      - action: nope", "");
    check(
        &bad,
        Expect::Err(&[("workflow.preparing.actions[0].action", "unknown action")]),
    );
}

#[test]
fn each_error_kind_has_its_path() {
    let serve_tpl = |name: &str| {
        format!(
            "    - action: serve_file
      via: tftp
      filename: 'pxelinux.cfg/01-{{{{ mac_address_dashed }}}}'
      source:
        type: template
        name: {name}"
        )
    };
    let table: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            doc("    - action: serve_fil\n      via: http", ""),
            vec![(
                "workflow.preparing[0].action",
                "unknown action \"serve_fil\" (expected one of: serve_file, delete_file, expect_callback, ipmi_command, echo)",
            )],
        ),
        (
            doc(
                "    - action: echo\n      message: a\n    - action: echo\n      message: b\n    - action: serve_file\n      via: http\n      filename: x\n      source:\n        type: url",
                "",
            ),
            vec![("workflow.preparing[2].source.url", "missing field")],
        ),
        (
            doc("    []\n  bogus: []", ""),
            vec![("workflow.bogus", "unknown step")],
        ),
        (
            doc(
                "    - action: echo\n      message: a\n      colour: red",
                "",
            ),
            vec![("workflow.preparing[0].colour", "unknown key \"colour\"")],
        ),
        (
            doc(
                "    []",
                "  preseed.cfg:\n    type: template\n    contents: |\n      a\n      b\n      {{ hostname\n",
            ),
            vec![("templates.preseed.cfg.contents", "syntax error:")],
        ),
        (
            doc(&serve_tpl("preseed"), ""),
            vec![(
                "workflow.preparing[0].source.name",
                "template \"preseed\" is not defined in templates",
            )],
        ),
        (
            doc(
                "    []",
                "  x.cfg:\n    type: template\n    contents: '{{ hostnam }} {{ labels.rack }}'\n",
            ),
            vec![("templates.x.cfg.contents", "unknown variable \"hostnam\"")],
        ),
        (
            doc("    - action: echo\n      message: 'hi {{ whoever }}'", ""),
            vec![(
                "workflow.preparing[0].message",
                "unknown variable \"whoever\"",
            )],
        ),
        (
            doc(
                "    - action: delete_file\n      on: tftp\n      filename: '{% if %}'",
                "",
            ),
            vec![("workflow.preparing[0].filename", "syntax error:")],
        ),
        (
            doc(
                "    - action: ipmi_command\n      command: power\n      parameters: sideways",
                "",
            ),
            vec![(
                "workflow.preparing[0].parameters",
                "unknown power parameter \"sideways\"",
            )],
        ),
        (
            doc(
                "    - action: ipmi_command\n      command: bootdev\n      parameters: usb",
                "",
            ),
            vec![(
                "workflow.preparing[0].parameters",
                "unknown bootdev parameter",
            )],
        ),
        (
            doc(
                "    - action: ipmi_command\n      command: reboot\n      parameters: pxe",
                "",
            ),
            vec![("workflow.preparing[0].command", "unknown ipmi command")],
        ),
        (
            doc("    - action: echo\n      message: a\n      retries: 2", ""),
            vec![("workflow.preparing[0].retries", "not allowed on echo")],
        ),
        (
            doc(&format!("{}\n      retries: 1", serve_tpl("boot.cfg")), ""),
            vec![(
                "workflow.preparing[0].retries",
                "not allowed on serve_file with a template source",
            )],
        ),
        (
            doc(&format!("{SERVE_URL}\n      retries: 11"), ""),
            vec![("workflow.preparing[0].retries", "0 to 10")],
        ),
        (
            doc("    []", "").replace("kind: Profile", "kind: Profil"),
            vec![("kind", "must be \"Profile\"")],
        ),
        (
            doc("    []", "").replace("apiVersion: v1alpha1", "apiVersion: v1"),
            vec![("apiVersion", "must be \"v1alpha1\"")],
        ),
        (
            doc("    []", "").replace("apiVersion: v1alpha1\n", ""),
            vec![("apiVersion", "missing field")],
        ),
        (
            doc(
                "    - action: expect_callback\n      name: cb\n    - action: expect_callback\n      name: cb",
                "",
            ),
            vec![(
                "workflow.preparing[1].name",
                "duplicate callback name \"cb\" (first used at workflow.preparing[0].name)",
            )],
        ),
        (
            doc("    - action: expect_callback\n      name: 'c b'", ""),
            vec![("workflow.preparing[0].name", "invalid callback name")],
        ),
        (
            doc(
                "    - action: serve_file\n      via: ftp\n      filename: x\n      source: {type: url, url: 'ftp://x', sha256: abc}",
                "",
            ),
            vec![
                ("workflow.preparing[0].via", "unknown transport \"ftp\""),
                ("workflow.preparing[0].source.url", "invalid url"),
                ("workflow.preparing[0].source.sha256", "64 hexadecimal"),
            ],
        ),
        (
            doc("    []", "").replace("name: test", "name: -bad\ncolour: blue"),
            vec![("name", "invalid name"), ("colour", "unknown key")],
        ),
        (
            doc(
                "    []",
                "  t:\n    type: file\n    contents: x\n    mode: 0644\n",
            ),
            vec![
                ("templates.t.type", "must be \"template\""),
                ("templates.t.mode", "unknown key"),
            ],
        ),
        (
            doc("    - action: echo\n      message: 42", ""),
            vec![(
                "workflow.preparing[0].message",
                "expected a string, found a number",
            )],
        ),
        (
            doc(
                "    - action: echo\n      message: x\n      timeout: 1y",
                "",
            ),
            vec![("workflow.preparing[0].timeout", "invalid duration")],
        ),
        (
            doc("    - just a string", ""),
            vec![("workflow.preparing[0]", "expected an action mapping")],
        ),
        (
            doc("    42", ""),
            vec![("workflow.preparing", "expected a list of actions")],
        ),
    ];
    for (input, want) in &table {
        check(input, Expect::Err(want));
    }
}

#[test]
fn several_errors_reported_together() {
    let input = doc(
        "    - action: serve_fil
    - action: ipmi_command
      command: power
      parameters: sideways
    - action: serve_file
      via: http
      filename: x
      source:
        type: template
        name: missing
    - action: echo
      message: '{{ nope }}'
      retries: 1",
        "",
    )
    .replace("kind: Profile", "kind: Other")
    .replace("  complete: {}\n", "  finished: {}\n");
    check(
        &input,
        Expect::Err(&[
            ("kind", "must be"),
            ("workflow.preparing[0].action", "unknown action"),
            (
                "workflow.preparing[1].parameters",
                "unknown power parameter",
            ),
            ("workflow.preparing[2].source.name", "not defined"),
            ("workflow.preparing[3].message", "unknown variable \"nope\""),
            ("workflow.preparing[3].retries", "not allowed on echo"),
            ("workflow.finished", "unknown step"),
        ]),
    );
    let errs = parse(&input)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(errs.lines().count(), 7, "{errs}");
    assert!(
        errs.lines()
            .any(|l| l.starts_with("workflow.finished: unknown step"))
    );
}

#[test]
fn actions_are_typed() {
    let input = doc(
        "    - action: serve_file
      via: http
      filename: 'images/{{ fqdn }}'
      retries: 3
      source:
        type: url
        url: https://example.com/x
        sha256: ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789
    - action: ipmi_command
      command: bootdev
      parameters: hd
      retries: 2
    - action: ipmi_command
      command: power
      parameters: on
    - action: ipmi_command
      command: power
      parameters: off
    - action: delete_file
      on: tftp
      filename: x
    - action: expect_callback
      name: prep.done_1",
        "",
    );
    check(
        &input,
        Expect::Ok(&|p| {
            let a = &p.workflow.preparing.actions;
            assert_eq!(
                a[0].kind,
                ActionKind::ServeFile {
                    via: Via::Http,
                    filename: "images/{{ fqdn }}".into(),
                    source: FileSource::Url {
                        url: "https://example.com/x".into(),
                        sha256: Some(
                            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
                                .into()
                        ),
                    },
                }
            );
            assert_eq!(a[0].retries, 3);
            assert_eq!(
                a[1].kind,
                ActionKind::IpmiCommand(IpmiCommand::Bootdev {
                    device: BootDevice::Disk,
                    persistent: false,
                    efi: None
                })
            );
            assert_eq!(a[1].retries, 2);
            assert_eq!(
                a[2].kind,
                ActionKind::IpmiCommand(IpmiCommand::Power(PowerAction::On))
            );
            assert_eq!(
                a[3].kind,
                ActionKind::IpmiCommand(IpmiCommand::Power(PowerAction::Off))
            );
            assert_eq!(
                a[4].kind,
                ActionKind::DeleteFile {
                    on: Via::Tftp,
                    filename: "x".into()
                }
            );
            assert_eq!(p.callback_names(), vec!["prep.done_1"]);
            let js = serde_json::to_value(p).unwrap_or_default();
            assert_eq!(
                js["workflow"]["preparing"]["actions"][1]["action"],
                "ipmi_command"
            );
            assert_eq!(
                js["workflow"]["preparing"]["actions"][1]["command"],
                "bootdev"
            );
            assert_eq!(
                js["workflow"]["preparing"]["actions"][1]["parameters"],
                "disk"
            );
            assert_eq!(
                js["workflow"]["preparing"]["actions"][0]["source"]["type"],
                "url"
            );
            assert_eq!(js["workflow"]["preparing"]["actions"][0]["retries"], 3);
        }),
    );
}

#[test]
fn document_level_errors() {
    let two_mib = format!("# {}\n", "x".repeat(2 * 1024 * 1024));
    let table: &[(&str, &str)] = &[
        ("", "empty document"),
        ("   \n# only a comment\n", "empty document"),
        ("- a\n- b\n", "expected a profile mapping, found a list"),
        (
            "kind: Profile\n---\nkind: Profile\n",
            "more than one YAML document",
        ),
        ("kind: [Profile\n", "invalid YAML"),
        ("kind: a\nkind: b\n", "invalid YAML"),
        (&two_mib, "1 MiB"),
    ];
    for (input, frag) in table {
        check(input, Expect::Err(&[(DOCUMENT_PATH, frag)]));
    }
    let msg = parse("kind: [Profile\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn step_names() {
    for n in StepName::ALL {
        assert_eq!(n.as_str().parse::<StepName>(), Ok(n));
    }
    assert!("bogus".parse::<StepName>().is_err());
    assert_eq!(StepName::ORDER.len(), 6);
}

fn full_context() -> serde_json::Value {
    json!({
        "agent_url": "http://10.0.0.1:8080",
        "callback_base": "http://10.0.0.1:8080/callback/42/",
        "deployment_id": "42",
        "domain": "example.com",
        "export_base": "http://10.0.0.1:8080/export/42/",
        "fqdn": "node1.example.com",
        "gateway": "10.0.0.254",
        "hostname": "node1",
        "interface": "eth0",
        "ipaddress": "10.0.0.10",
        "ipmi_host": "10.0.1.10",
        "labels": {"rack": "r1"},
        "location": "dc1",
        "mac_address": "52:54:00:12:34:56",
        "mac_address_dashed": "52-54-00-12-34-56",
        "nameserver": "10.0.0.2",
        "nameservers": "10.0.0.2 10.0.0.3",
        "netmask": "255.255.255.0",
        "profile": "test",
        "profile_version": "1.0",
        "serial": "SN123",
        "server_id": "7",
    })
}

#[test]
fn rendering() {
    let input = doc(
        "    []",
        "  inc.cfg:\n    type: template\n    contents: '[{% include \"boot.cfg\" %}] rack={{ labels.rack }}'\n",
    );
    let profile = parse(&input);
    assert!(profile.is_ok(), "{profile:?}");
    let Ok(profile) = profile else { return };
    let ctx = full_context();
    assert_eq!(
        render_template(&profile, "boot.cfg", &ctx),
        Ok("hello node1".to_string())
    );
    assert_eq!(
        render_template(&profile, "inc.cfg", &ctx),
        Ok("[hello node1] rack=r1".to_string())
    );
    assert_eq!(
        render_template(&profile, "nope", &ctx),
        Err(RenderError::UnknownTemplate("nope".into()))
    );
    assert_eq!(
        render_str("pxelinux.cfg/01-{{ mac_address_dashed }}", &ctx),
        Ok("pxelinux.cfg/01-52-54-00-12-34-56".to_string())
    );
    // No HTML escaping for plain-text configs.
    assert_eq!(
        render_str("{{ x }}", &json!({"x": "<a&b>"})),
        Ok("<a&b>".to_string())
    );
    // Strict undefined: a missing variable or attribute is an error.
    assert!(matches!(
        render_str("{{ hostname }}", &json!({})),
        Err(RenderError::Undefined(_))
    ));
    assert!(matches!(
        render_str("{{ labels.rack }}", &json!({"labels": {}})),
        Err(RenderError::Undefined(_))
    ));
    assert!(matches!(
        render_str("{{ broken", &ctx),
        Err(RenderError::Syntax(_))
    ));
}

#[test]
fn runaway_render_stops_on_fuel() {
    let start = std::time::Instant::now();
    let loops = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
    assert_eq!(render_str(loops, &json!({})), Err(RenderError::OutOfFuel));
    let big = "{% set s = 'x' * 90000000 %}{{ s }}{{ s }}";
    assert_eq!(render_str(big, &json!({})), Err(RenderError::OutOfFuel));
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn serialized_durations_and_enums() {
    let input = doc("    []", "").replace("name: test", "name: test\ntimeout: 30m");
    let p = parse(&input);
    assert!(p.is_ok(), "{p:?}");
    let js = p
        .ok()
        .and_then(|p| serde_json::to_value(&p).ok())
        .unwrap_or_default();
    assert_eq!(js["timeout"], json!({"seconds": 1800, "text": "30m"}));
    assert_eq!(js["version"], "1.0");
    assert_eq!(js["templates"]["boot.cfg"], "hello {{ hostname }}");
}

#[test]
fn hostile_inputs_do_not_crash() {
    let deep_yaml = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    assert!(parse(&deep_yaml).is_err());
    let deep_map = format!("kind: {}x{}", "{a: ".repeat(100_000), "}".repeat(100_000));
    assert!(parse(&deep_map).is_err());
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    assert!(parse(bomb).is_err());
    let nested = format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(render_str(&nested, &json!({})).is_err());
    let input = doc("    - action: echo\n      message: 'x'", "")
        .replace("message: 'x'", &format!("message: '{nested}'"));
    assert!(parse(&input).is_err());
}

#[test]
fn what_no_driver_can_do_is_refused_at_upload_only() {
    let text = doc(
        "    - action: ipmi_command\n      command: sensors\n    - action: ipmi_command\n      command: power\n      parameters: status",
        "",
    );
    let errors = parse_upload(&text).unwrap_err();
    let found: Vec<(&str, &str)> = errors
        .0
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "workflow.preparing[0].command");
    assert!(found[0].1.contains("not run as a step"), "{}", found[0].1);
    // A profile stored before the check still reads, as the YAML said it.
    let stored = parse(&text).unwrap();
    let actions = &stored.workflow.step(StepName::Preparing).actions;
    assert_eq!(
        actions[0].kind,
        ActionKind::IpmiCommand(IpmiCommand::Unsupported("sensors"))
    );
    assert_eq!(
        actions[1].kind,
        ActionKind::IpmiCommand(IpmiCommand::PowerStatus)
    );
    let js = serde_json::to_value(&stored).unwrap();
    let shown = &js["workflow"]["preparing"]["actions"];
    assert_eq!(
        (&shown[0]["command"], &shown[0]["parameters"]),
        (&json!("sensors"), &json!(null))
    );
    assert_eq!(
        (&shown[1]["command"], &shown[1]["parameters"]),
        (&json!("power"), &json!("status"))
    );
}

/// Every form of ipmi_command the older agent took reads, to what the
/// drivers do; the boot flags are ours, and only on a boot device.
#[test]
fn ipmi_commands_in_every_older_spelling() {
    let power = |p: &str| IpmiCommand::Power(p.parse().unwrap());
    let device = |d: BootDevice| IpmiCommand::Bootdev {
        device: d,
        persistent: false,
        efi: None,
    };
    let table: &[(&str, IpmiCommand)] = &[
        ("command: power\n      parameters: on", power("on")),
        ("command: power\n      parameters: 'off'", power("off")),
        ("command: power\n      parameters: reset", power("reset")),
        ("command: power\n      parameters: cycle", power("cycle")),
        ("command: power\n      parameters: diag", power("diag")),
        ("command: power\n      parameters: softoff", power("soft")),
        ("command: power\n      parameters: shutdown", power("soft")),
        ("command: power\n      parameters: SOFT", power("soft")),
        ("command: power", IpmiCommand::PowerStatus),
        (
            "command: power\n      parameters: null",
            IpmiCommand::PowerStatus,
        ),
        ("command: bootdev", IpmiCommand::BootdevStatus),
        (
            "command: bootdev\n      parameters: net",
            device(BootDevice::Pxe),
        ),
        (
            "command: bootdev\n      parameters: network",
            device(BootDevice::Pxe),
        ),
        (
            "command: bootdev\n      parameters: pxe",
            device(BootDevice::Pxe),
        ),
        (
            "command: bootdev\n      parameters: hd",
            device(BootDevice::Disk),
        ),
        (
            "command: bootdev\n      parameters: disk",
            device(BootDevice::Disk),
        ),
        (
            "command: bootdev\n      parameters: safe",
            device(BootDevice::Safe),
        ),
        (
            "command: bootdev\n      parameters: cd",
            device(BootDevice::Cdrom),
        ),
        (
            "command: bootdev\n      parameters: cdrom",
            device(BootDevice::Cdrom),
        ),
        (
            "command: bootdev\n      parameters: optical",
            device(BootDevice::Cdrom),
        ),
        (
            "command: bootdev\n      parameters: dvd",
            device(BootDevice::Cdrom),
        ),
        (
            "command: bootdev\n      parameters: floppy",
            device(BootDevice::Floppy),
        ),
        (
            "command: bootdev\n      parameters: default",
            device(BootDevice::Default),
        ),
        (
            "command: bootdev\n      parameters: setup",
            device(BootDevice::Bios),
        ),
        (
            "command: bootdev\n      parameters: bios",
            device(BootDevice::Bios),
        ),
        (
            "command: bootdev\n      parameters: f1",
            device(BootDevice::Bios),
        ),
        (
            "command: bootdev\n      parameters: pxe\n      persistent: true\n      efi: true",
            IpmiCommand::Bootdev {
                device: BootDevice::Pxe,
                persistent: true,
                efi: Some(true),
            },
        ),
        (
            "command: bootdev\n      parameters: hd\n      efi: false",
            IpmiCommand::Bootdev {
                device: BootDevice::Disk,
                persistent: false,
                efi: Some(false),
            },
        ),
    ];
    for (yaml, want) in table {
        let text = doc(&format!("    - action: ipmi_command\n      {yaml}"), "");
        let p = parse_upload(&text).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        assert_eq!(
            p.workflow.preparing.actions[0].kind,
            ActionKind::IpmiCommand(*want),
            "{yaml}"
        );
    }
    for (yaml, path, says) in [
        (
            "command: power\n      parameters: boom",
            "parameters",
            "unknown power parameter",
        ),
        (
            "command: bootdev\n      parameters: tape",
            "parameters",
            "unknown bootdev parameter",
        ),
        ("command: reboot", "command", "unknown ipmi command"),
        (
            "command: power\n      parameters: on\n      efi: true",
            "efi",
            "only a bootdev",
        ),
        (
            "command: bootdev\n      persistent: true",
            "persistent",
            "only a bootdev",
        ),
        (
            "command: bootdev\n      parameters: pxe\n      efi: yes please",
            "efi",
            "true or false",
        ),
    ] {
        let text = doc(&format!("    - action: ipmi_command\n      {yaml}"), "");
        let errors = parse_upload(&text).unwrap_err();
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.path == format!("workflow.preparing[0].{path}")
                    && e.message.contains(says)),
            "{yaml}: {errors}"
        );
    }
}
