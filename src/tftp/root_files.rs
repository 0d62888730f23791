//! Small files of the TFTP roots, kept in memory for a moment. Every
//! machine of a boot storm asks for the same network boot program, twice
//! (the size probe, then the transfer). Reading it once and sharing the
//! bytes spares each transfer its own opens, checks and reads on the
//! blocking pool, and its own copy in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Files up to this size are kept (iPXE's binaries are 70 KiB to 1.1 MiB).
pub const MAX_FILE: u64 = 4 << 20;
/// All kept files together, at most; past it the cache starts again.
const MAX_TOTAL: usize = 64 << 20;
/// How long a kept file is served before the root is read again: a file
/// replaced in the root is served at most this much later.
pub const FRESH: Duration = Duration::from_secs(2);

/// The kept files, by the name a client asked for.
#[derive(Default)]
pub struct RootFiles(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    files: HashMap<String, (Bytes, Instant)>,
    total: usize,
}

impl RootFiles {
    /// The bytes of `name` if they were read less than `FRESH` before `now`.
    pub fn get(&self, name: &str, now: Instant) -> Option<Bytes> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (bytes, read) = kept.files.get(name)?;
        (now.saturating_duration_since(*read) < FRESH).then(|| bytes.clone())
    }

    /// Keeps `bytes`, read from the root at `read` for `name`.
    pub fn keep(&self, name: &str, bytes: Bytes, read: Instant) {
        if bytes.len() as u64 > MAX_FILE {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((old, _)) = kept.files.remove(name) {
            kept.total -= old.len();
        }
        if kept.total + bytes.len() > MAX_TOTAL {
            kept.files.clear();
            kept.total = 0;
        }
        kept.total += bytes.len();
        kept.files.insert(name.to_string(), (bytes, read));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_served_while_fresh_then_read_again() {
        let files = RootFiles::default();
        let t0 = Instant::now();
        assert_eq!(files.get("undionly.kpxe", t0), None);
        files.keep("undionly.kpxe", Bytes::from_static(b"nbp"), t0);
        assert_eq!(
            files.get("undionly.kpxe", t0 + FRESH / 2).as_deref(),
            Some(&b"nbp"[..])
        );
        assert_eq!(files.get("undionly.kpxe", t0 + FRESH), None);
        assert_eq!(files.get("ipxe.efi", t0), None);
    }

    #[test]
    fn large_files_are_not_kept_and_the_total_is_bounded() {
        let files = RootFiles::default();
        let t0 = Instant::now();
        let big = Bytes::from(vec![0u8; MAX_FILE as usize + 1]);
        files.keep("big", big, t0);
        assert_eq!(files.get("big", t0), None);
        let file = Bytes::from(vec![0u8; MAX_FILE as usize]);
        for i in 0..(MAX_TOTAL / MAX_FILE as usize) + 1 {
            files.keep(&format!("f{i}"), file.clone(), t0);
        }
        let kept = files.0.lock().unwrap();
        assert!(kept.total <= MAX_TOTAL);
        assert_eq!(kept.total, kept.files.len() * MAX_FILE as usize);
    }
}
