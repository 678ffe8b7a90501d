"""Where input images may come from: which addresses count as public, how a URL the server
downloads is resolved and checked (every address, before any request), what is refused
outright (file:, ftp:…), and the input roots that confine local paths. Resolution is
injected; nothing here touches the network."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import anyio
import httpx2
import pytest
from PIL import Image

from imagegate.addresses import is_public_address
from imagegate.errors import ConfigError, InvalidRequest, UpstreamError
from imagegate.inputs import InputPolicy, load_inputs
from imagegate.service import Service, build_service
from imagegate.settings import load_settings

pytestmark = pytest.mark.anyio

CONFIG = """
[providers.urlish]
base_url = "http://127.0.0.1:9/v1"
key_env = "URLISH_API_KEY"

[[providers.urlish.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
inputs = { forms = ["url", "file"] }
"""
DNS = {
    "img.example.test": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "split.example.test": ["93.184.216.34", "10.0.0.7"],
    "inside.example.test": ["192.168.1.20"],
    "metadata.example.test": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
}


def png(size: tuple[int, int] = (32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "teal").save(out, "PNG")
    return out.getvalue()


class Resolver:
    """A fake DNS: names from DNS, numeric hosts (127.1, 2130706433, ::1) as the system reads them."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host in DNS:
            return DNS[host]
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        return [str(info[4][0]) for info in infos]


class Fetcher:
    """The service's download, replaced: a PNG for any URL, and a record of what was asked."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.addresses: list[str | None] = []

    async def __call__(self, url: str, limit: int, address: str | None) -> bytes:
        self.urls.append(url)
        self.addresses.append(address)
        return png()


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Service:
    folder = tmp_path_factory.mktemp("urls")
    (folder / "config.toml").write_text(CONFIG)
    env = {
        "OPENAI_API_KEY": "test-x",
        "URLISH_API_KEY": "test-x",
        "IMAGEGATE_CONFIG": str(folder / "config.toml"),
        "IMAGEGATE_OUTPUT_DIR": str(folder / "out"),
    }
    return build_service(env)


def edit(service: Service, *images: str, provider: str = "openai"):
    return service.validate(
        "edit_image", {"model": "gpt-image-1", "prompt": "x", "provider": provider, "images": list(images)}
    )


# --- which addresses are public ---------------------------------------------------------------------

# fmt: off
ADDRESSES = [
    ("127.0.0.1", False), ("127.255.0.9", False), ("10.1.2.3", False), ("172.16.0.1", False),
    ("172.31.255.255", False), ("192.168.0.10", False), ("169.254.169.254", False), ("0.0.0.0", False),
    ("100.64.0.1", False), ("224.0.0.251", False), ("255.255.255.255", False), ("240.0.0.1", False),
    ("::1", False), ("::", False), ("fc00::1", False), ("fd12:3456::1", False), ("fe80::1", False),
    ("fe80::1%eth0", False), ("ff02::1", False), ("::ffff:127.0.0.1", False),
    ("::ffff:169.254.169.254", False), ("::7f00:1", False), ("2002:7f00:1::", False),
    ("2002:a9fe:a9fe::1", False), ("64:ff9b::a9fe:a9fe", False),
    ("not-an-address", False), ("", False),
    ("8.8.8.8", True), ("93.184.216.34", True), ("172.32.0.1", True), ("2606:4700:4700::1111", True),
    ("::ffff:8.8.8.8", True), ("64:ff9b::808:808", True),
]
# fmt: on


@pytest.mark.parametrize(("address", "public"), ADDRESSES)
def test_only_global_unicast_addresses_count_as_public(address, public):
    assert is_public_address(address) is public


# --- URLs the server downloads ----------------------------------------------------------------------

# fmt: off
REFUSED_URLS = [
    # reference, fragment of the message
    ("http://127.0.0.1/cat.png", "points at 127.0.0.1"),
    ("http://localhost:8080/cat.png", "points at 127.0.0.1"),
    ("http://169.254.169.254/latest/meta-data/", "points at 169.254.169.254"),
    ("http://metadata.example.test/computeMetadata/v1/", "points at 169.254.169.254"),
    ("https://inside.example.test/cat.png", "points at 192.168.1.20"),
    ("https://split.example.test/cat.png", "points at 10.0.0.7"),       # one private address of several
    ("http://[::1]:8000/cat.png", "points at ::1"),
    ("http://[::ffff:127.0.0.1]/cat.png", "points at ::ffff:127.0.0.1"),
    ("http://[fd00::5]/cat.png", "points at fd00::5"),
    ("http://2130706433/cat.png", "points at 127.0.0.1"),               # 127.0.0.1 spelled as a number
    ("http://0x7f.1/cat.png", "points at 127.0.0.1"),
    ("http://img.example.test@127.0.0.1/cat.png", "points at 127.0.0.1"),  # the host is after the @
    ("http://img.example.test\\@127.0.0.1/cat.png", "points at 127.0.0.1"),
    ("https://nowhere.example.test/cat.png", "does not resolve"),
    ("http:///cat.png", "names no host"),
    ("http://[::1/cat.png", "is not a valid URL"),
    ("http://img.example.test:99999/cat.png", "is not a valid URL"),
]
# fmt: on


@pytest.mark.parametrize(("ref", "fragment"), REFUSED_URLS)
async def test_a_url_that_is_not_on_a_public_host_is_refused_before_any_request(service, ref, fragment):
    fetch = Fetcher()
    with pytest.raises(InvalidRequest) as caught:
        await load_inputs(edit(service, ref), fetch, InputPolicy(resolve=Resolver()))
    assert caught.value.argument == "images[0]" and fragment in caught.value.message
    assert fetch.urls == []


async def test_the_refusal_says_how_to_allow_private_addresses(service):
    with pytest.raises(InvalidRequest) as caught:
        await load_inputs(
            edit(service, "http://127.0.0.1:5000/a.png"), Fetcher(), InputPolicy(resolve=Resolver())
        )
    text = caught.value.agent_text()
    assert text.startswith('images[0] "http://127.0.0.1:5000/a.png"')
    assert "IMAGEGATE_ALLOW_PRIVATE_URLS=true" in text and "allow_private_urls = true" in text


async def test_every_address_of_a_public_host_is_checked_and_the_host_is_resolved_once(service):
    resolver, fetch = Resolver(), Fetcher()
    images, _ = await load_inputs(
        edit(service, "https://img.example.test/cat.png"), fetch, InputPolicy(resolve=resolver)
    )
    assert images[0].data is not None and images[0].mime == "image/png"
    assert resolver.asked == [("img.example.test", 443)]
    assert fetch.urls == ["https://img.example.test/cat.png"]
    assert fetch.addresses == ["93.184.216.34"]  # connect to what was checked, not to a fresh lookup


@pytest.mark.parametrize(
    ("ref", "fetched"),
    [
        (
            "https://user:secret@img.example.test:8443/a.png?sig=1#part",
            "https://img.example.test:8443/a.png?sig=1",
        ),
        ("HTTP://IMG.Example.TEST/A.png", "http://img.example.test/A.png"),
        ("http://[2606:4700:4700::1111]/a.png", "http://[2606:4700:4700::1111]/a.png"),
    ],
)
async def test_the_download_goes_to_exactly_the_host_that_was_checked(service, ref, fetched):
    fetch = Fetcher()
    await load_inputs(edit(service, ref), fetch, InputPolicy(resolve=Resolver()))
    assert fetch.urls == [fetched]


async def test_private_addresses_are_downloaded_when_allowed_without_resolving(service):
    resolver, fetch = Resolver(), Fetcher()
    policy = InputPolicy(allow_private_urls=True, resolve=resolver)
    images, _ = await load_inputs(edit(service, "http://127.0.0.1:5000/a.png"), fetch, policy)
    assert (
        images[0].data is not None and fetch.urls == ["http://127.0.0.1:5000/a.png"] and resolver.asked == []
    )
    assert fetch.addresses == [None]


async def test_a_url_passed_to_an_upstream_that_fetches_it_itself_is_not_resolved(service):
    resolver, fetch = Resolver(), Fetcher()
    images, _ = await load_inputs(
        edit(service, "http://127.0.0.1/a.png", provider="urlish"), fetch, InputPolicy(resolve=resolver)
    )
    assert images[0].url == "http://127.0.0.1/a.png" and resolver.asked == [] and fetch.urls == []


async def test_the_default_resolver_asks_the_system(service):
    with pytest.raises(InvalidRequest, match="points at 127.0.0.1"):
        await load_inputs(edit(service, "http://localhost:9/a.png"), Fetcher(), InputPolicy())


async def test_a_redirect_from_a_public_host_to_a_private_one_is_not_followed(tmp_path):
    contacted: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        contacted.append(request.url.host)
        if request.url.host == "93.184.216.34":
            return httpx2.Response(302, headers={"location": "http://169.254.169.254/latest/meta.png"})
        if request.url.host == "169.254.169.254":
            return httpx2.Response(200, content=png(), headers={"content-type": "image/png"})
        return httpx2.Response(500)

    env = {
        "OPENAI_API_KEY": "test-x",
        "IMAGEGATE_OUTPUT_DIR": str(tmp_path / "out"),
        "IMAGEGATE_MAX_RETRIES": "0",
    }
    service = build_service(env, transport=httpx2.MockTransport(handler))
    args = {"model": "gpt-image-1", "prompt": "x", "images": ["http://93.184.216.34/cat.png"]}

    async def quiet(_: str) -> None:
        pass

    try:
        with pytest.raises(InvalidRequest):
            await service.run_image_tool("edit_image", args, quiet)
    finally:
        await service.aclose()
    assert "169.254.169.254" not in contacted


# --- schemes that are not URLs we take --------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "file:///etc/passwd",
        "FILE:/etc/hostname",
        "file://localhost/etc/passwd",
        "ftp://example.com/a.png",
        "gopher://127.0.0.1:70/_x",
        "jar:file:///a.png!/b",
        "smb://server/share/a.png",
    ],
)
async def test_other_schemes_are_refused_by_name_and_nothing_is_opened(service, ref):
    with pytest.raises(InvalidRequest) as caught:
        await load_inputs(edit(service, ref), Fetcher(), InputPolicy(resolve=Resolver()))
    scheme = ref.split(":")[0]
    assert caught.value.argument == "images[0]"
    assert f"uses the {scheme}: scheme, which is not accepted" in caught.value.message


async def test_plain_paths_still_work_including_a_colon_in_the_name(service, tmp_path, monkeypatch):
    (tmp_path / "shot:1.png").write_bytes(png())
    (tmp_path / "plain.png").write_bytes(png())
    monkeypatch.chdir(tmp_path)  # relative paths are the server's working directory's
    monkeypatch.setenv("HOME", str(tmp_path))
    refs = [str(tmp_path / "shot:1.png"), "./shot:1.png", "plain.png", "~/plain.png"]
    images, _ = await load_inputs(edit(service, *refs), Fetcher(), InputPolicy(resolve=Resolver()))
    assert [i.mime for i in images] == ["image/png"] * 4

    with pytest.raises(InvalidRequest, match="a file name with a colon can be given as ./name"):
        await load_inputs(edit(service, "shot:1.png"), Fetcher(), InputPolicy(resolve=Resolver()))


# --- local files: roots, special files ---------------------------------------------------------------


@pytest.fixture
def tree(tmp_path) -> dict[str, Path]:
    """root/ with an image, a symlink out of it and a symlinked folder out of it; outside/ and
    root-evil/ (whose name starts like the root's) beside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for folder in (root, outside, tmp_path / "root-evil"):
        folder.mkdir()
    (root / "in.png").write_bytes(png())
    (outside / "out.png").write_bytes(png())
    (tmp_path / "root-evil" / "x.png").write_bytes(png())
    (root / "link.png").symlink_to(outside / "out.png")
    (root / "door").symlink_to(outside)
    (root / "inner-link.png").symlink_to(root / "in.png")
    return {"root": root.resolve(), "outside": outside}


async def test_a_path_inside_a_root_is_read(service, tree):
    policy = InputPolicy(roots=(tree["root"],))
    refs = [
        str(tree["root"] / "in.png"),
        str(tree["root"] / "inner-link.png"),
        str(tree["outside"] / ".." / "root" / "in.png"),
    ]
    images, _ = await load_inputs(edit(service, *refs), Fetcher(), policy)
    assert len(images) == 3


@pytest.mark.parametrize(
    "where",
    [
        "outside/out.png",
        "root/link.png",
        "root/door/out.png",
        "root/../outside/out.png",
        "outside/missing.png",
        "root-evil/x.png",
    ],
)
async def test_a_path_that_resolves_outside_every_root_is_refused_before_it_is_opened(service, tree, where):
    ref = str(tree["root"].parent / where)
    policy = InputPolicy(roots=(tree["root"],))
    with pytest.raises(InvalidRequest) as caught:
        await load_inputs(edit(service, ref), Fetcher(), policy)
    assert "is outside the folders input images may come from" in caught.value.message
    assert "IMAGEGATE_INPUT_ROOTS" in caught.value.message and str(tree["root"]) in caught.value.message


async def test_without_roots_any_readable_path_is_taken(service, tree):
    images, _ = await load_inputs(edit(service, str(tree["root"] / "link.png")), Fetcher(), InputPolicy())
    assert images[0].mime == "image/png"


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: os.mkfifo(p), "is not a file"),  # opening it must not wait for a writer
        (lambda p: p.symlink_to("/dev/zero"), "is not a file"),
        (lambda p: p.symlink_to(p), "is not a usable path"),  # a symlink loop
        (lambda p: p.symlink_to("/proc/self/environ"), "is not a usable image"),  # "0 bytes", then content
    ],
    ids=["fifo", "device", "symlink-loop", "proc-file"],
)
async def test_special_files_are_refused_without_hanging_or_echoing_them(service, tmp_path, make, fragment):
    special = tmp_path / "special.png"
    make(special)
    with anyio.fail_after(5), pytest.raises(InvalidRequest) as caught:
        await load_inputs(edit(service, str(special)), Fetcher(), InputPolicy())
    assert fragment in caught.value.message
    assert "PATH=" not in caught.value.agent_text()


