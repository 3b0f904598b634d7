"""A local stand-in for the Hugging Face Hub API, enough for HfApi.create_repo + upload_folder with regular
(non-LFS) files: it records the repositories and writes committed files under ``root/<repo_id>/``."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml


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

            def _json(self, code: int, obj) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
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

            def do_GET(self):  # noqa: N802
                outer.requests.append(("GET", self.path))
                return self._json(404, {"error": f"stand-in: no route {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
