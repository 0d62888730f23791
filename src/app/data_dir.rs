//! The data dir's files: the secret key, the data dir itself, the first
//! staff user's token and this daemon's instance name.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

use crate::config::SecretSource;
use bootloader_store as store;

/// Reads the passphrase, creating a random key file on first use.
pub fn load_secret(source: &SecretSource) -> anyhow::Result<String> {
    match source {
        SecretSource::Key(k) => Ok(k.clone()),
        SecretSource::File(path) => {
            if !path.exists() {
                create_key_file(path)?;
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read secret key file {}", path.display()))?;
            let key = text.trim().to_string();
            if key.len() < 16 {
                bail!(
                    "secret key file {} holds fewer than 16 characters",
                    path.display()
                );
            }
            Ok(key)
        }
    }
}

/// Writes a new random passphrase to `path` with mode 0600.
pub fn create_key_file(path: &Path) -> anyhow::Result<()> {
    let key = store::cipher::random_passphrase()?;
    write_key_file(path, &key)
}

/// Writes `key` to a new file at `path`, readable by its owner only from
/// the moment it exists.
pub fn write_key_file(path: &Path, key: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create secret key file {}", path.display()))?;
    writeln!(file, "{key}")?;
    file.sync_all()?;
    Ok(())
}

/// Creates the data dir readable by this user only (0700; the files in it
/// are 0600 through the process umask set in `main`). An existing one that
/// other users can enter loses those bits, with a warning: it holds the
/// database, whose rows carry live callback and export tokens.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        return Ok(());
    }
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read data dir {}", dir.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        let tightened = mode & !0o007;
        match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(tightened)) {
            Ok(()) => tracing::warn!(
                dir = %dir.display(),
                was = format!("{mode:o}"),
                now = format!("{tightened:o}"),
                "the data dir was open to other users; their access is removed"
            ),
            Err(e) => tracing::warn!(
                dir = %dir.display(),
                mode = format!("{mode:o}"),
                error = %e,
                "the data dir is open to other users and cannot be changed"
            ),
        }
    }
    Ok(())
}

/// Where the first staff user's token is written: readable by the daemon's
/// user only, so that a packaged start leaves it out of the journal.
pub fn first_token_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("admin-token")
}

/// Writes the first token to `first_token_path` (mode 0600, replacing a
/// file left by an earlier database).
pub fn write_first_token(data_dir: &Path, token: &str) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = first_token_path(data_dir);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An older file kept its mode through `create`: set it again.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    Ok(path)
}

/// This daemon's name among the daemons sharing a database: the host name
/// and a random suffix, kept in `instance` in the data dir so that a
/// restarted daemon takes up its own deployments at once.
pub fn instance_name(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("instance");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "bootloader".to_string());
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let name = format!("{host}-{}", hex::encode(suffix));
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    std::fs::write(&path, format!("{name}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(name)
}
