//! Layering tests on real files: defaults, the image's file, the runtime layer; where values
//! and errors come from; atomic writes of the runtime layer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::runtime::{write_atomic, RuntimeError, RuntimeLayer};
use super::*;

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nanomq-layers-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An image file of `rest`, then a state directory that is `dir` itself.
fn image(dir: &TempDir, rest: &str) -> PathBuf {
    let text = format!(
        "{rest}\n[persistence]\ndir = {:?}\n",
        dir.0.display().to_string()
    );
    dir.write("image.toml", &text)
}

fn file(path: &Path) -> Source {
    Source::File(path.to_owned())
}

#[test]
fn layers_merge_key_by_key_and_remember_their_source() {
    let dir = TempDir::new();
    let image = image(&dir, "[limits]\nmax_connections = 10\nmax_inflight = 8\n");
    let runtime = dir.write(RUNTIME_FILE, "[limits]\nmax_inflight = 4\n");
    let layered = Layered::load(Some(&image)).unwrap();
    let l = &layered.config.limits;
    assert_eq!(
        (l.max_connections, l.max_inflight, l.receive_maximum),
        (10, 4, 32)
    );
    assert_eq!(layered.source(&["limits", "max_connections"]), file(&image));
    assert_eq!(layered.source(&["limits", "max_inflight"]), file(&runtime));
    assert_eq!(
        layered.source(&["limits", "receive_maximum"]),
        Source::Default
    );
    assert_eq!(layered.files().collect::<Vec<_>>(), [&image, &runtime]);
}

#[test]
fn arrays_are_replaced_whole() {
    let dir = TempDir::new();
    let image = image(
        &dir,
        "[[listeners]]\nbind = \"127.0.0.1:1\"\n[[listeners]]\nbind = \"127.0.0.1:2\"\n",
    );
    let runtime = dir.write(RUNTIME_FILE, "[[listeners]]\nkind = \"tcp\"\n");
    let layered = Layered::load(Some(&image)).unwrap();
    assert_eq!(layered.config.listeners, vec![ListenerConfig::default()]);
    assert_eq!(layered.source(&["listeners"]), file(&runtime));
    assert_eq!(layered.source(&["listeners", "bind"]), file(&runtime));
}

/// An OTA update replaces the image's file: its new keys and changed defaults apply, and the
/// device's runtime settings still win.
#[test]
fn a_newer_image_keeps_the_runtime_settings() {
    let dir = TempDir::new();
    let v1 = image(&dir, "[limits]\nmax_connections = 100\n");
    let runtime = dir.write(RUNTIME_FILE, "[limits]\nmax_connections = 7\n");
    let before = Layered::load(Some(&v1)).unwrap();
    assert_eq!(before.config.limits.max_connections, 7);
    assert_eq!(before.config.sys.interval_secs, 10);

    let v2 = image(
        &dir,
        "[limits]\nmax_connections = 200\nmax_inflight = 16\n[sys]\ninterval_secs = 30\n",
    );
    let after = Layered::load(Some(&v2)).unwrap();
    assert_eq!(
        after.config.limits.max_connections, 7,
        "the device's setting"
    );
    assert_eq!(after.source(&["limits", "max_connections"]), file(&runtime));
    assert_eq!(after.config.limits.max_inflight, 16, "new in the image");
    assert_eq!(after.config.sys.interval_secs, 30, "changed in the image");
    assert_eq!(after.source(&["sys", "interval_secs"]), file(&v2));
}

#[test]
fn no_state_directory_means_no_runtime_layer() {
    let dir = TempDir::new();
    let image = dir.write("image.toml", "[limits]\nmax_connections = 5\n");
    dir.write(RUNTIME_FILE, "[limits]\nmax_connections = 6\n");
    let layered = Layered::load(Some(&image)).unwrap();
    assert_eq!(layered.config.limits.max_connections, 5);
    assert_eq!(layered.runtime_path(), None);
    assert!(matches!(
        RuntimeLayer::open(Some(&image)),
        Err(RuntimeError::NoStateDir)
    ));
}

#[test]
fn errors_name_the_layer_and_line_they_come_from() {
    let dir = TempDir::new();
    let image = image(&dir, "[limits]\nmin_keepalive = 30\n");
    let runtime = dir.0.join(RUNTIME_FILE);
    let error = |text: &str| {
        std::fs::write(&runtime, text).unwrap();
        Layered::load(Some(&image)).unwrap_err().to_string()
    };
    let r = runtime.display();
    assert_eq!(
        error("\n[limits]\nmax_inflight = 0\n"),
        format!("{r}:3:1: limits.max_inflight: 0 is below the minimum of 1")
    );
    assert_eq!(
        error("[limits]\n\n  max_conections = 1\n"),
        format!("{r}:3:3: unknown field `max_conections`, expected one of `max_connections`, `max_packet_size`, `receive_maximum`, `max_inflight`, `max_queued_messages`, `queue_full_policy`, `max_topic_levels`, `max_topic_alias`, `max_subscriptions_per_client`, `max_keepalive`, `min_keepalive`, `connect_timeout_secs`, `max_pending_connections`, `connect_rate_per_ip`, `max_session_expiry_secs`")
    );
    assert!(error("[mqtt]\nmax_qos = \"two\"\n").starts_with(&format!("{r}:2:11: ")));
    // The relation is broken by the runtime layer, but the key named is the image's.
    assert_eq!(
        error("[limits]\nmax_keepalive = 10\n"),
        format!(
            "{}:2:1: limits.min_keepalive: 30 is greater than limits.max_keepalive (10)",
            image.display()
        )
    );
    assert_eq!(
        error("[sys]\ninterval_secs = 1\n\n[persistence]\ndir = \"/elsewhere\"\n"),
        format!(
            "{r}:5:1: persistence.dir: cannot be set in the runtime layer, which lives in that \
             directory: set it in the image's config file"
        )
    );
}

