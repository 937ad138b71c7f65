"""The ui's safety rules: traversal through run ids and file names, symlinks out of the runs folder, CSRF on every
POST, API keys and the refusal to bind a non-loopback interface without one."""

from __future__ import annotations

import os
import re

import pytest
from fastapi import APIRouter, Form
from fastapi.testclient import TestClient
from test_cli import invoke
from ui_runs import build_run

from tunewise.ui.app import create_app
from tunewise.ui.security import BindError, check_bind, is_loopback, resolve_run, resolve_run_file

KEY = "ui-test-key-0123456789"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A runs folder with one run, plus secrets outside it that symlinks inside point at."""
    base = tmp_path_factory.mktemp("ui-security")
    root = base / "runs"
    run = build_run(root, test_examples=24)
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret", encoding="utf-8")
    (outside / "manifest.json").write_text('{"id": "x", "created_at": "x", "command": "x", "status": "completed"}')
    (root / "escape").symlink_to(outside, target_is_directory=True)  # a "run" that is really elsewhere
    (run.path / "leak.txt").symlink_to(outside / "secret.txt")
    (run.path / "up").symlink_to(outside, target_is_directory=True)
    (run.path / ".hidden").write_text("hidden", encoding="utf-8")
    return {"root": root, "run": run, "outside": outside}


@pytest.fixture(scope="module")
def client(world: dict) -> TestClient:
    return TestClient(create_app(world["root"]))


# A literal ".." is collapsed by the client before sending; "%2e%2e" reaches the server as the id "..".
@pytest.mark.parametrize("run_id", ["%2e%2e", "..%2F..%2Fetc", "%2Fetc", "escape", ".hidden", "a b",
                                    "%00", "~root"])
def test_traversal_through_run_ids_is_refused(client, run_id):
    for suffix in ("", "/predictions", "/compare", "/files/manifest.json"):
        response = client.get(f"/runs/{run_id}{suffix}")
        assert response.status_code == 404, (run_id, suffix)
        assert "top secret" not in response.text


@pytest.mark.parametrize("name", ["../manifest.json", "..%2Fmanifest.json", "%2E%2E/%2E%2E/outside/secret.txt",
                                  "/etc/passwd", "%2Fetc%2Fpasswd", "leak.txt", "up/secret.txt", ".hidden",
                                  "splits/../../x", "splits%5C..%5Cmanifest.json", "nonexistent.json", "splits"])
def test_traversal_through_file_names_is_refused(client, world, name):
    response = client.get(f"/runs/{world['run'].id}/files/{name}")
    assert response.status_code == 404, name
    assert "top secret" not in response.text and "root:" not in response.text


def test_the_resolvers_refuse_what_the_routes_refuse(world):
    root, run = world["root"], world["run"]
    assert resolve_run(root, run.id) == run.path.resolve()
    assert resolve_run_file(run.path, "splits/test.jsonl").name == "test.jsonl"
    for bad in ("..", "escape", "../runs", "/tmp"):
        with pytest.raises(Exception, match="No run"):
            resolve_run(root, bad)
    for bad in ("../x", "leak.txt", "up/secret.txt", "/etc/passwd", "a\\..\\b", ""):
        with pytest.raises(Exception, match="No file"):
            resolve_run_file(run.path, bad)


def test_the_file_list_does_not_follow_symlinks_or_show_hidden_files(client, world):
    page = client.get(f"/runs/{world['run'].id}").text
    files = re.findall(r'href="/runs/[^/]+/files/([^"]+)"', page)
    assert "results.json" in files and not {"leak.txt", "up/secret.txt", ".hidden"} & set(files)


def _post_form_app(root):
    """The app plus one POST route, as the review pages add them, to show the app-wide CSRF check covers it."""
    app = create_app(root)
    router = APIRouter()

    @router.post("/echo")
    def echo(text: str = Form("")) -> dict:
        return {"text": text}

    app.include_router(router)
    return app


def test_a_post_without_the_csrf_token_is_refused(world):
    client = TestClient(_post_form_app(world["root"]))
    assert client.post("/echo", data={"text": "hi"}).status_code == 403  # no cookie, no token
    page = client.get("/")  # sets the CSRF cookie
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    assert page.status_code == 200
    assert client.post("/echo", data={"text": "hi"}).status_code == 403  # cookie but no token
    assert client.post("/echo", data={"text": "hi", "csrf_token": "0" * 64}).status_code == 403
    assert client.post("/echo", data={"text": "hi", "csrf_token": token}).json() == {"text": "hi"}
    assert client.post("/echo", headers={"X-CSRF-Token": token}, json={}).status_code == 200
    other = TestClient(_post_form_app(world["root"]))  # another app's secret: the token is worthless there
    other.get("/")
    assert other.post("/echo", data={"text": "hi", "csrf_token": token}).status_code == 403


def test_with_keys_every_page_needs_a_login_or_a_bearer_key(world):
    client = TestClient(create_app(world["root"], [KEY]), follow_redirects=False)
    assert client.get("/").status_code == 303 and client.get("/").headers["location"].startswith("/login")
    assert client.get(f"/runs/{world['run'].id}/files/results.json").status_code == 303
    assert client.get("/", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert client.get("/", headers={"Authorization": "Bearer wrong-key-123"}).status_code == 303
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/login", data={"key": "wrong-key-123", "csrf_token": token}).status_code == 401
    assert client.post("/login", data={"key": KEY}).status_code == 403  # the login form is CSRF-checked too
    done = client.post("/login", data={"key": KEY, "csrf_token": token, "next": "https://evil.example/"})
    assert done.status_code == 303 and done.headers["location"] == "/"  # never redirected off-site
    assert client.get("/").status_code == 200  # the session cookie now admits the browser


def test_non_loopback_hosts_need_a_key():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com", ""))
    check_bind("127.0.0.1", [])
    check_bind("0.0.0.0", [KEY])
    with pytest.raises(BindError, match="--host 0.0.0.0 is not a loopback address"):
        check_bind("0.0.0.0", [])


def test_the_cli_refuses_a_non_loopback_bind_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNEWISE_API_KEYS", raising=False)
    code, _, err = invoke("ui", "--runs-dir", tmp_path, "--host", "0.0.0.0")
    assert code == 2 and "not a loopback address" in err and "API key" in err
    short = tmp_path / "keys.txt"
    short.write_text("short\n", encoding="utf-8")
    code, _, err = invoke("ui", "--runs-dir", tmp_path, "--host", "0.0.0.0", "--api-key-file", short)
    assert code == 2 and "shorter than 8 characters" in err


def test_pages_carry_security_headers(world):
    headers = TestClient(create_app(world["root"])).get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert "httponly" in headers["set-cookie"].lower() and "samesite=strict" in headers["set-cookie"].lower()


def test_nothing_in_a_run_folder_is_executed(world, tmp_path):
    """A run folder holding Python and a malicious results.json: pages read them as data and run nothing."""
    marker = tmp_path / "executed"
    run = world["run"]
    (run.path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n", encoding="utf-8")
    client = TestClient(create_app(world["root"]))
    for url in (f"/runs/{run.id}", f"/runs/{run.id}/predictions", f"/runs/{run.id}/files/evil.py"):
        assert client.get(url).status_code == 200
    assert client.get(f"/runs/{run.id}/files/evil.py").headers["content-disposition"].startswith("attachment")
    assert not marker.exists()
    os.remove(run.path / "evil.py")


def test_every_unsafe_route_of_the_app_refuses_a_request_without_the_csrf_token(world):
    """Whatever pages are registered (the review pages add POST routes), none accepts a POST without the token."""
    import importlib

    from fastapi.routing import APIRoute

    from tunewise.ui.app import ROUTER_MODULES

    client = TestClient(create_app(world["root"]))
    client.get("/")  # a CSRF cookie, as a browser would have
    routes = [route for name in ROUTER_MODULES for route in importlib.import_module(name).router.routes]
    unsafe = [(method, route.path) for route in routes if isinstance(route, APIRoute)
              for method in sorted(route.methods & {"POST", "PUT", "PATCH", "DELETE"})]
    assert ("POST", "/login") in unsafe
    for method, path in unsafe:
        url = re.sub(r"\{run_id\}", world["run"].id, path)
        url = re.sub(r"\{[^}]+\}", "x", url)
        response = client.request(method, url, data={"key": KEY})
        assert response.status_code == 403, (method, path, response.status_code)
