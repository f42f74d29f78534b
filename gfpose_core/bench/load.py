"""`gfpose bench` section "load": the server on loopback under a bounded load, as a shared workstation sees it.

Parallel one-pose /complete clients and parallel long /denoise clients for a fixed time, plus idle open
connections, while a probe asks /health ten times a second. Reported: /health latency (target: p95 under 100 ms),
the one-pose /complete latency under load next to its idle latency, what was served and refused, peak memory.
"""
from __future__ import annotations

import resource
import socket
import sys
import threading
import time

import numpy as np

FULL = {"seconds": 60.0, "completers": 20, "denoisers": 5, "denoise_frames": 5000, "idle_connections": 300}
QUICK = {"seconds": 15.0, "completers": 8, "denoisers": 2, "denoise_frames": 1000, "idle_connections": 100}
TINY = {"seconds": 3.0, "completers": 2, "denoisers": 1, "denoise_frames": 200, "idle_connections": 20}
HEALTH_P95_TARGET_S = 0.1


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)   # bytes on macOS, kB on Linux


def _quantiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    a = np.array(seconds) * 1000
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1), "max_ms": round(float(a.max()), 1)}


def _bodies(engine, frames: int) -> tuple[dict, dict]:
    pose = engine.generate(1, seed=7)[0]
    partial = pose.tolist()
    for j in (7, 8, 9, 10):
        partial[j] = [None, None, None]
    rng = np.random.default_rng(7)
    drift = np.linspace(0, 2.0, frames)[:, None, None] * np.array([0.0, -1.0, 0.0])
    take = (pose[None] + drift + rng.normal(0, 0.01, (frames, 24, 3))).round(4).tolist()
    return {"joints": [partial]}, {"take": take, "fps": 30}


def run_load(engine, sizes=None, plan: dict | None = None) -> dict:
    import httpx

    from gfpose_core.service.server import ServerThread
    plan = dict(plan or {"quick": QUICK, "tiny": TINY}.get(getattr(sizes, "name", "full"), FULL))
    complete_body, denoise_body = _bodies(engine, plan["denoise_frames"])
    out: dict = {"plan": plan}
    with ServerThread(engine) as url:
        host, port = url.rsplit("/", 1)[1].split(":")
        with httpx.Client(base_url=url, timeout=120) as c:
            c.post("/complete", json=complete_body).raise_for_status()     # warm up
            idle = []
            for _ in range(20):
                t = time.perf_counter()
                c.post("/complete", json=complete_body).raise_for_status()
                idle.append(time.perf_counter() - t)
        out["complete_idle"] = _quantiles(idle)
        sockets = []
        for _ in range(plan["idle_connections"]):   # open and silent, as half-open clients are
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"POST /complete HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sockets.append(s)
        stop = threading.Event()
        lat = {"health": [], "complete": [], "denoise": []}
        codes: dict = {}
        lock = threading.Lock()

        def record(kind, t0, status):
            with lock:
                if status == 200:
                    lat[kind].append(time.perf_counter() - t0)
                codes[f"{kind} {status}"] = codes.get(f"{kind} {status}", 0) + 1

        def client(kind, body, pause=0.0):
            with httpx.Client(base_url=url, timeout=300) as c:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        r = c.get("/health") if body is None else c.post(f"/{kind}", json=body)
                        record(kind, t0, r.status_code)
                    except httpx.HTTPError as e:
                        record(kind, t0, type(e).__name__)
                    if pause:
                        stop.wait(pause)

        threads = ([threading.Thread(target=client, args=("complete", complete_body))
                    for _ in range(plan["completers"])]
                   + [threading.Thread(target=client, args=("denoise", denoise_body))
                      for _ in range(plan["denoisers"])]
                   + [threading.Thread(target=client, args=("health", None, 0.1))])
        t_start = time.perf_counter()
        for t in threads:
            t.daemon = True
            t.start()
        stop.wait(plan["seconds"])
        stop.set()
        for t in threads:
            t.join(timeout=300)
        out["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        with httpx.Client(base_url=url, timeout=10) as c:
            t = time.perf_counter()
            out["health_after"] = c.get("/health").status_code
            out["health_after_ms"] = round((time.perf_counter() - t) * 1000, 1)
        for s in sockets:
            s.close()
    out["health"] = _quantiles(lat["health"])
    out["complete_under_load"] = _quantiles(lat["complete"])
    out["denoise"] = _quantiles(lat["denoise"])
    out["responses"] = dict(sorted(codes.items()))
    out["peak_rss_mb"] = round(_peak_rss_mb(), 0)
    out["health_p95_target_ms"] = HEALTH_P95_TARGET_S * 1000
    p95 = out["health"]["p95_ms"]
    out["health_p95_pass"] = p95 is not None and p95 < HEALTH_P95_TARGET_S * 1000
    return out


def report(load: dict | None, fmt, table) -> list[str]:
    L = ["## 7. Serving under load\n"]
    if not load:
        return L + ["Not run.\n"]
    p = load["plan"]
    L.append(f"The server on loopback for {p['seconds']:.0f} s: {p['completers']} parallel clients sending one-pose "
             f"/complete, {p['denoisers']} parallel clients sending {p['denoise_frames']}-frame /denoise, "
             f"{p['idle_connections']} idle half-open connections, and a /health probe ten times a second. "
             f"Target: /health p95 under {load['health_p95_target_ms']:.0f} ms "
             f"({'pass' if load['health_p95_pass'] else 'FAIL'}). Peak memory {load['peak_rss_mb']:.0f} MB "
             "(the whole benchmark process).\n")
    rows = [[name, load[key]["n"], fmt(load[key]["p50_ms"]), fmt(load[key]["p95_ms"]), fmt(load[key]["max_ms"])]
            for name, key in (("/health under load", "health"), ("/complete, idle", "complete_idle"),
                              ("/complete under load", "complete_under_load"), ("/denoise under load", "denoise"))]
    L.append(table(["request", "answered", "p50 ms", "p95 ms", "max ms"], rows) + "\n")
    L.append("Responses: " + ", ".join(f"{k}: {v}" for k, v in load["responses"].items()) + ".\n")
    return L


if __name__ == "__main__":        # python -m gfpose_core.bench.load [--quick]
    import json

    from gfpose_core.engine import Engine
    print(json.dumps(run_load(Engine.load(), plan=QUICK if "--quick" in sys.argv else FULL), indent=1))
