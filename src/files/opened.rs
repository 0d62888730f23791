//! A file opened for HTTP, read from the page cache on the runtime's own
//! thread.
//!
//! tower-http's `ServeDir` reads through `tokio::fs`: opening the file, its
//! metadata, a seek and every 64 KiB chunk are each a hand-off to a
//! blocking thread and back. A boot storm's kernels and initrds, read
//! from the page cache, made about a dozen such hand-offs per machine, a
//! thread woken and a task woken for a few microseconds of copying each.
//! Here the checks, the open and the metadata are one hand-off
//! (`files::open`), and each chunk is read with `preadv2(RWF_NOWAIT)`,
//! which copies what the page cache holds and never waits for the disk:
//! only a chunk the cache does not hold (or a file system that cannot
//! answer so) goes to a blocking thread. `ServeDir` still does all of HTTP
//! (Range, conditional requests, HEAD, the content type) through its
//! `Backend` trait, which `Opened` implements for the one file it holds.

use std::future::{Future, Ready, ready};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustix::io::{Errno, ReadWriteFlags};
use tokio::io::ReadBuf;

/// A regular file opened with its metadata: `ServeDir`'s backend for a
/// request of that file (its base path is the file's, and the request's
/// path `/`, so that the only path it asks for is the file's own: it gets
/// this file whatever it names).
#[derive(Clone, Debug)]
pub struct Opened {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: Arc<std::fs::File>,
    meta: std::fs::Metadata,
}

impl Opened {
    /// Opens `path` (a regular file, as its metadata says once opened);
    /// blocking: call it on a blocking thread.
    pub fn open_now(path: PathBuf) -> io::Result<Self> {
        let file = std::fs::File::open(&path)?;
        Self::from_file(path, file)
    }

    /// `file`, opened from `path`, if it is a regular file.
    pub fn from_file(path: PathBuf, file: std::fs::File) -> io::Result<Self> {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not a regular file",
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                file: Arc::new(file),
                meta,
            }),
        })
    }

    /// `path`, below `dir`, opened for reading on the caller's thread when
    /// the kernel resolves it from its name cache alone (`RESOLVE_CACHED`,
    /// with `resolve`'s rules) and it is a regular file (`O_NONBLOCK`: a
    /// FIFO's open does not wait; a regular file ignores the flag); `None`
    /// otherwise (not in the cache, refused by `resolve`, missing, not a
    /// file, a kernel before 5.12). `shown` is the path it is known by.
    pub fn open_cached(
        dir: impl std::os::fd::AsFd,
        path: &Path,
        resolve: rustix::fs::ResolveFlags,
        shown: PathBuf,
    ) -> Option<Self> {
        use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
        let fd = openat2(
            dir,
            path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::CACHED | resolve,
        )
        .ok()?;
        Self::from_file(shown, std::fs::File::from(fd)).ok()
    }

    /// Opens `path` from the name cache if it can, else on a blocking
    /// thread.
    pub async fn open(path: PathBuf) -> io::Result<Self> {
        let cached = Self::open_cached(
            rustix::fs::CWD,
            &path,
            rustix::fs::ResolveFlags::empty(),
            path.clone(),
        );
        if let Some(opened) = cached {
            return Ok(opened);
        }
        tokio::task::spawn_blocking(move || Self::open_now(path))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The file and its length, for a reader of its own (TFTP's).
    pub fn into_file(self) -> io::Result<(std::fs::File, u64)> {
        let len = self.inner.meta.len();
        let file = match Arc::try_unwrap(self.inner) {
            Ok(inner) => Arc::try_unwrap(inner.file).or_else(|f| f.try_clone())?,
            Err(inner) => inner.file.try_clone()?,
        };
        Ok((file, len))
    }
}

impl tower_http::services::fs::Backend for Opened {
    type File = PageCacheFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = Ready<io::Result<PageCacheFile>>;
    type MetadataFuture = Ready<io::Result<std::fs::Metadata>>;

    fn open(&self, _: PathBuf) -> Self::OpenFuture {
        ready(Ok(PageCacheFile {
            file: self.inner.file.clone(),
            meta: self.inner.meta.clone(),
            pos: 0,
            nowait: true,
            pending: None,
        }))
    }

    fn metadata(&self, _: PathBuf) -> Self::MetadataFuture {
        ready(Ok(self.inner.meta.clone()))
    }
}

/// One reader of an `Opened` file, at its own position.
pub struct PageCacheFile {
    file: Arc<std::fs::File>,
    meta: std::fs::Metadata,
    pos: u64,
    /// Whether the file system answers `RWF_NOWAIT` (it said otherwise
    /// once: every later chunk goes to a blocking thread).
    nowait: bool,
    /// A chunk being read on a blocking thread: its bytes.
    pending: Option<tokio::task::JoinHandle<io::Result<Vec<u8>>>>,
}

impl PageCacheFile {
    /// Reads into `buf` what the page cache holds at the position, without
    /// waiting for the disk: `None` when nothing could be read so.
    fn read_cached(&mut self, buf: &mut ReadBuf<'_>) -> Option<io::Result<()>> {
        if !self.nowait {
            return None;
        }
        let into = buf.initialize_unfilled();
        match rustix::io::preadv2(
            &*self.file,
            &mut [io::IoSliceMut::new(into)],
            self.pos,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(n) => {
                buf.advance(n);
                self.pos += n as u64;
                Some(Ok(()))
            }
            // Not in the page cache (or only partly at its start).
            Err(Errno::AGAIN) => None,
            // A file system (or kernel) that cannot read so.
            Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => {
                self.nowait = false;
                None
            }
            Err(Errno::INTR) => self.read_cached(buf),
            Err(e) => Some(Err(e.into())),
        }
    }
}

impl tokio::io::AsyncRead for PageCacheFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            if let Some(done) = this.read_cached(buf) {
                return Poll::Ready(done);
            }
            let file = this.file.clone();
            let (at, len) = (this.pos, buf.remaining());
            this.pending = Some(tokio::task::spawn_blocking(move || {
                let mut bytes = vec![0; len];
                let n = loop {
                    match file.read_at(&mut bytes, at) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        read => break read?,
                    }
                };
                bytes.truncate(n);
                Ok(bytes)
            }));
        }
        let Some(task) = this.pending.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let read = match Pin::new(task).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(read) => read,
        };
        this.pending = None;
        let bytes = read.unwrap_or_else(|e| Err(io::Error::other(e)))?;
        // Asked for no more than the buffer had room for; a caller that
        // polls again with less room gets the rest at the next read.
        let n = bytes.len().min(buf.remaining());
        buf.put_slice(&bytes[..n]);
        this.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncSeek for PageCacheFile {
    fn start_seek(self: Pin<&mut Self>, to: io::SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        if this.pending.is_some() {
            return Err(io::Error::other("a read is in progress"));
        }
        let pos = match to {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => this.meta.len().checked_add_signed(d),
            io::SeekFrom::Current(d) => this.pos.checked_add_signed(d),
        };
        this.pos = pos.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "a seek before the start")
        })?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

