"""Install Engine and Cancel in the add-on preferences: engine_install.py run from Blender, its progress and log
shown, Engine Python filled in at the end."""
from __future__ import annotations

from pathlib import Path

import bpy

from . import engine_install
from .preferences import prefs

_running: dict[str, engine_install.Installer] = {}     # "install" -> the install under way, if any
_LOG_LINES = 8


def env_folder(p) -> Path:
    if p.install_folder:
        return Path(bpy.path.abspath(p.install_folder))
    return Path(bpy.utils.extension_path_user(__package__, path="engine", create=True))


def draw_install(p, box) -> None:
    box.label(text="Install Engine: a private Python environment with the engine", icon="IMPORT")
    box.prop(p, "install_source")
    box.prop(p, "install_python")
    box.prop(p, "install_folder")
    if engine_install.has_nvidia_gpu():
        box.prop(p, "install_cuda")
    row = box.row()
    job = _running.get("install")
    if job is not None and not job.done:
        row.label(text=f"{job.label}... {job.progress * 100:.0f}%")
        row.operator("gfpose.cancel_install", icon="CANCEL")
        for line in job.log[-_LOG_LINES:]:
            box.label(text=line[:120])
    else:
        row.operator("gfpose.install_engine", icon="IMPORT")
        if p.install_status:
            row.label(text=p.install_status)


class GFPOSE_OT_install_engine(bpy.types.Operator):
    bl_idname = "gfpose.install_engine"
    bl_label = "Install Engine"
    bl_description = ("Make a Python environment for the engine (in Blender's user data), install the engine and "
                      "torch into it, and set Engine Python to it")

    def _start(self, context):
        p = prefs(context)
        job = _running.get("install")
        if job is not None and not job.done:
            raise engine_install.InstallError("an install is already running")
        base = engine_install.find_python(bpy.path.abspath(p.install_python) if p.install_python else "")
        source = bpy.path.abspath(p.install_source) if p.install_source else ""
        plan = engine_install.Plan(env_folder(p), base, source, cuda=bool(p.install_cuda))
        job = _running["install"] = engine_install.Installer(plan).start()
        return job

    def _finish(self, context, job):
        p = prefs(context)
        if job.error:
            p.install_status = f"not installed: {job.error}"
            self.report({"ERROR"} if job.error != "cancelled" else {"WARNING"}, f"Install Engine: {job.error}")
            return {"CANCELLED"}
        p.engine_python = job.python
        p.install_status = f"installed: {job.python}"
        self.report({"INFO"}, f"Install Engine: Engine Python is now {job.python}")
        return {"FINISHED"}

    def execute(self, context):     # headless (scripts, tests): run to the end
        try:
            job = self._start(context)
        except engine_install.InstallError as e:
            prefs(context).install_status = f"not installed: {e}"
            self.report({"ERROR"}, f"Install Engine: {e}")
            return {"CANCELLED"}
        job.wait()
        return self._finish(context, job)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            self._job = self._start(context)
        except engine_install.InstallError as e:
            self.report({"ERROR"}, f"Install Engine: {e}")
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._job.cancel()
        if event.type == "TIMER":
            for area in context.screen.areas if context.screen else []:
                area.tag_redraw()
            if self._job.done:
                context.window_manager.event_timer_remove(self._timer)
                return self._finish(context, self._job)
        return {"PASS_THROUGH"}


class GFPOSE_OT_cancel_install(bpy.types.Operator):
    bl_idname = "gfpose.cancel_install"
    bl_label = "Cancel"
    bl_description = "Stop the install; an environment it was making is removed"

    def execute(self, context):
        job = _running.get("install")
        if job is not None:
            job.cancel()
        return {"FINISHED"}


classes = (GFPOSE_OT_install_engine, GFPOSE_OT_cancel_install)
