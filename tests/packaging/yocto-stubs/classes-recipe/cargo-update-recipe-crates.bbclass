# Stand-in for oe-core's classes-recipe/cargo-update-recipe-crates.bbclass: the task that
# rewrites ${THISDIR}/${BPN}-crates.inc from Cargo.lock.

inherit cargo_common

addtask do_update_crates after do_patch
do_update_crates[nostamp] = "1"

CARGO_LOCK_SRC_DIR ??= "${@ os.path.dirname(d.getVar('CARGO_LOCK_PATH', True))}"

do_update_crates() {
	bbfatal "stub: the real task lives in oe-core"
}
