//! Outputs Django 4.2 gave for these templates (the golden suite in
//! `tests/it/django_golden.rs` asks Django itself about many more).

use super::*;
use serde_json::json;

fn render(source: &str, ctx: serde_json::Value) -> String {
    // 2026-12-03 09:05:07.25 UTC
    let now = time::OffsetDateTime::from_unix_timestamp_nanos(1_796_288_707_250_000_000).unwrap();
    Template::compile(source)
        .unwrap_or_else(|e| panic!("{source}: {e}"))
        .render(&ctx, now)
        .unwrap()
}

#[test]
fn renders_as_django_does() {
    let ctx = json!({"fqdn": "r1.dc1.example.com", "pw": "a&b<'c'>", "n": 3, "l": ["x", "y"],
                     "labels": {"rack": "r1"}, "none": null});
    let table = [
        ("{{ fqdn }}/{{ missing }}/", "r1.dc1.example.com//"),
        ("{{ pw }}", "a&amp;b&lt;&#x27;c&#x27;&gt;"),
        ("{{ pw|safe }}", "a&b<'c'>"),
        (
            "{% autoescape off %}{{ pw }}{% endautoescape %}",
            "a&b<'c'>",
        ),
        ("{{ missing|default:\"x&y\" }}", "x&y"),
        ("{{ fqdn|cut:\".\" }}", "r1dc1examplecom"),
        (
            "{{ n|add:\"2\" }} {{ l }} {{ none }}",
            "5 [&#x27;x&#x27;, &#x27;y&#x27;] None",
        ),
        (
            "{{ l|join:\", \" }}|{{ labels.rack }}|{{ labels.items }}",
            "x, y|r1|dict_items([(&#x27;rack&#x27;, &#x27;r1&#x27;)])",
        ),
        (
            "{% for k, v in labels.items %}{{ k }}={{ v }}{% endfor %}",
            "rack=r1",
        ),
        (
            "{% for x in l reversed %}{{ forloop.counter }}{{ x }}{% empty %}-{% endfor %}",
            "1y2x",
        ),
        (
            "{% if n > 2 and not none %}big{% elif n %}small{% else %}zero{% endif %}",
            "big",
        ),
        (
            "{% if 'x' in l %}in{% endif %}{% if missing is None %}none{% endif %}",
            "innone",
        ),
        (
            "{% now \"Y-m-d H:i:s D N jS\" %}",
            "2026-12-03 09:05:07 Thu Dec. 3rd",
        ),
        (
            "{% with h=fqdn.split %}{{ h.0 }}{% endwith %}",
            "r1.dc1.example.com",
        ),
        (
            "{{ fqdn.upper }} {{ \"a b c\"|title }} {{ 5|yesno:\"on,off\" }}",
            "R1.DC1.EXAMPLE.COM A B C on",
        ),
        (
            "{# gone #}{% comment %}x{% endcomment %}{% verbatim %}{{ raw }}{% endverbatim %}",
            "{{ raw }}",
        ),
        ("{{ x\n}}", "{{ x\n}}"),
    ];
    for (source, expected) in table {
        assert_eq!(render(source, ctx.clone()), expected, "{source}");
    }
}

#[test]
fn refuses_what_django_would() {
    for (source, says) in [
        ("{{ }}", "Empty variable tag"),
        ("{{ x|nosuch }}", "Invalid filter: 'nosuch'"),
        ("{% load foo %}", "not a registered tag library"),
        ("{% cycle a b %}", "Invalid block tag"),
        ("{% if x %}", "Unclosed tag"),
        ("{{ _x }}", "underscores"),
        ("{{ x|default }}", "requires 2 arguments"),
        ("{% if and %}{% endif %}", "Not expecting 'and'"),
    ] {
        let err = Template::compile(source).unwrap_err();
        assert!(err.contains(says), "{source}: {err}");
    }
}

#[test]
fn a_runaway_template_stops() {
    let source = "{% for a in l %}{% for b in l %}{% for c in l %}{% for d in l %}x{% endfor %}{% endfor %}{% endfor %}{% endfor %}";
    let l: Vec<u32> = (0..100).collect();
    let r = Template::compile(source)
        .unwrap()
        .render(&json!({"l": l}), time::OffsetDateTime::UNIX_EPOCH);
    assert_eq!(r, Err(DjangoRenderError::OutOfFuel));
}

/// A profile says which language its templates are in; a Django one is
/// checked and rendered as Django, filenames and messages too.
#[test]
fn a_profile_chooses_django() {
    let doc = |templating: &str, contents: &str| {
        format!(
            "kind: Profile
apiVersion: v1alpha1
name: old
version: '1'
{templating}
workflow:
  new:
    - action: echo
      message: 'hello {{{{ missing|default:\"x\" }}}}'
    - action: serve_file
      via: tftp
      filename: 'pxelinux.cfg/01-{{{{ mac_address_dashed|lower }}}}'
      source:
        type: template
        name: boot.cfg
templates:
  boot.cfg:
    type: template
    contents: '{contents}'
"
        )
    };
    let ctx = json!({"fqdn": "a&b.example.com", "mac_address_dashed": "AA-BB"});
    let now = time::OffsetDateTime::UNIX_EPOCH;
    let p =
        crate::profile::parse(&doc("templating: django", "{{ fqdn }} {% now \"Y\" %}")).unwrap();
    assert_eq!(p.templating, crate::profile::Templating::Django);
    assert_eq!(
        p.render("boot.cfg", &ctx, now).unwrap(),
        "a&amp;b.example.com 1970"
    );
    assert_eq!(
        p.render_inline("pxelinux.cfg/01-{{ mac_address_dashed|lower }}", &ctx, now)
            .unwrap(),
        "pxelinux.cfg/01-aa-bb"
    );
    // The same document without `templating` is minijinja's, which
    // reads `default:"x"` as a syntax error.
    assert!(crate::profile::parse(&doc("", "{{ fqdn }}")).is_err());
    let bad = crate::profile::parse(&doc("templating: django", "{% load x %}")).unwrap_err();
    assert!(
        bad.0
            .iter()
            .any(|e| e.to_string().contains("templates.boot.cfg.contents")),
        "{bad:?}"
    );
    let other = crate::profile::parse(&doc("templating: mako", "x")).unwrap_err();
    assert!(
        other.0.iter().any(|e| e.to_string().contains("templating")),
        "{other:?}"
    );
}
