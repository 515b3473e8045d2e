"""The network: URL checks and allowed addresses (standard library only, the API uses them), the SSRF
guard, downloads (aiohttp), per-origin turns and reading answers.

This file imports nothing, so that the API's ``worker.net.urls`` and ``worker.net.addresses``
bring no aiohttp with them.
"""
