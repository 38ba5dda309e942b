"""The shared cache keeps the rate limits' counts; nothing a reader or a family does depends on
it. While it cannot be reached, guide pages are served as ever (from their published
revisions, never from the cache), the inquiry form takes sendings without its rate limit,
and /healthz reports it down."""

import logging
import time

from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# What the cache raises when it cannot be reached: Redis refusing, timing out or gone away
# (REDIS_URL), or the disk under the default file cache failing.
CACHE_ERRORS = (RedisError, OSError)
# Of those, the ones that say it cannot be reached at all.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)

# After a failure, each worker leaves the cache alone for a while: a Redis that hangs costs
# a reader the one-second timeout once, not on every call of every request.
RESTING_SECONDS = 10
_resting_until = 0.0


def cache_resting() -> bool:
    """True while this worker goes without the cache after a failure."""
    return time.monotonic() < _resting_until


def cache_failed(error: Exception, what: str) -> None:
    """Notes a failed call. Only a cache that cannot be reached is left to rest: one that
    refuses a single command (out of memory, read-only after a failover) still answers the
    others, and is tried again on the next call."""
    global _resting_until
    if isinstance(error, UNREACHABLE):
        _resting_until = time.monotonic() + RESTING_SECONDS
        logger.warning(
            "%s without the cache for %d s: %s", what, RESTING_SECONDS, type(error).__name__
        )
    else:
        logger.warning("%s without the cache this once: %s", what, type(error).__name__)


def over_limit(
    request: HttpRequest, group: str, rate: str, increment: bool, what: str = "Inquiries"
) -> bool:
    """Whether this client has gone past `rate` for `group` (counting this request if
    `increment`). While the cache that keeps the counts cannot be reached, nobody is: a
    family's inquiry matters more than a few minutes of keeping bots out."""
    if cache_resting():
        return False
    try:
        return is_ratelimited(
            request, group=group, key="ip", rate=rate, method="POST", increment=increment
        )
    except CACHE_ERRORS as error:
        cache_failed(error, f"{what} taken")
        return False
