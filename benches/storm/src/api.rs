//! The daemon's side of a storm: registering the machines and starting
//! their deployments before it (`prepare`), and reading back after it
//! whether every deployment completed and every lease a machine was
//! acknowledged is in the store (`check`).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{Client, Request, Url};
use crate::machine::mac_text;

const PROFILE: &str = include_str!("../storm-profile.yaml");
const STATES: [&str; 8] = [
    "new",
    "preparing",
    "installing",
    "configuring",
    "postconfiguring",
    "complete",
    "error",
    "cancelled",
];

#[derive(clap::Args)]
pub struct Prepare {
    #[command(flatten)]
    api: Api,
    #[arg(long)]
    machines: u32,
    /// The boot network: CIDR, gateway, and the pool as FIRST-LAST.
    #[arg(long)]
    cidr: String,
    #[arg(long)]
    gateway: Ipv4Addr,
    #[arg(long)]
    pool: String,
    /// POSTs in flight at once while starting deployments.
    #[arg(long, default_value_t = 4)]
    concurrency: u32,
}

#[derive(clap::Args)]
pub struct Check {
    #[command(flatten)]
    api: Api,
    #[arg(long)]
    machines: u32,
    /// The run's acknowledged leases (`mac ip` lines).
    #[arg(long)]
    leases: PathBuf,
}

#[derive(clap::Args, Clone)]
struct Api {
    /// The daemon's base URL (`http://a.b.c.d:port`).
    #[arg(long)]
    api: String,
    #[arg(long)]
    token: String,
}

impl Api {
    async fn call(
        &self,
        http: &mut Client,
        method: &str,
        path: &str,
        body: Body<'_>,
    ) -> Result<Value, String> {
        let url = Url::parse(&format!("{}/api/v1{path}", self.api))?;
        let auth = format!("Token {}", self.token);
        let (ctype, bytes) = match body {
            Body::None => ("application/json", Vec::new()),
            Body::Json(v) => ("application/json", v.to_string().into_bytes()),
            Body::Raw(ctype, b) => (ctype, b.to_vec()),
        };
        let headers = [("Authorization", auth.as_str()), ("Content-Type", ctype)];
        let reply = http
            .send(&Request {
                method,
                url: &url,
                range: None,
                body: &bytes,
                headers: &headers,
                keep: 64 << 20,
            })
            .await?;
        let value: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if !(200..300).contains(&reply.status) {
            return Err(format!("{method} {path}: {} {value}", reply.status));
        }
        Ok(value)
    }

    fn client(&self) -> Client {
        Client::new(Ipv4Addr::UNSPECIFIED.into(), Duration::from_secs(120))
    }

    async fn count(&self, http: &mut Client, query: &str) -> Result<u64, String> {
        let v = self
            .call(
                http,
                "GET",
                &format!("/deployments?limit=1&{query}"),
                Body::None,
            )
            .await?;
        v["count"]
            .as_u64()
            .ok_or_else(|| format!("no count in {v}"))
    }
}

enum Body<'a> {
    None,
    Json(Value),
    Raw(&'a str, &'a [u8]),
}

fn fqdn(i: u32) -> String {
    format!("m{i:05}.storm.example.com")
}

