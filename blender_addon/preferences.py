"""Kar-Wai's add-on preferences: cache folder, neural device, VGG19 weights, threads."""

import os
import tempfile

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import dependencies

#: The add-on's module name: ``blender_addon`` from the source tree,
#: ``bl_ext.<repository>.karwai`` as an extension.
ADDON_ID = __package__

DEVICE_ITEMS = (
    ("auto", "Automatic", "CUDA or Apple Metal when available, else the CPU"),
    ("cpu", "CPU", "Always the CPU"),
    ("cuda", "CUDA", "An NVIDIA GPU through CUDA"),
    ("mps", "Apple Metal", "The GPU of an Apple silicon Mac"),
)


class KARWAI_AP_preferences(bpy.types.AddonPreferences):
    """Where Kar-Wai keeps its cache and how it runs the neural stylizers."""

    bl_idname = ADDON_ID

    cache_dir: StringProperty(
        name="Cache Folder", subtype="DIR_PATH", default="",
        description="Optical-flow cache and working copies of trimmed clips "
                    "(empty: a 'karwai-cache' folder in the system's temporary folder)")
    device: EnumProperty(name="Neural Device", items=DEVICE_ITEMS, default="auto",
                         description="Where the neural and Deep Dream stylizers run")
    vgg_weights: StringProperty(
        name="VGG19 Weights", subtype="FILE_PATH", default="",
        description="The VGG19 ImageNet weights file (.pth) for the neural methods "
                    "(empty: PyTorch's cache, downloaded there when online access is allowed)")
    threads: IntProperty(name="Threads", default=0, min=0, soft_max=64,
                         description="Threads the engine may use (0: all cores)")
    use_process: BoolProperty(
        name="Run Jobs in a Separate Process", default=True,
        description="Run the engine in its own Python process so that Blender stays responsive "
                    "(off: a thread inside Blender)")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "cache_dir")
        layout.prop(self, "threads")
        layout.prop(self, "use_process")
        col = layout.column(heading="Neural Methods")
        col.prop(self, "device")
        col.prop(self, "vgg_weights")
        draw_torch(layout.box())


def draw_torch(layout):
    """PyTorch's state: found, being installed (pip's progress), or the Install button."""
    installer = dependencies.current()
    if installer is not None and not installer.state.finished:
        layout.progress(factor=installer.state.factor, type="BAR",
                        text=installer.state.describe())
        layout.label(text="Esc cancels", icon="INFO")
        return
    available, text = dependencies.torch_status()
    layout.label(text=text, icon="CHECKMARK" if available else "ERROR")
    if installer is not None and installer.state.status == dependencies.FAILED:
        layout.label(text=installer.state.error, icon="CANCEL")
    if not available:
        layout.label(text="Painterly filters and painted keys work without it")
        layout.operator("karwai.install_torch", icon="IMPORT")
        layout.label(text="Installs " + dependencies.plan().description)


class Prefs:
    """Plain copy of the preferences, with defaults when the add-on has no entry
    in the preferences (registered by hand rather than enabled)."""

    def __init__(self, context):
        entry = context.preferences.addons.get(ADDON_ID)
        p = entry.preferences if entry is not None else None
        self.cache_dir = bpy.path.abspath(p.cache_dir) if p is not None and p.cache_dir else ""
        if not self.cache_dir:
            self.cache_dir = os.path.join(tempfile.gettempdir(), "karwai-cache")
        self.device = p.device if p is not None else "auto"
        weights = p.vgg_weights if p is not None else ""
        self.vgg_weights = bpy.path.abspath(weights) if weights else ""
        self.threads = p.threads if p is not None else 0
        self.use_process = p.use_process if p is not None else True


CLASSES = (KARWAI_AP_preferences,)


def register():
    dependencies.activate()  # a PyTorch installed by Install PyTorch
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    dependencies.unregister()
