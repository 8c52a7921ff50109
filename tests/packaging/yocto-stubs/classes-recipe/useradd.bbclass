# Stand-in for oe-core's classes-recipe/useradd.bbclass: its parse-time checks.

python __anonymous() {
    pkgs = (d.getVar('USERADD_PACKAGES') or "").split()
    if not pkgs:
        bb.fatal("%s inherits useradd but doesn't set USERADD_PACKAGES" % d.getVar('FILE', False))
    for pkg in pkgs:
        if not (d.getVar('USERADD_PARAM:%s' % pkg) or d.getVar('GROUPADD_PARAM:%s' % pkg) or d.getVar('GROUPMEMS_PARAM:%s' % pkg)):
            bb.fatal("%s inherits useradd but doesn't set USERADD_PARAM, GROUPADD_PARAM or GROUPMEMS_PARAM for package %s" % (d.getVar('FILE', False), pkg))
}
