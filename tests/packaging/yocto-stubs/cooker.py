"""Stand-in for bitbake's cooker: the datastore it builds before a recipe, and the recipe parse.

Used by tests/packaging/yocto with the `bb` library of PyPI's bitbake-setup wheel. Like the
cooker, it reads each layer's conf/layer.conf (this directory first, as the core layer), then
conf/bitbake.conf from BBPATH, inherits the base class, and hands a copy of that datastore to
bb.parse for the recipe, which runs the anonymous python and finalises it.
"""

import logging
import os
import re
import sys
import tempfile
import types

# bb.siggen imports bitbake's hash-equivalence client at import time; the wheel does not ship
# it, and parsing never calls it.
for _name in ("hashserv", "hashserv.client"):
    sys.modules.setdefault(_name, types.ModuleType(_name))
import bb  # noqa: E402
import bb.data  # noqa: E402
import bb.fetch2  # noqa: E402
import bb.parse  # noqa: E402
import bb.utils  # noqa: E402

CORE = os.path.dirname(os.path.abspath(__file__))


class ParseError(Exception):
    """The recipe did not parse, or bitbake warned; the args are bitbake's messages."""


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(f"{record.levelname}: {record.getMessage()}")


_LOG = _Collect()
logging.getLogger("BitBake").addHandler(_LOG)
logging.getLogger("BitBake").propagate = False
# bblayers.conf's BBPATH = "${TOPDIR}": an empty build directory, so nothing in the current
# directory can stand in for a layer's file.
_TOPDIR = tempfile.TemporaryDirectory(prefix="nanomq-yocto-")


def base_config(layer, corename, distro_features, presets=()):
    """The datastore before a recipe: core and `layer` layer.conf, bitbake.conf, base class."""
    d = bb.data.init()
    d.setVar("BBPATH", _TOPDIR.name)
    d.setVar("LAYERSERIES_CORENAMES", corename)
    d.setVar("DISTRO_FEATURES", distro_features)
    for var, value in presets:
        d.setVar(var, value)
    for layerdir in (CORE, layer):
        d.setVar("LAYERDIR", layerdir)
        d.setVar("LAYERDIR_RE", re.escape(layerdir))
        d = bb.parse.handle(os.path.join(layerdir, "conf", "layer.conf"), d, True, baseconfig=True)
        d.expandVarref("LAYERDIR")
        d.expandVarref("LAYERDIR_RE")
    d.delVar("LAYERDIR")
    d.delVar("LAYERDIR_RE")
    d = bb.parse.handle(os.path.join("conf", "bitbake.conf"), d, True, baseconfig=True)
    d.setVar("__bbclasstype", "global")
    bb.parse.BBHandler.inherit("base", "configuration INHERITs", 0, d)
    d.setVar("__bbclasstype", "recipe")
    return d


def parse_recipe(layer, recipe, corename, distro_features, presets=()):
    """The recipe's finalised datastore; ParseError if bitbake fails or warns."""
    del _LOG.messages[:]
    where = f"{corename}, DISTRO_FEATURES '{distro_features}'"
    try:
        d = base_config(layer, corename, distro_features, presets)
        bb.parse.init_parser(d)
        d = bb.parse.handle(recipe, bb.data.createCopy(d))[""]
    except Exception as e:  # bb.fatal raises BBHandledException after logging
        raise ParseError(f"bitbake cannot parse {os.path.basename(recipe)} ({where}): "
                         f"{type(e).__name__}: {e}", *_LOG.messages)
    if _LOG.messages:
        raise ParseError(f"bitbake warned parsing {os.path.basename(recipe)} ({where}):",
                         *_LOG.messages)
    return d
