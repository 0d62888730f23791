//! Maps a requested filename to a path under the TFTP root, refusing
//! anything that could leave it. Pure: the symlink check, which needs the
//! file system, is the server's.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Empty,
    Absolute,
    ParentComponent,
    BadCharacter,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty filename",
            Self::Absolute => "absolute paths are refused",
            Self::ParentComponent => "'..' is refused",
            Self::BadCharacter => "control characters and backslashes are refused",
        })
    }
}

/// The relative path a request names, if it is a safe one.
pub fn resolve(root: &Path, filename: &str) -> Result<PathBuf, PathError> {
    if filename.is_empty() {
        return Err(PathError::Empty);
    }
    if filename.chars().any(|c| c.is_control() || c == '\\') {
        return Err(PathError::BadCharacter);
    }
    let requested = Path::new(filename);
    let mut out = root.to_path_buf();
    for component in requested.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(PathError::ParentComponent),
            Component::RootDir | Component::Prefix(_) => return Err(PathError::Absolute),
        }
    }
    if out == root {
        return Err(PathError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_below_the_root() {
        let root = Path::new("/srv/tftp");
        let check = |name: &str, expected: Result<&str, PathError>| {
            assert_eq!(resolve(root, name), expected.map(PathBuf::from), "{name:?}");
        };
        check("undionly.kpxe", Ok("/srv/tftp/undionly.kpxe"));
        check(
            "pxelinux.cfg/01-52-54-00-12-34-56",
            Ok("/srv/tftp/pxelinux.cfg/01-52-54-00-12-34-56"),
        );
        check("./ipxe.efi", Ok("/srv/tftp/ipxe.efi"));
        check("/etc/passwd", Err(PathError::Absolute));
        check("../etc/passwd", Err(PathError::ParentComponent));
        check("a/../../b", Err(PathError::ParentComponent));
        check("a\\b", Err(PathError::BadCharacter));
        check("a\0b", Err(PathError::BadCharacter));
        check("", Err(PathError::Empty));
        check(".", Err(PathError::Empty));
    }
}