impl Prepare {
    pub async fn run(&self) -> Result<(), String> {
        let api = &self.api;
        let mut http = api.client();
        let (first, last) = self.pool.split_once('-').ok_or("--pool FIRST-LAST")?;
        api.call(
            &mut http,
            "POST",
            "/locations",
            Body::Json(json!({"name": "storm"})),
        )
        .await?;
        api.call(
            &mut http,
            "POST",
            "/networks",
            Body::Json(json!({
                "location": "storm", "cidr": self.cidr, "gateway": self.gateway,
                "pool": {"start": first, "end": last},
            })),
        )
        .await?;
        let t = Instant::now();
        for chunk in (0..self.machines).collect::<Vec<_>>().chunks(1000) {
            let mut csv = String::from("fqdn;location;interface;mac\n");
            for i in chunk {
                csv.push_str(&format!("{};storm;eth0;{}\n", fqdn(*i), mac_text(*i)));
            }
            api.call(
                &mut http,
                "POST",
                "/servers/import",
                Body::Raw("text/csv", csv.as_bytes()),
            )
            .await?;
        }
        println!(
            "registered {} servers in {:.1} s",
            self.machines,
            t.elapsed().as_secs_f64()
        );
        api.call(
            &mut http,
            "POST",
            "/profiles",
            Body::Raw("application/yaml", PROFILE.as_bytes()),
        )
        .await?;

        let t = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut posts = tokio::task::JoinSet::new();
        for _ in 0..self.concurrency.max(1) {
            let (api, next, n) = (api.clone(), Arc::clone(&next), self.machines);
            posts.spawn(async move {
                let mut http = api.client();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return Ok::<(), String>(());
                    }
                    let body = json!({"server": fqdn(i), "profile": "storm==1"});
                    api.call(&mut http, "POST", "/deployments", Body::Json(body))
                        .await?;
                }
            });
        }
        while let Some(done) = posts.join_next().await {
            done.map_err(|e| e.to_string())??;
        }
        println!(
            "started {} deployments in {:.1} s",
            self.machines,
            t.elapsed().as_secs_f64()
        );

        // Ready when every deployment serves its script (waits in `preparing`).
        let t = Instant::now();
        loop {
            let ready = api.count(&mut http, "state=preparing").await?;
            if ready >= u64::from(self.machines) {
                break;
            }
            if t.elapsed() > Duration::from_secs(600) {
                return Err(format!(
                    "only {ready} deployments reached preparing in 600 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!(
            "all waiting for their machines after {:.1} s more",
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

impl Check {
    pub async fn run(&self) -> Result<(), String> {
        let api = &self.api;
        let mut http = api.client();
        // The engine may still be catching up with stored callbacks: wait
        // until every deployment is complete or none moved for 20 s.
        let t = Instant::now();
        let (mut last, mut since) = (u64::MAX, Instant::now());
        let complete = loop {
            let n = api.count(&mut http, "state=complete").await?;
            if n != last {
                (last, since) = (n, Instant::now());
            }
            if n >= u64::from(self.machines) || since.elapsed() > Duration::from_secs(20) {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        println!(
            "{complete} deployments complete {:.1} s after the restart",
            t.elapsed().as_secs_f64()
        );
        let mut states = Vec::new();
        for state in STATES {
            let n = api.count(&mut http, &format!("state={state}")).await?;
            if n > 0 {
                states.push(format!("{state} {n}"));
            }
        }
        println!("deployments: {}", states.join(", "));

        let mut stored: HashMap<String, String> = HashMap::new();
        let mut offset = 0u64;
        loop {
            let page = api
                .call(
                    &mut http,
                    "GET",
                    &format!("/leases?limit=1000&offset={offset}"),
                    Body::None,
                )
                .await?;
            let rows = page["results"].as_array().cloned().unwrap_or_default();
            for row in &rows {
                if let (Some(mac), Some(ip)) = (row["mac"].as_str(), row["ip"].as_str()) {
                    stored.insert(mac.to_string(), ip.to_string());
                }
            }
            offset += rows.len() as u64;
            if rows.is_empty() || page["next"].is_null() {
                break;
            }
        }
        let acked = std::fs::read_to_string(&self.leases)
            .map_err(|e| format!("{}: {e}", self.leases.display()))?;
        let (mut same, mut missing, mut other) = (0u64, 0u64, 0u64);
        for line in acked.lines() {
            let Some((mac, ip)) = line.split_once(' ') else {
                continue;
            };
            match stored.get(mac) {
                Some(s) if s == ip => same += 1,
                Some(_) => other += 1,
                None => missing += 1,
            }
        }
        println!(
            "leases: {same} acknowledged leases in the store at the address the machine got, {missing} missing, {other} at another address ({} rows in all)",
            stored.len()
        );
        if complete != u64::from(self.machines) || missing > 0 || other > 0 {
            return Err(format!(
                "{complete} of {} deployments complete; {missing} leases missing, {other} moved",
                self.machines
            ));
        }
        Ok(())
    }
}
