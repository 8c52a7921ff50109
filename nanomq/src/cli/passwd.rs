//! `nanomq passwd FILE USER`: adds a user to a password file, sets a new password, or deletes the
//! user (`--delete`), like mosquitto_passwd.
//!
//! The password comes from `--password`, else from two prompts without echo when standard
//! input is a terminal, else from one line of standard input (for scripts). It is stored as an
//! argon2id hash followed by a SCRAM-SHA-256 verifier (`user:$argon2id$...:$scram-sha-256$...`,
//! see [`crate::auth::passwords`]), so the user can log in with the password in CONNECT or with
//! SCRAM; `--no-scram` leaves the verifier out. The verifier is PBKDF2-HMAC-SHA-256 with 4096
//! iterations, much cheaper to guess against than argon2id should the file leak: keep the file
//! unreadable to others (a new one is 0600), or use `--no-scram`. Other lines, comments and
//! Mosquitto hashes included, are kept as they are; a file that does not parse is refused rather
//! than rewritten.
//!
//! The file is replaced atomically: written to a temporary file in the same directory, synced,
//! renamed over the old one, and the directory synced, so a power cut leaves the old file or the
//! new one, never half of one. A new file gets mode 0600; an existing one keeps its mode and,
//! where allowed, its owner (so a file the broker's user reads stays readable after root edits
//! it). A symbolic link is followed and the file it points at replaced.

use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::{bail, Context};

use super::args::PasswdArgs;
use crate::auth::passwords::{check_user_name, hash_password, split_line, PasswordFile};
use crate::auth::scram::ScramVerifier;

/// Runs `nanomq passwd`.
pub(super) fn run(args: PasswdArgs) -> anyhow::Result<()> {
    let user = args.user.as_str();
    if let Err(why) = check_user_name(user) {
        bail!("invalid user name {user:?}: {why}");
    }
    let path = match fs::canonicalize(&args.file) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => args.file.clone(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", args.file.display())),
    };
    let existing = match fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if let Some(text) = &existing {
        if let Err(e) = PasswordFile::parse(text) {
            bail!(
                "{}:{}: {}; fix or remove that line first",
                path.display(),
                e.line,
                e.message
            );
        }
    }
    let text = existing.as_deref().unwrap_or("");
    let (new_text, done) = if args.delete {
        match remove_user(text, user) {
            Some(t) => (t, "deleted"),
            None => bail!("no user {user:?} in {}", path.display()),
        }
    } else {
        let password = read_password(args.password)?;
        let mut hash = hash_password(password.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
        if !args.no_scram {
            let verifier = ScramVerifier::generate(password.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot make a SCRAM salt: {e}"))?;
            hash = format!("{hash}:{verifier}");
        }
        let (t, updated) = set_user(text, user, &hash);
        (t, if updated { "updated" } else { "added" })
    };
    crate::config::runtime::write_atomic(&path, new_text.as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("{user}: {done} in {}", path.display());
    Ok(())
}

/// The password from the command line, the terminal or standard input; never empty.
fn read_password(given: Option<String>) -> anyhow::Result<String> {
    let password = match given {
        Some(p) => p,
        None if io::stdin().is_terminal() => {
            let first = prompt_without_echo("Password: ")?;
            let second = prompt_without_echo("Reenter password: ")?;
            if first != second {
                bail!("the passwords do not match");
            }
            first
        }
        None => {
            let mut line = String::new();
            io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            strip_newline(line)
        }
    };
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

fn strip_newline(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

/// Prints `prompt` on stderr and reads one line from the terminal with echo off; the terminal's
/// settings are put back whatever happens to the read.
fn prompt_without_echo(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};

    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    // The newline the user types is still shown, so the next prompt starts on its own line.
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet).context("cannot turn off echo")?;
    eprint!("{prompt}");
    let _ = io::stderr().flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let restored = tcsetattr(&stdin, SetArg::TCSAFLUSH, &saved);
    read.context("cannot read the password")?;
    restored.context("cannot turn echo back on")?;
    Ok(strip_newline(line))
}

/// `text` with `user`'s line set to `hash` (replaced in place, or appended); true when the user
/// was there already.
fn set_user(text: &str, user: &str, hash: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len() + user.len() + hash.len() + 2);
    let mut found = false;
    for line in text.lines() {
        if !found && user_of(line) == Some(user) {
            found = true;
            out.push_str(&format!("{user}:{hash}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        out.push_str(&format!("{user}:{hash}\n"));
    }
    (out, found)
}

/// `text` without `user`'s line; None when the user is not there.
fn remove_user(text: &str, user: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for line in text.lines() {
        if user_of(line) == Some(user) {
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    found.then_some(out)
}

fn user_of(line: &str) -> Option<&str> {
    split_line(line).ok().flatten().map(|(user, _)| user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_user_replaces_in_place_or_appends() {
        let text = "# users\nalice:$6$a$b\n\nbob:$7$1$a$b\n";
        let (out, updated) = set_user(text, "alice", "NEW");
        assert!(updated);
        assert_eq!(out, "# users\nalice:NEW\n\nbob:$7$1$a$b\n");
        let (out, updated) = set_user(text, "carol", "C");
        assert!(!updated);
        assert_eq!(out, format!("{text}carol:C\n"));
        // A file without a final newline still gets a line of its own.
        let (out, _) = set_user("alice:x", "bob", "y");
        assert_eq!(out, "alice:x\nbob:y\n");
        assert_eq!(set_user("", "a", "h"), ("a:h\n".to_owned(), false));
        // A comment naming the user is not the user.
        let (out, updated) = set_user("#alice:x\n", "alice", "h");
        assert!(!updated);
        assert_eq!(out, "#alice:x\nalice:h\n");
    }

    #[test]
    fn remove_user_drops_only_that_user() {
        let text = "alice:1\nalicia:2\n# alice:3\n";
        assert_eq!(
            remove_user(text, "alice").as_deref(),
            Some("alicia:2\n# alice:3\n")
        );
        assert_eq!(remove_user(text, "bob"), None);
    }

    #[test]
    fn newline_is_stripped_once() {
        assert_eq!(strip_newline("pw\r\n".into()), "pw");
        assert_eq!(strip_newline("pw\n".into()), "pw");
        assert_eq!(strip_newline("pw \n\n".into()), "pw \n");
        assert_eq!(strip_newline("pw".into()), "pw");
    }
}
