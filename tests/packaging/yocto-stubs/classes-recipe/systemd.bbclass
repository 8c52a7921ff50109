# Stand-in for oe-core's classes-recipe/systemd.bbclass: the variables, and the build
# dependency it adds when the distro has systemd.

SYSTEMD_PACKAGES ?= "${PN}"
SYSTEMD_AUTO_ENABLE ??= "enable"

python __anonymous() {
    if bb.utils.contains('DISTRO_FEATURES', 'systemd', True, False, d):
        d.appendVar("DEPENDS", " systemd-systemctl-native")
    for pkg in d.getVar('SYSTEMD_PACKAGES').split():
        if pkg not in d.getVar('PACKAGES').split():
            bb.fatal('%s is marked for packaging systemd scripts, but it does not appear in package list' % pkg)
}