async def test_a_nul_byte_or_an_unknown_home_is_a_clear_refusal(service):
    for ref in ("/tmp/a\0b.png", "~no-such-user-here/a.png"):
        with pytest.raises(InvalidRequest) as caught:
            await load_inputs(edit(service, ref), Fetcher(), InputPolicy())
        assert caught.value.argument == "images[0]"


async def test_a_failed_download_still_names_the_input(service):
    async def broken(url: str, limit: int, address: str | None) -> bytes:
        raise UpstreamError("img.example.test answered HTTP 404 for the image (expired?)")

    with pytest.raises(InvalidRequest, match="could not be downloaded: img.example.test answered HTTP 404"):
        await load_inputs(
            edit(service, "https://img.example.test/gone.png"), broken, InputPolicy(resolve=Resolver())
        )


# --- settings ---------------------------------------------------------------------------------------


def settings_env(tmp_path: Path, config: str = "", **env: str) -> dict[str, str]:
    (tmp_path / "config.toml").write_text(config)
    return {
        "IMAGEGATE_CONFIG": str(tmp_path / "config.toml"),
        "IMAGEGATE_OUTPUT_DIR": str(tmp_path / "out"),
        **env,
    }


def test_inputs_are_unrestricted_locally_and_public_only_remotely_by_default(tmp_path):
    settings = load_settings(settings_env(tmp_path))
    assert settings.input_roots == () and settings.allow_private_urls is False


