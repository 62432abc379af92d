"""Thin drivers of wsproto_core over blocking sockets, asyncio and trio.

Each adapter module (`adapters.blocking`, `adapters.asyncio`,
`adapters.trio`) offers `serve(handler, host, port, **options)` and
`connect(url, **options)` with the same option names, defaults and
exceptions; `adapters._common` holds what they share.
"""
