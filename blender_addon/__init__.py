"""Kar-Wai: example-based video stylization (Ebsynth method) in Blender's sequencer.

Timeline markers inside a movie or image-sequence strip are the keyframes; each
gets a style (a painterly filter, a neural style transfer, Deep Dream or a
painted image); Stylize Keyframes writes them to disk and Propagate carries
their look over every frame, as a new image strip above the source.

Registration order: preferences, properties (``scene.karwai``), operators (and
their load handler), panels. Unregistration runs the same list backwards.

The version is written once, in ``blender_manifest.toml``; ``bl_info`` (used
when the add-on is installed as a legacy add-on zip) reads it from there.
"""

bl_info = {
    "name": "Kar-Wai",
    "author": "Kar-Wai developers",
    "description": "Example-based video stylization of sequencer strips (Ebsynth method)",
    "blender": (4, 2, 0),
    "location": "Sequencer > Sidebar (N) > Kar-Wai",
    "doc_url": "",
    "category": "Sequencer",
}


def _manifest_version():
    import os
    import tomllib

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "blender_manifest.toml")
    with open(path, "rb") as handle:
        text = tomllib.load(handle)["version"]
    return tuple(int(part) for part in text.split("-")[0].split("+")[0].split("."))


bl_info["version"] = _manifest_version()

from . import operators, panels, preferences, properties  # noqa: E402

#: Registered in this order, unregistered in reverse.
_REGISTERED = (preferences, properties, operators, panels)


def register():
    for module in _REGISTERED:
        module.register()


def unregister():
    for module in reversed(_REGISTERED):
        module.unregister()