def test_input_roots_come_from_the_environment_split_on_pathsep_and_resolved(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "b")
    raw = os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "alias")])
    settings = load_settings(
        settings_env(tmp_path, 'input_roots = ["/ignored"]\n', IMAGEGATE_INPUT_ROOTS=raw)
    )
    assert settings.input_roots == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())


def test_input_roots_and_private_urls_can_be_set_in_the_config_file(tmp_path):
    (tmp_path / "pics").mkdir()
    config = f'input_roots = ["{tmp_path / "pics"}"]\nallow_private_urls = true\n'
    settings = load_settings(settings_env(tmp_path, config))
    assert settings.input_roots == ((tmp_path / "pics").resolve(),) and settings.allow_private_urls is True
    assert (
        load_settings(settings_env(tmp_path, config, IMAGEGATE_ALLOW_PRIVATE_URLS="false")).allow_private_urls
        is False
    )


@pytest.mark.parametrize(
    ("config", "env", "fragment"),
    [
        (
            "",
            {"IMAGEGATE_INPUT_ROOTS": "/no/such/folder"},
            "IMAGEGATE_INPUT_ROOTS: '/no/such/folder' is not a folder",
        ),
        ('input_roots = ["config.toml"]\n', {}, "config: input_roots: 'config.toml' is not a folder"),
        (
            "",
            {"IMAGEGATE_ALLOW_PRIVATE_URLS": "sometimes"},
            "IMAGEGATE_ALLOW_PRIVATE_URLS='sometimes' is not a boolean",
        ),
        ('allow_private_urls = "yes please"\n', {}, "allow_private_urls"),
    ],
)
def test_bad_input_settings_stop_the_start_with_a_clear_message(tmp_path, monkeypatch, config, env, fragment):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings(settings_env(tmp_path, config, **env))
    assert fragment in caught.value.message
