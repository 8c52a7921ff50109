################################################################################
#
# nanomq
#
################################################################################

# This BR2_EXTERNAL tree lives in the nanomq repository, so the package builds
# the checkout around it. README.md shows how to build a release tarball or a
# git tag instead.
NANOMQ_VERSION = 0.1.0
NANOMQ_SITE = $(BR2_EXTERNAL_NANOMQ_PATH)/..
NANOMQ_SITE_METHOD = local
# The workspace root holds Cargo.lock; the broker crate is nanomq/.
NANOMQ_SUBDIR = nanomq
NANOMQ_LICENSE = MIT
NANOMQ_LICENSE_FILES = LICENSE
# Build outputs and test venvs of the checkout are not sources.
NANOMQ_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude=/target --exclude=/nanomq/fuzz/target \
	--exclude='/tests/.venv*'

NANOMQ_USERS = nanomq -1 nanomq -1 * /var/lib/nanomq - - nanomq MQTT broker

# One Config.in option per cargo feature; never the default "bench" feature
# (the load generator) nor "fuzzing" (for nanomq/fuzz).
NANOMQ_FEATURES =

ifeq ($(BR2_PACKAGE_NANOMQ_BRIDGE),y)
NANOMQ_FEATURES += bridge
endif

ifeq ($(BR2_PACKAGE_NANOMQ_CLIENTS),y)
NANOMQ_FEATURES += clients
endif

ifeq ($(BR2_PACKAGE_NANOMQ_PERSISTENCE),y)
# rusqlite with the bundled SQLite, compiled by the cross C compiler.
NANOMQ_FEATURES += persistence
endif

ifeq ($(BR2_PACKAGE_NANOMQ_SYSTEMD),y)
NANOMQ_FEATURES += systemd
endif

ifeq ($(BR2_PACKAGE_NANOMQ_TLS),y)
NANOMQ_FEATURES += tls
endif

ifeq ($(BR2_PACKAGE_NANOMQ_WEBSOCKET),y)
NANOMQ_FEATURES += websocket
endif

NANOMQ_FEATURE_LIST = $(subst $(space),$(comma),$(strip $(NANOMQ_FEATURES)))
NANOMQ_FEATURE_OPTS = --no-default-features \
	$(if $(NANOMQ_FEATURE_LIST),--features $(NANOMQ_FEATURE_LIST))

# Code generation is Buildroot's (BR2_OPTIMIZE_*, BR2_ENABLE_LTO), but a
# release build aborts on panic as the firmware profile does ([profile.firmware]
# in Cargo.toml), and gets the flags a profile cannot hold
# ([workspace.metadata.firmware] says why): no unwind tables in the Rust code
# (given as --config, which joins the rustflags pkg-cargo sets for ARM instead
# of replacing them) nor in the C code it compiles (SQLite, ring).
ifeq ($(BR2_ENABLE_DEBUG),y)
NANOMQ_CARGO_ENV =
NANOMQ_FIRMWARE_OPTS =
else
NANOMQ_CARGO_ENV = \
	CARGO_PROFILE_RELEASE_PANIC=abort \
	CFLAGS="$(TARGET_CFLAGS) -fno-asynchronous-unwind-tables -fno-unwind-tables"
NANOMQ_FIRMWARE_OPTS = \
	--config 'target.$(RUSTC_TARGET_NAME).rustflags=["-C", "force-unwind-tables=no"]'
endif

# cargo install rebuilds unless it gets the same features as cargo build.
NANOMQ_CARGO_BUILD_OPTS = $(NANOMQ_FEATURE_OPTS) $(NANOMQ_FIRMWARE_OPTS)
NANOMQ_CARGO_INSTALL_OPTS = $(NANOMQ_FEATURE_OPTS) $(NANOMQ_FIRMWARE_OPTS)

# Buildroot vendors the crates a cargo package needs in its download step
# (support/download/cargo-post-process), which a local or overridden source
# skips: vendor them the same way before the --offline build. This needs
# network access (or the crates in $(BR_CARGO_HOME)); a tarball or git source
# is vendored at download time and does not run it.
define NANOMQ_VENDOR_CRATES
	mkdir -p $(BR_CARGO_HOME) $(@D)/.cargo
	cd $(@D) && $(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		flock $(BR_CARGO_HOME)/.br-lock \
		cargo vendor --locked VENDOR >>$(@D)/.cargo/config.toml
endef

define NANOMQ_VENDOR_RSYNCED_SOURCE
	$(if $(NANOMQ_OVERRIDE_SRCDIR),$(NANOMQ_VENDOR_CRATES))
endef
NANOMQ_PRE_BUILD_HOOKS += NANOMQ_VENDOR_RSYNCED_SOURCE

define NANOMQ_INSTALL_CONFIG
	$(INSTALL) -D -m 0644 $(@D)/nanomq/nanomq.example.toml \
		$(TARGET_DIR)/etc/nanomq/nanomq.toml
endef
NANOMQ_POST_INSTALL_TARGET_HOOKS += NANOMQ_INSTALL_CONFIG

# With persistence the broker keeps its database and runtime.toml in
# /var/lib/nanomq (made by S50nanomq, or by systemd's StateDirectory= and
# tmpfiles): uncomment the example's `# dir = "/var/lib/nanomq"` line of
# [persistence], and fail if the example no longer has it. Without the
# feature the key stays unset: the broker refuses a dir it cannot use.
ifeq ($(BR2_PACKAGE_NANOMQ_PERSISTENCE),y)
define NANOMQ_INSTALL_CONFIG_PERSISTENCE
	$(SED) 's|^# dir = "/var/lib/nanomq"$$|dir = "/var/lib/nanomq"|' \
		$(TARGET_DIR)/etc/nanomq/nanomq.toml
	grep -qx 'dir = "/var/lib/nanomq"' $(TARGET_DIR)/etc/nanomq/nanomq.toml
endef
NANOMQ_POST_INSTALL_TARGET_HOOKS += NANOMQ_INSTALL_CONFIG_PERSISTENCE
endif

define NANOMQ_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(@D)/systemd/nanomq.service \
		$(TARGET_DIR)/usr/lib/systemd/system/nanomq.service
	$(INSTALL) -D -m 0644 $(@D)/systemd/nanomq.sysusers \
		$(TARGET_DIR)/usr/lib/sysusers.d/nanomq.conf
	$(INSTALL) -D -m 0644 $(@D)/systemd/nanomq.tmpfiles \
		$(TARGET_DIR)/usr/lib/tmpfiles.d/nanomq.conf
endef

define NANOMQ_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(NANOMQ_PKGDIR)/S50nanomq \
		$(TARGET_DIR)/etc/init.d/S50nanomq
endef

$(eval $(cargo-package))
