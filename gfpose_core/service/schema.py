"""What the OpenAPI schema states beyond the request models: the real shapes, every error the server gives and
its body, and the bearer scheme, so that a client generated from /openapi.json works against the server."""
from __future__ import annotations

from typing import Annotated, Optional, Union

from pydantic import BaseModel, Field

Coord = Optional[float]


def _sized(item, n: int, what: str):
    # Documented, not validated by pydantic: the server's own check names the field and the shape it got.
    return Annotated[list[item], Field(json_schema_extra={"minItems": n, "maxItems": n, "description": what})]


Vec3 = _sized(Coord, 3, "x, y, z in metres; null = unknown")
Vec2 = _sized(Coord, 2, "x right, y down; null = unseen")
Pose3 = _sized(Vec3, 24, "the 24 body24 joints (GET /info joints)")
Pose2 = _sized(Vec2, 24, "the 24 body24 joints (GET /info joints)")
Poses3 = list[Pose3]
Poses2 = list[Pose2]
KnownRow = _sized(bool, 24, "one flag per body24 joint")

_Point = Annotated[list[float], Field(json_schema_extra={"minItems": 3, "maxItems": 3})]
_Body = Annotated[list[_Point], Field(json_schema_extra={"minItems": 24, "maxItems": 24})]


class PosesResponse(BaseModel):
    joints: Union[list[_Body], list[list[_Body]]] = Field(
        description="(N, 24, 3), or (N, H, 24, 3) for several hypotheses; metres, every number finite")


class FieldProblem(BaseModel):
    loc: list[Union[str, int]]
    msg: str
    type: str


class Problem(BaseModel):
    detail: Union[str, list[FieldProblem]] = Field(
        description="what is wrong: a sentence naming the field or limit, or (request validation) one entry per field")


def _error(text: str) -> dict:
    return {"model": Problem, "description": text}


ERRORS = {
    400: _error("the Host header is not a loopback name (an engine bound to loopback), or the request is malformed"),
    401: _error("the engine was started with a token and the request has no `Authorization: Bearer <token>` "
                "matching it"),
    403: _error("the request comes from a web page of another site (its Origin is not this machine)"),
    408: _error("the request body stopped arriving (a stalled or half-open client)"),
    413: _error("the body (32 MB) or the work (poses, frames at 30 fps, pose x sampler steps: GET /info limits) is "
                "over the server's limit"),
    415: _error("a POST body that is not application/json"),
    422: _error("a field is missing, mis-shaped, not finite or out of range, or the input cannot be answered with "
                "finite numbers; the message names which"),
}
GONE = {409: _error("the binding_id is not held by this engine (any more): send the armature again")}
SUPERSEDED = {409: _error("the binding_id is not held by this engine (any more): send the armature again; or "
                          "(detail starting with 'superseded') a newer request of the same session arrived, so this "
                          "one was stopped or refused: only the newest request of a session is answered")}


def document_security(app, token_required: bool):
    """Adds the bearer scheme to the generated schema (required when the engine was started with a token)."""
    make = app.openapi

    def openapi():
        if getattr(app, "_gfpose_schema", None) is None:
            schema = make()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer",
                "description": "the token the engine was started with (--token-file or GFPOSE_TOKEN)"}
            schema["security"] = [{"bearer": []}] if token_required else [{}, {"bearer": []}]
            app._gfpose_schema = schema
        return app._gfpose_schema
    app.openapi = openapi
