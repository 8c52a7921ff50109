# Stand-in for oe-core's classes-recipe/cargo_common.bbclass: where cargo finds the manifest
# and the lock file.

export CARGO_HOME = "${WORKDIR}/cargo_home"

# The directory of the Cargo.toml relative to ${S}.
CARGO_SRC_DIR ??= ""
CARGO_MANIFEST_PATH ??= "${S}/${CARGO_SRC_DIR}/Cargo.toml"
CARGO_LOCK_PATH ??= "${@ os.path.join(os.path.dirname(d.getVar('CARGO_MANIFEST_PATH')), 'Cargo.lock')}"

cargo_common_do_configure() {
	mkdir -p ${CARGO_HOME}/bitbake
}

EXPORT_FUNCTIONS do_configure
