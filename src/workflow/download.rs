//! The download cache of `serve_file` url sources: each URL is fetched
//! once into `<data_dir>/cache/downloads`, keyed by the URL's SHA-256, with
//! a size limit, an optional SHA-256 check, and resumption (an interrupted
//! download goes on from where it stopped, with an HTTP Range request).
//! Deployments serve the cached file; nothing is copied into the store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::info;

/// A file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// Whether this call downloaded (some of) it.
    pub fetched: bool,
}

pub struct DownloadCache {
    dir: PathBuf,
    max_bytes: u64,
    client: reqwest::Client,
    /// One download per URL at a time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What is kept beside each cached file.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    url: String,
    size: u64,
    sha256: String,
}

impl DownloadCache {
    pub fn new(dir: PathBuf, max_bytes: u64) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            // A server that stops sending for this long fails the attempt;
            // the next attempt resumes.
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("bootloader/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            dir,
            max_bytes,
            client,
            locks: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, l| Arc::strong_count(l) > 1);
        Arc::clone(map.entry(key.to_string()).or_default())
    }

    /// The cached file for `url`, downloading what is missing. With
    /// `sha256`, a file whose digest differs is an error (and is not kept).
    pub async fn fetch(&self, url: &str, sha256: Option<&str>) -> Result<Cached, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{url}: only http and https URLs can be downloaded"));
        }
        let key = hex::encode(Sha256::digest(url.as_bytes()));
        let lock = self.lock(&key);
        let _one = lock.lock().await;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let data = self.dir.join(format!("{key}.data"));
        let meta_path = self.dir.join(format!("{key}.json"));
        let part = self.dir.join(format!("{key}.part"));

        if let Some(meta) = read_meta(&meta_path).await
            && meta.url == url
            && file_len(&data).await == Some(meta.size)
        {
            match sha256 {
                Some(want) if !want.eq_ignore_ascii_case(&meta.sha256) => {
                    // The profile expects other bytes (upstream changed, or
                    // the profile was fixed): fetch again.
                    let _ = tokio::fs::remove_file(&data).await;
                }
                _ => {
                    return Ok(Cached {
                        path: data,
                        size: meta.size,
                        sha256: meta.sha256,
                        fetched: false,
                    });
                }
            }
        }

        let (size, digest) = self.download(url, &part).await?;
        if let Some(want) = sha256
            && !want.eq_ignore_ascii_case(&digest)
        {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(format!(
                "{url}: SHA-256 is {digest}, the profile expects {want}"
            ));
        }
        tokio::fs::rename(&part, &data)
            .await
            .map_err(|e| format!("cannot move {} into place: {e}", part.display()))?;
        let meta = Meta {
            url: url.to_string(),
            size,
            sha256: digest.clone(),
        };
        let text = serde_json::to_vec(&meta).unwrap_or_default();
        tokio::fs::write(&meta_path, text)
            .await
            .map_err(|e| format!("cannot write {}: {e}", meta_path.display()))?;
        info!(%url, size, sha256 = %digest, "downloaded into the cache");
        Ok(Cached {
            path: data,
            size,
            sha256: digest,
            fetched: true,
        })
    }

    /// Downloads `url` into `part`, going on from what `part` holds.
    /// Returns the size and SHA-256 of the whole file.
    async fn download(&self, url: &str, part: &Path) -> Result<(u64, String), String> {
        let have = file_len(part).await.unwrap_or(0);
        let mut request = self.client.get(url);
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let resume = match status {
            reqwest::StatusCode::PARTIAL_CONTENT if have > 0 => true,
            // The part is already whole.
            reqwest::StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                return hash_file(part).await.map(|d| (have, d));
            }
            s if s.is_success() => false,
            s => return Err(format!("{url}: the server answered {s}")),
        };
        let start = if resume { have } else { 0 };
        // Read before the body: reqwest's hint shrinks as it is consumed.
        let expected = response.content_length();
        if let Some(len) = expected
            && start + len > self.max_bytes
        {
            return Err(format!(
                "{url}: {} bytes is more than the download limit of {} bytes",
                start + len,
                self.max_bytes
            ));
        }
        // The digest covers the whole file: the part already held first.
        let mut hasher = Sha256::new();
        let mut file = if resume {
            hash_into(part, &mut hasher).await?;
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(part)
                .await
                .map_err(|e| format!("cannot open {}: {e}", part.display()))?
        } else {
            tokio::fs::File::create(part)
                .await
                .map_err(|e| format!("cannot create {}: {e}", part.display()))?
        };
        let mut size = start;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    // Keep what arrived: the next attempt resumes.
                    let _ = file.flush().await;
                    return Err(format!("{url}: interrupted after {size} bytes: {e}"));
                }
            };
            size += chunk.len() as u64;
            if size > self.max_bytes {
                drop(file);
                let _ = tokio::fs::remove_file(part).await;
                return Err(format!(
                    "{url}: more than the download limit of {} bytes",
                    self.max_bytes
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        }
        file.flush()
            .await
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        file.sync_all()
            .await
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        if let Some(len) = expected
            && size != start + len
        {
            return Err(format!("{url}: got {} of {} bytes", size - start, len));
        }
        Ok((size, hex::encode(hasher.finalize())))
    }
}

async fn file_len(path: &Path) -> Option<u64> {
    tokio::fs::metadata(path).await.ok().map(|m| m.len())
}

async fn read_meta(path: &Path) -> Option<Meta> {
    let text = tokio::fs::read(path).await.ok()?;
    serde_json::from_slice(&text).ok()
}

async fn hash_into(path: &Path, hasher: &mut Sha256) -> Result<(), String> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

async fn hash_file(path: &Path) -> Result<String, String> {
    let mut hasher = Sha256::new();
    hash_into(path, &mut hasher).await?;
    Ok(hex::encode(hasher.finalize()))
}
