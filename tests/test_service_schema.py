"""The OpenAPI schema states what the server does: shapes, errors and their body, the bearer scheme."""
from service_app import client


def test_schema_states_shapes_errors_and_the_bearer_scheme():
    schema = client().get("/openapi.json").json()
    for path in ("/complete", "/denoise", "/inbetween", "/generate", "/lift", "/bind", "/pose_for_rig"):
        responses = schema["paths"][path]["post"]["responses"]
        assert {"200", "400", "401", "403", "413", "415", "422"} <= set(responses), path
        assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/Problem")
    assert "409" in schema["paths"]["/pose_for_rig"]["post"]["responses"]
    joints = schema["components"]["schemas"]["CompleteRequest"]["properties"]["joints"]
    assert joints["items"]["minItems"] == joints["items"]["maxItems"] == 24
    assert joints["items"]["items"]["minItems"] == 3
    kp = schema["components"]["schemas"]["LiftRequest"]["properties"]["keypoints2d"]
    assert kp["items"]["items"]["maxItems"] == 2
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["bearer"][
            "description"]}
    assert {} in schema["security"]              # no token configured: the scheme is optional
    locked = client(token="0123456789abcdef-xyz").get("/openapi.json").json()
    assert locked["security"] == [{"bearer": []}]


def test_the_server_own_422s_have_the_documented_body():
    from gfpose_core.service.schema import Problem
    api = client()
    for body in ({"joints": [[[0, 0, 0]] * 23]}, {"joints": [[[0, 0, 0]] * 24], "bogus": 1}, {}):
        r = api.post("/complete", json=body)
        assert r.status_code == 422
        Problem.model_validate(r.json())
