"""The shared cache speeds the site up; nothing a reader or a family does depends on it. While
it cannot be reached, guide pages are rendered afresh for each reader, the inquiry form takes
sendings without its rate limit, and /healthz reports it down."""

from redis.exceptions import RedisError

# What the cache raises when it cannot be reached: Redis refusing, timing out or gone away
# (REDIS_URL), or the disk under the default file cache failing.
CACHE_ERRORS = (RedisError, OSError)
