"""A tiny stand-in for the Hugging Face Hub API on 127.0.0.1, for tests of pushing and loading.

Only what `huggingface_hub` (create_repo, create_branch, create_commit, list_repo_files, model_info, hf_hub_download)
and `transformers`/`peft` `from_pretrained` call is implemented, with the status codes and headers the real client
reads (`X-Error-Code`, `X-Repo-Commit`, `ETag`, `Content-Length`). Commits are kept in memory: every commit is a full
snapshot, so an old commit sha stays resolvable after later pushes. Uploads are "regular" (base64 inside the ndjson
commit), never LFS or Xet.

Bounded: the server stops itself after `lifetime` seconds or `max_requests` requests, whichever comes first, and
`stop()` (or leaving the `with` block) stops it at once. `fail(...)` injects server errors for a test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "hf_test_token_for_the_loopback_hub"
USER = "tester"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    summary: str
    description: str
    parent: str | None


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if revision in self.commits:
            return self.commits[revision]
        matches = [c for sha, c in self.commits.items() if len(revision) >= 7 and sha.startswith(revision)]
        return matches[0] if len(matches) == 1 else None


class HubServer:
    """`with HubServer() as hub: ... hub.url ...`; `hub.repos` holds what was pushed, `hub.log` every request."""

    def __init__(self, token: str = TOKEN, lifetime: float = 600.0, max_requests: int = 5000):
        self.token = token
        self.lifetime = lifetime
        self.max_requests = max_requests
        self.repos: dict[str, Repo] = {}
        self.log: list[tuple[str, str, int]] = []
        self._faults: list[list] = []  # [method, path substring, status, remaining]
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._stopped = False

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._timer.cancel()
        if self._thread.is_alive():  # handlers run in their own threads, so this never waits on itself
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail(self, method: str, path_contains: str, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests whose method and path match with `status`."""
        with self._lock:
            self._faults.append([method.upper(), path_contains, status, times])

    def _take_fault(self, method: str, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault[0] == method and fault[1] in path and fault[3] > 0:
                    fault[3] -= 1
                    return fault[2]
        return None

    def new_commit(self, repo: Repo, branch: str, files: dict[str, bytes], summary: str, description: str) -> Commit:
        parent = repo.branches.get(branch)
        digest = hashlib.sha1()
        digest.update(f"{repo.repo_id}\0{parent}\0{summary}\0{time.time_ns()}\0{len(repo.commits)}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha1(files[path]).encode())
        commit = Commit(digest.hexdigest(), dict(files), summary, description, parent)
        repo.commits[commit.sha] = commit
        repo.branches[branch] = commit.sha
        return commit


def _make_handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        # ---------------------------------------------------------------- plumbing
        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, str(value))
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head and body:
                self.wfile.write(body)
            hub.log.append((self.command, self.path, status))

        def _json(self, status: int, payload, headers: dict | None = None, head: bool = False) -> None:
            body = json.dumps(payload).encode()
            self._send(status, body, {"Content-Type": "application/json", **(headers or {})}, head=head)

        def _error(self, status: int, message: str, code: str | None = None, head: bool = False) -> None:
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            self._json(status, {"error": message}, headers, head=head)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _authorized(self) -> bool:
            return self.headers.get("Authorization", "") == f"Bearer {hub.token}"

        def _readable(self, repo: Repo) -> bool:
            return not repo.private or self._authorized()

        def _dispatch(self, head: bool = False) -> None:
            if len(hub.log) >= hub.max_requests:
                hub.stop()
                self._error(503, "test hub request budget exhausted")
                return
            url = urlsplit(self.path)
            path, query = url.path, parse_qs(url.query)
            fault = hub._take_fault(self.command, path)
            body = self._body() if self.command in ("POST", "PUT") else b""
            if fault is not None:
                self._error(fault, f"injected server error {fault}")
                return
            try:
                self._route(path, query, body, head)
            except Exception as error:  # noqa: BLE001 - a test server answers 500, as the Hub would
                self._error(500, f"test hub bug: {type(error).__name__}: {error}")

        def do_GET(self) -> None:  # noqa: N802
            self._dispatch()

        def do_HEAD(self) -> None:  # noqa: N802
            self._dispatch(head=True)

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch()

        # ---------------------------------------------------------------- routes
        def _route(self, path: str, query: dict, body: bytes, head: bool) -> None:
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if path == "/api/whoami-v2":
                if not self._authorized():
                    return self._error(401, "Invalid credentials in Authorization header")
                return self._json(200, {"type": "user", "name": USER, "auth": {"accessToken": {"role": "write"}}})
            if path == "/api/repos/create" and self.command == "POST":
                return self._create_repo(json.loads(body or b"{}"))
            if path == "/api/validate-yaml" and self.command == "POST":
                return self._json(200, {"errors": [], "warnings": []})
            if len(parts) >= 4 and parts[0] == "api" and parts[1] == "models":
                repo_id = f"{parts[2]}/{parts[3]}"
                return self._api_models(repo_id, parts[4:], query, body, head)
            if len(parts) >= 5 and parts[2] == "resolve":
                repo_id = f"{parts[0]}/{parts[1]}"
                return self._resolve(repo_id, parts[3], "/".join(parts[4:]), head)
            return self._error(404, f"no route for {self.command} {path}")

        def _create_repo(self, payload: dict) -> None:
            if not self._authorized():
                return self._error(401, "Invalid username or password.")
            repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
            if payload.get("type", "model") not in (None, "model"):
                return self._error(400, "this test hub only holds model repos")
            with hub._lock:
                if repo_id in hub.repos:
                    return self._json(
                        409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"}
                    )
                repo = Repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
                hub.new_commit(
                    repo,
                    "main",
                    {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                    "initial commit",
                    "",
                )
                hub.repos[repo_id] = repo
            return self._json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})

        def _repo_or_error(self, repo_id: str, write: bool = False, head: bool = False) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if write and not self._authorized():
                self._error(401, "Invalid credentials in Authorization header", head=head)
                return None
            if repo is None or not self._readable(repo):
                self._error(
                    404 if repo is None else 401, f"Repository not found: {repo_id}", "RepoNotFound", head=head
                )
                return None
            return repo

        def _api_models(self, repo_id: str, rest: list[str], query: dict, body: bytes, head: bool) -> None:
            action = rest[0] if rest else "revision"
            write = self.command == "POST"
            repo = self._repo_or_error(repo_id, write=write, head=head)
            if repo is None:
                return None
            if action == "revision" and self.command in ("GET", "HEAD"):
                commit = repo.resolve(rest[1] if len(rest) > 1 else "main")
                if commit is None:
                    return self._error(404, "Invalid rev id", "RevisionNotFound", head=head)
                siblings = [{"rfilename": p, "size": len(b)} for p, b in sorted(commit.files.items())]
                return self._json(
                    200,
                    {
                        "id": repo_id,
                        "modelId": repo_id,
                        "sha": commit.sha,
                        "private": repo.private,
                        "siblings": siblings,
                        "tags": [],
                        "downloads": 0,
                        "likes": 0,
                    },
                    head=head,
                )
            if action == "refs":
                branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.branches.items()]
                return self._json(200, {"branches": branches, "tags": [], "converts": []})
            if action == "tree":
                commit = repo.resolve(rest[1] if len(rest) > 1 else "main")
                if commit is None:
                    return self._error(404, "Invalid rev id", "RevisionNotFound")
                prefix = "/".join(rest[2:])
                entries = [
                    {"type": "file", "oid": git_blob_sha1(b), "size": len(b), "path": p}
                    for p, b in sorted(commit.files.items())
                    if not prefix or p.startswith(prefix + "/")
                ]
                return self._json(200, entries)
            if action == "branch" and self.command == "POST":
                branch = "/".join(rest[1:])
                payload = json.loads(body or b"{}")
                with hub._lock:
                    if branch in repo.branches:
                        return self._error(409, f"Reference already exists: refs/heads/{branch}")
                    start = repo.resolve(payload.get("startingPoint") or "main")
                    if start is None:
                        return self._error(404, "Invalid rev id", "RevisionNotFound")
                    repo.branches[branch] = start.sha
                return self._json(200, {})
            if action == "preupload" and self.command == "POST":
                commit = repo.resolve("/".join(rest[1:]))
                files = []
                for entry in json.loads(body)["files"]:
                    old = commit.files.get(entry["path"]) if commit else None
                    files.append(
                        {
                            "path": entry["path"],
                            "uploadMode": "regular",
                            "shouldIgnore": False,
                            "oid": git_blob_sha1(old) if old is not None else None,
                        }
                    )
                return self._json(200, {"files": files, "commitOid": commit.sha if commit else None})
            if action == "commit" and self.command == "POST":
                return self._commit(repo, "/".join(rest[1:]), body)
            return self._error(404, f"no route for {self.command} {self.path}")

        def _commit(self, repo: Repo, branch: str, body: bytes) -> None:
            if branch not in repo.branches:
                return self._error(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next((item["value"] for item in lines if item["key"] == "header"), None)
            if header is None:
                return self._error(400, "commit payload has no header")
            with hub._lock:
                files = dict(repo.commits[repo.branches[branch]].files)
                parent = header.get("parentCommit")
                if parent and parent != repo.branches[branch]:
                    return self._error(412, "A commit has happened since. Please refresh and try again.")
                for item in lines:
                    key, value = item["key"], item["value"]
                    if key == "file":
                        if value.get("encoding") != "base64":
                            return self._error(400, f"unsupported encoding {value.get('encoding')}")
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif key == "deletedFile":
                        files.pop(value["path"], None)
                    elif key == "deletedFolder":
                        files = {p: b for p, b in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
                    elif key in ("lfsFile", "copyFile"):
                        return self._error(400, f"the test hub does not support {key}")
                commit = hub.new_commit(repo, branch, files, header.get("summary", ""), header.get("description", ""))
            return self._json(
                200,
                {
                    "commitUrl": f"{hub.url}/{repo.repo_id}/commit/{commit.sha}",
                    "commitOid": commit.sha,
                    "success": True,
                },
            )

        def _resolve(self, repo_id: str, revision: str, filename: str, head: bool) -> None:
            repo = self._repo_or_error(repo_id, head=head)
            if repo is None:
                return None
            commit = repo.resolve(revision)
            if commit is None:
                return self._error(404, "Invalid rev id", "RevisionNotFound", head=head)
            data = commit.files.get(filename)
            if data is None:
                return self._error(404, "Entry not found", "EntryNotFound", head=head)
            headers = {
                "Content-Type": "application/octet-stream",
                "ETag": f'"{git_blob_sha1(data)}"',
                "X-Repo-Commit": commit.sha,
                "Content-Length": len(data),
                "Accept-Ranges": "bytes",
            }
            return self._send(200, data, headers, head=head)

    return Handler
