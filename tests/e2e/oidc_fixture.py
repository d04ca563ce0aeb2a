"""A real OpenID Connect provider on loopback (oidc-provider-mock) and an app server that signs in through it.

The app server is `streamlit run streamlit_app.py` from the repository, as in conftest.py, with
`--secrets.files` pointing at a secrets file written in a temporary folder: no secrets file is ever written into
the repository. The provider runs on a thread of the test process and logs in whichever subject (here an e-mail
address) is typed into its authorization form, with `email` set to that subject and no `email_verified`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import AppServer, _artifacts, _free_port, _write_small_dataset, streamlit_server

ALLOWED_USERS = "ann@team.example, @crew.example"  # one address and one whole domain
CLIENT_ID = "cleaner-e2e"


@dataclass(frozen=True)
class Provider:
    url: str

    def set_user(self, sub: str, claims: dict[str, object]) -> None:
        """Give a subject the claims its next sign-in returns (the mock's own user API)."""
        request = urllib.request.Request(
            f"{self.url}/users/{sub}",
            data=json.dumps(claims).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status < 300, resp.status


@pytest.fixture(scope="session")
def oidc_provider():
    mock = pytest.importorskip(
        "oidc_provider_mock", reason="oidc-provider-mock is not installed (pip install -r requirements-dev.txt)"
    )
    with mock.run_server_in_thread() as server:  # binds loopback only
        host, port = server.server_address[:2]
        # The provider names itself (its issuer) after the host it is called by: always call it by this one.
        yield Provider(f"http://{host}:{port}")


@dataclass(frozen=True)
class SignInServer(AppServer):
    provider: Provider = Provider("")


def _secrets_toml(app_url: str, provider: Provider) -> str:
    return (
        "[auth]\n"
        f'redirect_uri = "{app_url}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{secrets.token_hex(16)}"\n'
        f'server_metadata_url = "{provider.url}/.well-known/openid-configuration"\n'
    )


@pytest.fixture(scope="module")
def signin_server(oidc_provider):
    from .helpers import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (Debian package 'chromium'): browser tests need it")
    pytest.importorskip("authlib", reason="Streamlit's sign-in needs Authlib: pip install 'streamlit[auth]'")
    work = Path(tempfile.mkdtemp(prefix="cleaner-signin-"))
    cache_dir, allowed, secrets_dir = work / "cache", work / "allowed", work / "secrets"
    for folder in (cache_dir, allowed, secrets_dir):
        folder.mkdir()
    small = _write_small_dataset(allowed, n_per_class=10)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    secrets_file = secrets_dir / "secrets.toml"
    secrets_file.write_text(_secrets_toml(url, oidc_provider), encoding="utf-8")
    secrets_file.chmod(0o600)
    artifacts = _artifacts()
    artifacts.mkdir(parents=True, exist_ok=True)
    log_path = artifacts / "signin_server.log"
    env = {
        "CLEANER_CACHE_DIR": str(cache_dir),
        "CLEANER_ALLOWED_ROOTS": str(allowed),
        "CLEANER_ALLOWED_USERS": ALLOWED_USERS,
    }
    try:
        with streamlit_server(port, env, log_path, "--secrets.files", str(secrets_file)):
            yield SignInServer(
                url=url, cache_dir=cache_dir, allowed_root=allowed, small=small, log=log_path, provider=oidc_provider
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(signin_server, chromium_browser):
    """Overrides conftest's browser (which would start the open app server too) for the sign-in tests."""
    return chromium_browser
