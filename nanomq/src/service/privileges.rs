//! Root, and leaving it: a broker started as root binds its listeners (ports below 1024 need
//! root or CAP_NET_BIND_SERVICE), then switches to `user` for good, before it creates any file.
//! Without `user` it refuses to run as root unless told to (`allow_root`), so a forgotten
//! setting never leaves a network daemon running with every privilege. Under systemd the unit
//! starts the broker as its own user and none of this applies.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User};

/// Why the broker cannot run as the user it was asked to, or should not run as root.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// Root without `user` and without permission to stay root.
    #[error(
        "refusing to run as root: set `user = \"nanomq\"` (an unprivileged user) in the config \
         to switch to it after binding the listeners, or allow root with `allow_root = true`, \
         `--allow-root` or NANOMQ_ALLOW_ROOT=1"
    )]
    Root,
    /// `user` names nobody in the user database.
    #[error("user = {0:?}: no such user")]
    UnknownUser(String),
    /// `group` names no group.
    #[error("group = {0:?}: no such group")]
    UnknownGroup(String),
    /// The user or group database could not be read.
    #[error("cannot look up {what}: {error}")]
    Lookup {
        /// `user = "..."` or `group = "..."`.
        what: String,
        /// What the C library said.
        error: nix::Error,
    },
    /// A step of the switch failed.
    #[error("cannot switch to user {user}: {step} failed: {error}")]
    Switch {
        /// The target user.
        user: String,
        /// `initgroups`, `setgid` or `setuid`.
        step: &'static str,
        /// What the kernel said.
        error: nix::Error,
    },
    /// After the switch the process could still become root again.
    #[error("switched to user {0}, but the process can still regain root: refusing to run")]
    Regained(String),
}

/// The user the broker switches to after binding, decided before anything is bound.
#[derive(Debug)]
pub struct Privileges {
    target: Option<Target>,
}

#[derive(Debug)]
struct Target {
    user: String,
    uid: Uid,
    gid: Gid,
}

impl Privileges {
    /// Looks `user` and `group` up (absent `group` means the user's primary group) and, when
    /// running as root without `user`, refuses unless `allow_root`. Call it before binding, so
    /// a mistake stops the start before anything listens.
    pub fn check(
        user: Option<&str>,
        group: Option<&str>,
        allow_root: bool,
    ) -> Result<Privileges, PrivilegeError> {
        let Some(name) = user else {
            if Uid::effective().is_root() && !allow_root {
                return Err(PrivilegeError::Root);
            }
            return Ok(Privileges { target: None });
        };
        let found = User::from_name(name).map_err(|error| PrivilegeError::Lookup {
            what: format!("user = {name:?}"),
            error,
        })?;
        let account = found.ok_or_else(|| PrivilegeError::UnknownUser(name.to_owned()))?;
        let gid = match group {
            None => account.gid,
            Some(group) => {
                let found = Group::from_name(group).map_err(|error| PrivilegeError::Lookup {
                    what: format!("group = {group:?}"),
                    error,
                })?;
                found
                    .ok_or_else(|| PrivilegeError::UnknownGroup(group.to_owned()))?
                    .gid
            }
        };
        Ok(Privileges {
            target: Some(Target {
                user: name.to_owned(),
                uid: account.uid,
                gid,
            }),
        })
    }

    /// Switches to the user for good, when running as root: supplementary groups from the
    /// group database, then the group, then the user; then checks that root cannot be
    /// regained. Call it after binding and before creating any file. Not root: nothing to do
    /// (a different `user` is logged, since the switch needs root).
    pub fn drop_root(&self) -> Result<(), PrivilegeError> {
        let Some(t) = &self.target else {
            if Uid::effective().is_root() {
                tracing::warn!("running as root (allowed by allow_root or --allow-root)");
            }
            return Ok(());
        };
        if !Uid::effective().is_root() {
            if Uid::effective() != t.uid {
                tracing::warn!(
                    user = %t.user,
                    "not started as root: staying uid {} (switching users needs root)",
                    Uid::effective()
                );
            }
            return Ok(());
        }
        if t.uid.is_root() {
            tracing::warn!(user = %t.user, "user is root: keeping root");
            return Ok(());
        }
        let fail = |step| {
            move |error| PrivilegeError::Switch {
                user: t.user.clone(),
                step,
                error,
            }
        };
        // A user name with a NUL byte cannot be in the database that `check` found it in.
        let name = CString::new(t.user.as_str())
            .map_err(|_| PrivilegeError::UnknownUser(t.user.clone()))?;
        nix::unistd::initgroups(&name, t.gid).map_err(fail("initgroups"))?;
        nix::unistd::setgid(t.gid).map_err(fail("setgid"))?;
        nix::unistd::setuid(t.uid).map_err(fail("setuid"))?;
        if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
            || Uid::effective().is_root()
            || Uid::current().is_root()
            || Gid::effective() != t.gid
        {
            return Err(PrivilegeError::Regained(t.user.clone()));
        }
        tracing::info!(user = %t.user, uid = %t.uid, gid = %t.gid, "dropped root");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_user_and_group_are_named() {
        let err = Privileges::check(Some("no-such-user-nanomq"), None, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "user = \"no-such-user-nanomq\": no such user"
        );
        let err = Privileges::check(Some("root"), Some("no-such-group-nanomq"), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "group = \"no-such-group-nanomq\": no such group"
        );
    }

    #[test]
    fn root_needs_a_user_or_permission() {
        let refused = Privileges::check(None, None, false);
        if Uid::effective().is_root() {
            let err = refused.unwrap_err().to_string();
            assert!(err.contains("allow_root = true"), "{err}");
            assert!(err.contains("user = \"nanomq\""), "{err}");
        } else {
            assert!(refused.is_ok(), "not root: nothing to refuse");
        }
        assert!(Privileges::check(None, None, true).is_ok());
        let root = Privileges::check(Some("root"), None, false).unwrap();
        assert_eq!(root.target.map(|t| t.gid), Some(Gid::from_raw(0)));
    }
}
