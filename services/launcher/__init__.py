"""The launcher: the ``whistle`` command, ``whistle up`` and its supervisor, and the embedded
PostgreSQL and broker. The top layer: it may import every service; nothing imports it."""
