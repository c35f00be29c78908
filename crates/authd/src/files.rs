//! Files written whole: a temporary name beside them, then a rename, so a
//! reader (sshd's principals command, sudo) never sees one half-made.

use crate::AuthdError;
use std::path::Path;

/// Writes `bytes` to `path` whole: a temporary file beside it, renamed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AuthdError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| AuthdError::State {
        path: path.to_owned(),
        error: e.to_string(),
    })
}
