"""A minimal Hugging Face Hub on loopback, enough for huggingface_hub's REAL `HfApi.create_repo` and
`HfApi.upload_folder` on its LFS path (the one taken without hf_xet, or with HF_HUB_DISABLE_XET):

    POST /api/repos/create                               {name, organization, type, visibility} -> {url}; 409 if it exists
    POST /api/validate-yaml                              the README's front matter -> {} (parsed, 400 if not YAML)
    POST /api/datasets/{ns}/{name}/preupload/{rev}       {files: [{path, sample, size}]} -> uploadMode per file
                                                         (`lfs` for .parquet, `regular` otherwise) and the oid
                                                         the repo holds at that path (git blob sha1 or sha256)
    POST /datasets/{ns}/{name}.git/info/lfs/objects/batch  LFS batch: an upload + verify action for each object
                                                         not stored yet, none for one already stored (resume)
    PUT  /lfs/{oid}                                      the object's bytes (checked against the oid)
    POST /lfs/verify                                     {oid, size} -> 200 if stored with that size
    POST /api/datasets/{ns}/{name}/commit/{rev}          NDJSON: header, file (base64), lfsFile -> {commitOid, commitUrl}

Every request is recorded (method, path, Authorization header) BEFORE it is answered; a request without
`Authorization: Bearer <token>` is refused with 401. Faults: `fail` maps a request kind ("create",
"preupload", "batch", "put", "verify", "commit") to how many of the next such requests get a 500.

    with serve(HubHandler, **hub_attrs("hf_test", fail={"commit": 1})) as srv:
        HfApi(endpoint=srv.url, token="hf_test").upload_folder(...)
        srv.repos["me/ds"].files  # {path: bytes}, srv.repos["me/ds"].commits, srv.log
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import yaml


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    lfs_paths: set[str] = field(default_factory=set)
    commits: list[dict[str, Any]] = field(default_factory=list)  # {oid, summary, paths}


@dataclass
class HubRequest:
    method: str
    path: str
    authorization: str | None
    kind: str
    status: int = 0


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


_PREUPLOAD = re.compile(r"^/api/datasets/([^/]+/[^/]+)/preupload/([^/?]+)")
_COMMIT = re.compile(r"^/api/datasets/([^/]+/[^/]+)/commit/([^/?]+)")
_BATCH = re.compile(r"^/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch$")


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    # -- plumbing -------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, payload: Any = None, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
        self.server.log[-1].status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, kind: str) -> bool:
        """Log the request, then: False (already answered) for a missing token or an injected fault."""
        auth = self.headers.get("Authorization")
        with self.server.lock:
            self.server.log.append(HubRequest(self.command, self.path, auth, kind))
            fault = self.server.fail.get(kind, 0) > 0
            if fault:
                self.server.fail[kind] -= 1
        if kind != "put" and auth != f"Bearer {self.server.token}":
            self._send(401, {"error": "Invalid credentials in Authorization header"})
            return False
        if fault:
            self._send(500, {"error": f"injected fault ({kind})"})
            return False
        return True

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.server.repos.get(repo_id)
        if repo is None:
            self._send(404, {"error": "Repository not found"})
        return repo

    # -- endpoints ------------------------------------------------------------------------------------
    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._body()
        if path == "/api/repos/create":
            if not self._record("create"):
                return
            req = json.loads(body)
            repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            if repo_id in self.server.repos:
                self._send(409, {"error": "You already created this dataset repo", "url": self._url(repo_id)})
                return
            self.server.repos[repo_id] = Repo(
                private=req.get("visibility") == "private" or bool(req.get("private"))
            )
            self._send(200, {"url": self._url(repo_id), "name": repo_id})
        elif path == "/api/validate-yaml":
            if not self._record("validate"):
                return
            content = json.loads(body)["content"]
            try:
                yaml.safe_load(content.split("---\n")[1])
            except (yaml.YAMLError, IndexError) as e:
                self._send(400, {"errors": [{"message": str(e)}]})
                return
            self._send(200, {})
        elif m := _PREUPLOAD.match(path):
            if self._record("preupload") and (repo := self._repo(m.group(1))) is not None:
                self._preupload(repo, json.loads(body))
        elif m := _BATCH.match(path):
            if self._record("batch") and (repo := self._repo(m.group(1))) is not None:
                self._batch(json.loads(body))
        elif path == "/lfs/verify":
            if self._record("verify"):
                req = json.loads(body)
                stored = self.server.lfs.get(req["oid"])
                self._send(200 if stored is not None and len(stored) == req["size"] else 404, {})
        elif m := _COMMIT.match(path):
            if self._record("commit") and (repo := self._repo(m.group(1))) is not None:
                self._commit(m.group(1), repo, body)
        else:
            self._record("unknown")
            self._send(404, {"error": f"no such endpoint {path}"})

    def do_PUT(self) -> None:
        body = self._body()
        if not self.path.startswith("/lfs/") or not self._record("put"):
            if not self.path.startswith("/lfs/"):
                self._record("unknown")
                self._send(404, {})
            return
        oid = self.path.removeprefix("/lfs/")
        if hashlib.sha256(body).hexdigest() != oid:
            self._send(400, {"error": "sha256 does not match the oid"})
            return
        self.server.lfs[oid] = body
        self._send(200, raw=b"")

    def _url(self, repo_id: str) -> str:
        return f"{self.server.url}/datasets/{repo_id}"

    def _preupload(self, repo: Repo, req: dict[str, Any]) -> None:
        files = []
        for f in req["files"]:
            lfs = f["path"].endswith(".parquet")
            have = repo.files.get(f["path"])
            oid = None
            if have is not None:
                oid = hashlib.sha256(have).hexdigest() if f["path"] in repo.lfs_paths else git_blob_sha1(have)
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._send(200, {"files": files, "commitOid": repo.commits[-1]["oid"] if repo.commits else "0" * 40})

    def _batch(self, req: dict[str, Any]) -> None:
        objects = []
        for o in req["objects"]:
            entry: dict[str, Any] = {"oid": o["oid"], "size": o["size"]}
            if o["oid"] not in self.server.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.server.url}/lfs/{o['oid']}"},
                    "verify": {"href": f"{self.server.url}/lfs/verify"},
                }
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def _commit(self, repo_id: str, repo: Repo, body: bytes) -> None:
        items = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(i["value"] for i in items if i["key"] == "header")
        new: dict[str, bytes] = {}
        lfs: set[str] = set()
        for i in items:
            v = i["value"]
            if i["key"] == "file":
                new[v["path"]] = base64.b64decode(v["content"])
            elif i["key"] == "lfsFile":
                data = self.server.lfs.get(v["oid"])
                if data is None:
                    self._send(422, {"error": f"LFS object {v['oid']} of {v['path']} was never uploaded"})
                    return
                new[v["path"]] = data
                lfs.add(v["path"])
        repo.files.update(new)
        repo.lfs_paths |= lfs
        oid = hashlib.sha1(
            json.dumps(sorted(repo.files)).encode() + str(len(repo.commits)).encode()
        ).hexdigest()
        repo.commits.append({"oid": oid, "summary": header["summary"], "paths": sorted(new)})
        self._send(
            200, {"commitOid": oid, "commitUrl": f"{self._url(repo_id)}/commit/{oid}", "pullRequestUrl": None}
        )


def hub_attrs(token: str, *, fail: dict[str, int] | None = None) -> dict[str, object]:
    """Server attributes for `serve(HubHandler, **hub_attrs(...))`."""
    return {
        "token": token,
        "fail": dict(fail or {}),
        "repos": {},
        "lfs": {},
        "log": [],
        "lock": threading.Lock(),
    }
