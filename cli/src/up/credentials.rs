//! The platform's admin account: `admin.credentials` in the data dir, made on
//! first start with a random password and readable only by its owner. The
//! identity service reads it to create the admin user; people read it to log in.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use rand::Rng as _;

/// The admin's email address.
pub const ADMIN_EMAIL: &str = "admin@bazaar.local";
/// The file name inside the data dir.
pub const FILE_NAME: &str = "admin.credentials";
/// How many characters a generated password has.
const PASSWORD_LEN: usize = 24;
/// The URL-safe base64 alphabet: a password that needs no quoting anywhere.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The credentials file of a data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Where the file is.
    pub path: PathBuf,
    /// Whether this call created it (first start).
    pub created: bool,
}

/// Makes sure `data_dir/admin.credentials` exists, creating it with mode 0600 when missing.
pub fn ensure(data_dir: &Path) -> io::Result<Credentials> {
    let path = data_dir.join(FILE_NAME);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Credentials { path, created: false }),
        Err(e) => return Err(io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))),
    };
    let body = serde_json::json!({"email": ADMIN_EMAIL, "password": password()});
    file.write_all(format!("{body}\n").as_bytes())?;
    file.sync_all()?;
    Ok(Credentials { path, created: true })
}

/// A fresh random password from the URL-safe alphabet that identity's own
/// password policy accepts (a draw of letters only would be refused, so such
/// draws are thrown away; about one in 800 is).
fn password() -> String {
    let mut rng = rand::rng();
    loop {
        let candidate: String =
            (0..PASSWORD_LEN).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect();
        if identity::domain::Password::parse(&candidate).is_ok() {
            return candidate;
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_generated_password_passes_the_identity_policy() {
        for _ in 0..2_000 {
            let candidate = password();
            assert!(identity::domain::Password::parse(&candidate).is_ok(), "{candidate}");
        }
    }

    use super::*;

    #[test]
    fn first_start_creates_a_private_file_with_a_random_url_safe_password() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let made = ensure(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(made.created);
        let body: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&made.path).unwrap_or_default()).unwrap_or_default();
        assert_eq!(body["email"], ADMIN_EMAIL);
        let password = body["password"].as_str().unwrap_or_default();
        assert_eq!(password.len(), PASSWORD_LEN);
        assert!(password.bytes().all(|b| ALPHABET.contains(&b)), "{password}");
        assert!(identity::domain::Password::parse(password).is_ok(), "identity accepts {password}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&made.path).map(|m| m.permissions().mode()).unwrap_or_default();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn later_starts_keep_the_existing_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = ensure(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let before = std::fs::read_to_string(&first.path).unwrap_or_default();
        let second = ensure(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!second.created);
        assert_eq!(std::fs::read_to_string(&second.path).unwrap_or_default(), before);
    }

    #[test]
    fn passwords_differ_between_calls() {
        assert_ne!(password(), password());
    }
}
