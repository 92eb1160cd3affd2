//! The one answer to "is there a mail root here?", so that every command says the same
//! thing about a mistyped `--root` or an unmounted disk, and none of them mistakes it
//! for an empty root (no accounts, no sites, "not ours").

use std::path::{Path, PathBuf};

/// The exit status of a command that found no mail root (the CLI's "unusable" code).
/// `turnmail deliver` and `turnmail checkpassword` keep their callers' conventions
/// (temporary failure), with the same wording.
pub const EXIT_NO_ROOT: u8 = 2;

/// `root` is not a mail root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}: no mail root here (no control/ directory); make one with `turnmail setup DIR` \
     (production) or `turnmail init DIR` (demo), or point --root or TURNMAIL_ROOT at one",
    .0.display()
)]
pub struct NotARoot(pub PathBuf);

/// A mail root has `control/`; everything else in it is optional.
pub fn require(root: &Path) -> Result<(), NotARoot> {
    if root.join("control").is_dir() {
        Ok(())
    } else {
        Err(NotARoot(root.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_makes_a_root() {
        let d = tempfile::tempdir().unwrap();
        let e = require(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("no mail root here") && e.contains("turnmail setup"),
            "{e}"
        );
        std::fs::create_dir(d.path().join("control")).unwrap();
        assert!(require(d.path()).is_ok());
    }
}
