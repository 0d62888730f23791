//! Files below a root directory, as TFTP and HTTP (`/static`, `/boot`)
//! serve them: a request names a path under the root; what is opened is a
//! regular file that stays there. A symlink may leave the root only when
//! root or the root directory's owner placed it (Debian's `ipxe` package
//! links `/usr/lib/ipxe/ipxe.efi` to `/boot/ipxe.efi`); FIFOs, sockets,
//! devices and directories are never opened (opening a FIFO would block).

use std::path::{Path, PathBuf};

use bootloader_core::tftp::path::{PathError, resolve};

pub mod opened;
pub use opened::Opened;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    BadPath(PathError),
    #[error("the path leaves the served directory")]
    LeavesRoot,
    /// Missing, or not a regular file.
    #[error("not found")]
    NotFound,
}

/// The regular file `name` names below `root`, opened with its metadata.
/// Whatever the links, nothing in `private` (the data dir: the database,
/// the secret key, tokens) is reached from outside it. Its checks (a few
/// `stat`s and `readlink`s) and the open run together on one blocking
/// thread: one hand-off per request, not one per call (a boot storm's
/// kernels and initrds made six each).
pub async fn open(root: &Path, name: &str, private: Option<&Path>) -> Result<Opened, Refusal> {
    let path = resolve(root, name).map_err(Refusal::BadPath)?;
    let root = root.to_path_buf();
    let private = private.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        let real = find_now(&root, &path, private.as_deref())?;
        Opened::open_now(real).map_err(|_| Refusal::NotFound)
    })
    .await
    .unwrap_or(Err(Refusal::NotFound))
}

fn find_now(root: &Path, path: &Path, private: Option<&Path>) -> Result<PathBuf, Refusal> {
    let real = std::fs::canonicalize(path).map_err(|_| Refusal::NotFound)?;
    let real_root = std::fs::canonicalize(root).map_err(|_| Refusal::NotFound)?;
    if !real.starts_with(&real_root) {
        if !trusted_links(root, path) {
            return Err(Refusal::LeavesRoot);
        }
        if let Some(private) = private
            && let Ok(private) = std::fs::canonicalize(private)
            && real.starts_with(&private)
        {
            return Err(Refusal::LeavesRoot);
        }
    }
    // Checked before anything opens it.
    match std::fs::metadata(&real) {
        Ok(m) if m.is_file() => Ok(real),
        _ => Err(Refusal::NotFound),
    }
}

/// Whether every symlink on the way from `root` to `path` belongs to root
/// or to the root directory's owner: such a link, placed by the system,
/// may leave the root; one planted by another user may not.
fn trusted_links(root: &Path, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(root_meta) = std::fs::metadata(root) else {
        return false;
    };
    let Ok(rest) = path.strip_prefix(root) else {
        return false;
    };
    let mut at = root.to_path_buf();
    for part in rest.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                if m.uid() != 0 && m.uid() != root_meta.uid() {
                    return false;
                }
                // A link's target may itself hold links: judge it afresh.
                let Ok(target) = std::fs::read_link(&at) else {
                    return false;
                };
                if target
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
                {
                    return false;
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}
