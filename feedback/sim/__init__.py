"""Simulated audiences and load: stand-ins for people, for examples, tests and benchmarks.

`personas` (the news feed's simulated readers as a reward source), `helpdesk_users` (simulated
help-desk users who rate through the gateway, late or never), and `loadtest` (sustained
ratings per second against a real gateway).
"""
