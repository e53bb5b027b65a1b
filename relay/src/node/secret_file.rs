//! Writing secret key files: readable by the owner only (mode 0600 on Unix), the parent
//! directory created if needed.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path`. Without `overwrite`, an existing file is an error
/// (`AlreadyExists`), so two processes creating the same key never both win; with it, the
/// file is replaced atomically (written aside, then renamed).
pub(crate) fn write(path: &Path, contents: &[u8], overwrite: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let target = if overwrite {
        path.with_extension("tmp")
    } else {
        path.to_path_buf()
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&target)?;
    f.write_all(contents)?;
    drop(f);
    if overwrite {
        std::fs::rename(&target, path)?;
    }
    Ok(())
}
