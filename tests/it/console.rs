//! The web console, against the real daemon: over plain HTTP as a browser
//! would speak it (cookies, forms, redirects, server-sent events), and in
//! Debian's headless Chromium through chromedriver for the whole day of an
//! operator: sign in, create, upload, deploy, watch it move, read errors by
//! their fields, switch the theme, sign out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::common::webdriver::Browser;
use crate::common::{self, Backend, Daemon, TestStore};
use bootloader::ops::Actor;
use bootloader_store::UserSpec;

const PASSWORD: &str = "correct horse battery";

/// A browser's side of HTTP: a cookie jar, forms, no redirects followed.
struct Visitor {
    base: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

struct Answer {
    status: StatusCode,
    location: String,
    set_cookies: Vec<String>,
    retry_after: Option<String>,
    body: String,
}

impl Visitor {
    fn new(d: &Daemon) -> Self {
        Self {
            base: d.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let jar: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let req = if jar.is_empty() {
            req
        } else {
            req.header("Cookie", jar.join("; "))
        };
        let r = req.send().await.expect("request");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let location = header("location").unwrap_or_default();
        let retry_after = header("retry-after");
        let set_cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(String::from))
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        Answer {
            status,
            location,
            set_cookies,
            retry_after,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).expect("form"));
        self.send(req).await
    }

    async fn sign_in(&mut self, name: &str, password: &str, next: &str) -> Answer {
        self.post(
            "/ui/sign-in",
            &[("name", name), ("password", password), ("next", next)],
        )
        .await
    }

    /// The form token on a page of the console.
    async fn form_token(&mut self, page: &str) -> String {
        let a = self.get(page).await;
        assert_eq!(a.status, StatusCode::OK, "{page}: {}", a.body);
        token_in(&a.body)
    }
}

fn token_in(html: &str) -> String {
    let at = html
        .find("name=\"_csrf\" value=\"")
        .expect("a form token on the page");
    html[at + 20..at + 84].to_string()
}

/// The message shown next to the field `name`, if any.
fn field_error(html: &str, name: &str) -> Option<String> {
    let marker = format!("data-field=\"{name}\">");
    let at = html.find(&marker)? + marker.len();
    let end = html[at..].find('<')? + at;
    Some(unescape(&html[at..end]))
}

/// Text as a browser shows it from the page's escaped HTML.
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

async fn with_password(d: &Daemon, name: &str, staff: bool) {
    let user: bootloader_core::model::Name = name.parse().unwrap();
    if d.store.user(&user).await.is_err() {
        d.store
            .create_user(UserSpec {
                name: user.clone(),
                email: format!("{name}@example.com"),
                first_name: String::new(),
                last_name: String::new(),
                is_active: true,
                is_staff: staff,
            })
            .await
            .expect("user");
    }
    bootloader::ops::users::set_password(&*d.store, &Actor::Host, &user, Some(PASSWORD))
        .await
        .expect("password");
}

/// Signing in takes the browser back where it was going; the cookie is
/// HttpOnly and SameSite, scoped to the console, not Secure on plain
/// HTTP; signing out needs the form token and ends the session for good.
async fn sign_in_and_out(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    with_password(&d, "admin", true).await;
    let mut v = Visitor::new(&d);

    let a = v.get("/").await;
    assert_eq!(a.location, "/ui/");
    let a = v.get("/ui/servers?q=node").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location, "/ui/sign-in?next=%2Fui%2Fservers%3Fq%3Dnode");
    let a = v.get(&a.location).await;
    assert!(a.body.contains("name=\"password\""), "{}", a.body);

    let a = v
        .sign_in("admin", "not the password", "/ui/servers?q=node")
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("The user name or the password is wrong."));
    let a = v.sign_in("nobody", PASSWORD, "/ui/").await;
    assert_eq!(
        a.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a stranger alike"
    );
    assert!(v.cookies.is_empty());

    let a = v.sign_in("admin", PASSWORD, "/ui/servers?q=node").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location, "/ui/servers?q=node");
    let cookie = a
        .set_cookies
        .iter()
        .find(|c| c.starts_with("bl_session="))
        .expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/ui"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = v.cookies["bl_session"].clone();
    let a = v.get("/ui/servers?q=node").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("<title>Servers · bootloader</title>"));

    // Somewhere else is not where a sign-in sends anyone.
    let mut other = Visitor::new(&d);
    let a = other
        .sign_in("admin", PASSWORD, "https://evil.example/")
        .await;
    assert_eq!(a.location, "/ui/");
    let a = other.sign_in("admin", PASSWORD, "//evil.example/ui/").await;
    assert_eq!(a.location, "/ui/");

    // A new password: the current session stays, the others end.
    let mut elsewhere = Visitor::new(&d);
    elsewhere.sign_in("admin", PASSWORD, "/ui/").await;
    assert_eq!(elsewhere.get("/ui/").await.status, StatusCode::OK);
    let token = v.form_token("/ui/me").await;
    let new = "another horse battery";
    let a = v
        .post(
            "/ui/me/password",
            &[
                ("_csrf", &token),
                ("current", "wrong one!"),
                ("new", new),
                ("again", new),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&a.body, "current").is_some(), "{}", a.body);
    let a = v
        .post(
            "/ui/me/password",
            &[
                ("_csrf", &token),
                ("current", PASSWORD),
                ("new", new),
                ("again", "typo"),
            ],
        )
        .await;
    assert!(field_error(&a.body, "again").is_some(), "{}", a.body);
    let a = v
        .post(
            "/ui/me/password",
            &[
                ("_csrf", &token),
                ("current", PASSWORD),
                ("new", new),
                ("again", new),
            ],
        )
        .await;
    assert_eq!(a.location, "/ui/me", "{}", a.body);
    assert!(unescape(&v.get("/ui/me").await.body).contains("your 3 other session(s) ended"));
    assert_eq!(
        elsewhere.get("/ui/").await.status,
        StatusCode::SEE_OTHER,
        "signed out"
    );
    assert_eq!(
        elsewhere.sign_in("admin", PASSWORD, "/ui/").await.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the old password is gone"
    );
    assert_eq!(
        elsewhere.sign_in("admin", new, "/ui/").await.status,
        StatusCode::SEE_OTHER
    );

    let a = v.post("/ui/sign-out", &[]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "no form token");
    let token = v.form_token("/ui/").await;
    let a = v.post("/ui/sign-out", &[("_csrf", &token)]).await;
    assert_eq!(a.location, "/ui/sign-in");
    assert!(!v.cookies.contains_key("bl_session"));
    // The old cookie, presented again, opens nothing.
    v.cookies.insert("bl_session".into(), session);
    let a = v.get("/ui/deployments").await;
    assert_eq!(a.location, "/ui/sign-in?next=%2Fui%2Fdeployments");
    // A form posted after the session ended goes to sign in, and back to
    // the page it came from.
    let a = v
        .send(
            v.http
                .post(format!("{}/ui/locations", d.base))
                .header("Referer", format!("{}/ui/locations", d.base))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("name=dc9"),
        )
        .await;
    assert_eq!(a.location, "/ui/sign-in?next=%2Fui%2Flocations");
    d.stop().await;
    ts.drop_database().await;
}