/// `check-config`'s output is TOML that parses back to the same config, each value followed
/// by its source.
#[test]
fn annotated_output_is_the_effective_config_with_sources() {
    let dir = TempDir::new();
    let image = image(
        &dir,
        "pid_file = \"/run/n.pid\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\n\
         [auth.http]\nurl = \"http://127.0.0.1:1/a\"\nheaders = { \"X-Key\" = \"v\" }\n",
    );
    dir.write(RUNTIME_FILE, "[limits]\nmax_inflight = 4\n");
    let layered = Layered::load(Some(&image)).unwrap();
    let text = layered.annotated();
    assert_eq!(Config::parse(&text, "annotated").unwrap(), layered.config);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_owned()
    };
    let runtime = dir.0.join(RUNTIME_FILE);
    assert!(line("max_inflight = 4 ").ends_with(&format!(" # {}", runtime.display())));
    assert!(line("pid_file = ").ends_with(&format!(" # {}", image.display())));
    assert!(line("max_connections = 100000 ").ends_with(" # default"));
    assert!(line("[[listeners]]").ends_with(&format!(" # {}", image.display())));
    assert_eq!(
        line("bind = "),
        "bind = \"127.0.0.1:0\"",
        "inside the array: no comment"
    );
    assert!(line("X-Key = ").ends_with(&format!(" # {}", image.display())));
}

#[test]
fn write_atomic_replaces_the_file_keeps_its_mode_and_leaves_no_temp_file() {
    use std::os::unix::fs::PermissionsExt;

    let dir = TempDir::new();
    let path = dir.0.join("f");
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode();
    write_atomic(&path, b"one", 0o600).unwrap();
    assert_eq!(mode(&path) & 0o777, 0o600);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    write_atomic(&path, b"two", 0o600).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    assert_eq!(
        mode(&path) & 0o777,
        0o640,
        "an existing file keeps its mode"
    );
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f"]);
    let err = write_atomic(&dir.0.join("missing/f"), b"x", 0o600).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn runtime_layer_set_and_remove() {
    let dir = TempDir::new();
    let image = image(&dir, "[limits]\nmax_connections = 100\n");
    // A write interrupted by a power cut leaves a temp file: never read, never in the way.
    dir.write(".runtime.toml.tmp-1-0", "[limits\nhalf a fil");
    let runtime = RuntimeLayer::open(Some(&image)).unwrap();
    assert_eq!(runtime.path(), dir.0.join(RUNTIME_FILE));
    assert_eq!(
        Layered::load(Some(&image))
            .unwrap()
            .config
            .limits
            .max_connections,
        100
    );

    let layered = runtime
        .set(&["limits", "max_connections"], toml::Value::Integer(5))
        .unwrap();
    assert_eq!(layered.config.limits.max_connections, 5);
    let written = std::fs::read_to_string(runtime.path()).unwrap();
    assert_eq!(written, "[limits]\nmax_connections = 5\n");
    let reloaded = Layered::load(Some(&image)).unwrap();
    assert_eq!(reloaded.config.limits.max_connections, 5);
    assert_eq!(
        reloaded.source(&["limits", "max_connections"]),
        file(runtime.path())
    );

    runtime
        .set(&["log", "level"], toml::Value::String("debug".into()))
        .unwrap();
    // Refused: invalid, of the wrong type, or the state directory itself. The file stays.
    let before = std::fs::read_to_string(runtime.path()).unwrap();
    let invalid = runtime
        .set(&["limits", "max_connections"], toml::Value::Integer(0))
        .unwrap_err()
        .to_string();
    assert!(
        invalid.contains("limits.max_connections: 0 is below the minimum of 1"),
        "{invalid}"
    );
    assert!(runtime
        .set(
            &["limits", "max_connections"],
            toml::Value::String("x".into())
        )
        .is_err());
    assert!(runtime
        .set(&["limits", "no_such_key"], toml::Value::Integer(1))
        .is_err());
    assert!(runtime
        .set(&["persistence", "dir"], toml::Value::String("/x".into()))
        .is_err());
    assert!(runtime
        .set(&["log", "level", "deeper"], toml::Value::Integer(1))
        .is_err());
    assert!(runtime.set(&[], toml::Value::Integer(1)).is_err());
    assert_eq!(std::fs::read_to_string(runtime.path()).unwrap(), before);

    let layered = runtime.remove(&["limits", "max_connections"]).unwrap();
    assert_eq!(
        layered.config.limits.max_connections, 100,
        "the image's value again"
    );
    assert_eq!(
        std::fs::read_to_string(runtime.path()).unwrap(),
        "[log]\nlevel = \"debug\"\n",
        "empty tables are dropped"
    );
}

/// `--config` wins; without it the image's file is /etc/nanomq/nanomq.toml only when it exists.
#[test]
fn image_path_is_the_given_file_or_the_default_when_it_exists() {
    let given = Path::new("/nonexistent/given.toml");
    assert_eq!(image_path(Some(given)), Some(given.to_owned()));
    let default = Path::new(DEFAULT_PATH);
    assert_eq!(
        image_path(None),
        default.exists().then(|| default.to_owned())
    );
}
