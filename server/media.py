"""Media URLs in request bodies, checked before vLLM fetches them.

vLLM fetches any http(s) URL a request names as an image, video or audio (its
`--allowed-media-domains` is an allowlist of exact host names: right where a deployment knows
its media hosts, no help where it does not). In a cluster that reaches internal services,
the server's own /metrics and cloud metadata addresses (169.254.169.254). With the policy
`public` (`serve --media-urls public`; the compose and Helm defaults) a URL whose host is, or
resolves to, an address that is not globally routable (loopback, private, link-local, shared,
reserved, multicast, unspecified; IPv4 and IPv6, IPv4-mapped included) is refused with a 400
before vLLM sees the request. `any` (serve's default) leaves fetching to vLLM's own rules.

And whatever the policy: a `file://` URL on a server started without
`--allowed-local-media-path` is the client's mistake, so it gets a 400 here (vLLM 0.32 raises
a RuntimeError for it, which its server answers 500 with a traceback in the log).

Limits of a check before the fetch: vLLM resolves the host again when it fetches, so a name
whose DNS answer changes between the two (rebinding) passes; so does a redirect from a public
URL to an internal one unless redirects are off (`VLLM_MEDIA_URL_ALLOW_REDIRECTS=0`, which
the compose and Helm defaults set with this policy). No vLLM import here.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

from .request import RequestError

POLICY_ENV = "VIDEOANCHOR_MEDIA_URLS"
POLICIES = ("any", "public")


def policy_from_env() -> str:
    """The media URL policy this process serves (the launcher sets the variable)."""
    value = os.environ.get(POLICY_ENV, "any").strip().lower() or "any"
    if value not in POLICIES:
        raise ValueError(f"{POLICY_ENV}={value!r}: expected one of {', '.join(POLICIES)}")
    return value


def media_urls(body, path: str = "") -> Iterator[tuple[str, str]]:
    """(where, url) for every string under a key named `url` or `*_url` in a JSON body: the
    chat parts' image_url.url / video_url.url / audio_url.url, the Responses API's
    input_image.image_url, Anthropic's source.url, ... wherever a route puts them."""
    if isinstance(body, dict):
        for key, value in body.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, str) and isinstance(key, str) and (key == "url" or key.endswith("_url")):
                yield where, value
            else:
                yield from media_urls(value, where)
    elif isinstance(body, list):
        for index, value in enumerate(body):
            yield from media_urls(value, f"{path}.{index}" if path else str(index))


def _not_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope id ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _addresses(host: str) -> list[str]:
    """The addresses `host` is, or resolves to (OSError if it does not resolve)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


def check_media_urls(body, policy: str, local_media: bool) -> None:
    """RequestError (a 400) for the first media URL this server must not fetch. Blocking
    (it resolves host names): call it off the event loop."""
    for where, url in media_urls(body):
        scheme = url[:8].lower()
        if scheme.startswith("file:"):
            if not local_media:
                raise RequestError(f"{where}: file:// URLs are not served: this server was started without "
                                   "--allowed-local-media-path", where)
            continue
        if policy == "any" or not scheme.startswith(("http:", "https:")):
            continue  # data: URLs and vLLM's own rules for the rest
        try:
            host = urlsplit(url).hostname
        except ValueError:
            raise RequestError(f"{where}: not a valid URL", where) from None
        if not host:
            raise RequestError(f"{where}: the URL names no host", where)
        try:
            addresses = _addresses(host)
        except (OSError, UnicodeError):
            raise RequestError(f"{where}: the host {host!r} does not resolve", where) from None
        refused = [address for address in addresses if _not_public(address)]
        if refused:
            raise RequestError(f"{where}: this server fetches media from public hosts only: {host!r} is "
                               f"{refused[0]}, not a globally routable address (loopback, private, link-local, ...)",
                               where)
