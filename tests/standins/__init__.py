"""Local stand-ins for the services linqwatch talks to, for tests.

Each is a small aiohttp server on 127.0.0.1 that answers as the real service
does, records what it was sent, and can be told to fail.
"""

__all__: list[str] = []
