# Stand-in for oe-core's classes-recipe/cargo.bbclass: the `cargo build` command line
# (CARGO_BUILD_FLAGS, then PACKAGECONFIG_CONFARGS) and the install of the built binaries.

inherit cargo_common

CARGO = "cargo"
RUST_HOST_SYS ??= "aarch64-poky-linux-gnu"
B = "${WORKDIR}/build"

BUILD_MODE ??= "--release"
CARGO_BUILD_FLAGS = "-v --frozen --target ${RUST_HOST_SYS} ${BUILD_MODE} --manifest-path=${CARGO_MANIFEST_PATH}"
BUILD_DIR ??= "release"
CARGO_TARGET_SUBDIR = "${RUST_HOST_SYS}/${BUILD_DIR}"

oe_cargo_build() {
	"${CARGO}" build ${CARGO_BUILD_FLAGS} ${PACKAGECONFIG_CONFARGS} "$@"
}

cargo_do_compile() {
	oe_cargo_build
}

cargo_do_install() {
	for tgt in "${B}/target/${CARGO_TARGET_SUBDIR}/"*; do
		if [ -f "$tgt" ] && [ -x "$tgt" ]; then
			install -d "${D}${bindir}"
			install -m755 "$tgt" "${D}${bindir}"
		fi
	done
}

EXPORT_FUNCTIONS do_compile do_install
