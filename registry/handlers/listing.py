"""Listing handlers: tags, the catalog and referrers."""

from __future__ import annotations

import json

from aiohttp import web

from registry import mediatypes as mt
from registry.appkeys import REPO_VISIBLE
from registry.handlers.common import next_link, paginate, pagination, registry_of
from registry.routes import Route
from registry.services import parse_digest


async def list_tags(request: web.Request, route: Route) -> web.StreamResponse:
    tags = await registry_of(request).tags(route.name)
    n, last = pagination(request)
    page, more = paginate(tags, n, last)
    resp = web.json_response({"name": route.name, "tags": page})
    if more and n and page:
        resp.headers["Link"] = next_link(f"/v2/{route.name}/tags/list", n, page[-1])
    return resp


async def catalog(request: web.Request, route: Route) -> web.StreamResponse:
    repos = await registry_of(request).repositories()
    visible = request.app.get(REPO_VISIBLE)
    if visible is not None:
        repos = [r for r in repos if await visible(request, r)]
    n, last = pagination(request)
    page, more = paginate(repos, n, last)
    resp = web.json_response({"repositories": page})
    if more and n and page:
        resp.headers["Link"] = next_link("/v2/_catalog", n, page[-1])
    return resp


async def referrers(request: web.Request, route: Route) -> web.StreamResponse:
    subject = parse_digest(route.reference)
    artifact_type = request.query.get("artifactType")
    manifests = await registry_of(request).referrers(route.name, subject, artifact_type)
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    resp = web.Response(body=json.dumps(body).encode(), content_type=mt.OCI_INDEX)
    if artifact_type is not None:
        resp.headers["OCI-Filters-Applied"] = "artifactType"
    return resp
