"""The bench's load section on a tiny plan: every client served, nothing refused or failed, the server still up."""
from service_app import engine

from gfpose_core.bench.load import TINY, run_load


def test_a_tiny_load_run_serves_everyone_and_reports_what_the_bench_needs():
    out = run_load(engine(), plan=dict(TINY, seconds=1.0))
    assert out["health_after"] == 200
    assert out["responses"] and all(k.endswith(" 200") for k in out["responses"]), out["responses"]
    for key in ("health", "complete_idle", "complete_under_load"):
        assert out[key]["n"] > 0 and out[key]["p95_ms"] >= out[key]["p50_ms"] > 0
    assert out["peak_rss_mb"] > 0 and isinstance(out["health_p95_pass"], bool)