/// Five wrong passwords hold the name (from anywhere, even with the right
/// password) with a Retry-After; other names are not held.
async fn sign_in_attempts_are_limited(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    with_password(&d, "admin", true).await;
    with_password(&d, "ops", false).await;
    let mut v = Visitor::new(&d);
    for _ in 0..5 {
        let a = v.sign_in("admin", "guess", "/ui/").await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let a = v.sign_in("admin", PASSWORD, "/ui/").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(
        a.body.contains("too many failed sign-ins for this user"),
        "{}",
        a.body
    );
    let wait: u64 = a.retry_after.expect("Retry-After").parse().unwrap();
    assert!((800..=900).contains(&wait), "{wait}");
    assert!(v.cookies.is_empty());
    let a = v.sign_in("ops", PASSWORD, "/ui/").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "another user still may");
    d.stop().await;
    ts.drop_database().await;
}

/// A form without the session's token changes nothing; bad input comes
/// back with each error next to its field and the values kept (but never
/// a password); a reader sees no write buttons and is refused if it posts.
async fn forms_and_permissions(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    with_password(&d, "admin", true).await;
    with_password(&d, "reader", false).await;
    let mut v = Visitor::new(&d);
    v.sign_in("admin", PASSWORD, "/ui/").await;

    let a = v.post("/ui/locations", &[("name", "dc1")]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = v
        .post(
            "/ui/locations",
            &[("name", "dc1"), ("_csrf", &"0".repeat(64))],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "another token");
    let (_, locations) = d.get("/locations").await;
    assert_eq!(locations["count"], 0, "nothing was created");

    for label in ["rack1", "rack2", "gpu"] {
        let (s, b) = d.post("/labels", json!({ "name": label })).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let token = v.form_token("/ui/locations").await;
    let a = v
        .post(
            "/ui/locations",
            &[
                ("_csrf", &token),
                ("name", "dc1"),
                ("description", "hall A"),
            ],
        )
        .await;
    assert_eq!(a.location, "/ui/locations");
    let a = v.get("/ui/locations").await;
    assert!(
        a.body.contains("Location dc1 created."),
        "the message is shown"
    );
    // A parameter a page does not take, or a path naming nothing, is
    // answered with a page, not the API's JSON.
    for (path, status, says) in [
        ("/ui/labels?foo=1", StatusCode::UNPROCESSABLE_ENTITY, "foo"),
        (
            "/ui/servers?offset=many",
            StatusCode::UNPROCESSABLE_ENTITY,
            "offset",
        ),
        ("/ui/profiles/abc", StatusCode::NOT_FOUND, "no such page"),
        (
            "/ui/deployments/x/live",
            StatusCode::NOT_FOUND,
            "no such page",
        ),
    ] {
        let a = v.get(path).await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
        assert!(
            a.body.starts_with("<!doctype html>") && a.body.contains(says),
            "{path}: {}",
            a.body
        );
    }
    assert!(
        a.set_cookies.iter().any(|c| c.starts_with("bl_flash=;")),
        "once"
    );
    // This daemon, as the agent of every location (none is configured).
    let me = d.registered().await;
    let page = v.get("/ui/locations").await;
    assert!(
        page.body.contains(&me)
            && page.body.contains("s-up")
            && page.body.contains("every location"),
        "{}",
        page.body
    );
    let a = v
        .post("/ui/locations", &[("_csrf", &token), ("name", "dc1")])
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        field_error(&a.body, "name").is_some_and(|e| e.contains("already exists")),
        "{}",
        a.body
    );

    let a = v
        .post(
            "/ui/networks",
            &[
                ("_csrf", &token),
                ("location", "dc1"),
                ("cidr", "10.0.0.1/24"),
                ("nameservers", "10.0.0.2, nope"),
                ("gateway", ""),
                ("domain", ""),
                ("pool.start", "10.0.0.100"),
                ("pool.end", "10.0.0.150"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let cidr = field_error(&a.body, "cidr").expect("the CIDR's error at the CIDR");
    assert!(cidr.contains("did you mean 10.0.0.0/24?"), "{cidr}");
    let dns = field_error(&a.body, "nameservers").expect("the DNS error at its field");
    assert!(dns.contains("nameservers[1]"), "{dns}");
    assert!(a.body.contains("value=\"10.0.0.100\""), "values are kept");

    let a = v
        .post(
            "/ui/servers/new",
            &[
                ("_csrf", &token),
                ("fqdn", "node1.dc1.example.com"),
                ("location", "dc1"),
                ("interfaces[0].name", "eth0"),
                ("interfaces[0].mac", "52:54:00:00:00:01"),
                ("interfaces[1].name", ""),
                ("interfaces[1].mac", ""),
                ("interfaces[2].name", "eth2"),
                ("interfaces[2].mac", "not-a-mac"),
                ("bmc.port", "six"),
                ("bmc.password", "s3cret-bmc"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&a.body, "bmc.port").is_some_and(|e| e.contains("whole number")));
    let a = v
        .post(
            "/ui/servers/new",
            &[
                ("_csrf", &token),
                ("fqdn", "node1.dc1.example.com"),
                ("location", "dc1"),
                ("interfaces[0].name", "eth0"),
                ("interfaces[0].mac", "52:54:00:00:00:01"),
                ("interfaces[1].name", ""),
                ("interfaces[1].mac", ""),
                ("interfaces[2].name", "eth2"),
                ("interfaces[2].mac", "not-a-mac"),
                ("bmc.password", "s3cret-bmc"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mac = field_error(&a.body, "interfaces[2].mac")
        .expect("at the third row, as the form numbered it");
    assert!(!mac.is_empty(), "{mac}");
    assert!(
        !a.body.contains("s3cret-bmc"),
        "a password is never sent back"
    );
    let a = v
        .post(
            "/ui/servers/new",
            &[
                ("_csrf", &token),
                ("fqdn", "node1.dc1.example.com"),
                ("location", "dc1"),
                ("labels", "rack1, gpu"),
                ("interfaces[0].name", "eth0"),
                ("interfaces[0].mac", "52:54:00:00:00:01"),
            ],
        )
        .await;
    assert_eq!(
        a.location, "/ui/servers/node1.dc1.example.com",
        "{}",
        a.body
    );
    // Edit: the form holds what the server has; emptied fields clear,
    // an empty password keeps the stored one, a new row adds an interface.
    let form = v.get("/ui/servers/node1.dc1.example.com/edit").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body.contains("value=\"52:54:00:00:00:01\""),
        "{}",
        form.body
    );
    assert!(form.body.contains("value=\"gpu, rack1\""));
    let a = v
        .post(
            "/ui/servers/node1.dc1.example.com/edit",
            &[
                ("_csrf", &token),
                ("fqdn", "node1.dc1.example.com"),
                ("location", "dc1"),
                ("serial", "SN-9"),
                ("labels", ""),
                ("notes", ""),
                ("interfaces[0].name", "eth0"),
                ("interfaces[0].mac", "52:54:00:00:00:01"),
                ("interfaces[0].ipv4", ""),
                ("interfaces[1].name", "eth1"),
                ("interfaces[1].mac", "52:54:00:00:00:02"),
                ("interfaces[1].ipv4", ""),
                ("interfaces[2].name", ""),
                ("interfaces[2].mac", ""),
                ("interfaces[2].ipv4", ""),
                ("bmc.host", "10.1.0.9"),
                ("bmc.port", "623"),
                ("bmc.username", "ADMIN"),
                ("bmc.password", "bmc-Pass-1"),
                ("bmc.credential", ""),
            ],
        )
        .await;
    assert_eq!(
        a.location, "/ui/servers/node1.dc1.example.com",
        "{}",
        a.body
    );
    let (_, s) = d.get("/servers/node1.dc1.example.com").await;
    assert_eq!(s["serial"], "SN-9");
    assert_eq!(s["labels"], json!([]), "emptied labels are cleared");
    assert_eq!(s["interfaces"].as_array().unwrap().len(), 2);
    assert_eq!(s["bmc"]["password_set"], true);
    let a = v
        .post(
            "/ui/servers/node1.dc1.example.com/edit",
            &[
                ("_csrf", &token),
                ("serial", "SN-10"),
                ("bmc.host", "10.1.0.9"),
                ("bmc.password", ""),
                ("interfaces[0].mac", "52:54:00:00:00:01"),
                ("interfaces[1].mac", "52:54:00:00:00:01"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        field_error(&a.body, "interfaces[1].mac").is_some_and(|e| e.contains("same MAC")),
        "{}",
        a.body
    );
    let a = v
        .post(
            "/ui/servers/node1.dc1.example.com/edit",
            &[
                ("_csrf", &token),
                ("serial", "SN-10"),
                ("bmc.password", ""),
                ("labels", "rack1"),
            ],
        )
        .await;
    assert_eq!(
        a.location, "/ui/servers/node1.dc1.example.com",
        "{}",
        a.body
    );
    let (_, s) = d.get("/servers/node1.dc1.example.com").await;
    assert_eq!(s["bmc"]["password_set"], true, "an empty password keeps it");
    assert_eq!(s["labels"], json!(["rack1"]));
    assert_eq!(
        s["interfaces"].as_array().unwrap().len(),
        2,
        "no rows: kept"
    );
    let a = v.get("/ui/servers?q=00:00:01").await;
    assert!(a.body.contains("node1.dc1.example.com"), "found by MAC");
    let a = v.get("/ui/servers?q=nothing-like-it").await;
    assert!(a.body.contains("No server matches."));
    let a = v.get("/ui/servers?frobnicate=1").await;
    assert_eq!(
        a.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown filters are refused"
    );

    // Bulk: a confirmation page first; only its form acts.
    let a = v
        .post(
            "/ui/servers/bulk/labels",
            &[
                ("_csrf", &token),
                ("server", "node1.dc1.example.com"),
                ("labels", "rack2"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body
            .contains("Set the labels to &quot;rack2&quot; on 1 servers?"),
        "{}",
        a.body
    );
    let (_, s) = d.get("/servers/node1.dc1.example.com").await;
    assert_eq!(s["labels"], json!(["rack1"]), "not yet");
    let a = v
        .post(
            "/ui/servers/bulk/labels",
            &[
                ("_csrf", &token),
                ("_confirmed", "yes"),
                ("server", "node1.dc1.example.com"),
                ("labels", "rack2"),
            ],
        )
        .await;
    assert!(a.body.contains("labels: rack2"), "{}", a.body);

    // A reader: no buttons, and refused when posting anyway.
    let mut r = Visitor::new(&d);
    r.sign_in("reader", PASSWORD, "/ui/").await;
    let a = r.get("/ui/servers").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.body.contains("Add a server"));
    assert!(!a.body.contains("formaction"), "no bulk actions");
    let page = r.get("/ui/servers/node1.dc1.example.com").await;
    assert!(!page.body.contains("Deploy</button>") && !page.body.contains(">Delete<"));
    let a = r.get("/ui/locations").await;
    assert!(!a.body.contains("Add the location"));
    assert!(
        !a.body.contains("Daemons serving them"),
        "agents are for staff"
    );
    let reader_token = token_in(&page.body);
    let a = r
        .post(
            "/ui/locations",
            &[("_csrf", &reader_token), ("name", "dc2")],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let a = r.get("/ui/servers/new").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = r
        .post(
            "/ui/servers/node1.dc1.example.com/delete",
            &[("_csrf", &reader_token)],
        )
        .await;
    assert!(a.location.contains("/ui/servers/") || a.status == StatusCode::FORBIDDEN);
    let (s, _) = d.get("/servers/node1.dc1.example.com").await;
    assert_eq!(s, StatusCode::OK, "still there");
    // A reader's own theme is theirs to choose.
    let a = r
        .post(
            "/ui/me/theme",
            &[
                ("_csrf", &reader_token),
                ("theme", "high-contrast"),
                ("next", "/ui/me"),
            ],
        )
        .await;
    assert_eq!(a.location, "/ui/me");
    assert!(
        r.get("/ui/me")
            .await
            .body
            .contains("data-theme=\"high-contrast\"")
    );
    assert!(
        v.get("/ui/me").await.body.contains("data-theme=\"light\""),
        "others keep theirs"
    );
    d.stop().await;
    ts.drop_database().await;
}

/// Reads server-sent events from `resp` until `until` says stop; returns
/// them as (event, data).
async fn events_until(
    resp: &mut reqwest::Response,
    secs: u64,
    until: impl Fn(&[(String, serde_json::Value)]) -> bool,
) -> Vec<(String, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buffer = String::new();
    let mut events = Vec::new();
    while !until(&events) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "events so far: {events:?}");
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(bytes))) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("stream: {e}"),
            Err(_) => panic!("no more events in {secs} s: {events:?}"),
        }
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if !name.is_empty() {
                events.push((name, serde_json::from_str(&data).unwrap_or_default()));
            }
        }
    }
    events
}

/// A deployment started from the server's page is followed live: its page
/// gets the state as each callback moves it, the log as it grows, and the
/// stream ends at `complete`.
async fn a_deployment_page_follows_its_deployment(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    with_password(&d, "admin", true).await;
    d.seed_location().await;
    let mac = "52:54:00:c0:00:01";
    let (s, b) = d
        .post("/servers", json!({"fqdn": "live1.dc1.example.com", "location": "dc1", "interfaces": [{"mac": mac}]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, p) = d
        .post_text(
            "/profiles",
            &common::callback_profile("live"),
            "application/yaml",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let mut v = Visitor::new(&d);
    v.sign_in("admin", PASSWORD, "/ui/").await;
    let token = v.form_token("/ui/servers/live1.dc1.example.com").await;
    let profile = p["id"].to_string();
    let a = v
        .post(
            "/ui/servers/live1.dc1.example.com/deploy",
            &[("_csrf", &token), ("profile", &profile)],
        )
        .await;
    assert!(
        a.location.starts_with("/ui/deployments/"),
        "{} {}",
        a.location,
        a.body
    );
    let id: i64 = a.location.rsplit('/').next().unwrap().parse().unwrap();
    let page = v.get(&a.location).await;
    assert!(
        page.body
            .contains(&format!("data-follow=\"/ui/deployments/{id}/live\""))
    );

    let jar: Vec<String> = v.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut stream = v
        .http
        .get(format!("{}/ui/deployments/{id}/live", d.base))
        .header("Cookie", jar.join("; "))
        .send()
        .await
        .expect("live");
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let first = events_until(&mut stream, 30, |e| e.iter().any(|(n, _)| n == "state")).await;
    let (_, state) = first.iter().find(|(n, _)| n == "state").unwrap();
    assert_eq!(state["id"], id);

    let base = common::callback_base(&d.base, mac).await;
    for name in ["preparing", "installing"] {
        let r = reqwest::Client::new()
            .post(format!("{base}{name}"))
            .body("{}")
            .send()
            .await
            .expect("callback");
        assert!(r.status().is_success(), "{name}: {}", r.status());
    }
    // Complete, and its complete step run (it logs a line).
    let seen = events_until(&mut stream, 60, |e| {
        e.iter()
            .any(|(n, d)| n == "state" && d["state"] == "complete" && d["step"].is_null())
    })
    .await;
    let progress: Vec<i64> = first
        .iter()
        .chain(seen.iter())
        .filter(|(n, _)| n == "state")
        .map(|(_, d)| d["progress"].as_i64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&100), "{progress:?}");
    assert!(progress.len() >= 2, "it moved while watched: {progress:?}");
    assert!(
        seen.iter().any(|(n, d)| n == "log"
            && d["message"]
                .as_str()
                .unwrap_or("")
                .contains("live1.dc1.example.com is done")),
        "the log streamed: {seen:?}"
    );
    // The stream ends with the deployment.
    let rest = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await;
    assert!(matches!(rest, Ok(Ok(None))), "{rest:?}");
    // Servers by the state of their latest deployment, and by search, in
    // the console and the API alike.
    let page = v.get("/ui/servers?state=complete").await.body;
    assert!(page.contains("live1.dc1.example.com"), "{page}");
    let page = v.get("/ui/servers?state=error").await.body;
    assert!(page.contains("No server matches."), "{page}");
    let (_, listed) = d.get("/servers?state=complete&search=LIVE1").await;
    assert_eq!(listed["count"], 1, "{listed}");
    for term in [
        "c0:00:01",
        "C0-00-01",
        "52-54-00-C0-00-01",
        "52:54:00:c0:00:01",
        "525400c00001",
    ] {
        let (_, listed) = d.get(&format!("/servers?search={term}")).await;
        assert_eq!(listed["count"], 1, "by MAC as {term}: {listed}");
    }
    let (_, listed) = d.get("/servers?search=52:54:00:c0:00:02").await;
    assert_eq!(listed["count"], 0, "another MAC: {listed}");
    let (_, listed) = d.get("/servers?search=100%25").await;
    assert_eq!(listed["count"], 0, "a % is a percent sign: {listed}");
    let (s, b) = d.get("/servers?state=sleeping").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // A deployed server keeps its history: deleting it is refused, saying
    // why, and it stays.
    let a = v
        .post(
            "/ui/servers/live1.dc1.example.com/delete",
            &[("_csrf", &token)],
        )
        .await;
    assert_eq!(a.location, "/ui/servers/live1.dc1.example.com");
    let page = unescape(&v.get(&a.location).await.body);
    assert!(page.contains("Server not deleted: "), "{page}");
    assert!(page.contains("deployment"), "{page}");
    d.stop().await;
    ts.drop_database().await;
}

/// Where screenshots go when asked (`BOOTLOADER_SCREENSHOTS=docs/ui`).
async fn snap(b: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("BOOTLOADER_SCREENSHOTS") {
        let png = b.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(format!("{dir}/{name}.png"), png).expect("screenshot");
    }
}

const SILENT: &str = "kind: Profile\napiVersion: v1alpha1\nname: silent\nversion: 1.0\nworkflow:\n  new: {}\n  preparing:\n    - action: expect_callback\n      name: never\n      timeout: 2s\n  installing: {}\n  configuring: {}\n  postconfiguring: {}\n  complete: {}\n";

/// The operator's day in Debian's Chromium: sign in, create a location, a
/// network and a server, upload a profile (checked first), deploy it and
/// watch the progress bar move as the machine calls back; a deployment
/// that times out shows why on its page and the dashboard, and Repeat
/// starts it again; bad input is shown at its field; the theme changes;
/// signing out, and an ended session returning to the page after sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_day_in_chromium() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let d = Daemon::start(&ts, None).await;
    with_password(&d, "admin", true).await;
    let b = Browser::start().await;
    let ui = |path: &str| format!("{}{path}", d.base);

    // Sign in, and land where we were going.
    b.goto(&ui("/ui/locations")).await;
    assert!(b.url().await.contains("/ui/sign-in?next="));
    snap(&b, "sign-in").await;
    b.fill("#f-name", "admin").await;
    b.fill("#f-password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_url(|u| u.ends_with("/ui/locations")).await;

    // A location, then a network with a mistake shown at its field.
    b.fill("#f-name", "dc1").await;
    b.fill("#f-description", "hall A").await;
    b.click("form.form button[type=submit]").await;
    b.wait_for_text(".flash", 10, |t| t.contains("Location dc1 created."))
        .await;
    // This daemon is listed among those serving the locations.
    b.wait_for_text("#daemons + p + div table", 10, |t| t.contains("up"))
        .await;
    snap(&b, "locations").await;
    b.goto(&ui("/ui/networks")).await;
    b.choose("#f-location", "dc1").await;
    b.fill("#f-cidr", "10.0.0.1/24").await;
    b.fill("#f-pool\\.start", "10.0.0.100").await;
    b.fill("#f-pool\\.end", "10.0.0.200").await;
    b.click("form.form button[type=submit]").await;
    // (The click returns before the answer is drawn: wait for it.)
    b.wait_for_text("#e-cidr", 10, |t| t.contains("did you mean 10.0.0.0/24?"))
        .await;
    assert_eq!(b.property("#f-cidr", "ariaInvalid").await, json!("true"));
    snap(&b, "form-errors").await;
    b.fill("#f-cidr", "10.0.0.0/24").await;
    b.click("form.form button[type=submit]").await;
    b.wait_for_text(".flash", 10, |t| t.contains("Network 10.0.0.0/24 created."))
        .await;
    snap(&b, "networks").await;

    // A server.
    for label in ["rack1", "gpu"] {
        let (s, b) = d.post("/labels", json!({ "name": label })).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let mac = "52:54:00:c1:00:01";
    b.goto(&ui("/ui/servers/new")).await;
    b.fill("#f-fqdn", "node1.dc1.example.com").await;
    b.choose("#f-location", "dc1").await;
    b.fill("#f-interfaces\\[0\\]\\.mac", mac).await;
    b.fill("#f-labels", "rack1, gpu").await;
    b.click("form.form button[type=submit]").await;
    b.wait_for_text(".flash", 10, |t| {
        t.contains("Server node1.dc1.example.com created.")
    })
    .await;

    // A profile: checked without saving, then uploaded.
    b.goto(&ui("/ui/profiles/new")).await;
    b.script(
        "document.getElementById('source').value = arguments[0];",
        json!([common::callback_profile("demo")]),
    )
    .await;
    b.click("button[value=validate]").await;
    b.wait_for_text("#valid", 10, |t| t.contains("The profile is valid"))
        .await;
    let (_, listed) = d.get("/profiles").await;
    assert_eq!(listed["count"], 0, "validating saves nothing");
    b.click("button[value=upload]").await;
    b.wait_for_text(".flash", 10, |t| t.contains("Profile demo 1.0 uploaded."))
        .await;
    snap(&b, "profile").await;
    // A broken one shows its errors at their lines.
    b.goto(&ui("/ui/profiles/new")).await;
    b.script(
        "document.getElementById('source').value = arguments[0];",
        json!([common::callback_profile("broken")
            .replace("action: expect_callback", "action: expect_calback")]),
    )
    .await;
    b.click("button[value=validate]").await;
    let problems = b.wait_for_text("#problems", 10, |t| !t.is_empty()).await;
    assert!(problems.contains("line 15"), "{problems}");
    assert!(b.count("tr.bad").await >= 1);

    // Deploy from the server's page and watch it move.
    b.goto(&ui("/ui/servers/node1.dc1.example.com")).await;
    assert_eq!(b.text("#h-boot + p").await, "No boot events recorded.");
    b.choose("#deploy-profile", "demo 1.0").await;
    b.click("form.filters button.primary").await;
    b.wait_for_text(".flash", 10, |t| t.contains("started"))
        .await;
    let before = b
        .property("#progress", "value")
        .await
        .as_f64()
        .unwrap_or(0.0);
    let base = common::callback_base(&d.base, mac).await;
    let send = |name: &'static str| {
        let url = format!("{base}{name}");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .body("{}")
                .send()
                .await
                .expect("callback");
            assert!(r.status().is_success());
        }
    };
    send("preparing").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = b
            .property("#progress", "value")
            .await
            .as_f64()
            .unwrap_or(0.0);
        if now > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bar never moved from {before}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    send("installing").await;
    b.wait_for_text("#state", 60, |t| t == "complete").await;
    assert_eq!(b.property("#progress", "value").await.as_f64(), Some(100.0));
    b.wait_for_text("#log", 10, |t| t.contains("node1.dc1.example.com is done"))
        .await;
    snap(&b, "deployment").await;

    // A deployment that times out: its reason on its page and on the
    // dashboard; Repeat starts it again.
    let (s, silent) = d.post_text("/profiles", SILENT, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{silent}");
    b.goto(&ui("/ui/servers/node1.dc1.example.com")).await;
    b.choose("#deploy-profile", "silent 1.0").await;
    b.click("form.filters button.primary").await;
    b.wait_for_text("#state", 60, |t| t == "error").await;
    let reason = b.wait_for_text("#error", 10, |t| !t.is_empty()).await;
    assert!(
        reason.contains("never"),
        "the reason names what did not come: {reason}"
    );
    let failed_url = b.url().await;
    b.goto(&ui("/ui/")).await;
    let failures = b.text("ul.failures").await;
    assert!(failures.contains(&reason), "{failures}");
    snap(&b, "dashboard").await;
    b.goto(&failed_url).await;
    b.click("#repeat").await;
    b.wait_for_text(".flash", 10, |t| t.contains("repeats"))
        .await;
    assert_ne!(b.url().await, failed_url, "a new deployment's page");

    // The server's boot timeline: what the machine fetched and called,
    // drawn and listed, with the time each took.
    b.goto(&ui("/ui/servers/node1.dc1.example.com")).await;
    b.find("figure.timeline svg rect.ph-http").await;
    // (The callbacks came from 127.0.0.1, an address no lease ties to
    // this machine, so they are not its events here; the QEMU suites see
    // them with the machine's own address.)
    let events = b.text("table.events").await;
    assert!(events.contains("GET /ipxe/52:54:00:c1:00:01"), "{events}");
    assert!(events.contains("answered"), "{events}");
    snap(&b, "server").await;

    // Lists.
    b.goto(&ui("/ui/servers?q=c1:00")).await;
    assert_eq!(b.count("table.servers tbody tr").await, 1);
    snap(&b, "servers").await;
    b.goto(&ui("/ui/deployments?state=complete")).await;
    assert_eq!(b.count("main table tbody tr").await, 1);
    snap(&b, "deployments").await;

    // The theme, per user, and at 400 px wide.
    b.goto(&ui("/ui/me")).await;
    b.click("input[value=dark]").await;
    b.click("#save-theme").await;
    b.wait_for_text(".flash", 10, |t| t.contains("Theme changed."))
        .await;
    let theme = b
        .script("return document.documentElement.dataset.theme;", json!([]))
        .await;
    assert_eq!(theme, json!("dark"));
    let background = b
        .script(
            "return getComputedStyle(document.body).backgroundColor;",
            json!([]),
        )
        .await;
    assert_eq!(
        background,
        json!("rgb(20, 23, 27)"),
        "the dark colours apply"
    );
    b.goto(&ui("/ui/")).await;
    snap(&b, "dashboard-dark").await;
    b.resize(400, 900).await;
    b.goto(&ui("/ui/servers/node1.dc1.example.com")).await;
    let wider = b
        .script(
            "return [...document.querySelectorAll('body *')]
               .filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > window.innerWidth + 1)
               .map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right));",
            json!([]),
        )
        .await;
    assert_eq!(
        wider,
        json!([]),
        "nothing but a table's own scroller is wider than 400 px"
    );
    snap(&b, "server-narrow").await;
    b.resize(1280, 900).await;

    // Deleting asks first, and says so after.
    let (s, _) = d
        .post(
            "/servers",
            json!({"fqdn": "spare.dc1.example.com", "location": "dc1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    b.goto(&ui("/ui/servers/spare.dc1.example.com")).await;
    b.click("button.danger").await;
    b.accept().await;
    b.wait_for_text(".flash", 10, |t| {
        t.contains("Server spare.dc1.example.com deleted.")
    })
    .await;
    let (s, _) = d.get("/servers/spare.dc1.example.com").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Sign out; the next page asks to sign in and comes back after.
    b.click("button.link").await;
    b.find("#f-password").await;
    b.goto(&ui("/ui/deployments?state=error")).await;
    assert!(b.url().await.contains("/ui/sign-in?next="));
    b.fill("#f-name", "admin").await;
    b.fill("#f-password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_url(|u| u.ends_with("/ui/deployments?state=error"))
        .await;
    // A form without its token is refused, whatever the cookie.
    b.goto(&ui("/ui/locations")).await;
    b.fill("#f-name", "dc9").await;
    b.script(
        "document.querySelector('form.form input[name=_csrf]').remove();",
        json!([]),
    )
    .await;
    b.click("form.form button[type=submit]").await;
    b.wait_for_text("body", 10, |t| {
        t.contains("did not carry this session's form token")
    })
    .await;
    let (_, locations) = d.get("/locations").await;
    assert_eq!(locations["count"], 1, "dc9 was not created");
    // A session that ran out (purged as the daemon does at its end) sends
    // the browser to sign in, and back to the page after.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(8);
    d.store
        .purge_sessions(later, time::Duration::hours(12))
        .await
        .unwrap();
    b.goto(&ui("/ui/servers?q=node1")).await;
    b.wait_url(|u| u.contains("/ui/sign-in?next=")).await;
    b.fill("#f-name", "admin").await;
    b.fill("#f-password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_url(|u| u.ends_with("/ui/servers?q=node1")).await;
    // The console fetched nothing from elsewhere.
    let foreign = b
        .script(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin));",
            json!([]),
        )
        .await;
    assert_eq!(foreign, json!([]));
    drop(b);
    d.stop().await;
    ts.drop_database().await;
}

/// Labels, credentials, users, settings for staff; a reader makes and
/// revokes their own API token (shown once, and it works) and SSH key, and
/// is refused the staff pages.
async fn people_and_settings(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    with_password(&d, "admin", true).await;
    let mut v = Visitor::new(&d);
    v.sign_in("admin", PASSWORD, "/ui/").await;
    let token = v.form_token("/ui/labels").await;

    let a = v
        .post(
            "/ui/labels",
            &[
                ("_csrf", &token),
                ("name", "gpu"),
                ("description", "has GPUs"),
            ],
        )
        .await;
    assert_eq!(a.location, "/ui/labels");
    assert!(v.get("/ui/labels").await.body.contains("has GPUs"));
    let a = v
        .post(
            "/ui/credentials",
            &[
                ("_csrf", &token),
                ("name", "smc"),
                ("username", "ADMIN"),
                ("password", "bmc-Secret-42"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(a.location, "/ui/credentials", "{}", a.body);
    let page = v.get("/ui/credentials").await.body;
    assert!(
        page.contains("smc") && !page.contains("bmc-Secret-42"),
        "write-only"
    );
    let a = v
        .post(
            "/ui/users",
            &[
                ("_csrf", &token),
                ("name", "ops1"),
                ("email", "ops1@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(a.location, "/ui/users", "{}", a.body);
    let settings = v.get("/ui/settings").await;
    assert_eq!(settings.status, StatusCode::OK);
    assert!(settings.body.contains("http.listen"), "{}", settings.body);
    let events = v.get("/ui/events").await;
    assert_eq!(events.status, StatusCode::OK);
    assert!(events.body.contains("Waiting</dt>"), "{}", events.body);

    // Edits: the form holds the object; a change shows at once; a bad
    // value is said at its field; an empty password keeps the stored one.
    let form = v.get("/ui/labels?edit=gpu").await;
    assert!(
        form.body.contains("Edit label gpu") && form.body.contains("value=\"has GPUs\""),
        "{}",
        form.body
    );
    let a = v
        .post(
            "/ui/labels/gpu/edit",
            &[("_csrf", &token), ("name", "gpu"), ("description", "")],
        )
        .await;
    assert_eq!(a.location, "/ui/labels", "{}", a.body);
    let (_, l) = d.get("/labels/gpu").await;
    assert_eq!(l["description"], "", "emptied, cleared");
    let a = v
        .post(
            "/ui/labels/gpu/edit",
            &[
                ("_csrf", &token),
                ("name", "Not A Name"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&a.body, "name").is_some(), "{}", a.body);
    let a = v
        .post(
            "/ui/credentials/smc/edit",
            &[
                ("_csrf", &token),
                ("name", "smc"),
                ("username", "root"),
                ("password", ""),
                ("description", "shared"),
            ],
        )
        .await;
    assert_eq!(a.location, "/ui/credentials", "{}", a.body);
    let (_, c) = d.get("/credentials/smc").await;
    assert_eq!(c["username"], "root");
    let form = v.get("/ui/users?edit=ops1").await;
    assert!(
        form.body.contains("value=\"ops1@example.com\""),
        "{}",
        form.body
    );
    let a = v
        .post(
            "/ui/users/ops1/edit",
            &[
                ("_csrf", &token),
                ("name", "ops1"),
                ("email", "not-an-email"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&a.body, "email").is_some(), "{}", a.body);
    d.seed_location().await;
    let (_, nets) = d.get("/networks").await;
    let net = nets["results"][0]["id"].to_string();
    let form = v.get(&format!("/ui/networks?edit={net}")).await;
    assert!(form.body.contains("value=\"10.0.0.100\""), "{}", form.body);
    let edit = format!("/ui/networks/{net}/edit");
    // The network's fields with the middle option row as given.
    let with_option = |option: &'static str, value: &'static str| {
        vec![
            ("_csrf", token.as_str()),
            ("location", "dc1"),
            ("cidr", "10.0.0.0/24"),
            ("gateway", "10.0.0.254"),
            ("nameservers", "10.0.0.2"),
            ("domain", "dc1.example.com"),
            ("pool.start", ""),
            ("pool.end", ""),
            ("dhcp_options[0].option", "ntp-servers"),
            ("dhcp_options[0].value", "10.0.0.5"),
            ("dhcp_options[1].option", option),
            ("dhcp_options[1].value", value),
            ("dhcp_options[2].option", "interface-mtu"),
            ("dhcp_options[2].value", "9000"),
            ("description", ""),
        ]
    };
    let a = v.post(&edit, &with_option("router", "10.0.0.9")).await;
    // A bad option is shown at its row, and every row comes back.
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let said = field_error(&a.body, "dhcp_options[1].option").unwrap_or_default();
    assert!(said.contains("unknown option"), "{said}");
    assert!(a.body.contains(r#"value="9000""#), "{}", a.body);
    // An emptied row is left out.
    let a = v.post(&edit, &with_option("", "")).await;
    assert_eq!(a.location, "/ui/networks", "{}", a.body);
    let (_, n) = d.get(&format!("/networks/{net}")).await;
    assert_eq!(
        n["dhcp_options"],
        json!([{"code": 42, "name": "ntp-servers", "value": "10.0.0.5"},
            {"code": 26, "name": "interface-mtu", "value": "9000"}])
    );
    let form = v.get(&format!("/ui/networks?edit={net}")).await;
    assert!(
        form.body.contains(r#"value="interface-mtu""#),
        "{}",
        form.body
    );
    assert_eq!(n["gateway"], "10.0.0.254");
    assert_eq!(
        n["pool"],
        serde_json::Value::Null,
        "both ends emptied: no pool"
    );
    assert_eq!(n["nameservers"], json!(["10.0.0.2"]));
    let a = v
        .post(
            &edit,
            &[
                ("_csrf", &token),
                ("location", "dc1"),
                ("cidr", "10.0.0.0/24"),
                ("gateway", "10.0.1.1"),
                ("pool.start", "10.0.0.10"),
                ("pool.end", ""),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&a.body, "gateway").is_some(), "{}", a.body);
    assert!(field_error(&a.body, "pool.end").is_some(), "{}", a.body);
    let a = v
        .post("/ui/locations", &[("_csrf", &token), ("name", "dc7")])
        .await;
    assert_eq!(a.location, "/ui/locations");
    let a = v
        .post(
            "/ui/locations/dc7/edit",
            &[
                ("_csrf", &token),
                ("name", "dc7"),
                ("description", "hall 7"),
            ],
        )
        .await;
    assert_eq!(a.location, "/ui/locations", "{}", a.body);
    let a = v
        .post("/ui/locations/dc7/delete", &[("_csrf", &token)])
        .await;
    assert!(unescape(&v.get(&a.location).await.body).contains("Location dc7 deleted."));

    // ops1, a reader, signs in with the password staff gave.
    let mut r = Visitor::new(&d);
    let a = r.sign_in("ops1", PASSWORD, "/ui/keys").await;
    assert_eq!(a.location, "/ui/keys");
    for page in ["/ui/users", "/ui/settings", "/ui/credentials"] {
        assert_eq!(r.get(page).await.status, StatusCode::FORBIDDEN, "{page}");
    }
    let nav = r.get("/ui/").await.body;
    assert!(
        !nav.contains("href=\"/ui/users\""),
        "staff pages are not offered"
    );
    let rt = r.form_token("/ui/keys").await;
    let a = r
        .post(
            "/ui/keys/tokens",
            &[
                ("_csrf", &rt),
                ("description", "laptop"),
                ("scope", "read"),
                ("expires", "30d"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let at = a
        .body
        .find("id=\"token-secret\">")
        .expect("the token, shown once")
        + 18;
    let secret = a.body[at..at + 67].to_string();
    assert!(secret.starts_with("bl_"), "{secret}");
    let (s, _) = d
        .call_as(Some(&secret), reqwest::Method::GET, "/servers", None)
        .await;
    assert_eq!(s, StatusCode::OK, "the new token works");
    let again = r.get("/ui/keys").await.body;
    assert!(!again.contains(&secret), "never shown again");
    let a = r
        .post(
            "/ui/keys/tokens",
            &[
                ("_csrf", &rt),
                ("description", "x"),
                ("scope", "write"),
                ("expires", "30d"),
            ],
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a reader makes no write token"
    );
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMqy0rTqL0y7kZ3mN4o5p6q7r8s9t0u1v2w3x4y5z6A7 ops1@laptop";
    let a = r
        .post(
            "/ui/keys/ssh",
            &[("_csrf", &rt), ("name", ""), ("key", key)],
        )
        .await;
    assert_eq!(a.location, "/ui/keys", "{}", a.body);
    let a = r
        .post(
            "/ui/keys/ssh",
            &[("_csrf", &rt), ("name", ""), ("key", "ssh-rsa nonsense")],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&a.body, "key").is_some(), "{}", a.body);
    let (_, keys) = d.get("/ssh_authorized_keys?user=ops1").await;
    assert_eq!(keys["count"], 1);
    let (_, tokens) = d.get("/tokens?user=ops1").await;
    let id = tokens["results"][0]["id"].to_string();
    let a = r
        .post(&format!("/ui/keys/tokens/{id}/revoke"), &[("_csrf", &rt)])
        .await;
    assert_eq!(a.location, "/ui/keys");
    let (s, _) = d
        .call_as(Some(&secret), reqwest::Method::GET, "/servers", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked");

    // Deleting a user ends their console sessions too.
    let a = v.post("/ui/users/ops1/delete", &[("_csrf", &token)]).await;
    assert_eq!(a.location, "/ui/users");
    assert_eq!(r.get("/ui/keys").await.status, StatusCode::SEE_OTHER);
    d.stop().await;
    ts.drop_database().await;
}

/// A profile's page numbers its lines; two versions compare line by line;
/// an upload with a mistake shows it at its line, and a duplicate is a
/// conflict said at the top.
async fn profile_pages(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    with_password(&d, "admin", true).await;
    let one = common::callback_profile("cmp");
    let two = one
        .replace("version: 1.0", "version: 1.1")
        .replace("timeout: 2m", "timeout: 5m");
    let (_, p1) = d.post_text("/profiles", &one, "application/yaml").await;
    let (_, p2) = d.post_text("/profiles", &two, "application/yaml").await;
    let mut v = Visitor::new(&d);
    v.sign_in("admin", PASSWORD, "/ui/").await;
    let page = v.get(&format!("/ui/profiles/{}", p2["id"])).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("<tr id=\"L5\"><td class=\"ln\">5</td><td><pre>timeout: 5m</pre>"),
        "{}",
        page.body
    );
    let diff = v
        .get(&format!("/ui/profiles/{}?diff={}", p2["id"], p1["id"]))
        .await;
    assert_eq!(diff.status, StatusCode::OK);
    let body = unescape(&diff.body);
    assert!(
        body.contains("<td class=\"mk\">-</td><td><pre>timeout: 2m</pre>"),
        "{body}"
    );
    assert!(
        body.contains("<td class=\"mk\">+</td><td><pre>timeout: 5m</pre>"),
        "{body}"
    );
    assert!(body.contains("<td class=\"mk\">+</td><td><pre>version: 1.1</pre>"));
    assert_eq!(
        v.get("/ui/profiles/999?diff=1").await.status,
        StatusCode::NOT_FOUND
    );

    let token = v.form_token("/ui/profiles/new").await;
    let broken = one.replace("name: script", "name: nosuch");
    let a = v
        .post(
            "/ui/profiles/new",
            &[
                ("_csrf", &token),
                ("_action", "upload"),
                ("source", &broken),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let line = broken
        .lines()
        .position(|l| l.contains("name: nosuch"))
        .unwrap()
        + 1;
    assert!(
        a.body
            .contains(&format!("<tr id=\"L{line}\" class=\"bad\">")),
        "the error at line {line}: {}",
        a.body
    );
    let a = v
        .post(
            "/ui/profiles/new",
            &[("_csrf", &token), ("_action", "upload"), ("source", &one)],
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert!(a.body.contains("already"), "{}", a.body);

    // A version a deployment used is kept, saying why; another goes.
    d.seed_location().await;
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": "cmp1.dc1.example.com", "location": "dc1",
                "interfaces": [{"name": "eth0", "mac": "52:54:00:c3:00:01"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = d
        .post(
            "/deployments",
            json!({"server": "cmp1.dc1.example.com", "profile": "cmp==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(
        page.body.contains("Delete this version"),
        "staff may delete"
    );
    let a = v
        .post(
            &format!("/ui/profiles/{}/delete", p1["id"]),
            &[("_csrf", &token)],
        )
        .await;
    assert_eq!(a.location, format!("/ui/profiles/{}", p1["id"]));
    let back = v.get(&a.location).await;
    assert!(
        back.body.contains("Profile cmp==1.0 not deleted")
            && back.body.contains("used by 1 deployment"),
        "{}",
        back.body
    );
    let a = v
        .post(
            &format!("/ui/profiles/{}/delete", p2["id"]),
            &[("_csrf", &token)],
        )
        .await;
    assert_eq!(a.location, "/ui/profiles");
    assert!(
        v.get("/ui/profiles")
            .await
            .body
            .contains("Profile cmp==1.1 deleted.")
    );
    let (s, _) = d.get(&format!("/profiles/{}", p2["id"])).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    d.stop().await;
    ts.drop_database().await;
}

/// With GRAVATAR_PROXY on (in the older system's spelling), a user's
/// avatar comes through the daemon from the configured avatar service, by
/// the SHA-256 of their e-mail; someone without one gets their initials;
/// with it off, no page asks for an avatar at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avatars_come_through_the_daemon() {
    use sha2::{Digest, Sha256};
    // A local HTTP server in place of gravatar.com: one image, by hash.
    let root = tempfile::tempdir().expect("dir");
    let avatars = root.path().join("avatar");
    std::fs::create_dir(&avatars).unwrap();
    let png = b"\x89PNG\r\n\x1a\n0000IHDR-a-tiny-test-image".to_vec();
    let hash = hex::encode(Sha256::digest(b"admin@example.com"));
    std::fs::write(avatars.join(&hash), &png).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the avatar server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut ts = TestStore::new(Backend::Sqlite).await;
    ts.env.insert("GRAVATAR_PROXY".into(), "yup".into());
    ts.env.insert(
        "BOOTLOADER_UI_GRAVATAR_URL".into(),
        format!("http://127.0.0.1:{port}/avatar"),
    );
    let d = Daemon::start(&ts, None).await;
    with_password(&d, "admin", true).await;
    let admin: bootloader_core::model::Name = "admin".parse().unwrap();
    let user = d.store.user(&admin).await.unwrap();
    d.store
        .update_user(
            &admin,
            UserSpec {
                name: admin.clone(),
                email: "Admin@Example.com ".into(),
                first_name: String::new(),
                last_name: String::new(),
                is_active: true,
                is_staff: true,
            },
            &user,
        )
        .await
        .unwrap();
    with_password(&d, "ops", false).await;
    let mut v = Visitor::new(&d);
    v.sign_in("admin", PASSWORD, "/ui/").await;
    let page = v.get("/ui/").await;
    assert!(
        page.body.contains("src=\"/ui/avatars/admin\""),
        "{}",
        page.body
    );
    let jar: Vec<String> = v.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let r = v
        .http
        .get(format!("{}/ui/avatars/admin", d.base))
        .header("Cookie", jar.join("; "))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        png.as_slice(),
        "the image, through the daemon"
    );
    let other = v.get("/ui/avatars/ops").await;
    assert!(
        other.body.starts_with("<svg") && other.body.contains(">O</text>"),
        "{}",
        other.body
    );
    let _ = server.kill();
    let _ = server.wait();
    d.stop().await;

    // Off (the default): initials, and no request for an image.
    let ts = TestStore::new(Backend::Sqlite).await;
    let d = Daemon::start(&ts, None).await;
    with_password(&d, "admin", true).await;
    let mut v = Visitor::new(&d);
    v.sign_in("admin", PASSWORD, "/ui/").await;
    let page = v.get("/ui/").await.body;
    assert!(!page.contains("/ui/avatars/"), "{page}");
    assert!(page.contains(">A</span>"));
    d.stop().await;
}

on_both_backends!(
    sign_in_and_out,
    sign_in_attempts_are_limited,
    forms_and_permissions,
    a_deployment_page_follows_its_deployment,
    people_and_settings,
    profile_pages,
);
