"""Helpers of test_differential.py: the same bytes fed to wsproto_core,
websockets and wsproto, and what each did, in one normalized form."""
