"""`gfpose serve`: the engine over HTTP for the Blender add-on, shared GPU boxes and pipeline scripts.

JSON has no NaN: an unknown joint is `null`. Bad requests get 4xx with a message naming the problem (413 for
limits, 422 for content, 401 without the token); a failing request never takes the server down.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Annotated, Literal, Optional, Union

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from gfpose_core import __version__
from gfpose_core.body.skeleton import PARENTS
from gfpose_core.engine import DEFAULTS, MAX_HYPOTHESES
from gfpose_core.prior.effectors import EFFECTORS
from gfpose_core.prior.samplers import SAMPLERS
from gfpose_core.rigs.rig_map import RIGS_DIR, RigMapError, user_rig_dir
from gfpose_core.rigs.solve import UnknownBinding
from gfpose_core.service import limits, rig_names
from gfpose_core.service.cancel import SHORT_WORK, DeviceLock, Gone, stopper_for
from gfpose_core.service.guard import Guard, check_token, is_loopback
from gfpose_core.service.limits import MAX_BODY_BYTES, MAX_FPS, MAX_POSES, MAX_STEPS
from gfpose_core.service.live import LivePosing
from gfpose_core.service.rig_names import NamedBindingCache, known_names, resolve_rig
from gfpose_core.service.schema import (
    ERRORS,
    GONE,
    KnownRow,
    Pose3,
    Poses2,
    Poses3,
    SUPERSEDED,
    PosesResponse,
    document_security,
)

Sampler = Optional[Literal[tuple(SAMPLERS)]]  # type: ignore[valid-type]
RigField = Optional[Union[Annotated[str, Field(max_length=200)], dict]]
RIG_HELP = ("rig map name the engine knows (/info rig_maps), or a rig map as an object (the TOML's tables as "
            "JSON); never a path. Default: detected from the bone names")


class _Strict(BaseModel):
    # NaN and Infinity are not JSON (json.loads takes them anyway): refused in every field, nulls mark unknowns.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Sampling(_Strict):
    seed: Optional[int] = Field(None, ge=0, le=2**62)
    sampler: Sampler = None
    steps: Optional[int] = Field(None, ge=1, le=MAX_STEPS)


class CompleteRequest(_Sampling):
    joints: Poses3 = Field(description="(N, 24, 3) world positions in metres; null = unknown")
    known: Optional[list[KnownRow]] = Field(None, description="(N, 24); default: the joints that are not null")
    n_hypotheses: int = Field(1, ge=1, le=MAX_HYPOTHESES)


class DenoiseRequest(_Sampling):
    take: Poses3 = Field(description="(T, 24, 3) one take; null = dropout")
    fps: float = Field(30.0, ge=limits.MIN_FPS, le=MAX_FPS, description="frame rate of the take (capture rates)")
    strength: Optional[float] = Field(None, ge=0, le=1)
    temporal: Optional[bool] = Field(None, description="use the motion model (default: when the engine has one)")


class InbetweenRequest(_Sampling):
    take: Poses3 = Field(description="(T, 24, 3) keys and the frames between; null = to fill")
    known: Optional[list[KnownRow]] = Field(None, description="(T, 24); default: the joints that are not null")
    fps: float = Field(30.0, ge=limits.MIN_FPS, le=MAX_FPS, description="frame rate of the take (capture rates)")
    lock_feet: bool = Field(True, description="keep a foot that rests in one place at two keys planted between")


class GenerateRequest(_Sampling):
    n: int = Field(1, ge=1, le=MAX_POSES)
    around: Optional[Pose3] = Field(None, description="(24, 3) a pose to vary")
    pinned: Optional[list[str]] = Field(None, description="body24 joint names kept exactly")
    diversity: float = Field(0.5, ge=0, le=1)


class LiftRequest(_Sampling):
    keypoints2d: Poses2 = Field(description="(N, 24, 2) image x right, y down; null = unseen")
    n_hypotheses: int = Field(1, ge=1, le=MAX_HYPOTHESES)


class BindRequest(_Strict):
    armature: dict = Field(description="armature description (blender_addon.rig_io.describe_armature)")
    rig: RigField = Field(None, description=RIG_HELP)


class PoseForRigRequest(_Strict):
    armature: Optional[dict] = Field(None, description="armature description (blender_addon.rig_io.describe_armature);"
                                                       " may be left out once an answer gave its binding_id")
    binding_id: Optional[str] = Field(None, max_length=64,
                                      description="an earlier answer's binding_id: the armature it was solved for")
    rig: RigField = Field(None, description=RIG_HELP)
    joints: Poses3 = Field(description="(F, 24, 3) body24 poses, world metres, every joint known")
    root_scale: Optional[float] = Field(None, ge=1e-3, le=1000)
    current: Optional[dict] = Field(None, description="the pose the rig has now, to edit rather than solve afresh: "
                                                      "{joints: (F, 24, 3) read off the rig, rotations: {bone: "
                                                      "(F, 3, 3) armature-space orientation}, keep: [bones "
                                                      "that stay exactly as they are]}")


class EffectorsRequest(_Strict):
    armature: Optional[dict] = Field(None, description="armature description, as /pose_for_rig; with neither it nor "
                                                       "binding_id only the body24 joints are answered")
    binding_id: Optional[str] = Field(None, max_length=64, description="an earlier answer's binding_id")
    rig: RigField = Field(None, description=RIG_HELP)
    joints: Poses3 = Field(description="(N, 24, 3) world metres: the effectors (GET /info effectors) and pins "
                                       "placed, null = unknown (filled in)")
    known: Optional[list[KnownRow]] = Field(None, description="(N, 24) joints held exactly; default: every "
                                                              "effector joint, plus the pins")
    pins: Optional[list[Annotated[str, Field(max_length=32)]]] = Field(
        None, max_length=24, description="body24 names of joints the animator locked, held where joints has them")
    lengths: Optional[Union[list[float], list[list[float]]]] = Field(
        None, description="(23,) or (N, 23) bone lengths in metres (bones 1..23: the child joints of GET /info "
                          "parents); default: the rig's own, from its rest pose")
    root_scale: Optional[float] = Field(None, ge=1e-3, le=1000)
    current: Optional[dict] = Field(None, description="the pose the rig has now, as /pose_for_rig takes it")
    seed: int = Field(0, ge=0, le=2**62, description="one seed for every update: the body moves smoothly as the "
                                                     "effectors do")
    session: Optional[str] = Field(None, min_length=1, max_length=64,
                                   description="latest wins: a newer sequence of this session stops older requests "
                                               "(409 'superseded')")
    sequence: Optional[int] = Field(None, ge=0, le=2**62, description="this request's order in its session")


def _array(nested, name: str, width: int, bound: float = limits.MAX_METRES) -> np.ndarray:
    """Nested lists with nulls -> float array with NaN; ragged or mis-sized input is a 422 naming the field."""
    try:
        arr = np.array(nested, dtype=np.float64)  # None -> nan
    except (ValueError, TypeError):
        raise HTTPException(422, f"{name} is ragged: every pose needs 24 joints of {width} numbers") from None
    if arr.ndim != 3 or arr.shape[1:] != (24, width):
        raise HTTPException(422, f"{name} must have shape (N, 24, {width}), got {arr.shape}")
    if np.isinf(arr).any():
        raise HTTPException(422, f"{name} contains infinite numbers")
    limits.magnitudes(arr, name, bound)
    return arr


def _steps(steps, task: str, n_hypotheses: int = 1) -> int:
    """The steps the engine will take: the request's, or the task's default (several hypotheses sample)."""
    if steps is not None:
        return steps
    return DEFAULTS["hypotheses" if n_hypotheses > 1 else task][1] * (2 if task == "complete" else 1)


_limit = limits.poses


class CompleteBatcher:
    """Merges concurrent one-hypothesis completions that asked for no seed into one engine call.

    Several animators (or one scrubbing through keys) send many one-keyframe requests; one batched network pass
    costs little more than one. Requests with a seed run alone, so that a seed still gives the same result.
    """

    def __init__(self, engine, lock: threading.Lock, window_s: float = 0.004):
        self.engine, self.lock, self.window = engine, lock, window_s
        self.jobs: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="gfpose-batcher").start()

    def complete(self, joints: np.ndarray, known, sampler, steps) -> np.ndarray:
        if known is None:
            known = np.isfinite(joints).all(-1)
        job = {"joints": joints, "known": known & np.isfinite(joints).all(-1), "key": (sampler, steps),
               "done": threading.Event(), "out": None, "error": None}
        self.jobs.put(job)
        job["done"].wait()
        if job["error"] is not None:
            raise job["error"]
        return job["out"]

    def _loop(self):
        while True:
            batch = [self.jobs.get()]
            deadline = time.monotonic() + self.window
            size = len(batch[0]["joints"])
            while size < MAX_POSES:
                try:
                    batch.append(self.jobs.get(timeout=max(0.0, deadline - time.monotonic())))
                    size += len(batch[-1]["joints"])
                except queue.Empty:
                    break
            groups: dict = {}
            for job in batch:
                groups.setdefault(job["key"], []).append(job)
            for (sampler, steps), jobs in groups.items():
                self._run(jobs, sampler, steps)

    def _run(self, jobs, sampler, steps):
        try:
            with self.lock:
                out = self.engine.complete(np.concatenate([j["joints"] for j in jobs]),
                                           np.concatenate([j["known"] for j in jobs]), sampler=sampler,
                                           steps=steps)
            ends = np.cumsum([len(j["joints"]) for j in jobs])
            for job, piece in zip(jobs, np.split(out, ends[:-1])):
                job["out"] = piece
        except Exception as e:  # one bad request must not fail the others: run them one by one to say whose
            if len(jobs) > 1:
                for job in jobs:
                    self._run([job], sampler, steps)
                return
            jobs[0]["error"] = e
        for job in jobs:
            job["done"].set()


def create_app(engine, token: str | None = None, host: str = "127.0.0.1") -> FastAPI:
    """The app; `host` is where it is served (a loopback host pins the Host header to loopback names)."""
    token = check_token(token)
    app = FastAPI(title="GFPose engine", version=__version__,
                  description="A learned 3D human pose prior (body24): complete, denoise, generate, lift.",
                  responses=ERRORS)
    document_security(app, token is not None)
    app.add_exception_handler(RequestValidationError, limits.validation_error)
    lock = DeviceLock()  # one sampling job at a time on the device; requests queue here, short ones first
    batcher = CompleteBatcher(engine, lock)
    bindings = NamedBindingCache()   # armatures sent once, named by binding_id after

    app.add_middleware(Guard, host=host, token=token, max_body=MAX_BODY_BYTES)

    def _known(known, shape):
        if known is None:
            return None
        k = np.array(known, dtype=object)
        if k.shape != shape:
            raise HTTPException(422, f"known must have shape {shape}, got {k.shape}")
        return k.astype(bool)

    def run(request, work: float, fn, *args, **kwargs):
        stop = stopper_for(request)
        stop.acquire(lock, short=work <= SHORT_WORK)
        try:
            return fn(*args, callback=stop.step, **kwargs)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        except Gone:
            raise HTTPException(400, "the client went away; the work was stopped") from None
        finally:
            lock.release()

    @app.get("/health")
    async def health():   # on the event loop: answers even while every worker thread waits for the device
        return {"status": "ok"}

    @app.get("/info")
    def info():
        t = engine.config.get("training", {})
        return {"version": __version__, "device": str(engine.device), "joints": engine.joint_names,
                "parents": [int(p) for p in PARENTS], "rig_maps": known_names(), "effectors": EFFECTORS,
                "user_rig_maps": str(user_rig_dir()), "shipped_rig_maps": sorted(p.stem for p in RIGS_DIR.glob("*.toml")),
                "parameters": t.get("parameters"), "trained_on": t.get("data"), "samplers": list(SAMPLERS),
                "motion_model": None if engine.motion is None else {
                    "frames": engine.motion.frames, "fps": engine.motion.space.fps,
                    "max_gap_frames": engine.motion.frames - 2},
                "limits": {"poses_per_request": MAX_POSES, "body_bytes": MAX_BODY_BYTES, "steps": MAX_STEPS,
                           "pose_steps_per_request": limits.MAX_WORK, "fps": [limits.MIN_FPS, MAX_FPS],
                           "frames_per_take_at_30_fps": MAX_POSES}}

    @app.post("/complete", response_model=PosesResponse)
    def complete(req: CompleteRequest, request: Request):
        joints = _array(req.joints, "joints", 3)
        _limit(len(joints) * req.n_hypotheses, "joints x n_hypotheses")
        work = limits.work(len(joints) * req.n_hypotheses, _steps(req.steps, "complete", req.n_hypotheses),
                           "completions")
        known = _known(req.known, joints.shape[:2])
        if req.seed is None and req.n_hypotheses == 1:
            try:
                out = batcher.complete(joints, known, req.sampler, req.steps)
            except ValueError as e:
                raise HTTPException(422, str(e)) from None
        else:
            out = run(request, work, engine.complete, joints, known, n_hypotheses=req.n_hypotheses,
                      seed=req.seed,
                      sampler=req.sampler, steps=req.steps)
        return {"joints": limits.answer(out, "the completion")}

    @app.post("/denoise", response_model=PosesResponse)
    def denoise(req: DenoiseRequest, request: Request):
        take = _array(req.take, "take", 3)
        _limit(len(take), "take")
        limits.take(len(take), req.fps)
        per_frame = req.temporal is False or engine.motion is None
        frames = limits.frames_at_model_rate(len(take), req.fps)
        work = limits.work(frames, _steps(req.steps, "denoise" if per_frame else "denoise_motion"), "take frames")
        out = run(request, work, engine.denoise, take, fps=req.fps, strength=req.strength, sampler=req.sampler,
                  steps=req.steps,
                  temporal=req.temporal)
        return {"joints": limits.answer(out, "the denoised take")}

    @app.post("/inbetween", response_model=PosesResponse)
    def inbetween(req: InbetweenRequest, request: Request):
        take = _array(req.take, "take", 3)
        _limit(len(take), "take")
        limits.take(len(take), req.fps)
        work = limits.work(limits.frames_at_model_rate(len(take), req.fps), _steps(req.steps, "inbetween"),
                           "take frames")
        known = _known(req.known, take.shape[:2])
        out = run(request, work, engine.inbetween, take, known, fps=req.fps, seed=req.seed, sampler=req.sampler,
                  steps=req.steps, lock_feet=req.lock_feet)
        return {"joints": limits.answer(out, "the filled take")}

    @app.post("/generate", response_model=PosesResponse)
    def generate(req: GenerateRequest, request: Request):
        around = None if req.around is None else _array([req.around], "around", 3)[0]
        work = limits.work(req.n, _steps(req.steps, "generate"), "n")
        out = run(request, work, engine.generate, req.n, seed=req.seed, around=around, pinned=req.pinned,
                  diversity=req.diversity, sampler=req.sampler, steps=req.steps)
        return {"joints": limits.answer(out, "the generated poses")}

    @app.post("/lift", response_model=PosesResponse)
    def lift(req: LiftRequest, request: Request):
        kp = _array(req.keypoints2d, "keypoints2d", 2, bound=limits.MAX_PIXELS)
        _limit(len(kp) * req.n_hypotheses, "keypoints2d x n_hypotheses")
        work = limits.work(len(kp) * req.n_hypotheses, _steps(req.steps, "lift"), "keypoints2d x n_hypotheses")
        out = run(request, work, engine.lift, kp, n_hypotheses=req.n_hypotheses, seed=req.seed,
                  sampler=req.sampler,
                  steps=req.steps)
        return {"joints": limits.answer(out, "the lifted poses")}

    def rig_call(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RigMapError as e:
            raise HTTPException(422, str(e)) from None
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            raise HTTPException(422, f"bad armature description: {e}") from None

    @app.post("/bind")
    def bind(req: BindRequest):
        """Which bone points give each body24 joint on this armature (the add-on reads poses with it)."""
        from gfpose_core.rigs.solve import bind_for_rig
        rig = rig_call(resolve_rig, req.rig)
        out = rig_call(bind_for_rig, req.armature, rig)
        # Which bone turns with which body24 joint (the add-on keys only the bones of joints it completes).
        w = (rig or rig_call(rig_names.map_by_name, out["rig"])).write
        pre = out["prefix"]
        out["write"] = None if w is None else {"root": pre + w.root, "rest": [pre + b for b in w.rest],
                                               "bones": {pre + b: j for b, j in w.bones.items()}}
        return limits.finite_tree(out, "the binding")

    live = LivePosing(engine, lock, bindings, rig_call)

    @app.post("/pose_from_effectors", responses=SUPERSEDED)
    def pose_from_effectors(req: EffectorsRequest, request: Request):
        """Live posing: the body between the effectors (and pins) completed on the rig's bone lengths, known joints
        exact; answered as /pose_for_rig answers the completed joints, plus those joints (`joints`) and, per pose,
        the known joints out of reach of their chains (`out_of_reach`). Latest wins within a `session`."""
        joints = _array(req.joints, "joints", 3)
        _limit(len(joints), "joints")
        return live.answer(req, joints, _known(req.known, joints.shape[:2]), _current(req.current, len(joints)),
                           stopper_for(request))

    def _current(current, frames):
        if current is None:
            return None
        if not isinstance(current, dict) or "joints" not in current:
            raise HTTPException(422, "current must be {joints: (F, 24, 3), rotations: {bone: (F, 3, 3)}}")
        cur = _array(current["joints"], "current joints", 3)
        if len(cur) != frames:
            raise HTTPException(422, f"current joints have {len(cur)} frames, joints {frames}")
        return {"joints": cur, "rotations": current.get("rotations") or {}, "keep": current.get("keep") or []}

    @app.post("/pose_for_rig", responses=GONE)
    def pose_for_rig(req: PoseForRigRequest):
        """body24 poses -> bone rotations and root locations to key on the posted armature (or on the armature of
        an earlier answer's binding_id: 409 when the engine no longer holds it, so send the armature again)."""
        joints = _array(req.joints, "joints", 3)
        _limit(len(joints), "joints")
        if np.isnan(joints).any():
            raise HTTPException(422, "joints must all be known to pose a rig")
        if req.armature is None and req.binding_id is None:
            raise HTTPException(422, "send the armature, or the binding_id of an earlier answer")
        try:
            rig = rig_call(resolve_rig, req.rig)
            out = rig_call(bindings.pose_for_rig, joints, req.armature, rig, req.binding_id, req.root_scale,
                           _current(req.current, len(joints)))
            return limits.finite_tree(out, "the rig pose")
        except UnknownBinding:
            raise HTTPException(409, f"binding_id {req.binding_id} is not held by this engine: send the armature"
                                ) from None

    return app


def serve(engine, host: str = "127.0.0.1", port: int = 8765, token: str | None = None, log_level="info"):
    """Run until SIGTERM/SIGINT (uvicorn finishes in-flight requests, then exits)."""
    import uvicorn

    from gfpose_core.service.connections import guarded
    if not is_loopback(host) and not token:
        raise ValueError(f"binding {host} exposes the engine beyond this machine: give a token "
                         "(--token or GFPOSE_TOKEN) that every request must carry")
    raise_open_files()
    uvicorn.run(create_app(engine, token, host), host=host, port=port, log_level=log_level,
                http=guarded())


def raise_open_files(want: int = 65536) -> int:
    """The soft limit on open files up to the hard one: at the usual 1,024, a few hundred idle sockets starve the
    server of descriptors, and it then logs "Too many open files" in a loop instead of serving."""
    try:
        import resource
    except ImportError:     # Windows
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class ServerThread:
    """The server in a background thread of this process (benchmarks, notebooks): `with ServerThread(engine) as url`."""

    def __init__(self, engine, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 header_timeout_s: float | None = None, max_connections: int | None = None):
        import socket

        import uvicorn
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.url = f"http://{host}:{port}"
        from gfpose_core.service.connections import HEADER_TIMEOUT_S, MAX_CONNECTIONS, guarded
        protocol = guarded(header_timeout_s or HEADER_TIMEOUT_S, max_connections or MAX_CONNECTIONS)
        config = uvicorn.Config(create_app(engine, token, host), host=host, port=port, log_level="warning",
                                http=protocol)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        import time
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the engine server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
