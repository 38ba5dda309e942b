import ipaddress
import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.middleware import csp
from django.shortcuts import render
from django.utils.csp import CSP, build_policy
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


def permissions_policy(get_response: Callable[[HttpRequest], HttpResponse]):
    """Denies the browser features no page of ours needs (camera, microphone, location…),
    so that nothing injected into a page could ask for them. Django has no setting for it."""
    policy = settings.PERMISSIONS_POLICY  # the same for every response: read once

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        response.headers.setdefault("Permissions-Policy", policy)
        return response

    return middleware


class ContentSecurityPolicyMiddleware(csp.ContentSecurityPolicyMiddleware):
    """Django's, except that the policy of a response that used no nonce and no policy of
    its own (every public page, the guides above all) is built once, not for each
    response: it is the same string every time."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        super().__init__(get_response)
        self.unchanging = [
            (str(header), build_policy(config))
            for header, config in [
                (CSP.HEADER_ENFORCE, settings.SECURE_CSP),
                (CSP.HEADER_REPORT_ONLY, settings.SECURE_CSP_REPORT_ONLY),
            ]
            if config
        ]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        own = hasattr(response, "_csp_config") or hasattr(response, "_csp_ro_config")
        if csp.get_nonce(request) or own:
            return super().process_response(request, response)
        for header, policy in self.unchanging:
            if header not in response:
                response.headers[header] = policy
        return response


class ServiceUnavailableMiddleware:
    """When the database, or Redis where a page cannot do without it, cannot be reached, the
    page answers a calm 503 that says nothing was saved, with Retry-After, instead of a 500.
    Django and redis-py reconnect by themselves, so the site recovers when the service
    returns."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, OperationalError | InterfaceError):
            logger.error("Database unavailable: %s", type(exception).__name__)
        elif isinstance(exception, RedisError):
            logger.error("Cache unavailable: %s", type(exception).__name__)
        else:
            return None
        response = render(request, "503.html", status=503)
        response["Retry-After"] = "30"
        return response


def client_address(request: HttpRequest) -> str:
    """The visitor's address. A request from a proxy we trust (nginx on this machine, over
    its socket or loopback, or the load balancer, TRUSTED_PROXIES) is counted by the last
    X-Forwarded-For entry that a trusted proxy added and that is not itself one of them;
    earlier entries are whatever the client claimed. Any other request is counted by its
    own address, whatever it claims."""
    remote = request.META.get("REMOTE_ADDR", "")
    # gunicorn leaves the address empty for its socket, which only nginx reaches.
    if remote and not _is_trusted_proxy(remote):
        return remote
    for entry in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        try:
            address = str(ipaddress.ip_address(_without_port(entry.strip())))
        except ValueError:
            break
        if not _is_trusted_proxy(address):
            return address
        remote = address
    # Only a process on this machine reaches gunicorn's socket without nginx's header.
    return remote or "127.0.0.1"


def _without_port(entry: str) -> str:
    """1.2.3.4:5678 and [2001:db8::1]:5678, as some load balancers write them, as addresses."""
    if entry.startswith("["):
        return entry[1:].split("]", 1)[0]
    if entry.count(":") == 1:
        return entry.split(":", 1)[0]
    return entry


def _is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network) for network in settings.TRUSTED_PROXIES)
