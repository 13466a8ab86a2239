"""Creates the Swift test identity in a bootstrapped Keystone (run by xtask each start).

argv: keystone URL (…/v3), admin password, Swift proxy URL for the catalog.
Creates project `swifttest`, user `swiftuser` / `swiftpw` with role `member` on it, the
identity endpoints, and the object-store service with public/internal/admin endpoints in
RegionOne.
"""
import json
import sys
import urllib.request

ks, admin_pw, swift = sys.argv[1], sys.argv[2], sys.argv[3]


def call(method, path, body=None, token=None):
    req = urllib.request.Request(ks + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req) as r:
        data = r.read()
        return r.headers, (json.loads(data) if data else None)


h, _ = call("POST", "/auth/tokens", {"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": admin_pw}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
tok = h["X-Subject-Token"]
_, p = call("POST", "/projects", {"project": {"name": "swifttest", "domain_id": "default"}}, tok)
pid = p["project"]["id"]
_, u = call("POST", "/users", {"user": {"name": "swiftuser", "password": "swiftpw",
                                         "domain_id": "default", "default_project_id": pid}}, tok)
uid = u["user"]["id"]
_, roles = call("GET", "/roles?name=member", None, tok)
rid = roles["roles"][0]["id"]
call("PUT", f"/projects/{pid}/users/{uid}/roles/{rid}", None, tok)
# The identity endpoints (this run's port): auth_token looks itself up in the catalog.
_, svcs = call("GET", "/services?type=identity", None, tok)
if svcs["services"]:
    kid = svcs["services"][0]["id"]
else:
    _, k = call("POST", "/services", {"service": {"type": "identity", "name": "keystone"}}, tok)
    kid = k["service"]["id"]
for iface in ("public", "internal"):
    call("POST", "/endpoints", {"endpoint": {
        "service_id": kid, "interface": iface, "region_id": "RegionOne", "url": ks}}, tok)
_, s = call("POST", "/services", {"service": {"type": "object-store", "name": "swift"}}, tok)
sid = s["service"]["id"]
for iface in ("public", "internal", "admin"):
    call("POST", "/endpoints", {"endpoint": {
        "service_id": sid, "interface": iface, "region_id": "RegionOne",
        "url": swift + "/v1/AUTH_%(project_id)s"}}, tok)
print(pid)