impl tower_http::services::fs::File for PageCacheFile {
    type Metadata = std::fs::Metadata;
    type MetadataFuture<'a> = Ready<io::Result<std::fs::Metadata>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        ready(Ok(self.meta.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    use tower_http::services::fs::Backend;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Both ways of reading give the file's bytes, from any position a
    /// seek sets: from the page cache at once, and on a blocking thread (as
    /// for a chunk the cache does not hold, or a file system that cannot
    /// read without waiting).
    #[tokio::test]
    async fn every_read_gives_the_files_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payload");
        let content = bytes(300_000);
        std::fs::write(&path, &content).unwrap();
        let opened = Opened::open(path.clone()).await.unwrap();
        assert_eq!(opened.path(), path);
        for nowait in [true, false] {
            let mut file = opened.open(path.clone()).await.unwrap();
            file.nowait = nowait;
            let mut all = Vec::new();
            file.read_to_end(&mut all).await.unwrap();
            assert_eq!(all, content, "nowait {nowait}");
            assert_eq!(
                file.seek(io::SeekFrom::Start(70_000)).await.unwrap(),
                70_000
            );
            let mut part = vec![0; 100_000];
            file.read_exact(&mut part).await.unwrap();
            assert_eq!(part, content[70_000..170_000], "nowait {nowait}");
            assert_eq!(file.seek(io::SeekFrom::End(-10)).await.unwrap(), 299_990);
            let mut tail = Vec::new();
            file.read_to_end(&mut tail).await.unwrap();
            assert_eq!(tail, content[299_990..], "nowait {nowait}");
            assert!(file.seek(io::SeekFrom::Current(-400_000)).await.is_err());
        }
        let meta = opened.metadata(path).await.unwrap();
        assert_eq!(meta.len(), 300_000);
    }

    /// What is not a regular file is not opened.
    #[tokio::test]
    async fn a_directory_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let e = Opened::open(dir.path().to_path_buf()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
