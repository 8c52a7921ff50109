# Stand-in for oe-core's classes-global/base.bbclass: the tasks, and PACKAGECONFIG handling
# (PACKAGECONFIG[opt] = "enable,disable,depends,rdepends,rrecommends,conflicts") as oe-core does.

addtask fetch
addtask unpack after do_fetch
addtask patch after do_unpack
addtask configure after do_patch
addtask compile after do_configure
addtask install after do_compile
addtask build after do_install

base_do_fetch() {
	:
}

base_do_unpack() {
	:
}

base_do_configure() {
	:
}

base_do_compile() {
	:
}

base_do_install() {
	:
}

python () {
    if d.getVar('LICENSE') == 'INVALID':
        bb.fatal('This recipe does not have the LICENSE field set (%s)' % d.getVar('PN'))

    pkgconfigflags = d.getVarFlags("PACKAGECONFIG") or {}
    pkgconfig = (d.getVar('PACKAGECONFIG') or "").split()
    # oe-core reports these in do_recipe_qa ("invalid-packageconfig"); failing the parse makes
    # the test see them.
    unknown = [opt for opt in pkgconfig if opt not in pkgconfigflags]
    if unknown:
        bb.fatal("%s: invalid PACKAGECONFIG: %s" % (d.getVar('PN'), ' '.join(unknown)))
    extradeps, extrardeps, extrarrecs, extraconf = [], [], [], []
    for flag, flagval in sorted(pkgconfigflags.items()):
        items = flagval.split(",")
        num = len(items)
        if num > 6:
            bb.fatal("%s: PACKAGECONFIG[%s] Only enable,disable,depend,rdepend,rrecommend,conflict_packageconfig can be specified!" % (d.getVar('PN'), flag))
        if flag in pkgconfig:
            if num >= 3 and items[2]:
                extradeps.append(items[2])
            if num >= 4 and items[3]:
                extrardeps.append(items[3])
            if num >= 5 and items[4]:
                extrarrecs.append(items[4])
            if num >= 1 and items[0]:
                extraconf.append(items[0])
        elif num >= 2 and items[1]:
            extraconf.append(items[1])
    for varname, appends in (('DEPENDS', extradeps), ('RDEPENDS:${PN}', extrardeps),
                             ('RRECOMMENDS:${PN}', extrarrecs), ('PACKAGECONFIG_CONFARGS', extraconf)):
        if appends:
            d.appendVar(d.expand(varname), " " + " ".join(appends))
}

EXPORT_FUNCTIONS do_fetch do_unpack do_configure do_compile do_install
