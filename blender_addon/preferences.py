"""Add-on preferences: where the engine is, and the engine process this add-on may have started."""
from __future__ import annotations

import threading

import bpy

from .engine_client import EngineClient, EngineError, LocalEngine

_local: dict[str, LocalEngine] = {}
_lock = threading.Lock()
_infos: dict[str, dict] = {}     # engine URL -> its /info: joints, motion model, rig maps


def engine_info(client: EngineClient, fresh: bool = False) -> dict:
    """The engine's /info, asked once per engine (again when `fresh`). Safe on a job thread."""
    info = None if fresh else _infos.get(client.url)
    if info is None:
        info = _infos[client.url] = client.info()
    return info


def known_rig_maps() -> list[str]:
    """The rig maps of every engine reached so far (none before the first)."""
    return sorted({n for info in list(_infos.values()) for n in info.get("rig_maps") or []})


def known_effector_groups() -> dict[str, tuple[str, ...]]:
    """The live-posing effector groups of an engine reached so far (empty before the first): for drawing the
    panel, which must not wait on the network."""
    for info in list(_infos.values()):
        if isinstance(info.get("effectors"), dict):
            return {g: tuple(j) for g, j in info["effectors"].items()}
    return {}


def forget_engines() -> None:
    _infos.clear()


class GFPosePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    engine_url: bpy.props.StringProperty(
        name="Engine URL", default="http://127.0.0.1:8765",
        description="A running GFPose engine (gfpose serve). Used when Engine Python is empty")
    engine_python: bpy.props.StringProperty(
        name="Engine Python", default="", subtype="FILE_PATH",
        description="A Python with gfpose_core installed; the add-on starts `gfpose serve` with it on a free "
                    "loopback port and stops it when Blender exits")
    engine_device: bpy.props.EnumProperty(
        name="Device", items=[("auto", "Auto", "CUDA when present"), ("cpu", "CPU", ""), ("cuda", "CUDA", "")],
        default="auto")
    token: bpy.props.StringProperty(name="Token", default="", subtype="PASSWORD",
                                    description="Needed only for an engine on another machine")
    status: bpy.props.StringProperty(name="Status", default="not checked")
    # Install Engine (install_ops.py)
    install_source: bpy.props.StringProperty(
        name="Source", default="", subtype="FILE_PATH",
        description="Empty: the package index (needs the internet). Or the engine's wheel (.whl) or a folder of "
                    "wheels, installed without any network")
    install_python: bpy.props.StringProperty(
        name="Base Python", default="", subtype="FILE_PATH",
        description="The Python 3.11+ to build the engine's environment from; empty: the newest one found")
    install_folder: bpy.props.StringProperty(
        name="Environment", default="", subtype="DIR_PATH",
        description="Where the engine's environment goes; empty: this add-on's folder in Blender's user data "
                    "(outside the extension, kept when the extension is updated)")
    install_cuda: bpy.props.BoolProperty(
        name="Use the NVIDIA GPU", default=False,
        description="Install torch's CUDA build (a download of several GB) instead of the CPU build")
    install_status: bpy.props.StringProperty(name="Install", default="")

    def draw(self, context):
        from .install_ops import draw_install
        draw_install(self, self.layout.box())
        col = self.layout.column()
        col.prop(self, "engine_python")
        if self.engine_python:
            col.prop(self, "engine_device")
        else:
            col.prop(self, "engine_url")
            col.prop(self, "token")
        row = col.row()
        row.operator("gfpose.test_connection", icon="LINKED")
        row.label(text=self.status)


def prefs(context=None) -> GFPosePreferences:
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


def engine_spec(context=None) -> dict:
    """What `connect` needs, read on the main thread (bpy is not safe on the job threads)."""
    p = prefs(context)
    python = bpy.path.abspath(p.engine_python) if p.engine_python else ""
    return {"python": python, "device": p.engine_device, "url": p.engine_url, "token": p.token}


def connect(spec: dict) -> EngineClient:
    """The engine to talk to: a local one started (once) from spec["python"] when set, else spec["url"].
    Safe to call from a background thread; starting an engine takes seconds."""
    if spec["python"]:
        key = f"{spec['python']}|{spec['device']}"
        with _lock:
            eng = _local.get(key)
            if eng is None or not eng.alive():
                _stop_all()
                eng = _local[key] = LocalEngine(spec["python"], spec["device"])
        return EngineClient(eng.url)
    return EngineClient(spec["url"], spec["token"])


def ready(spec: dict) -> EngineClient | None:
    """The engine to talk to when nothing has to be started first (a URL, or a local engine already running);
    None when `connect` would start one."""
    if not spec["python"]:
        return EngineClient(spec["url"], spec["token"])
    with _lock:
        eng = _local.get(f"{spec['python']}|{spec['device']}")
        return EngineClient(eng.url) if eng is not None and eng.alive() else None


def client(context=None) -> EngineClient:
    """The engine to talk to: a started local one when Engine Python is set, else the URL."""
    return connect(engine_spec(context))


def _stop_all():
    for eng in _local.values():
        eng.stop()
    _local.clear()


def stop_local():
    with _lock:
        _stop_all()


def set_status(text: str, context=None) -> None:
    try:
        prefs(context).status = text
    except (KeyError, AttributeError):  # the add-on went away meanwhile
        pass


def describe_info(info: dict) -> str:
    return f"ok: {info.get('device')}, {(info.get('parameters') or 0) / 1e6:.1f} M parameters"


class GFPOSE_OT_test_connection(bpy.types.Operator):
    bl_idname = "gfpose.test_connection"
    bl_label = "Test Connection"
    bl_description = "Ask the engine for its model and device"

    def execute(self, context):
        p = prefs(context)
        try:
            info = engine_info(client(context), fresh=True)
        except EngineError as e:
            p.status = "no engine"
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        p.status = describe_info(info)
        self.report({"INFO"}, p.status)
        return {"FINISHED"}


classes = (GFPosePreferences, GFPOSE_OT_test_connection)
