"""A local stand-in for the Hugging Face Hub API, enough for HfApi.create_repo + upload_folder with regular
(non-LFS) files (it records the repositories and writes committed files under ``root/<repo_id>/``) and for
snapshot_download of what it holds (repo info, tree, resolve)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

SHA = "a" * 40  # the one revision the stand-in serves


def _oid(path: Path) -> str:
    import hashlib

    return hashlib.sha1(path.read_bytes()).hexdigest()


class HubStandIn:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str]] = []
        self.repos: dict[str, dict] = {}
        self.validated: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _json(self, code: int, obj, error_code: str | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                if error_code:  # how the Hub tells huggingface_hub which error it is
                    self.send_header("X-Error-Code", error_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append(("POST", self.path))
                if self.path == "/api/repos/create":
                    req = json.loads(body)
                    repo = f"{req.get('organization') or 'user'}/{req['name']}" if "/" not in req["name"] \
                        else req["name"]
                    outer.repos[repo] = req
                    return self._json(200, {"url": f"{outer.url}/datasets/{repo}", "name": repo})
                if self.path == "/api/validate-yaml":  # the card's metadata: YAML front matter, a mapping
                    content = json.loads(body)["content"]
                    outer.validated.append(content)
                    try:
                        meta = yaml.safe_load(content.split("---\n")[1]) if content.startswith("---\n") else None
                    except yaml.YAMLError as e:
                        meta = str(e)
                    if not isinstance(meta, dict):
                        return self._json(400, {"errors": [{"message": f"bad metadata: {meta!r}"}]})
                    return self._json(200, {"errors": [], "warnings": []})
                parts = self.path.split("/")  # /api/datasets/{ns}/{name}/{preupload|commit}/{rev}
                if len(parts) >= 7 and parts[1:3] == ["api", "datasets"]:
                    repo, action = f"{parts[3]}/{parts[4]}", parts[5]
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                           "shouldIgnore": False} for f in files]})
                    if action == "commit":
                        lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
                        for line in lines:
                            if line.get("key") == "file":
                                v = line["value"]
                                dst = outer.root / repo / v["path"]
                                dst.parent.mkdir(parents=True, exist_ok=True)
                                dst.write_bytes(base64.b64decode(v["content"]))
                        return self._json(200, {"commitUrl": f"{outer.url}/datasets/{repo}/commit/{'1' * 40}",
                                                "commitOid": "1" * 40, "pullRequestUrl": None})
                return self._json(404, {"error": f"stand-in: no route {self.path}"})

            def _files(self, repo: str) -> list[Path]:
                base = outer.root / repo
                return sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []

            def _serve(self, head: bool) -> None:
                path = self.path.split("?")[0]
                parts = path.split("/")
                if path.startswith("/api/datasets/") and len(parts) >= 7:
                    repo, action = f"{parts[3]}/{parts[4]}", parts[5]
                    files = self._files(repo)
                    if not files:
                        return self._json(404, {"error": "Repository not found"}, "RepoNotFound")
                    base = outer.root / repo
                    if action == "revision":
                        return self._json(200, {"id": repo, "sha": SHA, "private": False, "siblings": [
                            {"rfilename": str(f.relative_to(base))} for f in files]})
                    if action == "tree":
                        return self._json(200, [{"type": "file", "path": str(f.relative_to(base)),
                                                 "size": f.stat().st_size, "oid": _oid(f)} for f in files])
                if path.startswith("/datasets/") and "/resolve/" in path:
                    repo = "/".join(parts[2:4])
                    rel = "/".join(parts[6:])
                    f = outer.root / repo / rel
                    if not f.is_file():
                        return self._json(404, {"error": "Entry not found"})
                    data = f.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("ETag", f'"{_oid(f)}"')
                    self.send_header("X-Repo-Commit", SHA)
                    self.end_headers()
                    if not head:
                        self.wfile.write(data)
                    return None
                return self._json(404, {"error": f"stand-in: no route {self.path}"})

            def do_HEAD(self):  # noqa: N802
                outer.requests.append(("HEAD", self.path))
                return self._serve(head=True)

            def do_GET(self):  # noqa: N802
                outer.requests.append(("GET", self.path))
                return self._serve(head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
