//! The older system's templates render to the bytes Django renders: every
//! template, filename and message of its published profiles
//! (tests/fixtures/seed-profiles) and a set of our own covering each tag
//! and filter `templating: django` knows, with a context like the
//! daemon's and values that need escaping, rendered by Django itself
//! (from PyPI, `tests/django/render.py`, as the older system called it)
//! and by the daemon's engine, compared byte for byte. What Django
//! refuses, the daemon refuses too.

use std::io::Write;
use std::process::{Command, Stdio};

use bootloader_core::profile::django::Template;
use serde_json::{Value, json};

/// 2026-12-03 09:05:07.25 UTC, what `{% now %}` shows on both sides.
const NOW: i128 = 1_796_288_707_250_000_000;

/// Every string of the older published profiles that the older system
/// rendered as a template: templates' contents, filenames, messages.
fn published() -> Vec<String> {
    let mut out = Vec::new();
    for name in ["ubuntu-16.04.yaml", "echo-0.1.yaml"] {
        let path = format!(
            "{}/tests/fixtures/seed-profiles/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        collect(&doc, None, &mut out);
    }
    assert!(out.len() >= 5, "the published profiles' templates: {out:?}");
    out
}

fn collect(v: &Value, key: Option<&str>, out: &mut Vec<String>) {
    match v {
        Value::String(s) if matches!(key, Some("contents" | "filename" | "message")) => {
            out.push(s.clone());
        }
        Value::Object(m) => m.iter().for_each(|(k, v)| collect(v, Some(k), out)),
        Value::Array(a) => a.iter().for_each(|v| collect(v, key, out)),
        _ => {}
    }
}

/// Our own: each tag and filter, escaping, missing variables, Python's
/// printing of values, and templates Django refuses.
const OURS: &[&str] = &[
    "{{ fqdn }} {{ hostname }}.{{ domain }} {{ ipaddress }}/{{ netmask }} gw {{ gateway }}",
    "{{ callback_base }}/installed {{ export_base }}preseed.cfg",
    "{{ password }}|{{ password|safe }}|{{ password|escape }}|{{ password|force_escape }}",
    "{% autoescape off %}{{ password }}{% endautoescape %}{% autoescape on %}{{ password }}{% endautoescape %}",
    "[{{ nothing }}][{{ nothing.deeper }}][{{ nothing|default:\"d\" }}][{{ nothing|length }}]",
    "{{ none }} {{ none|default_if_none:\"n/a\" }} {{ none|default:\"x\" }} {{ yes }} {{ no }}",
    "{{ n }} {{ f }} {{ whole }} {{ big }} {{ tiny }} {{ list }} {{ labels }} {{ mixed }}",
    "{{ fqdn|cut:\".\" }} {{ fqdn|upper }} {{ \"Ab Cd\"|lower }} {{ sentence|title }} {{ sentence|capfirst }}",
    "{{ n|add:\"2\" }} {{ n|add:f }} {{ \"4\"|add:\"5\" }} {{ \"a\"|add:\"b\" }} {{ list|add:list }} {{ \"x\"|add:1 }}",
    "{{ fqdn|length }} {{ list|length }} {{ labels|length }} {{ list|first }} {{ list|last }} {{ fqdn|first }}",
    "{{ list|join:\", \" }} {{ evil_list|join:\" & \" }} {{ fqdn|join:\"-\" }} {{ list|join:sep }}",
    "{{ fqdn|slice:\"2\" }} {{ fqdn|slice:\"1:5\" }} {{ fqdn|slice:\"::-1\" }} {{ list|slice:\":-1\" }} {{ fqdn|slice:\"-3:\" }}",
    "{{ sentence|truncatechars:10 }}|{{ sentence|truncatewords:3 }}|{{ sentence|wordcount }}|{{ fqdn|truncatechars:100 }}",
    "{{ sentence|slugify }} {{ messy|slugify }} {{ path|urlencode }} {{ path|urlencode:\"\" }} {{ password|urlencode }}",
    "[{{ hostname|center:\"11\" }}][{{ hostname|ljust:\"9\" }}][{{ hostname|rjust:\"9\" }}][{{ \"ab\"|center:5 }}][{{ \"abc\"|center:6 }}]",
    "{{ n|yesno }} {{ zero|yesno:\"on,off\" }} {{ none|yesno:\"a,b,c\" }} {{ none|yesno:\"a,b\" }} {{ n|yesno:\"x\" }}",
    "{{ n|pluralize }} {{ one|pluralize }} {{ list|pluralize:\"y,ies\" }} {{ one|pluralize:\"es\" }} {{ \"1\"|pluralize }} {{ fqdn|pluralize }}",
    "{{ n|divisibleby:\"3\" }} {{ n|divisibleby:2 }} {{ quote|addslashes }} {{ lines|linebreaksbr }} {{ fqdn|make_list }}",
    "{% if n > 2 and not none %}a{% elif n %}b{% else %}c{% endif %}{% if zero or nothing %}d{% else %}e{% endif %}",
    "{% if 'x' in list %}1{% endif %}{% if 'rack' in labels %}2{% endif %}{% if 'dc1' in fqdn %}3{% endif %}{% if 'q' not in list %}4{% endif %}",
    "{% if none is None %}1{% endif %}{% if yes is True %}2{% endif %}{% if nothing is not None %}3{% endif %}{% if n == 3.0 %}4{% endif %}",
    "{% if n != \"3\" %}1{% endif %}{% if fqdn >= \"r\" %}2{% endif %}{% if list < list2 %}3{% endif %}{% if n <= f %}4{% endif %}{% if not not yes %}5{% endif %}",
    "{% if a or b and c %}1{% endif %}{% if not zero == 0 %}2{% endif %}{% if n > 'x' %}3{% else %}4{% endif %}",
    "{% for x in list %}{{ forloop.counter }}:{{ x }}{% if not forloop.last %},{% endif %}{% endfor %}",
    "{% for x in list reversed %}{{ forloop.revcounter0 }}{{ x }}{{ forloop.first }}{% endfor %}{% for x in empty %}no{% empty %}empty{% endfor %}",
    "{% for k, v in labels.items %}{{ k }}={{ v }};{% endfor %}{% for k in labels %}{{ k }}{% endfor %}{% for c in hostname %}{{ c }}.{% endfor %}",
    "{% for row in grid %}{% for cell in row %}{{ forloop.parentloop.counter }}{{ cell }}{% endfor %}{% endfor %}",
    "{% with h=fqdn.split n2=n|add:1 %}{{ h }} {{ h.0 }} {{ n2 }}{% endwith %}{% with fqdn as name %}{{ name }}{% endwith %}",
    "{{ labels.rack }} {{ labels.items }} {{ labels.keys }} {{ list.0 }} {{ list.9 }} {{ grid.1.0 }} {{ fqdn.upper }} {{ sentence.split }}",
    "{% now \"Y-m-d H:i:s\" %} {% now \"D, d M Y\" %} {% now \"jS F Y, l\" %} {% now \"c\" %} {% now \"r\" %} {% now \"U\" %}",
    "{% now \"a A b d D e E f F g G h H i I j L m M n N o O P s S t T u w W y z Z\" %} {% now \"\\Y\\e\\s Y\" %}",
    "{% now \"Y\" as year %}[{{ year }}]{% firstof nothing zero \"fallback & co\" %} {% firstof password %}",
    "{# a comment #}{% comment \"why\" %}hidden {{ fqdn }}{% endcomment %}{% verbatim %}{{ kept }} {% if %}{% endverbatim %}",
    "{% templatetag openblock %} {% templatetag closevariable %} {% spaceless %}<p>\n  <a> x </a>\n</p>{% endspaceless %}",
    "{{ fqdn\n}} {% if\nx %} {{ 'single' }} {{ \"say \\\"hi\\\"\" }} {{ 3 }} {{ -2.5 }} {{ 1.0 }}",
    "{% load static i18n %}{{ True }} {{ None }} {{ False|yesno }} {% if yes == True %}t{% endif %}",
    "unicode: {{ unicode }} {{ unicode|upper }} {{ unicode|length }} {{ unicode|slice:\"1:3\" }}",
    "{{ labels.rack|upper }} {{ f|add:f }} {{ big|add:1 }} {{ n|add:\"x\" }} {{ \"abc\"|first|upper }} {{ list|first|upper }}",
    "{% if list|length > 2 %}long{% endif %}{% if fqdn|length == 18 %}18{% endif %}{% with total=list|length %}[{{ total }}]{% endwith %}",
    "{{ \"a\"|default:nothing }} {{ nothing|default:fqdn }} {{ password|cut:\"&\" }} {{ \"a&b\"|cut:\"b\" }} {{ \"it's\" }}",
    "{{ password|upper|safe }} {{ password|safe|upper }} {{ password|escape|upper }} {{ password|force_escape|lower }} {% firstof nothing password %}",
    "{% for x in list %}{% if forloop.counter|divisibleby:2 %}even{% else %}odd{% endif %}{% endfor %} {{ labels|length }} {{ labels.values }} {{ labels.rack.upper }}",
    "{{ unicode|slugify }} {{ unicode|title }} {{ unicode|capfirst }} {{ unicode|urlencode }} {{ \"ß\"|upper }}",
    "{{ list|join:\"\" }}{{ empty|join:\",\" }}{{ empty|first }}{{ empty|last }}{{ empty|length }}{{ none|length }}{{ n|length }}",
    "{{ zero|default:\"z\" }} {{ zero|default_if_none:\"z\" }} {{ c|default:\"empty\" }} {{ no|yesno:\"y,n\" }} {{ mixed.5.k.0 }}",
    "{% for x in n %}{{ x }}{% endfor %}",
    "{% for a, b in grid %}{{ a }}{{ b }};{% endfor %}",
    "{{ sentence|truncatechars:0 }}|{{ sentence|truncatechars:1 }}|{{ sentence|truncatewords:0 }}|{{ sentence|slice:\"x\" }}",
    "{% if n in list %}a{% endif %}{% if none in list %}b{% endif %}{% if 'r' in labels.rack %}c{% endif %}{% if n > none %}d{% endif %}",
    // What Django refuses.
    "{{ n + 1 }}",
    "{{ fqdn|default('x') }}",
    "{% set x = 1 %}",
    "{% if %}{% endif %}",
    "{{ }}",
    "{{ fqdn|nosuchfilter }}",
    "{% load nosuchlibrary %}",
    "{% if fqdn %}unclosed",
    "{% for x in %}{% endfor %}",
    "{{ _private }}",
    "{{ fqdn|default }}",
    "{{ fqdn|upper:\"x\" }}",
    "{% if and x %}{% endif %}",
    "{% endif %}",
    "{% now %}",
];

fn context() -> Value {
    json!({
        "agent_url": "http://10.0.0.5:8080",
        "callback_base": "http://10.0.0.5:8080/_callback/1f2e3d4c5b6a7988/",
        "export_base": "http://10.0.0.5:8080/export/file/7/1f2e3d4c5b6a7988/ubuntu-16.04/0.1-a/",
        "domain": "dc1.example.com",
        "fqdn": "r1.dc1.example.com",
        "hostname": "r1",
        "gateway": "10.0.0.1",
        "ipaddress": "10.0.0.21",
        "ipmi_host": "10.0.1.11",
        "nameserver": "10.0.0.2",
        "netmask": "255.255.255.0",
        "profile": "ubuntu-16.04",
        "mac_address_dashed": "52-54-00-12-34-56",
        "password": "p&ss<w>rd\"'",
        "none": null, "yes": true, "no": false, "zero": 0, "one": 1,
        "n": 3, "f": 2.5, "whole": 3.0, "big": 1e20, "tiny": 1.5e-5,
        "a": 0, "b": 1, "c": "",
        "list": ["x", "y&z", "w"], "list2": ["x", "z"], "empty": [], "sep": " <-> ",
        "evil_list": ["<b>", "a'b"],
        "grid": [["a", "b"], ["c"]],
        "labels": {"rack": "r<1>", "row": "7"},
        "mixed": [1, 2.5, null, true, "q'uote", {"k": [1]}],
        "sentence": "the QUICK brown fox's 2nd jump",
        "messy": "  Hello,  World -- ok_1  ",
        "path": "/a b/c?d=e&f",
        "quote": "it's \"quoted\" \\ here",
        "lines": "one\ntwo & three\r\nfour",
        "unicode": "Grüße, Ωmega",
    })
}

/// Django's Python: the one the README's test command installs
/// Django 4.2 from PyPI into, else `python3` with Django importable.
fn django_python() -> String {
    std::env::var("BOOTLOADER_TEST_DJANGO_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

#[test]
fn older_templates_render_as_django_renders_them() {
    let ctx = context();
    let mut templates = published();
    templates.extend(OURS.iter().map(|s| s.to_string()));
    let request = json!({
        "now": (NOW as f64) / 1e9,
        "cases": templates.iter().map(|t| json!({"template": t, "context": ctx})).collect::<Vec<_>>(),
    });
    let script = format!("{}/tests/django/render.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(django_python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (the README's test command installs Django 4.2 for it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "Django did not run (the README's test command installs it from PyPI): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let django: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(django.len(), templates.len());

    let now = time::OffsetDateTime::from_unix_timestamp_nanos(NOW).unwrap();
    let mut differences = Vec::new();
    let mut refused = 0;
    let mut failed = 0;
    for (template, expected) in templates.iter().zip(&django) {
        let ours = Template::compile(template).map(|t| t.render(&ctx, now));
        match (expected.get("output").and_then(Value::as_str), ours) {
            (Some(want), Ok(Ok(got))) if want == got => {}
            (None, Err(_)) => refused += 1,
            // Django raised while rendering; so does the daemon.
            (None, Ok(Err(_))) => failed += 1,
            (want, got) => differences.push(format!(
                "template: {template:?}\n  django: {}\n  ours:   {got:?}",
                want.map_or_else(|| expected.to_string(), |w| format!("{w:?}"))
            )),
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} templates differ from Django:\n{}",
        differences.len(),
        templates.len(),
        differences.join("\n")
    );
    assert_eq!(refused, 15, "every template Django refuses is refused");
    assert_eq!(failed, 3, "every render Django fails, fails");
}
