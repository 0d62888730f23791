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
/// the secret key, tokens) is reached from outside it. Opened on the
/// caller's thread when the kernel can do it from memory (`open_cached`);
/// otherwise its checks (a few `stat`s and `readlink`s) and the open run
/// together on one blocking thread: one hand-off per request, not one per
/// call (a boot storm's kernels and initrds made six each).
pub async fn open(root: &Path, name: &str, private: Option<&Path>) -> Result<Opened, Refusal> {
    let path = resolve(root, name).map_err(Refusal::BadPath)?;
    if let Some(opened) = open_cached(root, &path) {
        return Ok(opened);
    }
    let root = root.to_path_buf();
    let private = private.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        let real = find_now(&root, &path, private.as_deref())?;
        Opened::open_now(real).map_err(|_| Refusal::NotFound)
    })
    .await
    .unwrap_or(Err(Refusal::NotFound))
}

/// `path` (below `root`) opened without a blocking thread, when that
/// cannot wait on a disk or decide otherwise than `find_now`: every
/// component already in the kernel's name cache, every link on the way
/// staying below the root (`RESOLVE_BENEATH`: what `find_now` allows
/// without judging the link's owner), a regular file at the end
/// (`Opened::open_cached`). Anything else (a path not in the cache, a link
/// leaving the root, a missing file) is `None`, and the caller takes the
/// blocking path, which decides as it always did. A storm's NBP, kernels
/// and initrds are the same few files, always in the cache: each request
/// for one was a thread woken and a task woken back.
fn open_cached(root: &Path, path: &Path) -> Option<Opened> {
    use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat2};
    let below = path.strip_prefix(root).ok()?;
    let dir = openat2(
        CWD,
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::CACHED,
    )
    .ok()?;
    Opened::open_cached(
        &dir,
        below,
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        path.to_path_buf(),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Which files are opened from the name cache and which are left to
    /// the blocking path; either way, `open` decides as the rules say.
    #[tokio::test]
    async fn only_what_the_rules_allow_is_opened_from_the_name_cache() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/kernel"), b"kernel").unwrap();
        std::fs::write(top.path().join("outside"), b"outside").unwrap();
        std::os::unix::fs::symlink("sub/kernel", root.join("inside")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/kernel"), root.join("absolute")).unwrap();
        // Placed by the root directory's owner: a trusted link that leaves.
        std::os::unix::fs::symlink(top.path().join("outside"), root.join("leaves")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .unwrap();
        assert!(fifo.success());
        // A kernel before 5.12 has no RESOLVE_CACHED: everything takes the
        // blocking path there.
        let cache = rustix::fs::openat2(
            rustix::fs::CWD,
            &root,
            rustix::fs::OFlags::PATH,
            rustix::fs::Mode::empty(),
            rustix::fs::ResolveFlags::CACHED,
        )
        .is_ok();
        let cases: &[(&str, Option<&[u8]>, bool)] = &[
            ("sub/kernel", Some(b"kernel"), true),
            ("inside", Some(b"kernel"), true),
            // An absolute link is judged by the blocking path, even one
            // that stays inside.
            ("absolute", Some(b"kernel"), false),
            ("leaves", Some(b"outside"), false),
            ("pipe", None, false),
            ("sub", None, false),
            ("missing", None, false),
        ];
        for (name, content, cached) in cases {
            let path = resolve(&root, name).unwrap();
            // Looked at once, as a served file's first request does.
            let _ = std::fs::metadata(&path);
            assert_eq!(
                open_cached(&root, &path).is_some(),
                *cached && cache,
                "{name}"
            );
            let opened =
                tokio::time::timeout(std::time::Duration::from_secs(10), open(&root, name, None))
                    .await
                    .expect("an open never waits (a FIFO least of all)");
            match (content, opened) {
                (Some(want), Ok(o)) => {
                    let (mut file, len) = o.into_file().unwrap();
                    let mut got = Vec::new();
                    file.read_to_end(&mut got).unwrap();
                    assert_eq!((got.as_slice(), len), (*want, want.len() as u64), "{name}");
                }
                (None, Err(e)) => assert_eq!(e, Refusal::NotFound, "{name}"),
                (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}
