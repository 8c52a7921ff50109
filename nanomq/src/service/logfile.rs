//! `[log] file`: plain-text log lines in a file that is rotated by size, so a device's storage
//! holds at most `(keep + 1) * max_size` of logs. Hand-written: the rotation is a few renames.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tracing_subscriber::fmt::MakeWriter;

/// An append-only log file, rotated before a line would take it past `max_bytes`:
/// `nanomq.log` -> `nanomq.log.1` -> ... -> `nanomq.log.<keep>`, the oldest dropped.
pub(super) struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    open: Mutex<OpenFile>,
}

struct OpenFile {
    file: File,
    /// Bytes in the file, including what it held when opened.
    written: u64,
}

impl RotatingFile {
    /// Opens (or creates) `path` for appending.
    pub(super) fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<RotatingFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            keep,
            open: Mutex::new(OpenFile { file, written }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, OpenFile> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `path.n`, the n-th most recent rotated file.
    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        name.into()
    }

    /// Moves the files one step down and starts an empty one. On error the current file stays
    /// in use (and grows): losing log lines would be worse.
    fn rotate(&self, open: &mut OpenFile) -> io::Result<()> {
        if self.keep == 0 {
            open.file.set_len(0)?;
            open.written = 0;
            return Ok(());
        }
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        open.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        open.written = 0;
        Ok(())
    }

    fn write_line(&self, buf: &[u8]) -> io::Result<usize> {
        let mut open = self.lock();
        if open.written > 0 && open.written + buf.len() as u64 > self.max_bytes {
            // Nobody to tell: this is the logger. The line goes to the current file.
            let _ = self.rotate(&mut open);
        }
        open.file.write_all(buf)?;
        open.written += buf.len() as u64;
        Ok(buf.len())
    }
}

/// One event's writer: `tracing_subscriber::fmt` writes each formatted line in one call.
pub(super) struct LineWriter<'a>(&'a RotatingFile);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("nanomq-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nanomq.log");
        std::fs::write(&path, "old 0\n").unwrap();
        let log = RotatingFile::open(&path, 12, 2).unwrap();
        for n in 1..=5 {
            log.make_writer()
                .write_all(format!("line {n}\n").as_bytes())
                .unwrap();
        }
        // Two lines are 14 bytes, over 12: each line ends up in a file of its own.
        assert_eq!(read(&path), "line 5\n");
        assert_eq!(read(&log.rotated(1)), "line 4\n");
        assert_eq!(read(&log.rotated(2)), "line 3\n");
        assert!(!log.rotated(3).exists(), "only two rotated files are kept");

        // Appends to what is there; keep = 0 truncates instead of rotating.
        let log = RotatingFile::open(&path, 16, 0).unwrap();
        log.make_writer().write_all(b"line 6\n").unwrap();
        assert_eq!(read(&path), "line 5\nline 6\n");
        log.make_writer().write_all(b"line 7\n").unwrap();
        assert_eq!(read(&path), "line 7\n");
        assert_eq!(read(&log.rotated(1)), "line 4\n", "rotated files untouched");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
