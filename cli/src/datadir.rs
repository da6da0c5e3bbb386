//! Keeping the data dir private to its owner. It holds password hashes
//! (`services/identity/identity.sqlite`), signing keys and the admin
//! credentials, so it is created with mode 0700, and one found open to group
//! or others is closed to them when it holds only bazaar's files (a shared
//! directory such as /tmp is refused instead).

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

/// The mode of the data dir and of the directories `bazaar` creates in it.
pub const PRIVATE: u32 = 0o700;

/// What [`secure`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secured {
    /// The directory did not exist; it was created private.
    Created,
    /// The directory existed and was already closed to group and others.
    AlreadyPrivate,
    /// The directory existed open to group or others and was tightened to 0700.
    Tightened {
        /// Its permission bits before (e.g. `0o755`).
        from: u32,
    },
}

/// Why the data dir could not be made private.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    /// It does not exist and cannot be created.
    #[error("cannot create it: {0}")]
    Create(io::Error),
    /// The path exists but is not a directory.
    #[error("it is not a directory")]
    NotADirectory,
    /// It is open to group or others and holds things that are not bazaar's:
    /// changing its mode could lock others out of what is theirs.
    #[error(
        "others can read it (mode {from:o}) and it holds files that are not bazaar's; \
         pass a --data-dir of its own, or run `chmod 700` on it if it really is bazaar's"
    )]
    Shared {
        /// Its permission bits.
        from: u32,
    },
    /// It is open to group or others and its mode cannot be changed.
    #[error("others can read it (mode {from:o}) and it cannot be made private ({source}); run `chmod 700` on it")]
    Tighten {
        /// Its permission bits.
        from: u32,
        /// Why `chmod` failed.
        source: io::Error,
    },
}

/// Creates `dir` with mode 0700 (its missing parents with the default mode),
/// or tightens an existing `dir` that group or others can access to 0700.
pub fn secure(dir: &Path) -> Result<Secured, SecureError> {
    if !dir.exists() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(SecureError::Create)?;
        }
        match std::fs::DirBuilder::new().mode(PRIVATE).create(dir) {
            Ok(()) => return Ok(Secured::Created),
            // Made by someone else in the meantime: check it like any existing one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(SecureError::Create(e)),
        }
    }
    let metadata = std::fs::metadata(dir).map_err(SecureError::Create)?;
    if !metadata.is_dir() {
        return Err(SecureError::NotADirectory);
    }
    let from = metadata.permissions().mode() & 0o7777;
    if from & 0o077 == 0 {
        return Ok(Secured::AlreadyPrivate);
    }
    // Only an empty directory, or one that is plainly a bazaar data dir, is
    // tightened: `--data-dir /tmp` must not close /tmp to everyone else.
    if !is_empty_or_bazaars(dir) {
        return Err(SecureError::Shared { from });
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE))
        .map_err(|source| SecureError::Tighten { from, source })?;
    Ok(Secured::Tightened { from })
}

/// The names a bazaar data dir holds at its top level.
const DATA_DIR_ENTRIES: &[&str] = &["admin.credentials", "services", "logs", "run"];

/// Whether `dir` is empty or holds nothing but what a bazaar data dir holds.
fn is_empty_or_bazaars(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().all(|entry| entry.file_name().to_str().is_some_and(|name| DATA_DIR_ENTRIES.contains(&name)))
    })
}

/// Creates `dir` with mode 0700 unless it exists (an existing one is left as it
/// is: inside a private data dir nobody else can reach it).
pub fn create_private(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(PRIVATE).create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_shared_directory_with_other_files_is_refused_not_tightened() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(shared.join("someone-elses.txt"), "x").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(secure(&shared), Err(SecureError::Shared { from: 0o1777 })));
        assert_eq!(mode(&shared), 0o1777, "left as it was");
    }

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_missing_data_dir_is_created_private_with_its_parents() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = root.path().join("a/b");
        assert_eq!(secure(&dir).unwrap_or_else(|e| panic!("{e}")), Secured::Created);
        assert_eq!(mode(&dir), 0o700);
        assert!(root.path().join("a").is_dir());
    }

    #[test]
    fn an_open_data_dir_is_tightened_and_says_what_it_was() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(secure(root.path()).unwrap_or_else(|e| panic!("{e}")), Secured::Tightened { from: 0o755 });
        assert_eq!(mode(root.path()), 0o700);
        assert_eq!(secure(root.path()).unwrap_or_else(|e| panic!("{e}")), Secured::AlreadyPrivate);
    }

    #[test]
    fn a_file_in_place_of_the_data_dir_is_refused() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = root.path().join("file");
        std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(secure(&file), Err(SecureError::NotADirectory)));
        assert!(matches!(secure(&file.join("data")), Err(SecureError::Create(_))));
    }

    #[test]
    fn subdirectories_are_created_private_and_existing_ones_kept() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sub = root.path().join("logs");
        create_private(&sub).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&sub), 0o700);
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o750)).unwrap_or_else(|e| panic!("{e}"));
        create_private(&sub).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&sub), 0o750);
        std::fs::write(root.path().join("run"), b"x").unwrap_or_else(|e| panic!("{e}"));
        assert!(create_private(&root.path().join("run")).is_err());
    }
}
