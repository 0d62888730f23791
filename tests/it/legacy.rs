//! The older system's API at its old paths, driven the way its own
//! example scripts (`upload-profile.py`, `create-deployment.py`,
//! `csv_import.sh`, `delete-deployments.py`, `update-servers.py`) and its
//! agent's client (`deployments/api.py`) drive it: request for request,
//! with their URLs, headers and body encodings (docs/legacy-api.md).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Backend, Daemon, TestStore, callback_profile};

/// A client of the older API: `Authorization: Token <key>` on every
/// request, as the scripts and the agent send it.
struct Older {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Older {
    fn new(d: &Daemon, token: &str) -> Self {
        Self {
            base: d.base.clone(),
            token: token.to_string(),
            client: reqwest::Client::new(),
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        self.client
            .request(method, url)
            .header("Authorization", format!("Token {}", self.token))
    }

    async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let r = req.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A JSON body, as `csv_import.sh` (curl) and `upload-profile.py`
    /// send them (`Accepts` is their spelling).
    async fn json(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        Self::send(
            self.request(method, path)
                .header("Content-Type", "application/json")
                .header("Accepts", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// A form body, as `requests.post(url, data={...})` sends it.
    async fn form(
        &self,
        method: Method,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        Self::send(self.request(method, path).form(fields)).await
    }

    /// A network of location dc1, posted as a form (its gateway .1 and
    /// name server .2 of `cidr`).
    async fn network(&self, name: &str, cidr: &str) -> (StatusCode, Value) {
        let base = cidr.rsplit_once('.').map_or(cidr, |(b, _)| b);
        let (gateway, nameserver) = (format!("{base}.1"), format!("{base}.2"));
        let fields = [
            ("name", name),
            ("network", cidr),
            ("gateway", &gateway),
            ("nameserver", &nameserver),
            ("location", "dc1"),
        ];
        self.form(Method::POST, "/api/v1alpha2/networks/", &fields)
            .await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        Self::send(self.request(Method::GET, path)).await
    }

    async fn delete(&self, path: &str) -> StatusCode {
        Self::send(self.request(Method::DELETE, path)).await.0
    }
}

/// The older set-up: a location and a network through the older API.
async fn seed(older: &Older) {
    let (s, b) = older
        .json(
            Method::POST,
            "/api/v1alpha2/locations/",
            r#"{"name": "dc1"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["name"], "dc1");
    assert_eq!(b["servers"], json!([]));
    let (s, b) = older.network("dc1 boot", "10.0.0.0/24").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        b,
        json!({"id": b["id"], "name": "dc1 boot", "network": "10.0.0.0/24",
            "gateway": "10.0.0.1", "nameserver": "10.0.0.2", "location": "dc1"})
    );
}

/// `csv_import.sh`: a server and its eth0 per CSV line, through `/api/`.
async fn csv_import(older: &Older, lines: &[(&str, &str, &str)]) {
    for (host, ipmi, mac) in lines {
        let server = format!(r#"{{"fqdn":"{host}","location":"dc1","ipmi_host":"{ipmi}"}}"#);
        let interface = format!(r#"{{"name": "eth0", "server": "{host}", "mac": "{mac}"}}"#);
        let (s, b) = older.json(Method::POST, "/api/servers/", &server).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(
            b,
            json!({"id": b["id"], "fqdn": host, "location": "dc1", "serial": null,
                "ipmi_host": ipmi, "interfaces": []})
        );
        let (s, b) = older
            .json(Method::POST, "/api/interfaces/", &interface)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["server"], *host);
        assert_eq!(b["name"], "eth0");
    }
}

/// `upload-profile.py`: the YAML loaded, then sent as JSON text inside
/// JSON.
async fn upload_profile(older: &Older, yaml: &str) -> StatusCode {
    let document: Value = serde_saphyr::from_str(yaml).expect("profile YAML");
    let payload = json!({"profile": document.to_string()}).to_string();
    let (s, b) = older
        .json(Method::POST, "/api/v1alpha2/profiles/", &payload)
        .await;
    if s == StatusCode::CREATED {
        let text = b["profile"].as_str().expect("profile as JSON text");
        let back: Value = serde_json::from_str(text).expect("JSON text");
        assert_eq!(back["name"], document["name"], "{b}");
    }
    s
}

/// `create-deployment.py`: the profile found by name and version, the
/// deployment posted as a form.
async fn create_deployment(older: &Older, server: &str, name: &str, version: &str) -> Value {
    let (s, profiles) = older
        .get(&format!(
            "/api/v1alpha2/profiles/?name={name}&version={version}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{profiles}");
    let id = profiles[0]["id"]
        .as_i64()
        .expect("a profile id")
        .to_string();
    let (s, b) = older
        .form(
            Method::POST,
            "/api/v1alpha2/deployments/",
            &[("server", server), ("profile", &id)],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["server"], server);
    assert_eq!(b["profile"].to_string(), id);
    assert_eq!(b["status"], "new");
    b
}

async fn wait_status(older: &Older, id: i64, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, b) = older.get(&format!("/api/v1alpha2/deployments/{id}/")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["status"] == status {
            return b;
        }
        assert!(Instant::now() < deadline, "never {status}: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each example script, in the order an operator moving over runs them.
async fn the_older_scripts_work_unchanged(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    let older = Older::new(&d, &d.token);
    seed(&older).await;
    csv_import(
        &older,
        &[
            ("n1.dc1.example.com", "10.1.0.11", "52:54:00:0a:00:01"),
            ("n2.dc1.example.com", "10.1.0.12", "52:54:00:0a:00:02"),
        ],
    )
    .await;
    let (s, servers) = older.get("/api/v1alpha2/servers/").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(servers.as_array().map(Vec::len), Some(2), "{servers}");
    assert_eq!(servers[0]["interfaces"], json!(["eth0"]));
    let (_, location) = older.get("/api/v1alpha2/locations/").await;
    assert_eq!(
        location[0]["servers"].as_array().map(Vec::len),
        Some(2),
        "{location}"
    );

    let echo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/profiles/echo-1.0.yaml"
    ))
    .unwrap();
    assert_eq!(upload_profile(&older, &echo).await, StatusCode::CREATED);
    // The same name and version again is refused, naming the profile.
    let (s, b) = older
        .json(
            Method::POST,
            "/api/v1alpha2/profiles/",
            &json!({"profile": serde_saphyr::from_str::<Value>(&echo).unwrap().to_string()})
                .to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["profile"][0].is_string(), "{b}");

    let first = create_deployment(&older, "n1.dc1.example.com", "echo", "1.0").await;
    let done = wait_status(&older, first["id"].as_i64().unwrap(), "complete").await;
    assert_eq!(done["progress"], 100);
    let second = create_deployment(&older, "n2.dc1.example.com", "echo", "1.0").await;
    wait_status(&older, second["id"].as_i64().unwrap(), "complete").await;

    // update-servers.py: a credential on a server, by its v1alpha1 URL.
    let n1 = servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fqdn"] == "n1.dc1.example.com")
        .unwrap()["id"]
        .clone();
    let (s, b) = older
        .form(
            Method::POST,
            "/api/v1alpha1/credentials/",
            &[
                (
                    "content_object",
                    &format!("http://127.0.0.1:8000/api/v1alpha1/servers/{n1}/"),
                ),
                ("name", "ipmi_password"),
                ("data", "test"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"], "test");
    assert_eq!(
        b["content_object"],
        format!("{}/api/v1alpha2/servers/{n1}/", d.base)
    );

    // delete-deployments.py: every deployment, one by one.
    let (_, all) = older.get("/api/v1alpha2/deployments/").await;
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
    for deployment in all.as_array().unwrap() {
        let s = older
            .delete(&format!("/api/v1alpha2/deployments/{}/", deployment["id"]))
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let (_, all) = older.get("/api/v1alpha2/deployments/").await;
    assert_eq!(all, json!([]));
    let (s, _) = older
        .get(&format!("/api/v1alpha2/deployments/{}/", first["id"]))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    d.stop().await;
    ts.drop_database().await;
}

/// What the older agent's client does: register by queue, read the API
/// root without its slash, follow the root's URLs with `//<id>/`, look a
/// server up by FQDN and read its BMC login from credentials; the token
/// it reads is the one the machine calls back with.
async fn the_older_agent_client_works(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    let older = Older::new(&d, &d.token);
    seed(&older).await;
    csv_import(
        &older,
        &[("a1.dc1.example.com", "10.1.0.21", "52:54:00:0a:00:21")],
    )
    .await;

    let register = r#"{"agent_url": "http://10.0.0.5:5000", "queue": "deployment_1_dc1"}"#;
    let (s, first) = older
        .json(Method::POST, "/api/v1alpha2/agents/", register)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let again = r#"{"agent_url": "http://10.0.0.6:5000", "queue": "deployment_1_dc1"}"#;
    let (s, second) = older
        .json(Method::POST, "/api/v1alpha2/agents/", again)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(first["id"], second["id"], "keyed by queue");
    let (_, agents) = older.get("/api/v1alpha2/agents/").await;
    let mine = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["queue"] == "deployment_1_dc1")
        .cloned();
    assert_eq!(
        mine,
        Some(json!({"id": first["id"], "queue": "deployment_1_dc1",
            "agent_url": "http://10.0.0.6:5000"}))
    );

    // The root, without its slash; every URL absolute, under v1alpha2.
    let (s, root) = older.get("/api/v1alpha2").await;
    assert_eq!(s, StatusCode::OK, "{root}");
    let deployments_url = root["deployments"].as_str().unwrap().to_string();
    assert_eq!(
        deployments_url,
        format!("{}/api/v1alpha2/deployments/", d.base)
    );
    let (s, root1) = older.get("/api/v1alpha1/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        root1.get("labels").is_none(),
        "v1alpha1 has no labels: {root1}"
    );
    assert_eq!(root1["servers"], root["servers"]);

    let (s, b) = d
        .post_text("/profiles", &callback_profile("calls"), "application/yaml")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, created) = older
        .json(
            Method::POST,
            "/api/v1alpha2/deployments/",
            &json!({"server": "a1.dc1.example.com", "profile": b["id"]}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();

    // get_deployment: the root's URL plus "//<id>/".
    let (s, deployment) = older.get(&format!("{deployments_url}/{id}/")).await;
    assert_eq!(s, StatusCode::OK, "{deployment}");
    let token = deployment["token"]
        .as_str()
        .expect("staff see the token")
        .to_string();
    assert_eq!(deployment["server"], "a1.dc1.example.com");

    // get_server_by_fqdn, then get_credential.
    let (_, found) = older
        .get("/api/v1alpha2/servers/?fqdn=a1.dc1.example.com")
        .await;
    assert_eq!(found[0]["ipmi_host"], "10.1.0.21");
    let server_id = found[0]["id"].as_i64().unwrap();
    for (name, data) in [("ipmi_username", "ADMIN"), ("ipmi_password", "s3cr\u{e9}t")] {
        let body = json!({"name": name, "data": data,
            "content_object": format!("/api/servers/{server_id}/")});
        let (s, b) = older
            .json(
                Method::POST,
                "/api/v1alpha2/credentials/",
                &body.to_string(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (s, found) = older
        .get(&format!(
            "/api/v1alpha2/credentials/?object=server&object_id={server_id}&name=ipmi_password"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(found[0]["data"], "s3cr\u{e9}t");
    // The daemon's own power drivers log in with them.
    let fqdn = "a1.dc1.example.com".parse().unwrap();
    assert_eq!(
        d.store.bmc_login(&fqdn).await.unwrap(),
        Some(("ADMIN".to_string(), "s3cr\u{e9}t".to_string()))
    );

    // The machine calls back with the token the agent read.
    for name in ["preparing", "installing"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = reqwest::get(format!("{}/_callback/{token}/{name}", d.base))
                .await
                .unwrap();
            if r.status().is_success() {
                break;
            }
            assert!(Instant::now() < deadline, "callback {name}: {}", r.status());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    wait_status(&older, id, "complete").await;
    d.stop().await;
    ts.drop_database().await;
}

on_both_backends!(
    the_older_scripts_work_unchanged,
    the_older_agent_client_works
);

/// Who may do what, and how each refusal and mistake reads, as the older
/// API's clients expect them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_errors_read_as_before() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let d = Daemon::start(&ts, None).await;
    let older = Older::new(&d, &d.token);
    seed(&older).await;
    let anonymous = reqwest::Client::new();

    // Not signed in: 401 with the Basic challenge.
    let r = anonymous
        .get(format!("{}/api/v1alpha2/servers/", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"api\"");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Authentication credentials were not provided."})
    );
    let (s, b) = Older::new(&d, "0123456789abcdef0123456789abcdef01234567")
        .get("/api/servers/")
        .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Invalid token."})
        )
    );

    // A user with a password, created the older way, signs in with Basic.
    let (s, b) = older
        .form(
            Method::POST,
            "/api/v1alpha2/users/",
            &[
                ("username", "viewer"),
                ("email", "v@example.com"),
                ("first_name", "Vera"),
                ("last_name", "Viewer"),
                ("is_active", "true"),
                ("is_staff", "false"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        b,
        json!({"id": b["id"], "username": "viewer", "email": "v@example.com",
            "first_name": "Vera", "last_name": "Viewer", "is_active": true, "is_staff": false})
    );
    let viewer_id = b["id"].clone();
    let basic = |password: &str| {
        anonymous
            .get(format!("{}/api/v1alpha2/locations/", d.base))
            .basic_auth("viewer", Some(password))
    };
    assert_eq!(
        basic("correct horse battery")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = basic("wrong").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Invalid username/password."})
    );

    // A reader reads, and is refused writes, credentials and agents.
    let (s, t) = d.post("/tokens", json!({"user": "viewer"})).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let viewer = Older::new(&d, t["token"].as_str().unwrap());
    assert_eq!(viewer.get("/api/v1alpha2/servers/").await.0, StatusCode::OK);
    let forbidden = json!({"detail": "You do not have permission to perform this action."});
    for (s, b) in [
        viewer
            .json(Method::POST, "/api/v1alpha2/labels/", r#"{"name": "x"}"#)
            .await,
        viewer.get("/api/v1alpha2/credentials/").await,
        viewer.get("/api/v1alpha2/agents/").await,
    ] {
        assert_eq!((s, b), (StatusCode::FORBIDDEN, forbidden.clone()));
    }
    let (_, deployments) = viewer.get("/api/v1alpha2/deployments/").await;
    assert_eq!(deployments, json!([]));

    // Bad input names its fields.
    let (s, b) = older
        .json(Method::POST, "/api/v1alpha2/servers/", r#"{"serial": "x"}"#)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b,
        json!({"fqdn": ["This field is required."], "location": ["This field is required."]})
    );
    let (s, b) = older
        .json(Method::POST, "/api/v1alpha2/servers/", "[1, 2]")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b,
        json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})
    );
    let (s, b) = older
        .json(Method::POST, "/api/v1alpha2/servers/", "{")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error"),
        "{b}"
    );
    let server = r#"{"fqdn": "x1.dc1.example.com", "location": "dc1", "ipmi_host": "bmc one"}"#;
    let (s, b) = older
        .json(Method::POST, "/api/v1alpha2/servers/", server)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["ipmi_host"].is_array(), "named as the older field: {b}");
    let server = r#"{"fqdn": "x1.dc1.example.com", "location": "dc1"}"#;
    let (s, b) = older
        .json(Method::POST, "/api/v1alpha2/servers/", server)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = older
        .json(Method::POST, "/api/v1alpha2/servers/", server)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a duplicate: {b}");
    assert!(b["fqdn"].is_array(), "{b}");
    let (s, b) = older.network("bad", "10.0.0.5/24").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["network"].is_array(), "{b}");
    let (s, b) = older
        .form(
            Method::POST,
            "/api/v1alpha2/deployments/",
            &[("server", "x1.dc1.example.com"), ("profile", "999")],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["profile"].is_array(), "{b}");

    // Servers change with PATCH, by id; a missing id is a 404.
    let (_, found) = older.get("/api/servers/?fqdn=x1.dc1.example.com").await;
    let x1 = found[0]["id"].as_i64().unwrap();
    let (s, b) = older
        .form(
            Method::PATCH,
            &format!("/api/v1alpha2/servers/{x1}/"),
            &[("serial", "SN1")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["serial"], "SN1");
    assert_eq!(
        older.get("/api/v1alpha2/servers/99999/").await,
        (StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
    );
    assert_eq!(
        older.get("/api/v1alpha1/labels/").await.0,
        StatusCode::NOT_FOUND
    );
    let (s, b) = older.get("/api/v1alpha2/interfaces/?colour=blue").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let r = older
        .request(Method::PUT, "/api/v1alpha2/deployments/1/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, DELETE, HEAD, OPTIONS");

    // An inactive user's token and password stop working.
    let (s, b) = older
        .form(
            Method::PATCH,
            &format!("/api/v1alpha2/users/{viewer_id}/"),
            &[("is_active", "false")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["is_active"], false);
    assert_eq!(
        viewer.get("/api/v1alpha2/servers/").await,
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Invalid token."})
        )
    );
    assert_eq!(
        basic("correct horse battery")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // The project's own API stays itself at /api/v1/.
    let (s, b) = d.get("/servers?fqdn=x1.dc1.example.com").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = d.get("/nothing-here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b["error"].is_string(), "the project's error shape: {b}");
    d.stop().await;
}

/// A password hash brought over from the older system (Django's
/// `pbkdf2_sha256`) signs its user in, and is replaced by argon2id then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_password_hash_signs_in_and_is_replaced() {
    use bootloader_core::model::{Name, PasswordHash};
    let ts = TestStore::new(Backend::Sqlite).await;
    let d = Daemon::start(&ts, None).await;
    let older = Older::new(&d, &d.token);
    let (s, b) = older
        .form(
            Method::POST,
            "/api/v1alpha2/users/",
            &[("username", "olduser")],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let name: Name = "olduser".parse().unwrap();
    // Python: hashlib.pbkdf2_hmac('sha256', b'short', b'abc', 1000), as
    // Django stores it.
    let django = "pbkdf2_sha256$1000$abc$zj+XeKwrfBF81lpExtmxN3WeVuK9IKqGlJUpGKz7iNA=";
    d.store
        .set_password(&name, Some(&PasswordHash::from_stored(django).unwrap()))
        .await
        .unwrap();
    let basic = |password: &str| {
        reqwest::Client::new()
            .get(format!("{}/api/v1alpha2/servers/", d.base))
            .basic_auth("olduser", Some(password))
    };
    assert_eq!(
        basic("wrong").send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let stored = d.store.password_hash(&name).await.unwrap().unwrap();
    assert_eq!(stored.as_str(), django, "a wrong password changes nothing");
    assert_eq!(
        basic("short").send().await.unwrap().status(),
        StatusCode::OK
    );
    let stored = d.store.password_hash(&name).await.unwrap().unwrap();
    assert!(stored.as_str().starts_with("$argon2id$"), "replaced");
    assert!(stored.verify("short"));
    assert_eq!(
        basic("short").send().await.unwrap().status(),
        StatusCode::OK
    );
    d.stop().await;
}

/// A token of the older system (a 40-hex DRF key), imported for its
/// user, works on the older API as it did; importing it again changes
/// nothing, and another user cannot take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_token_keeps_working_once_imported() {
    use bootloader::ops::{Actor, users};
    let ts = TestStore::new(Backend::Sqlite).await;
    let d = Daemon::start(&ts, None).await;
    let older = Older::new(&d, &d.token);
    for name in ["ops", "other"] {
        let (s, b) = older
            .form(
                Method::POST,
                "/api/v1alpha2/users/",
                &[("username", name), ("is_staff", "true")],
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";
    let ops: bootloader_core::model::Name = "ops".parse().unwrap();
    let first = users::import_token(&*d.store, &Actor::Host, &ops, key, "older")
        .await
        .unwrap();
    let again = users::import_token(&*d.store, &Actor::Host, &ops, key, "older")
        .await
        .unwrap();
    assert_eq!(first.id, again.id, "a second import changes nothing");
    let other: bootloader_core::model::Name = "other".parse().unwrap();
    assert!(
        users::import_token(&*d.store, &Actor::Host, &other, key, "older")
            .await
            .is_err()
    );
    assert!(
        users::import_token(&*d.store, &Actor::Host, &ops, "short", "older")
            .await
            .is_err()
    );
    let imported = Older::new(&d, key);
    let (s, b) = imported
        .json(
            Method::POST,
            "/api/v1alpha2/labels/",
            r#"{"name": "rack9"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "a staff user's key writes: {b}");
    d.stop().await;
}
