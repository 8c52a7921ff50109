SUMMARY = "Edge MQTT 5.0 / 3.1.1 / 3.1 broker for embedded Linux"
DESCRIPTION = "nanomq is a small MQTT broker written in Rust for gateways and \
               other embedded Linux devices. It runs as a systemd service under \
               its own account and keeps its state in /var/lib/nanomq."
HOMEPAGE = "https://github.com/nanomq-rs/nanomq"
BUGTRACKER = "https://github.com/nanomq-rs/nanomq/issues"
SECTION = "net"
# Not EMQ's NanoMQ (C): without a vendor, cve-check would match that project's CVEs.
CVE_PRODUCT = "nanomq-rs:nanomq"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=8228f5c1e1830ab2431056f197eda5c5"

# The release process sets SRCREV to the commit of the release (and renames this file to the
# new version); nanomq-crates.inc must then be regenerated from that commit's Cargo.lock.
SRC_URI = "git://github.com/nanomq-rs/nanomq.git;protocol=https;branch=main"
SRCREV = "4daa043551a21824fb6deb7c59541b6397f485ba"

inherit cargo cargo-update-recipe-crates systemd useradd

require ${BPN}-crates.inc

# nanomq is one member of a Cargo workspace: cargo builds the member's manifest, and the lock
# file (which nanomq-crates.inc mirrors) is the workspace's, at the top of the source tree.
CARGO_SRC_DIR = "nanomq"
CARGO_LOCK_PATH = "${S}/Cargo.lock"

# The crate's default features include `bench`, the load generator, which never goes into
# firmware: build with no default features and add exactly the features PACKAGECONFIG selects.
# The cargo class passes PACKAGECONFIG_CONFARGS to `cargo build`. Each option is named after
# the cargo feature it enables (tests/packaging/yocto holds the two lists equal).
CARGO_BUILD_FLAGS += "--no-default-features"

PACKAGECONFIG ??= "bridge clients persistence tls websocket ${@bb.utils.filter('DISTRO_FEATURES', 'systemd', d)}"
# Persistent sessions and retained messages in SQLite under /var/lib/nanomq, restored after a
# restart (rusqlite with the bundled SQLite, compiled by the target C compiler: no libsqlite3 to
# link). The installed config then sets persistence.dir, which also enables runtime.toml.
PACKAGECONFIG[persistence] = "--features persistence"
# `nanomq pub` and `nanomq sub`, mosquitto_pub/mosquitto_sub look-alikes (about 64 KiB).
PACKAGECONFIG[clients] = "--features clients"
# [[bridges]]: uplinks to cloud brokers with an offline cache (TLS upstreams with `tls`).
PACKAGECONFIG[bridge] = "--features bridge"
# sd_notify readiness and watchdog, journald logging (pure Rust: no libsystemd to link).
PACKAGECONFIG[systemd] = "--features systemd"
# kind = "tls" and "wss" listeners: rustls with the ring provider (no OpenSSL to link).
PACKAGECONFIG[tls] = "--features tls"
# kind = "ws" and "wss" listeners: MQTT over WebSocket.
PACKAGECONFIG[websocket] = "--features websocket"

# The code generation of the workspace's `firmware` profile ([profile.firmware] in Cargo.toml)
# applied to the `--release` build the cargo class runs: small code, whole-program LTO, no
# unwinding. Stripping is left to the build system, which splits the debug symbols into -dbg.
export CARGO_PROFILE_RELEASE_OPT_LEVEL = "s"
export CARGO_PROFILE_RELEASE_LTO = "fat"
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS = "1"
export CARGO_PROFILE_RELEASE_PANIC = "abort"
# And the flags a profile cannot hold (Cargo.toml, [workspace.metadata.firmware], says why): no
# unwind tables in the Rust code or in the C code the build compiles (SQLite, ring).
RUSTFLAGS:append = " -C force-unwind-tables=no"
TARGET_CFLAGS:append = " -fno-asynchronous-unwind-tables -fno-unwind-tables"

# The class's task reads every Cargo.lock under ${S}, nanomq/fuzz/Cargo.lock included; the
# layer's script reads only the workspace's and writes the same layout.
do_update_crates() {
    nativepython3 ${THISDIR}/../../scripts/update-crates-inc \
        --lock ${CARGO_LOCK_PATH} --output ${THISDIR}/${BPN}-crates.inc
}

do_install:append() {
    install -d ${D}${sysconfdir}/nanomq
    install -m 0644 ${S}/nanomq/nanomq.example.toml ${D}${sysconfdir}/nanomq/nanomq.toml
    # With persistence, the broker keeps its database and runtime.toml in the state directory
    # (StateDirectory=nanomq, nanomq.tmpfiles): uncomment the line `# dir = "/var/lib/nanomq"`
    # of [persistence] in the installed config. Without the feature the key stays unset: the
    # broker refuses a persistence.dir it cannot use.
    if ${@bb.utils.contains('PACKAGECONFIG', 'persistence', 'true', 'false', d)}; then
        sed -i -e 's|^# dir = "${localstatedir}/lib/nanomq"$|dir = "${localstatedir}/lib/nanomq"|' \
            ${D}${sysconfdir}/nanomq/nanomq.toml
        grep -qx 'dir = "${localstatedir}/lib/nanomq"' ${D}${sysconfdir}/nanomq/nanomq.toml ||
            bbfatal "no line '# dir = ${localstatedir}/lib/nanomq' to uncomment in nanomq.example.toml"
    fi

    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/nanomq.service ${D}${systemd_system_unitdir}/nanomq.service
    install -d ${D}${nonarch_libdir}/sysusers.d
    install -m 0644 ${S}/systemd/nanomq.sysusers ${D}${nonarch_libdir}/sysusers.d/nanomq.conf
    install -d ${D}${nonarch_libdir}/tmpfiles.d
    install -m 0644 ${S}/systemd/nanomq.tmpfiles ${D}${nonarch_libdir}/tmpfiles.d/nanomq.conf
}

SYSTEMD_SERVICE:${PN} = "nanomq.service"

# The same account as systemd/nanomq.sysusers, made when the image is built: a read-only root
# file system cannot take it from systemd-sysusers at boot, and images without systemd have no
# sysusers at all. Where the account exists, systemd-sysusers leaves it alone.
USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --user-group --home-dir ${localstatedir}/lib/nanomq \
                       --no-create-home --shell ${base_sbindir}/nologin nanomq"

# Edits to the broker's config survive a package upgrade. Its state in /var/lib/nanomq is not
# in the package: StateDirectory= and tmpfiles create it at boot, on the data partition.
CONFFILES:${PN} = "${sysconfdir}/nanomq/nanomq.toml"

FILES:${PN} += "${systemd_system_unitdir}/nanomq.service \
                ${nonarch_libdir}/sysusers.d/nanomq.conf \
                ${nonarch_libdir}/tmpfiles.d/nanomq.conf"

# A daemon for the target only: no build needs a -native or nativesdk nanomq.
BBCLASSEXTEND = ""
