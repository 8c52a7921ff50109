//! The authenticator: the anonymous policy, CONNECT credentials, load errors, and reload (a
//! broken file keeps the old rules; connections see a new ACL through their view).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::passwords::hash_password_with;
use super::{AuthError, Authenticator, Refusal, Subject};
use crate::config::AuthConfig;

/// A fresh directory for one test's files; removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("nanomq-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn user_line(user: &str, password: &str) -> String {
    format!(
        "{user}:{}\n",
        hash_password_with(password.as_bytes(), 64, 1)
    )
}

fn config(passwords: Option<&Path>, acl: Option<&Path>, anonymous: Option<bool>) -> AuthConfig {
    AuthConfig {
        allow_anonymous: anonymous,
        password_file: passwords.map(Path::to_owned),
        acl_file: acl.map(Path::to_owned),
        http: None,
    }
}

fn pw(s: &'static str) -> Option<Bytes> {
    Some(Bytes::from_static(s.as_bytes()))
}

#[tokio::test]
async fn anonymous_clients_by_default_only_without_a_password_file() {
    let dir = Dir::new("anon");
    let file = dir.write("passwd", &user_line("alice", "pw"));

    let open = Authenticator::load(&AuthConfig::default()).unwrap();
    assert_eq!(open.authenticate(None, None).await, Ok(()));
    // Without a password file a user name is not checked.
    assert_eq!(open.authenticate(Some("x"), pw("y").as_ref()).await, Ok(()));

    let closed = Authenticator::load(&config(Some(&file), None, None)).unwrap();
    assert_eq!(
        closed.authenticate(None, None).await,
        Err(Refusal::AnonymousNotAllowed)
    );
    let both = Authenticator::load(&config(Some(&file), None, Some(true))).unwrap();
    assert_eq!(both.authenticate(None, None).await, Ok(()));
    assert_eq!(
        both.authenticate(Some("alice"), pw("nope").as_ref()).await,
        Err(Refusal::BadCredentials),
        "anonymous clients allowed does not let a wrong password in"
    );
    let nobody = Authenticator::load(&config(None, None, Some(false))).unwrap();
    assert_eq!(
        nobody.authenticate(None, None).await,
        Err(Refusal::AnonymousNotAllowed)
    );
    assert_eq!(
        nobody.authenticate(Some("x"), pw("y").as_ref()).await,
        Err(Refusal::BadCredentials)
    );
    assert!(
        closed.summary().contains("(1 users)"),
        "{}",
        closed.summary()
    );
    assert!(closed.summary().contains("anonymous clients refused"));
}

#[tokio::test]
async fn credentials_are_checked_against_the_file() {
    let dir = Dir::new("creds");
    let file = dir.write(
        "passwd",
        &(user_line("alice", "a") + &user_line("bob", "b")),
    );
    let auth = Authenticator::load(&config(Some(&file), None, None)).unwrap();
    assert_eq!(
        auth.authenticate(Some("alice"), pw("a").as_ref()).await,
        Ok(())
    );
    assert_eq!(
        auth.authenticate(Some("bob"), pw("b").as_ref()).await,
        Ok(())
    );
    for (user, password) in [("alice", pw("b")), ("carol", pw("a")), ("alice", None)] {
        assert_eq!(
            auth.authenticate(Some(user), password.as_ref()).await,
            Err(Refusal::BadCredentials),
            "{user} {password:?}"
        );
    }
}

#[test]
fn load_errors_name_the_file_and_line() {
    let dir = Dir::new("errors");
    let acl = dir.write("acl", "allow all both a\nallow all bith b\n");
    let err = Authenticator::load(&config(None, Some(&acl), None)).unwrap_err();
    assert!(matches!(err, AuthError::Invalid { line: 2, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "ACL file {}:2: unknown action `bith`: use publish, subscribe or both",
            acl.display()
        )
    );
    let passwd = dir.write("passwd", "# c\nalice\n");
    let err = Authenticator::load(&config(Some(&passwd), None, None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("password file {}:2: expected `user:hash`", passwd.display())
    );
    let missing = dir.0.join("missing");
    let err = Authenticator::load(&config(Some(&missing), None, None)).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read password file {}: ",
            missing.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn reload_swaps_both_files_or_neither() {
    let dir = Dir::new("reload");
    let passwd = dir.write("passwd", &user_line("alice", "old"));
    let acl = dir.write("acl", "allow all publish a/#\n");
    let cfg = config(Some(&passwd), Some(&acl), None);
    let auth = Authenticator::load(&cfg).unwrap();
    let s = Subject {
        username: Some("alice"),
        client_id: "c",
        ip: "127.0.0.1".parse().unwrap(),
        cert_cn: None,
    };
    let mut view = auth.acl_view();
    assert!(view.get().unwrap().may_publish(&s, "a/1"));
    assert!(!view.get().unwrap().may_publish(&s, "b/1"));

    // New password and rules.
    dir.write("passwd", &user_line("alice", "new"));
    dir.write("acl", "allow all publish b/#\n");
    let summary = auth.reload(&cfg).unwrap();
    assert!(summary.contains("(1 rules, default deny)"), "{summary}");
    // The view keeps the copy it had until refreshed.
    assert!(view.get().unwrap().may_publish(&s, "a/1"));
    auth.refresh(&mut view);
    assert!(!view.get().unwrap().may_publish(&s, "a/1"));
    assert!(view.get().unwrap().may_publish(&s, "b/1"));
    assert_eq!(
        auth.authenticate(Some("alice"), pw("new").as_ref()).await,
        Ok(())
    );
    assert!(auth
        .authenticate(Some("alice"), pw("old").as_ref())
        .await
        .is_err());

    // A broken ACL is refused whole: the new password file is not taken either.
    dir.write("passwd", &user_line("alice", "newer"));
    dir.write("acl", "allow all publish b/#\nallow nobody\n");
    let err = auth.reload(&cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "ACL file {}:2: expected `allow|deny WHO publish|subscribe|both FILTER`",
            acl.display()
        )
    );
    auth.refresh(&mut view);
    assert!(view.get().unwrap().may_publish(&s, "b/1"));
    assert_eq!(
        auth.authenticate(Some("alice"), pw("new").as_ref()).await,
        Ok(())
    );

    // Dropping the ACL file from the config allows everything.
    auth.reload(&config(Some(&passwd), None, None)).unwrap();
    auth.refresh(&mut view);
    assert!(view.get().is_none());
}
